"""Code written for the reference API (pynetdicom2 0.9.5, ../shared/seed/) runs on dicomdesk.net.

Each test does what a user of the reference does, the way its documentation shows it: an
``AE`` subclass overriding the ``on_*`` hooks, ``ClientAE().add_scu(...)``,
``request_association({...})`` and ``assoc.get_scu(uid)(..., msg_id)``, over real sockets on
127.0.0.1 and free ports. Where the reference documents behaviour that PS3.4 forbids, the test
states what we do instead and why.
"""

from __future__ import annotations

import io
import re
import socket
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomdesk.net import dimsemessages, sopclass, statuses, uids, userdataitems
from dicomdesk.net.applicationentity import AE, ClientAE
from dicomdesk.net.commandset import decode_command
from dicomdesk.net.sopclass import (
    StorageCommitment,
    qr_find_scp,
    qr_find_scu,
    storage_commitment_scu,
    storage_scp,
    storage_scu,
    verification_scp,
    verification_scu,
)
from tests.peers import free_port

REPO = Path(__file__).resolve().parents[2]
# shared/ lies beside the clone (CI, a developer's checkout), or beside one of its parents.
SEED = next((parent / "shared" / "seed" / "000_3ef5bd6233032c3b.txt" for parent in REPO.parents
             if (parent / "shared" / "seed" / "000_3ef5bd6233032c3b.txt").is_file()),
            REPO.parent / "shared" / "seed" / "000_3ef5bd6233032c3b.txt")


def _remote(ae: AE) -> dict:
    return {"aet": ae.ae_title, "address": "127.0.0.1", "port": ae.port}


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


# ------------------------------------------------------------------------ AE as a server
def test_ae_created_without_bind_and_activate_binds_and_serves_in_its_with_block() -> None:
    port = free_port()
    ae = AE("ECHOSCP", port, bind_and_activate=False).add_scp(verification_scp)
    assert _refused(port), "nothing may listen before the AE is activated"
    with ae:
        assert ae.port == port
        client = ClientAE("MY_AET").add_scu(verification_scu)
        with client.request_association(_remote(ae)) as assoc:
            status = assoc.get_scu(uids.VERIFICATION_SOP_CLASS)(1)
        assert status.is_success
    assert _refused(port), "leaving the with block stops the AE"


def test_ae_without_bind_and_activate_lets_socket_options_be_set_before_binding() -> None:
    port = free_port()
    ae = AE("ECHOSCP", port, bind_and_activate=False).add_scp(verification_scp)
    ae.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with ae:
        with ClientAE("ME").add_scu(verification_scu).request_association(_remote(ae)) as assoc:
            assert assoc.get_scu(uids.VERIFICATION_SOP_CLASS)(7).is_success


# ------------------------------------------------------------------------ names
#: The names the seed documents (``pynetdicom2.<module>.<name>``), extracted from it once; the
#: test reads the seed itself when ../shared is beside the clone, and this copy otherwise.
NAMES_SNAPSHOT = REPO / "tests" / "data" / "reference_api_names.txt"


def test_every_name_the_seed_documents_resolves() -> None:
    text = SEED.read_text() if SEED.is_file() else NAMES_SNAPSHOT.read_text()
    names = sorted(set(re.findall(r"pynetdicom2\.([a-z_]+)\.([A-Za-z_][A-Za-z_0-9]*)", text)))
    assert len(names) > 250
    if SEED.is_file():  # the snapshot is the seed's list, kept current
        snapshot = set(re.findall(r"pynetdicom2\.([a-z_]+)\.([A-Za-z_][A-Za-z_0-9]*)",
                                  NAMES_SNAPSHOT.read_text()))
        assert snapshot == set(names), "regenerate tests/data/reference_api_names.txt from the seed"
    import importlib

    missing = [f"{module}.{name}" for module, name in names
               if not hasattr(importlib.import_module(f"dicomdesk.net.{module}"), name)]
    assert missing == []


