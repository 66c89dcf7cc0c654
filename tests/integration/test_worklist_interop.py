"""Modality Worklist (PS3.4 Annex K.6) against real peers, and the key placement helper.

Our SCU queries DCMTK ``wlmscpfs`` (``*.wl`` files in a folder named after its AE title,
with a lockfile) and a pynetdicom MWL SCP; our SCP (an AE answering from a list) is queried
by DCMTK ``findscu -W`` and by pynetdicom. The first tests are pure (no network).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomdesk.net import uids
from dicomdesk.net.applicationentity import AE
from dicomdesk.net.sopclass import modality_work_list_scp
from dicomdesk.operations.common import Peer
from dicomdesk.operations.modality_worklist import worklist, worklist_identifier
from peers import run_dcmtk, write_worklist_file

MWL = uids.MODALITY_WORK_LIST_INFORMATION_FIND
REPO = Path(__file__).resolve().parents[2]


def scheduled_step(patient: str, patient_id: str, modality: str, station: str, date: str) -> Dataset:
    """A worklist item with the attributes wlmscpfs insists on (see peers.write_worklist_file)."""
    ds = Dataset()
    ds.PatientName = patient
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.AccessionNumber = f"ACC{patient_id}"
    ds.ReferringPhysicianName = ""
    ds.RequestedProcedureID = f"RP{patient_id}"
    ds.RequestedProcedureDescription = f"{modality} exam"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.1.{patient_id}"
    ds.RequestedProcedurePriority = ""
    ds.SpecificCharacterSet = "ISO_IR 100"
    sps = Dataset()
    sps.Modality = modality
    sps.ScheduledStationAETitle = station
    sps.ScheduledProcedureStepStartDate = date
    sps.ScheduledProcedureStepStartTime = "093000"
    sps.ScheduledProcedureStepID = f"SPS{patient_id}"
    sps.ScheduledProcedureStepDescription = f"{modality} step"
    sps.ScheduledPerformingPhysicianName = ""
    sps.ScheduledStationName = station
    sps.ScheduledProcedureStepLocation = ""
    sps.PreMedication = ""
    sps.RequestedContrastAgent = ""
    ds.ScheduledProcedureStepSequence = Sequence([sps])
    return ds


ITEMS = [
    scheduled_step("Doe^Jane", "1", "CT", "CT01", "20240105"),
    scheduled_step("Roe^Rick", "2", "MR", "MR01", "20240105"),
    scheduled_step("Poe^Pat", "3", "CT", "CT01", "20240106"),
]


def _sps(ds: Dataset) -> Dataset:
    return ds.ScheduledProcedureStepSequence[0]


def _matches(query: Dataset, item: Dataset) -> bool:
    """Single-value and universal matching of a test SCP (enough for these tests)."""
    def ok(q: Dataset, d: Dataset) -> bool:
        for elem in q:
            if elem.VR == "SQ":
                if elem.value and not ok(elem.value[0], d[elem.tag].value[0]):
                    return False
            elif elem.value not in (None, "") and str(d.get(elem.tag).value) != str(elem.value):
                return False
        return True
    return ok(query, item)


class ListWorklistAE(AE):
    """Our MWL SCP for the tests: answers from ITEMS; only the MWL class may reach it."""

    def __init__(self) -> None:
        super().__init__("OURMWL", 0)
        self.add_scp(modality_work_list_scp)
        self.contexts_seen: list[str] = []

    def on_receive_find(self, context, ds):
        self.contexts_seen.append(context.sop_class)
        for item in ITEMS:
            if _matches(ds, item):
                yield item, 0xFF00


@pytest.fixture
def our_mwl_scp() -> Iterator[ListWorklistAE]:
    ae = ListWorklistAE()
    with ae:
        yield ae


# ------------------------------------------------------------------------------ pure helper
def test_sps_keys_go_inside_the_scheduled_procedure_step_item() -> None:
    ds = worklist_identifier({"Modality": "CT", "ScheduledStationAETitle": "CT01",
                              "ScheduledProcedureStepStartDate": "20240101-20240131",
                              "PatientName": "Doe*"}, default_keys=False)
    assert ds.PatientName == "Doe*"
    assert "Modality" not in ds
    item = _sps(ds)
    assert (item.Modality, item.ScheduledStationAETitle) == ("CT", "CT01")
    assert item.ScheduledProcedureStepStartDate == "20240101-20240131"


def test_tags_are_accepted_as_keys_and_placed_like_keywords() -> None:
    ds = worklist_identifier({"0008,0060": "MR", "(0010,0020)": "42"}, default_keys=False)
    assert ds.PatientID == "42"
    assert _sps(ds).Modality == "MR"


def test_default_return_keys_are_empty_and_user_values_win() -> None:
    ds = worklist_identifier({"PatientID": "7"})
    assert ds.PatientID == "7"
    assert ds.PatientName in (None, "")
    assert _sps(ds).ScheduledStationAETitle in (None, "")


def test_unknown_key_is_refused_with_a_sentence() -> None:
    with pytest.raises(ValueError, match="NotAKeyword"):
        worklist_identifier({"NotAKeyword": "x"})


def test_a_dataset_is_taken_as_it_is() -> None:
    query = Dataset()
    query.PatientID = "1"
    assert worklist_identifier(query) == query


# ------------------------------------------------------------------------------ our SCU
@pytest.mark.interop
def test_worklist_query_against_wlmscpfs_returns_the_matching_steps(dcmtk_wlmscpfs) -> None:
    for n, item in enumerate(ITEMS):
        write_worklist_file(dcmtk_wlmscpfs.worklist_dir, item, f"item{n}")
    peer = Peer("127.0.0.1", dcmtk_wlmscpfs.port, dcmtk_wlmscpfs.aet, "DICOMDESK", timeout=10)
    seen = []
    result = worklist(peer, {"Modality": "CT", "ScheduledStationAETitle": "CT01"}, on_match=seen.append)
    assert result.error is None, dcmtk_wlmscpfs.log_text()
    assert result.status.is_success
    assert sorted(str(m.PatientName) for m in result.matches) == ["Doe^Jane", "Poe^Pat"]
    assert seen == result.matches
    assert {_sps(m).ScheduledProcedureStepStartDate for m in result.matches} == {"20240105", "20240106"}


@pytest.mark.interop
def test_worklist_date_range_against_wlmscpfs(dcmtk_wlmscpfs) -> None:
    for n, item in enumerate(ITEMS):
        write_worklist_file(dcmtk_wlmscpfs.worklist_dir, item, f"item{n}")
    peer = Peer("127.0.0.1", dcmtk_wlmscpfs.port, dcmtk_wlmscpfs.aet, timeout=10)
    result = worklist(peer, {"ScheduledProcedureStepStartDate": "20240106-20240131"})
    assert result.error is None
    assert [str(m.PatientName) for m in result.matches] == ["Poe^Pat"]


@pytest.mark.interop
def test_worklist_command_prints_matches_as_json(dcmtk_wlmscpfs) -> None:
    write_worklist_file(dcmtk_wlmscpfs.worklist_dir, ITEMS[1], "item")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "dicomdesk", "worklist", "127.0.0.1", str(dcmtk_wlmscpfs.port),
         "--aec", dcmtk_wlmscpfs.aet, "-k", "Modality=MR", "--json", "--timeout", "10"],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    matches = json.loads(proc.stdout)
    assert len(matches) == 1
    assert matches[0]["00100010"]["Value"][0]["Alphabetic"] == "Roe^Rick"


@pytest.mark.interop
def test_worklist_query_against_pynetdicom_scp(pynetdicom_scp) -> None:
    from pynetdicom import evt

    received: list[Dataset] = []

    def handle_find(event):
        received.append(event.identifier)
        for item in ITEMS:
            if _sps(item).Modality == _sps(event.identifier).Modality:
                yield 0xFF00, item

    scp = pynetdicom_scp([MWL], [(evt.EVT_C_FIND, handle_find)], ae_title="PYMWL")
    peer = Peer("127.0.0.1", scp.port, "PYMWL", timeout=10)
    result = worklist(peer, {"Modality": "MR"})
    assert result.error is None
    assert [str(m.PatientName) for m in result.matches] == ["Roe^Rick"]
    assert _sps(received[0]).Modality == "MR"  # the key arrived inside the sequence item


# ------------------------------------------------------------------------------ our SCP
@pytest.mark.interop
def test_findscu_worklist_query_against_our_scp(our_mwl_scp, tmp_path: Path) -> None:
    out = tmp_path / "rsp"
    out.mkdir()
    proc = run_dcmtk("findscu", "-W", "-aec", "OURMWL", "-X", "-od", out,
                     "-k", "ScheduledProcedureStepSequence[0].Modality=CT",
                     "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
                     "-k", "PatientName", "127.0.0.1", str(our_mwl_scp.port), timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = sorted(str(dcmread(p).PatientName) for p in out.iterdir())
    assert names == ["Doe^Jane", "Poe^Pat"]
    assert our_mwl_scp.contexts_seen == [MWL]  # the hook can tell MWL from Q/R


@pytest.mark.interop
def test_pynetdicom_worklist_query_against_our_scp(our_mwl_scp) -> None:
    from pynetdicom import AE as PynetdicomAE

    query = worklist_identifier({"PatientID": "2"}, default_keys=False)
    ae = PynetdicomAE(ae_title="PYSCU")
    ae.add_requested_context(MWL)
    assoc = ae.associate("127.0.0.1", our_mwl_scp.port, ae_title="OURMWL")
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_find(query, MWL))
    finally:
        assoc.release()
    statuses = [status.Status for status, _ in responses]
    assert statuses == [0xFF00, 0x0000]
    assert str(responses[0][1].PatientName) == "Roe^Rick"


class EndlessWorklistAE(ListWorklistAE):
    """A worklist that would never end: only a C-CANCEL stops it."""

    def on_receive_find(self, context, ds):
        for n in range(100_000):
            yield ITEMS[n % 3], 0xFF00


@pytest.mark.interop
def test_cancel_sends_c_cancel_and_our_scp_ends_with_fe00() -> None:
    cancel = threading.Event()
    with EndlessWorklistAE() as ae:
        peer = Peer("127.0.0.1", ae.port, "OURMWL", timeout=10)
        result = worklist(peer, {}, on_match=lambda ds: cancel.set(), cancel=cancel)
    assert result.error == "cancelled"
    assert result.status == 0xFE00 and result.status.is_cancel
    assert 1 <= len(result.matches) < 100_000
