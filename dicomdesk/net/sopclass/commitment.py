"""Storage Commitment Push Model (PS3.4 Annex J.3; N-ACTION and N-EVENT-REPORT, PS3.7 10.1).

The requester (SCU) asks with N-ACTION-RQ, Action Type ID 1 "Request Storage Commitment",
on the well-known SOP instance (PS3.4 J.3.5); the N-ACTION-RSP only acknowledges the
request. The result comes later as an N-EVENT-REPORT-RQ from the SCP — Event Type ID 1
"Storage Commitment Request Successful" or 2 "... Complete - Failures Exist" (PS3.4 J.3.3) —
either on the same association, while it is still open, or on a new association the SCP
opens to the requester, taking the SCP role through SCP/SCU Role Selection (PS3.4 J.3.3,
"Storage Commitment ... may be on a different association"; PS3.7 D.3.3.4). So an SCU must
be ready for both, and an SCP here prefers a new association as the reference does.

Pure parts (building and reading the Action/Event Information of PS3.4 Tables J.3-1 and
J.3-2) are module functions so they are testable without a network.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .. import dimsemessages, statuses, uids
from ..dimsemessages import is_dataset
from ..exceptions import EventHandlingError, NetDICOMError
from .base import MessageDispatcherSCP, sop_classes

if TYPE_CHECKING:  # pydicom loads on first use: a server answers C-ECHO without it
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

#: The SOP class and its well-known SOP instance (PS3.4 J.3.5; the reference's ``uids`` names).
SOP_CLASS = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS
SOP_INSTANCE = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE

#: Action Type ID of "Request Storage Commitment" (PS3.4 Table J.3-1).
ACTION_REQUEST_STORAGE_COMMITMENT = 1
#: Event Type IDs of the result (PS3.4 Table J.3-2).
EVENT_ALL_SUCCESSFUL = 1
EVENT_FAILURES_EXIST = 2


class CommitmentMessageError(ValueError):
    """A Storage Commitment data set lacks what PS3.4 J.3 requires; ``status`` is the answer."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------ pure parts