def test_names_the_reference_sopclass_and_uids_modules_expose_resolve() -> None:
    assert uids.STORAGE_COMMITMENT_SOP_CLASS == "1.2.840.10008.1.20.1"
    assert sopclass.STORAGE_COMMITMENT_SOP_CLASS == uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS
    assert uids.MODALITY_WORK_LIST_INFORMATION_FIND_SOP_CLASS == "1.2.840.10008.5.1.4.31"
    assert uids.EXPLICIT_VR_LITTLE_ENDIAN in uids.ALL_TS and uids.RLE_LOSSLESS in uids.ALL_TS
    assert uids.XML_ENCODING not in uids.ALL_TS  # encodes no data set
    assert uids.PATIENT_ROOT_FIND_SOP_CLASS in sopclass.FIND_SOP_CLASSES
    assert uids.STUDY_ROOT_GET_SOP_CLASS in sopclass.GET_SOP_CLASSES
    assert uids.STUDY_ROOT_MOVE_SOP_CLASS in sopclass.MOVE_SOP_CLASSES
    assert sopclass.CT_IMAGE_STORAGE in sopclass.STORAGE_SOP_CLASSES
    assert sopclass.statuses.SUCCESS == 0x0000
    assert sopclass.dimsemessages.CStoreRQMessage.command_field == 0x0001
    assert issubclass(sopclass.exceptions.EventHandlingError, sopclass.exceptions.NetDICOMError)
    assert storage_commitment_scu.sop_classes == [uids.STORAGE_COMMITMENT_SOP_CLASS]


# ------------------------------------------------------------------------ DIMSE messages
MESSAGE_CLASSES = sorted(dimsemessages.MESSAGE_TYPES.values(), key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda cls: cls.__name__)
def test_message_command_fields_are_in_a_fresh_command_set_and_read_empty(cls) -> None:
    keywords = pydicom.datadict.keyword_dict
    assert cls.command_fields and cls.command_fields[0] == "CommandGroupLength"
    assert all(keywords[name] >> 16 == 0 for name in cls.command_fields)
    msg = cls()
    command_set = msg.command_set
    assert [name for name in cls.command_fields if name not in command_set] == []
    assert command_set.CommandField == cls.command_field
    # every property over a command field never set reads '' (the reference's default)
    for name, prop in vars_of(cls):
        tag = getattr(prop, "__doc__", "") or ""
        match = re.search(r"\(0000,([0-9A-F]{4})\)", tag)
        if match is None:
            continue
        element = int(match.group(1), 16)
        in_fields = any(keywords[f] == element for f in cls.command_fields)
        if in_fields and element not in (0x0000, 0x0700):  # group length and priority have values
            assert getattr(msg, name) == "", f"{cls.__name__}.{name}"


def vars_of(cls):
    seen = set()
    for klass in cls.__mro__:
        for name, value in vars(klass).items():
            if isinstance(value, property) and name not in seen:
                seen.add(name)
                yield name, value


def test_empty_command_fields_are_not_sent_and_set_ones_are() -> None:
    msg = dimsemessages.CStoreRQMessage()
    assert msg.move_originator_aet == "" and msg.move_originator_message_id == ""
    msg.message_id = 5
    msg.sop_class_uid = uids.CT_IMAGE_STORAGE
    msg.affected_sop_instance_uid = "1.2.3.4"
    msg.command_set.MoveOriginatorApplicationEntityTitle = "ORIGIN"  # reference-style code
    sent = decode_command(msg.set_length())
    assert sent.MoveOriginatorApplicationEntityTitle == "ORIGIN"
    assert "MoveOriginatorMessageID" not in sent  # empty: absent on the wire
    assert all(not elem.is_empty for elem in sent), sent
    assert sent.CommandGroupLength == len(msg.set_length()) - 12


def test_status_never_set_reads_empty_and_a_set_one_is_a_status() -> None:
    rsp = dimsemessages.CFindRSPMessage()
    assert rsp.status == ""
    rsp.status = 0xFF00
    assert rsp.status.is_pending and int(rsp.status) == 0xFF00


