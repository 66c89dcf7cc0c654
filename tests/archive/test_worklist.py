"""Modality Worklist C-FIND SCP from a folder of .wl/.dcm items (PS3.4 K.6)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from dicomdesk.archive import QueryError, WorklistStore


def sps(station: str, date: str, modality: str, step_id: str) -> Dataset:
    item = Dataset()
    item.ScheduledStationAETitle = station
    item.ScheduledProcedureStepStartDate = date
    item.ScheduledProcedureStepStartTime = "0800"
    item.Modality = modality
    item.ScheduledProcedureStepID = step_id
    item.ScheduledPerformingPhysicianName = "Tech^Tina"
    return item


def write_item(folder: Path, name: str, patient: str, pid: str, accession: str, steps: list[Dataset],
               part10: bool = True) -> Path:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = patient
    ds.PatientID = pid
    ds.AccessionNumber = accession
    ds.RequestedProcedureID = "RP" + accession
    ds.ScheduledProcedureStepSequence = Sequence(steps)
    path = folder / name
    if part10:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"  # DCMTK's worklist item class
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.99.7." + pid[1:]
        ds.save_as(path, enforce_file_format=True)
    else:  # like dump2dcm output without preamble: a bare little-endian implicit data set
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


@pytest.fixture
def store(tmp_path: Path) -> WorklistStore:
    write_item(tmp_path, "a.wl", "Doe^John", "P1", "ACC1", [sps("CT1", "20240115", "CT", "S1")])
    write_item(tmp_path, "b.wl", "Smith^Anna", "P2", "ACC2",
               [sps("MR1", "20240116", "MR", "S2"), sps("CT1", "20240120", "CT", "S3")])
    write_item(tmp_path, "c.dcm", "Doe^Jane", "P3", "ACC3", [sps("US1", "20240201", "US", "S4")], part10=False)
    (tmp_path / "broken.wl").write_bytes(b"\x00" * 10)
    (tmp_path / "notes.txt").write_text("ignored")
    return WorklistStore(tmp_path)


def query(**step_keys: str) -> Dataset:
    q = Dataset()
    q.PatientName = ""
    q.PatientID = ""
    q.AccessionNumber = ""
    item = Dataset()
    item.ScheduledStationAETitle = ""
    item.ScheduledProcedureStepStartDate = ""
    item.Modality = ""
    for keyword, value in step_keys.items():
        setattr(item, keyword, value)
    q.ScheduledProcedureStepSequence = Sequence([item])
    return q


def test_universal_query_returns_every_readable_item(store: WorklistStore) -> None:
    assert sorted(r.PatientID for r in store.find(query())) == ["P1", "P2", "P3"]


def test_station_ae_title_selects_matching_items_and_steps_only(store: WorklistStore) -> None:
    results = list(store.find(query(ScheduledStationAETitle="CT1")))
    assert sorted(r.PatientID for r in results) == ["P1", "P2"]
    anna = next(r for r in results if r.PatientID == "P2")
    assert [s.ScheduledProcedureStepStartDate for s in anna.ScheduledProcedureStepSequence] == ["20240120"]


def test_start_date_range_and_modality(store: WorklistStore) -> None:
    found = [r.PatientID for r in store.find(query(ScheduledProcedureStepStartDate="20240116-20240131",
                                                    Modality="CT"))]
    assert found == ["P2"]
    found = [r.PatientID for r in store.find(query(ScheduledProcedureStepStartDate="-20240115"))]
    assert found == ["P1"]


def test_top_level_keys_patient_name_wildcard_id_accession(store: WorklistStore) -> None:
    q = query()
    q.PatientName = "doe*"
    assert sorted(r.PatientID for r in store.find(q)) == ["P1", "P3"]
    q.PatientID = "P3"
    assert [r.AccessionNumber for r in store.find(q)] == ["ACC3"]
    q = query()
    q.AccessionNumber = "ACC2"
    assert [str(r.PatientName) for r in store.find(q)] == ["Smith^Anna"]


def test_only_requested_keys_are_returned_down_to_item_keys(store: WorklistStore) -> None:
    (r,) = store.find(query(ScheduledStationAETitle="US1"))
    assert {e.keyword for e in r} == {"PatientName", "PatientID", "AccessionNumber",
                                      "ScheduledProcedureStepSequence", "SpecificCharacterSet"}
    (step,) = r.ScheduledProcedureStepSequence
    assert {e.keyword for e in step} == {"ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
                                         "Modality"}


def test_requested_key_missing_in_item_is_returned_empty(store: WorklistStore) -> None:
    q = query(ScheduledStationAETitle="CT1")
    q.PatientBirthDate = ""
    assert all(r["PatientBirthDate"].is_empty for r in store.find(q))


def test_empty_sequence_key_returns_whole_steps(store: WorklistStore) -> None:
    q = Dataset()
    q.PatientID = "P1"
    q.ScheduledProcedureStepSequence = Sequence([])
    (r,) = store.find(q)
    assert r.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID == "S1"


def test_new_and_changed_files_are_picked_up(store: WorklistStore) -> None:
    assert len(list(store.find(query()))) == 3
    write_item(store.folder, "d.wl", "New^Patient", "P4", "ACC4", [sps("CT1", "20240301", "CT", "S5")])
    path = write_item(store.folder, "a.wl", "Doe^John", "P1", "ACC1b", [sps("CT1", "20240115", "CT", "S1")])
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    results = {r.PatientID: r for r in store.find(query())}
    assert sorted(results) == ["P1", "P2", "P3", "P4"] and results["P1"].AccessionNumber == "ACC1b"


def test_invalid_range_is_a_query_error(store: WorklistStore) -> None:
    with pytest.warns(UserWarning, match="VR DA"):
        q = query(ScheduledProcedureStepStartDate="2024-01-01")
    with pytest.raises(QueryError):
        list(store.find(q))


def test_missing_folder_gives_no_items(tmp_path: Path) -> None:
    assert list(WorklistStore(tmp_path / "none").find(query())) == []