def build_action_information(transaction_uid: str, references: Iterable[Sequence[str]]) -> Dataset:
    """N-ACTION-RQ Action Information: Transaction UID and Referenced SOP Sequence (J.3.2.1)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.ReferencedSOPSequence = DicomSequence([_reference_item(ref[0], ref[1]) for ref in references])
    return ds


def parse_action_information(ds: Any) -> tuple[str, list[tuple[str, str]]]:
    """(Transaction UID, [(SOP Class UID, SOP Instance UID)]) of an N-ACTION-RQ data set.

    Raises CommitmentMessageError with the N-ACTION status to answer when a required
    attribute is missing (0120) or the data set could not be decoded (0115).
    """
    if not is_dataset(ds):
        raise CommitmentMessageError("the action information could not be decoded",
                                     statuses.INVALID_ARGUMENT_VALUE)
    transaction_uid = str(ds.get("TransactionUID", "") or "").strip()
    if not transaction_uid:
        raise CommitmentMessageError("Transaction UID (0008,1195) is missing",
                                     statuses.MISSING_ATTRIBUTE)
    if "ReferencedSOPSequence" not in ds or not ds.ReferencedSOPSequence:
        raise CommitmentMessageError("Referenced SOP Sequence (0008,1199) is missing or empty",
                                     statuses.MISSING_ATTRIBUTE)
    references = []
    for item in ds.ReferencedSOPSequence:
        sop_class, sop_instance = _reference_uids(item)
        if not sop_class or not sop_instance:
            raise CommitmentMessageError("a Referenced SOP Sequence item lacks its UIDs",
                                         statuses.MISSING_ATTRIBUTE)
        references.append((sop_class, sop_instance))
    return transaction_uid, references


def build_event_information(transaction_uid: str, committed: Iterable[Sequence[str]],
                            failed: Iterable[Sequence[Any]]) -> tuple[int, Dataset]:
    """(Event Type ID, Event Information) of the N-EVENT-REPORT-RQ (PS3.4 J.3.3.1).

    ``failed`` items are (class, instance) or (class, instance, reason); a missing reason is
    Processing Failure (PS3.3 C.14.1.1). The Referenced SOP Sequence is present only when
    something was committed; the Failed SOP Sequence only with Event Type 2.
    """
    committed = [(c[0], c[1]) for c in committed or ()]
    failures = [(f[0], f[1], int(f[2]) if len(f) > 2 and f[2] is not None
                 else StorageCommitment.PROCESSING_FAILURE) for f in failed or ()]
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    ds = Dataset()
    ds.TransactionUID = transaction_uid
    if committed:
        ds.ReferencedSOPSequence = DicomSequence([_reference_item(c, i) for c, i in committed])
    if failures:
        items = []
        for sop_class, sop_instance, reason in failures:
            item = _reference_item(sop_class, sop_instance)
            item.FailureReason = reason
            items.append(item)
        ds.FailedSOPSequence = DicomSequence(items)
    return (EVENT_FAILURES_EXIST if failures else EVENT_ALL_SUCCESSFUL), ds


def parse_event_information(ds: Any) -> tuple[str, list[tuple[str, str]], list[tuple[str, str, int]]]:
    """(Transaction UID, committed [(class, instance)], failed [(class, instance, reason)]).

    Raises CommitmentMessageError (status 0115/0120 for N-EVENT-REPORT) when unusable.
    """
    if not is_dataset(ds):
        raise CommitmentMessageError("the event information could not be decoded",
                                     statuses.INVALID_ARGUMENT_VALUE)
    transaction_uid = str(ds.get("TransactionUID", "") or "").strip()
    if not transaction_uid:
        raise CommitmentMessageError("Transaction UID (0008,1195) is missing",
                                     statuses.MISSING_ATTRIBUTE)
    committed = [_reference_uids(item) for item in ds.get("ReferencedSOPSequence", None) or []]
    failed = []
    for item in ds.get("FailedSOPSequence", None) or []:
        sop_class, sop_instance = _reference_uids(item)
        reason = item.get("FailureReason", None)
        failed.append((sop_class, sop_instance,
                       int(reason) if reason is not None else StorageCommitment.PROCESSING_FAILURE))
    return transaction_uid, committed, failed


def failure_reason_text(reason: int) -> str:
    """A readable Failure Reason (PS3.3 C.14.1.1), for logs and the command line."""
    name = _FAILURE_REASON_NAMES.get(int(reason), "unknown failure reason")
    return f"0x{int(reason):04X} {name}"


def _reference_item(sop_class: str, sop_instance: str) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def _reference_uids(item: Dataset) -> tuple[str, str]:
    return (str(item.get("ReferencedSOPClassUID", "") or "").strip(),
            str(item.get("ReferencedSOPInstanceUID", "") or "").strip())


# ------------------------------------------------------------------------------ SCU
@sop_classes([uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS])
def storage_commitment_scu(asce: Any, ctx: Any, transaction_uid: str,
                           uids: Iterable[Sequence[str]], msg_id: int) -> statuses.Status:
    """Send the N-ACTION-RQ "Request Storage Commitment" and return the N-ACTION-RSP status.

    ``uids`` holds (SOP Class UID, SOP Instance UID) pairs. Some SCPs (pynetdicom handlers
    among them) send the N-EVENT-REPORT-RQ on this association *before* their N-ACTION-RSP;
    such a report is answered here, through ``StorageCommitment.n_event_report`` and the
    AE's ``on_commitment_response``, instead of deadlocking on the response.
    """
    rq = dimsemessages.NActionRQMessage()
    rq.message_id = msg_id
    rq.sop_class_uid = SOP_CLASS
    rq.requested_sop_instance_uid = SOP_INSTANCE
    rq.action_type_id = ACTION_REQUEST_STORAGE_COMMITMENT
    rq.data_set = build_action_information(transaction_uid, uids)
    asce.send(rq, ctx.id)
    while True:
        msg, pc_id = asce.receive()
        if getattr(msg, "message_id_being_responded_to", None) == msg_id:
            return statuses.Status(msg.status)
        if getattr(msg, "command_field", None) == dimsemessages.NEventReportRQMessage.command_field:
            StorageCommitment.n_event_report(asce, asce.context(pc_id), msg)
        else:
            logger.warning("ignoring %s while waiting for the N-ACTION-RSP", type(msg).__name__)


def send_event_report(asce: Any, ctx: Any, transaction_uid: str, committed: Iterable[Sequence[str]],
                      failed: Iterable[Sequence[Any]], msg_id: int) -> statuses.Status:
    """Send the commitment result as N-EVENT-REPORT-RQ (PS3.4 J.3.3) and return the RSP status."""
    event_type, info = build_event_information(transaction_uid, committed, failed)
    rq = dimsemessages.NEventReportRQMessage()
    rq.message_id = msg_id
    rq.sop_class_uid = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS
    rq.affected_sop_instance_uid = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE
    rq.event_type_id = event_type
    rq.data_set = info
    asce.send(rq, ctx.id)
    rsp, _ = asce.receive_response(msg_id)
    return statuses.Status(rsp.status)


# ------------------------------------------------------------------------------ SCP (both roles)
class StorageCommitment(MessageDispatcherSCP):
    """Storage Commitment Push Model: N-ACTION-RQ (SCP role) and N-EVENT-REPORT-RQ (SCU role).

    Register an instance with ``ae.add_scp(StorageCommitment())``: the SCP side needs the
    AE's ``on_commitment_request``, the requester side its ``on_commitment_response``.
    """

    sop_classes = [uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS]

    # Failure Reason (0008,1197) values, PS3.3 C.14.1.1.
    PROCESSING_FAILURE = 0x0110
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    RESOURCE_LIMITATION = 0x0213
    REFERENCED_SOP_CLASS_NOT_SUPPORTED = 0x0122
    CLASS_INSTANCE_CONFLICT = 0x0119
    DUPLICATE_TRANSACTION_UID = 0x0131

    @staticmethod
    def n_action(asce: Any, ctx: Any, msg: Any) -> None:
        """Take a commitment request, acknowledge it, then report the result.

        The AE's ``on_commitment_request(remote AE title, [(class, instance)])`` is asked
        *before* the N-ACTION-RSP so that an AE that cannot commit is told so in the response
        (0110) rather than by silence. It returns (remote AE dict or None, committed,
        failed); with a dict the N-EVENT-REPORT goes on a new association to that AE, with
        None on this association (PS3.4 J.3.3 allows both).
        """
        status: int = statuses.SUCCESS
        outcome = None
        comment = None
        if msg.action_type_id != ACTION_REQUEST_STORAGE_COMMITMENT:
            status = statuses.NO_SUCH_ACTION
        elif msg.data_set_over_limit:
            # More references (or elements) than the decoder admits (decode_limits): PS3.7
            # 10.1.4.1.10 "Resource limitation" (0213H), refused before any was decoded.
            logger.warning("refusing storage commitment request: %s", msg.data_set_error)
            status, comment = statuses.RESOURCE_LIMITATION, msg.data_set_error
        else:
            try:
                transaction_uid, references = parse_action_information(msg.data_set)
                remote, committed, failed = asce.ae.on_commitment_request(asce.remote_ae_title,
                                                                          references)
                outcome = (transaction_uid, remote, list(committed or ()), list(failed or ()))
            except CommitmentMessageError as exc:
                logger.info("refusing storage commitment request: %s", exc)
                status = exc.status
            except EventHandlingError as exc:
                logger.info("on_commitment_request refused: %s", exc)
                status = statuses.PROCESSING_FAILURE
        rsp = dimsemessages.NActionRSPMessage()
        rsp.message_id_being_responded_to = msg.message_id
        rsp.sop_class_uid = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS
        rsp.affected_sop_instance_uid = (msg.requested_sop_instance_uid
                                         or uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE)
        if status == statuses.SUCCESS:
            rsp.action_type_id = ACTION_REQUEST_STORAGE_COMMITMENT
        rsp.status = int(status)
        if comment:
            rsp.error_comment = str(comment)[:64]  # LO (PS3.7 C.4)
        asce.send(rsp, ctx.id)
        if outcome is None:
            return
        transaction_uid, remote, committed, failed = outcome
        if remote is not None:
            report_on_new_association(asce.ae, remote, transaction_uid, committed, failed)
        elif asce.association_established:
            status = send_event_report(asce, ctx, transaction_uid, committed, failed,
                                       asce.next_message_id())
            logger.info("storage commitment %s reported on the same association: %s",
                        transaction_uid, status)
        else:
            logger.warning("storage commitment %s: no remote AE and the association is gone; "
                           "the result was not reported", transaction_uid)

    @staticmethod
    def n_event_report(asce: Any, ctx: Any, msg: Any) -> None:
        """Hand a commitment result to ``on_commitment_response`` and answer N-EVENT-REPORT-RSP."""
        status: int = statuses.SUCCESS
        if msg.event_type_id not in (EVENT_ALL_SUCCESSFUL, EVENT_FAILURES_EXIST):
            status = statuses.NO_SUCH_EVENT_TYPE
        elif msg.data_set_over_limit:  # PS3.7 10.1.1.1.8: 0213H Resource limitation
            logger.warning("refusing storage commitment result: %s", msg.data_set_error)
            status = statuses.RESOURCE_LIMITATION
        else:
            try:
                transaction_uid, committed, failed = parse_event_information(msg.data_set)
                asce.ae.on_commitment_response(transaction_uid, committed, failed)
            except CommitmentMessageError as exc:
                logger.info("invalid storage commitment result: %s", exc)
                status = exc.status
            except EventHandlingError as exc:
                logger.info("on_commitment_response refused: %s", exc)
                status = statuses.PROCESSING_FAILURE
        rsp = dimsemessages.NEventReportRSPMessage()
        rsp.message_id_being_responded_to = msg.message_id
        rsp.sop_class_uid = msg.sop_class_uid or uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS
        rsp.affected_sop_instance_uid = (msg.affected_sop_instance_uid
                                         or uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE)
        if status == statuses.SUCCESS:
            rsp.event_type_id = msg.event_type_id
        rsp.status = int(status)
        asce.send(rsp, ctx.id)


def report_on_new_association(local_ae: Any, remote_ae: dict, transaction_uid: str,
                              committed: Sequence, failed: Sequence) -> statuses.Status | None:
    """Open an association to the requester and send the result there (PS3.4 J.3.3).

    We propose the commitment class with SCP/SCU Role Selection asking for the SCP role
    (scu_role=0, scp_role=1): the requester of this association is the Storage Commitment
    SCP. A separate ``ClientAE`` with the same AE title keeps the serving AE's own context
    list untouched. Failures are logged and returned as None: the N-ACTION is already
    answered and nobody else is waiting on this thread.
    """
    from ..applicationentity import ClientAE  # late: applicationentity imports the services

    client = ClientAE(local_ae.ae_title, supported_ts=local_ae.supported_ts,
                      max_pdu_length=local_ae.max_pdu_length)
    client.timeout = local_ae.timeout
    client.dimse_timeout = local_ae.dimse_timeout
    client.update_context_def_list([uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS], scp_role=True)
    try:
        with client.request_association(remote_ae) as assoc:
            contexts = assoc.contexts_for(uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS)
            if not contexts:
                logger.warning("storage commitment %s: %s refused the commitment context",
                               transaction_uid, remote_ae.get("aet"))
                return None
            status = send_event_report(assoc, contexts[0], transaction_uid, committed, failed,
                                       assoc.next_message_id())
        logger.info("storage commitment %s reported to %s: %s", transaction_uid,
                    remote_ae.get("aet"), status)
        return status
    except (NetDICOMError, OSError) as exc:
        logger.warning("storage commitment %s: cannot report to %s: %s", transaction_uid,
                       remote_ae.get("aet"), exc)
        return None


_FAILURE_REASON_NAMES = {
    StorageCommitment.PROCESSING_FAILURE: "Processing failure",
    StorageCommitment.NO_SUCH_OBJECT_INSTANCE: "No such object instance",
    StorageCommitment.RESOURCE_LIMITATION: "Resource limitation",
    StorageCommitment.REFERENCED_SOP_CLASS_NOT_SUPPORTED: "Referenced SOP Class not supported",
    StorageCommitment.CLASS_INSTANCE_CONFLICT: "Class / Instance conflict",
    StorageCommitment.DUPLICATE_TRANSACTION_UID: "Duplicate transaction UID",
}
