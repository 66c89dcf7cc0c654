"""Storage Commitment Push Model (PS3.4 Annex J.3) against pynetdicom, in both roles.

DCMTK has no storage commitment tools (no N-ACTION/N-EVENT-REPORT SCU or SCP for this
class), so pynetdicom is the only third-party peer here. Each direction is tested with the
N-EVENT-REPORT on the same association and on a new association to the requester's
listening AE (PS3.4 J.3.3 allows both), with all instances committed and with failures
whose Failure Reason (0008,1197) must reach the user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from dicomdesk.net import uids
from dicomdesk.net.applicationentity import AE
from dicomdesk.net.sopclass import StorageCommitment
from dicomdesk.operations.commitment import commit
from dicomdesk.operations.common import Peer
from peers import free_port

SC_CLASS = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS
SC_INSTANCE = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dicom_files(tmp_path: Path) -> list[Path]:
    """Three small CT files with known SOP Instance UIDs."""
    paths = []
    for n in range(3):
        ds = Dataset()
        ds.SOPClassUID = uids.CT_IMAGE_STORAGE
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{n + 1}"
        ds.PatientName = "Commit^Test"
        path = tmp_path / f"ct{n}.dcm"
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=True)
        paths.append(path)
    return paths


def _uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.8.498.77.{n}"


def _event_information(action: Dataset, fail_instances: dict[str, int]) -> tuple[int, Dataset]:
    """What a pynetdicom SCP reports: every referenced instance committed except ``fail_instances``."""
    ds = Dataset()
    ds.TransactionUID = action.TransactionUID
    ok, failed = [], []
    for ref in action.ReferencedSOPSequence:
        item = Dataset()
        item.ReferencedSOPClassUID = ref.ReferencedSOPClassUID
        item.ReferencedSOPInstanceUID = ref.ReferencedSOPInstanceUID
        if ref.ReferencedSOPInstanceUID in fail_instances:
            item.FailureReason = fail_instances[ref.ReferencedSOPInstanceUID]
            failed.append(item)
        else:
            ok.append(item)
    if ok:
        ds.ReferencedSOPSequence = Sequence(ok)
    if failed:
        ds.FailedSOPSequence = Sequence(failed)
    return (2 if failed else 1), ds


def _pynetdicom_commitment_scp(pynetdicom_scp, *, same_association: bool,
                               fail_instances: dict[str, int], listen_port: int = 0):
    """A pynetdicom Storage Commitment SCP that reports from its N-ACTION handler."""
    from pynetdicom import AE as PynetdicomAE
    from pynetdicom import evt

    def handle_action(event):
        event_type, info = _event_information(event.action_information, fail_instances)
        if same_association:
            event.assoc.send_n_event_report(info, event_type, SC_CLASS, SC_INSTANCE)
        else:
            ae = PynetdicomAE(ae_title="PYSC")
            ae.add_requested_context(SC_CLASS)
            assoc = ae.associate("127.0.0.1", listen_port,
                                 ae_title=event.assoc.requestor.ae_title)
            assert assoc.is_established
            try:
                assoc.send_n_event_report(info, event_type, SC_CLASS, SC_INSTANCE)
            finally:
                assoc.release()
        return 0x0000, None

    return pynetdicom_scp([SC_CLASS], [(evt.EVT_N_ACTION, handle_action)], ae_title="PYSC")


# ------------------------------------------------------------------------------ our SCU
@pytest.mark.interop
def test_commit_all_success_reported_on_the_same_association(pynetdicom_scp, dicom_files) -> None:
    scp = _pynetdicom_commitment_scp(pynetdicom_scp, same_association=True, fail_instances={})
    result = commit(Peer("127.0.0.1", scp.port, "PYSC", timeout=10), dicom_files, timeout=15,
                    listen_port=None)
    assert result.error is None
    assert result.status.is_success
    assert sorted(result.committed) == [_uid(1), _uid(2), _uid(3)]
    assert result.failed == []


@pytest.mark.interop
def test_commit_failures_reported_on_a_new_association_to_our_listener(
        pynetdicom_scp, dicom_files) -> None:
    port = free_port()
    scp = _pynetdicom_commitment_scp(
        pynetdicom_scp, same_association=False, listen_port=port,
        fail_instances={_uid(2): StorageCommitment.NO_SUCH_OBJECT_INSTANCE})
    heard = []
    result = commit(Peer("127.0.0.1", scp.port, "PYSC", "OURSCU", timeout=10), dicom_files,
                    timeout=15, listen_port=port, on_listening=heard.append)
    assert heard == [port]
    assert sorted(result.committed) == [_uid(1), _uid(3)]
    assert result.failed == [(_uid(2), 0x0112)]
    assert result.error == "1 of 3 instance(s) not committed"


@pytest.mark.interop
def test_commit_command_prints_failures_with_reasons_and_exits_1(pynetdicom_scp, dicom_files) -> None:
    scp = _pynetdicom_commitment_scp(
        pynetdicom_scp, same_association=True,
        fail_instances={_uid(3): StorageCommitment.RESOURCE_LIMITATION})
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "dicomdesk", "commit", "127.0.0.1", str(scp.port),
         *map(str, dicom_files), "--aec", "PYSC", "--timeout", "10"],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    assert f"committed  {_uid(1)}" in proc.stdout
    assert f"failed     {_uid(3)}  0x0213 Resource limitation" in proc.stdout


@pytest.mark.interop
def test_commit_command_exits_0_when_all_committed(pynetdicom_scp, dicom_files) -> None:
    scp = _pynetdicom_commitment_scp(pynetdicom_scp, same_association=True, fail_instances={})
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "dicomdesk", "commit", "127.0.0.1", str(scp.port),
         *map(str, dicom_files), "--aec", "PYSC", "--timeout", "10"],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("committed  ") == 3


# ------------------------------------------------------------------------------ our SCP
class CommitmentAE(AE):
    """Our Storage Commitment SCP for the tests: commits what it 'has', reports to ``remote``."""

    def __init__(self, have: set[str], remote: dict | None):
        super().__init__("OURSC", 0)
        self.add_scp(StorageCommitment())
        self.have = have
        self.remote = remote
        self.requests: list[tuple[str, list]] = []

    def on_commitment_request(self, remote_ae, uids):
        uids = list(uids)
        self.requests.append((remote_ae, uids))
        committed = [(c, i) for c, i in uids if i in self.have]
        failed = [(c, i, StorageCommitment.NO_SUCH_OBJECT_INSTANCE) for c, i in uids if i not in self.have]
        return self.remote, committed, failed


def _action_information(transaction_uid: str, instances: list[str]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    items = []
    for uid in instances:
        item = Dataset()
        item.ReferencedSOPClassUID = uids.CT_IMAGE_STORAGE
        item.ReferencedSOPInstanceUID = uid
        items.append(item)
    ds.ReferencedSOPSequence = Sequence(items)
    return ds


class Reports:
    """N-EVENT-REPORTs a pynetdicom SCU received."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.items: list[tuple[int, Dataset]] = []

    def handle(self, event):
        self.items.append((event.event_type, event.event_information))
        self.arrived.set()
        return 0x0000, None