# ------------------------------------------------------------------------ user information
SUB_ITEMS = [
    userdataitems.MaximumLengthSubItem(16384),
    userdataitems.ImplementationClassUIDSubItem("1.2.3.4"),
    userdataitems.ImplementationClassUIDSubItem(b"1.2.3.4"),
    userdataitems.AsynchronousOperationsWindowSubItem(2, 3),
    userdataitems.ScpScuRoleSelectionSubItem(b"1.2.840.10008.1.20.1", 1, 0),
    userdataitems.ImplementationVersionNameSubItem(b"OFFIS_DCMTK_367"),
    userdataitems.SOPClassExtendedNegotiationSubItem("1.2.840.10008.5.1.4.1.2.2.1", b"\x01\x00"),
    userdataitems.SOPClassExtendedNegotiationSubItem(b"1.2.840.10008.5.1.4.1.2.2.1", "\x01"),
    userdataitems.SOPClassCommonExtendedNegotiationSubItem(b"1.2.3", b"1.2.840.10008.4.2", [b"1.2.4"]),
    userdataitems.UserIdentityNegotiationSubItem("alice", "secret", 2, 1),
    userdataitems.UserIdentityNegotiationSubItem(b"alice", b"secret", 2, 1),
    userdataitems.UserIdentityNegotiationSubItem("kerberos-ticket", "", 3, 1),
    userdataitems.UserIdentityNegotiationSubItem(b"\x00\xffjwt", b"", 5, 0),
    userdataitems.UserIdentityNegotiationSubItemAc(b"\x00\x01server ticket"),
    userdataitems.UserIdentityNegotiationSubItemAc("server ticket \u00e9"),
    userdataitems.GenericUserDataSubItem(0x5F, "vendor"),
]


@pytest.mark.parametrize("item", SUB_ITEMS, ids=lambda item: f"{type(item).__name__}")
def test_every_sub_item_decodes_to_an_equal_item_from_bytes_or_str_input(item) -> None:
    decoder = (userdataitems.GenericUserDataSubItem if isinstance(item, userdataitems.GenericUserDataSubItem)
               else type(item))
    assert decoder.decode(io.BytesIO(item.encode())) == item


def test_user_identity_server_response_is_bytes_end_to_end() -> None:
    item = userdataitems.UserIdentityNegotiationSubItemAc("ticket")
    assert item.server_response == b"ticket"
    decoded = userdataitems.UserIdentityNegotiationSubItemAc.decode(io.BytesIO(item.encode()))
    assert isinstance(decoded.server_response, bytes) and decoded.server_response == b"ticket"


# ------------------------------------------------------------------------ the documented services
class FindSCP(AE):
    """The reference's Find SCP example: yields matches with a pending status."""

    def __init__(self, names: list[str], last_with_success: bool = False):
        super().__init__("QRSCP", 0)
        self.add_scp(qr_find_scp)
        self.names = names
        self.last_with_success = last_with_success

    def on_receive_find(self, context, ds):
        for number, name in enumerate(self.names, 1):
            response = Dataset()
            response.QueryRetrieveLevel = ds.QueryRetrieveLevel
            response.PatientName = name
            last = number == len(self.names)
            # Code written for the reference often yields its last match with SUCCESS.
            yield response, statuses.SUCCESS if (last and self.last_with_success) else statuses.C_FIND_PENDING


def _find(scp: AE) -> list[tuple[object, statuses.Status]]:
    ae = ClientAE("FINDSCU").add_scu(qr_find_scu)
    request = Dataset()
    request.QueryRetrieveLevel = "PATIENT"
    request.PatientName = "Test*"
    with ae.request_association(_remote(scp)) as assoc:
        service = assoc.get_scu(uids.PATIENT_ROOT_FIND_SOP_CLASS)
        return list(service(request, 1))


def test_documented_find_returns_each_pending_match_then_success() -> None:
    with FindSCP(["Test^One", "Test^Two"]) as scp:
        responses = _find(scp)
    assert [str(ds.PatientName) for ds, status in responses if status.is_pending] == ["Test^One", "Test^Two"]
    final_ds, final = responses[-1]
    assert final.is_success and final_ds is None


def test_an_identifier_yielded_with_success_is_sent_as_a_last_pending_match() -> None:
    with FindSCP(["Test^One", "Test^Two"], last_with_success=True) as scp:
        responses = _find(scp)
    pending = [str(ds.PatientName) for ds, status in responses if status.is_pending]
    assert pending == ["Test^One", "Test^Two"]
    assert len(responses) == 3
    final_ds, final = responses[-1]
    assert final.is_success and final_ds is None  # PS3.4 C.4.1.1.4: no identifier on Success


class StoreSCP(AE):
    """The reference's storage example: ``on_receive_store`` gets a file-like data set."""

    def __init__(self, supported_ts=None):
        super().__init__("STORESCP", 0, supported_ts)
        self.add_scp(storage_scp)
        self.received: list[Dataset] = []

    def on_receive_store(self, context, ds):
        self.received.append(pydicom.dcmread(ds))
        return statuses.SUCCESS


