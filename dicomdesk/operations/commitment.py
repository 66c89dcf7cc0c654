"""Storage commitment request: "do you now keep these instances safe?" (PS3.4 Annex J.3).

We send one N-ACTION "Request Storage Commitment" for the files' SOP instances and wait for
the SCP's N-EVENT-REPORT. PS3.4 J.3.3 lets the SCP send it on the same association, while we
keep it open, or on a new association to our AE title — so while waiting we both read the
requesting association and listen on a port of our own (``listen_port``; 0 asks the OS for
one, None does not listen). The peer must map our AE title to that address for the second
way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..net import uids
from ..net.applicationentity import AE, ClientAE
from ..net.exceptions import (AssociationAbortedError, AssociationReleasedError, DCMTimeoutError,
                              OperationCancelledError)
from ..net.sopclass import verification_scp
from ..net.sopclass.commitment import StorageCommitment, failure_reason_text, storage_commitment_scu
from ..net.statuses import Status
from ..net.wakeup import any_of
from .common import Peer, describe_error

logger = logging.getLogger(__name__)

_N_EVENT_REPORT_RQ = 0x0100


@dataclass(frozen=True)
class CommitResult:
    """The outcome of a commitment request.

    ``committed``: SOP Instance UIDs the SCP committed; ``failed``: (SOP Instance UID,
    Failure Reason (0008,1197) or None when the SCP did not mention the instance);
    ``status``: the N-ACTION-RSP status; ``error``: a sentence when not everything was
    committed or something went wrong.
    """

    committed: list[str] = field(default_factory=list)
    failed: list[tuple[str, int | None]] = field(default_factory=list)
    error: str | None = None
    transaction_uid: str | None = None
    status: Status | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed


def describe_reason(reason: int | None) -> str:
    """A failed instance's reason as text (PS3.3 C.14.1.1)."""
    return "not reported by the SCP" if reason is None else failure_reason_text(reason)


class _Outcome:
    """The N-EVENT-REPORT of our transaction, from whichever association brings it."""

    def __init__(self, transaction_uid: str):
        self.transaction_uid = transaction_uid
        self.done = threading.Event()
        self.committed: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str, int]] = []

    def receive(self, transaction_uid: str, success: Iterable, failure: Iterable) -> None:
        if transaction_uid != self.transaction_uid:
            logger.info("ignoring storage commitment result for transaction %s", transaction_uid)
            return
        self.committed = [tuple(s) for s in success]
        self.failed = [tuple(f) for f in failure]
        self.done.set()