@pytest.fixture
def our_commitment_scp() -> Iterator:
    started = []

    def start(have: set[str], remote: dict | None) -> CommitmentAE:
        ae = CommitmentAE(have, remote).start()
        started.append(ae)
        return ae

    yield start
    for ae in started:
        ae.quit()


def _request_commitment(port: int, transaction_uid: str, instances: list[str], handlers=()):
    """pynetdicom SCU: N-ACTION to our SCP; returns (N-ACTION-RSP status, association)."""
    from pynetdicom import AE as PynetdicomAE

    ae = PynetdicomAE(ae_title="PYSCU")
    ae.add_requested_context(SC_CLASS)
    assoc = ae.associate("127.0.0.1", port, ae_title="OURSC", evt_handlers=list(handlers))
    assert assoc.is_established
    status, _ = assoc.send_n_action(_action_information(transaction_uid, instances), 1,
                                    SC_CLASS, SC_INSTANCE)
    return status, assoc


@pytest.mark.interop
def test_our_scp_reports_all_success_on_a_new_association(pynetdicom_scp, our_commitment_scp) -> None:
    from pynetdicom import evt

    reports = Reports()
    listener = pynetdicom_scp([SC_CLASS], [(evt.EVT_N_EVENT_REPORT, reports.handle)], ae_title="PYSCU")
    ours = our_commitment_scp({_uid(1), _uid(2)},
                              {"aet": "PYSCU", "address": "127.0.0.1", "port": listener.port})
    transaction = generate_uid()
    status, assoc = _request_commitment(ours.port, transaction, [_uid(1), _uid(2)])
    assoc.release()
    assert status.Status == 0x0000
    assert reports.arrived.wait(10)
    event_type, info = reports.items[0]
    assert event_type == 1
    assert info.TransactionUID == transaction
    assert [r.ReferencedSOPInstanceUID for r in info.ReferencedSOPSequence] == [_uid(1), _uid(2)]
    assert "FailedSOPSequence" not in info
    assert ours.requests == [("PYSCU", [(uids.CT_IMAGE_STORAGE, _uid(1)), (uids.CT_IMAGE_STORAGE, _uid(2))])]


@pytest.mark.interop
def test_our_scp_reports_failures_on_the_same_association(our_commitment_scp) -> None:
    from pynetdicom import evt

    reports = Reports()
    ours = our_commitment_scp({_uid(1)}, None)
    transaction = generate_uid()
    status, assoc = _request_commitment(ours.port, transaction, [_uid(1), _uid(9)],
                                        [(evt.EVT_N_EVENT_REPORT, reports.handle)])
    try:
        assert status.Status == 0x0000
        assert reports.arrived.wait(10)
    finally:
        assoc.release()
    event_type, info = reports.items[0]
    assert event_type == 2
    assert info.TransactionUID == transaction
    assert [r.ReferencedSOPInstanceUID for r in info.ReferencedSOPSequence] == [_uid(1)]
    failed = info.FailedSOPSequence[0]
    assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (_uid(9), 0x0112)


@pytest.mark.interop
def test_our_scp_answers_processing_failure_when_the_ae_cannot_commit() -> None:
    from pynetdicom import AE as PynetdicomAE

    ours = AE("OURSC", 0).add_scp(StorageCommitment())  # default hook: not provided
    with ours:
        ae = PynetdicomAE(ae_title="PYSCU")
        ae.add_requested_context(SC_CLASS)
        assoc = ae.associate("127.0.0.1", ours.port, ae_title="OURSC")
        try:
            status, _ = assoc.send_n_action(_action_information(generate_uid(), [_uid(1)]), 1,
                                            SC_CLASS, SC_INSTANCE)
        finally:
            assoc.release()
    assert status.Status == 0x0110


@pytest.mark.interop
def test_our_scu_and_scp_together_over_a_new_association(our_commitment_scp, dicom_files) -> None:
    port = free_port()
    ours = our_commitment_scp({_uid(1), _uid(3)},
                              {"aet": "OURSCU", "address": "127.0.0.1", "port": port})
    result = commit(Peer("127.0.0.1", ours.port, "OURSC", "OURSCU", timeout=10), dicom_files,
                    timeout=15, listen_port=port)
    assert sorted(result.committed) == [_uid(1), _uid(3)]
    assert result.failed == [(_uid(2), 0x0112)]