def _sr_dataset() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Test^Patient"
    ds.PatientID = "12345"
    ds.SOPClassUID = uids.BASIC_TEXT_SR_STORAGE
    ds.SOPInstanceUID = generate_uid()
    return ds


def test_documented_store_of_an_in_memory_dataset() -> None:
    ds = _sr_dataset()
    ae = ClientAE("STORESCU")
    ae.add_scu(storage_scu, [uids.BASIC_TEXT_SR_STORAGE])
    with StoreSCP() as scp:
        with ae.request_association(_remote(scp)) as assoc:
            status = assoc.get_scu(ds.SOPClassUID)(ds, 1)
        assert status.is_success
        assert [(str(r.SOPInstanceUID), str(r.PatientName)) for r in scp.received] == [
            (ds.SOPInstanceUID, "Test^Patient")]


def test_documented_store_of_a_file_name(tmp_path: Path) -> None:
    ds = _sr_dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    ae = ClientAE("STORESCU", supported_ts=[ExplicitVRLittleEndian])
    ae.add_scu(storage_scu, [uids.BASIC_TEXT_SR_STORAGE])
    with StoreSCP(supported_ts=[ExplicitVRLittleEndian]) as scp:
        with ae.request_association(_remote(scp)) as assoc:
            status = assoc.get_scu(uids.BASIC_TEXT_SR_STORAGE)(str(path), 1)
        assert status.is_success
        assert [str(r.SOPInstanceUID) for r in scp.received] == [ds.SOPInstanceUID]


class CommitmentSCP(AE):
    """The reference's commitment example: ``on_commitment_request`` decides and says where
    to send the N-EVENT-REPORT."""

    def __init__(self, kept: set[str], report_to: dict):
        super().__init__("COMMITSCP", 0)
        self.add_scp(StorageCommitment())
        self.kept = kept
        self.report_to = report_to

    def on_commitment_request(self, remote_ae, uids_):
        success, failure = [], []
        for sop_class, sop_instance in uids_:
            if sop_instance in self.kept:
                success.append((sop_class, sop_instance))
            else:
                failure.append((sop_class, sop_instance, StorageCommitment.NO_SUCH_OBJECT_INSTANCE))
        return self.report_to, success, failure


class CommitmentRequester(AE):
    """Receives the result as the reference's ``on_commitment_response`` hook."""

    def __init__(self):
        super().__init__("COMMITSCU", 0)
        self.add_scu(storage_commitment_scu)
        self.add_scp(StorageCommitment())
        self.reports: list[tuple[str, list, list]] = []
        self.arrived = threading.Event()

    def on_commitment_response(self, transaction_uid, success, failure):
        self.reports.append((transaction_uid, list(success), list(failure)))
        self.arrived.set()


def test_documented_storage_commitment_reports_success_and_failure() -> None:
    stored, missing = generate_uid(), generate_uid()
    with CommitmentRequester() as requester:
        with CommitmentSCP({stored}, _remote(requester)) as scp:
            transaction = generate_uid()
            with requester.request_association(_remote(scp)) as assoc:
                service = assoc.get_scu(uids.STORAGE_COMMITMENT_SOP_CLASS)
                status = service(transaction, [(uids.CT_IMAGE_STORAGE, stored),
                                               (uids.CT_IMAGE_STORAGE, missing)], 1)
            assert status.is_success
            assert requester.arrived.wait(20), "no N-EVENT-REPORT arrived"
    (uid, success, failure), = requester.reports
    assert uid == transaction
    assert [tuple(map(str, s)) for s in success] == [(uids.CT_IMAGE_STORAGE, stored)]
    assert [(str(c), str(i), int(r)) for c, i, r in failure] == [
        (uids.CT_IMAGE_STORAGE, missing, StorageCommitment.NO_SUCH_OBJECT_INSTANCE)]


def test_documented_echo_against_dcmtk_storescp(dcmtk_storescp) -> None:
    ae = ClientAE("MY_AET").add_scu(verification_scu)
    remote = {"aet": "STORESCP", "address": "127.0.0.1", "port": dcmtk_storescp.port}
    with ae.request_association(remote) as assoc:
        status = assoc.get_scu(uids.VERIFICATION_SOP_CLASS)(1)
    assert status.is_success