class CommitmentReports:
    """Where a listening AE that is not ours hands commitment results (PS3.4 J.3.3).

    A PACS sends its N-EVENT-REPORT on a new association to the address it knows for our AE
    title: usually the local server's, which then delivers the result here, by Transaction
    UID, to the ``commit`` waiting for it. Thread-safe (the server's threads deliver)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, Callable[[str, Iterable, Iterable], None]] = {}

    def expect(self, transaction_uid: str, receive: Callable[[str, Iterable, Iterable], None]) -> None:
        with self._lock:
            self._waiting[transaction_uid] = receive

    def forget(self, transaction_uid: str) -> None:
        with self._lock:
            self._waiting.pop(transaction_uid, None)

    def deliver(self, transaction_uid: str, success: Iterable, failure: Iterable) -> bool:
        """Hand a result to its waiting request; False when nobody waits for it."""
        with self._lock:
            receive = self._waiting.get(transaction_uid)
        if receive is None:
            return False
        receive(transaction_uid, success, failure)
        return True


class _Requester(ClientAE):
    """Our requesting AE: a same-association N-EVENT-REPORT reaches ``on_commitment_response``."""

    def __init__(self, ae_title: str, outcome: _Outcome):
        super().__init__(ae_title)
        self.outcome = outcome

    def on_commitment_response(self, transaction_uid: str, success: Iterable, failure: Iterable) -> None:
        self.outcome.receive(transaction_uid, success, failure)


class _Listener(AE):
    """Our listening AE for an N-EVENT-REPORT on a new association (PS3.4 J.3.3)."""

    def __init__(self, ae_title: str, port: int, address: str, outcome: _Outcome):
        super().__init__(ae_title, port, address=address, max_associations=4)
        self.outcome = outcome
        # The SCP proposes our class with role selection asking to be SCP (then we must be
        # able to act as SCU), or without it (then we accept it as SCP): have both.
        self.add_scp(StorageCommitment()).add_scu(storage_commitment_scu).add_scp(verification_scp)

    def on_commitment_response(self, transaction_uid: str, success: Iterable, failure: Iterable) -> None:
        self.outcome.receive(transaction_uid, success, failure)


def read_references(files: Iterable[str | Path]) -> list[tuple[str, str]]:
    """(SOP Class UID, SOP Instance UID) of each file, from its header only.

    Raises ValueError naming the first file that is not DICOM or lacks the UIDs.
    """
    from pydicom import dcmread

    references = []
    for path in files:
        ds = None
        for force in (False, True):  # a bare data set without Part-10 header is DICOM too
            try:
                ds = dcmread(path, stop_before_pixels=True, force=force,
                             specific_tags=["SOPClassUID", "SOPInstanceUID"])
                break
            except Exception as exc:
                error = exc
        if ds is None:
            raise ValueError(f"cannot read {path}: {error}")
        meta = getattr(ds, "file_meta", None)
        sop_class = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)
        sop_instance = ds.get("SOPInstanceUID") or (meta.get("MediaStorageSOPInstanceUID")
                                                    if meta else None)
        if not sop_class or not sop_instance:
            raise ValueError(f"{path} has no SOP Class/Instance UID")
        references.append((str(sop_class), str(sop_instance)))
    return references


def commit(peer: Peer, files: Iterable[str | Path], timeout: float = 60.0,
           listen_port: int | None = 0, *, listen_address: str = "127.0.0.1",
           on_listening: Callable[[int], None] | None = None,
           cancel: threading.Event | None = None,
           reports: CommitmentReports | None = None) -> CommitResult:
    """Ask ``peer`` to commit the files' instances and wait up to ``timeout`` s for its answer.

    ``on_listening(port)`` tells the caller where our AE (title ``peer.calling_aet``) listens
    for a report on a new association. ``reports``: a running local server's mailbox, for a
    report sent to the address the peer knows for our AE title. Never raises for peer or
    network failures.
    """
    try:
        references = read_references(files)
    except ValueError as exc:
        return CommitResult(error=str(exc))
    if not references:
        return CommitResult(error="no files to commit")
    from pydicom.uid import generate_uid

    outcome = _Outcome(generate_uid())
    listener = None
    if reports is not None:
        reports.expect(outcome.transaction_uid, outcome.receive)
    try:
        if listen_port is not None:
            try:
                listener = _Listener(peer.calling_aet, listen_port, listen_address, outcome).start()
            except OSError as exc:
                return CommitResult(error=f"cannot listen on {listen_address}:{listen_port}: "
                                          f"{exc.strerror or exc}",
                                    transaction_uid=outcome.transaction_uid)
            if on_listening is not None:
                on_listening(listener.port)
        return _request_and_wait(peer, references, outcome, timeout, cancel)
    finally:
        if listener is not None:
            listener.quit()
        if reports is not None:
            reports.forget(outcome.transaction_uid)


def _request_and_wait(peer: Peer, references: list[tuple[str, str]], outcome: _Outcome,
                      timeout: float, cancel: threading.Event | None) -> CommitResult:
    transaction_uid = outcome.transaction_uid
    ae = _Requester(peer.calling_aet, outcome).add_scu(storage_commitment_scu)
    ae.timeout = peer.timeout
    ae.dimse_timeout = peer.timeout
    status = None
    deadline = time.monotonic() + timeout
    try:
        with ae.request_association(peer.remote_ae()) as assoc:
            scu = assoc.get_scu(uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS)
            status = scu(transaction_uid, references, assoc.next_message_id())
            if not status.is_success:
                return CommitResult(error=f"{peer.describe()} refused the request: {status}",
                                    transaction_uid=transaction_uid, status=status)
            _wait_on_association(assoc, outcome, deadline, cancel)
    except (AssociationReleasedError, AssociationAbortedError) as exc:
        if status is None:  # the request itself did not get through
            return CommitResult(error=describe_error(exc, peer), transaction_uid=transaction_uid)
    except Exception as exc:  # every failure becomes a sentence, never a traceback
        return CommitResult(error=describe_error(exc, peer), transaction_uid=transaction_uid,
                            status=status)
    # The association is gone (released by us or the peer); a report may still come to
    # our listener on a new association.
    if not outcome.done.is_set() and not (cancel is not None and cancel.is_set()):
        _wait_for_event(outcome.done, deadline, cancel)
    return _result(peer, references, outcome, status, timeout, cancel)


def _wait_on_association(assoc: Any, outcome: _Outcome, deadline: float,
                         cancel: threading.Event | None) -> None:
    """Answer a same-association N-EVENT-REPORT, until the outcome arrives one way or another.

    The association's one wait is woken by the listener's report or by the cancel."""
    with any_of(outcome.done, cancel) as stop:
        while not outcome.done.is_set():
            if cancel is not None and cancel.is_set():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                msg, pc_id = assoc.receive(remaining, cancel=stop)
            except (DCMTimeoutError, OperationCancelledError):
                continue
            _answer_on_association(assoc, msg, pc_id)


def _answer_on_association(assoc: Any, msg: Any, pc_id: int) -> None:
    if getattr(msg, "command_field", None) == _N_EVENT_REPORT_RQ:
        StorageCommitment.n_event_report(assoc, assoc.context(pc_id), msg)
    else:
        logger.warning("ignoring %s while waiting for the commitment result", type(msg).__name__)


def _wait_for_event(done: threading.Event, deadline: float, cancel: threading.Event | None) -> None:
    """Wait for the listener's report, the cancel or the deadline: one wait on whichever
    comes first."""
    with any_of(done, cancel) as stop:
        while not done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (cancel is not None and cancel.is_set()):
                return
            stop.wait(remaining)


def _result(peer: Peer, references: list[tuple[str, str]], outcome: _Outcome, status: Status | None,
            timeout: float, cancel: threading.Event | None) -> CommitResult:
    transaction_uid = outcome.transaction_uid
    if not outcome.done.is_set():
        why = "cancelled" if cancel is not None and cancel.is_set() else (
            f"no storage commitment result from {peer.describe()} within {timeout:g} s "
            f"(does it know our AE title {peer.calling_aet!r} and address?)")
        return CommitResult(error=why, transaction_uid=transaction_uid, status=status)
    committed = [instance for _, instance in outcome.committed]
    failed: list[tuple[str, int | None]] = [(f[1], int(f[2]) if len(f) > 2 else None)
                                            for f in outcome.failed]
    reported = set(committed) | {uid for uid, _ in failed}
    failed.extend((instance, None) for _, instance in references if instance not in reported)
    error = None
    if failed:
        error = f"{len(failed)} of {len(references)} instance(s) not committed"
    return CommitResult(committed, failed, error, transaction_uid, status)
