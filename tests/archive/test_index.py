"""C-FIND / C-MOVE / C-GET SCP behaviour of the index (PS3.4 C.4.1-C.4.3), WAL readers, forward queue."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage

from dicomdesk.archive import Archive, QueryError
from dicomdesk.archive.index import InstanceRecord, build_find

ROOT = "1.2.826.0.1.3680043.99"


def record(patient: int, study: int, series: int, image: int, **over: object) -> InstanceRecord:
    study_uid = f"{ROOT}.{patient}.{study}"
    series_uid = f"{study_uid}.{series}"
    values: dict[str, object] = {
        "PatientName": f"Patient{patient}^Test", "PatientID": f"PID{patient}",
        "IssuerOfPatientID": "", "PatientBirthDate": "19700101", "PatientSex": "O",
        "StudyInstanceUID": study_uid, "StudyDate": f"202401{study + 10:02d}", "StudyTime": "101500",
        "AccessionNumber": f"ACC{patient}{study}", "StudyID": str(study),
        "StudyDescription": f"Study {study}", "ReferringPhysicianName": "Ref^Doc",
        "SeriesInstanceUID": series_uid, "Modality": "CT" if series == 1 else "MR",
        "SeriesNumber": str(series), "SeriesDescription": f"Series {series}", "SeriesDate": "",
        "SeriesTime": "", "SOPInstanceUID": f"{series_uid}.{image}",
        "SOPClassUID": CTImageStorage if series == 1 else MRImageStorage, "InstanceNumber": str(image),
    }
    values.update(over)
    return InstanceRecord(values=values, transfer_syntax="1.2.840.10008.1.2.1", file_size=100,
                          path=f"{study_uid}/{series_uid}/{values['SOPInstanceUID']}.dcm",
                          received_at="2024-01-01T00:00:00+00:00")


@pytest.fixture
def archive(tmp_path: Path):
    """2 patients; patient 1 has studies 1 (CT 2 images + MR 1 image) and 2 (CT 1 image)."""
    with Archive(tmp_path / "a", durable=False) as arc:
        arc.index.upsert_many([
            record(1, 1, 1, 1), record(1, 1, 1, 2), record(1, 1, 2, 1), record(1, 2, 1, 1),
            record(2, 1, 1, 1, PatientName="Müller^Hans", StudyDate="20230301", StudyTime="2300"),
        ])
        yield arc


def query(**keys: object) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_study_level_returns_only_requested_keys_plus_level_and_unique_key(archive: Archive) -> None:
    results = list(archive.find("STUDY", query(PatientName="patient1*", StudyDescription="")))
    assert len(results) == 2
    assert {e.keyword for e in results[0]} == {
        "PatientName", "StudyDescription", "QueryRetrieveLevel", "StudyInstanceUID"}
    assert results[0].QueryRetrieveLevel == "STUDY"
    assert sorted(r.StudyDescription for r in results) == ["Study 1", "Study 2"]


def test_study_level_computes_counts_and_modalities(archive: Archive) -> None:
    q = query(StudyInstanceUID=f"{ROOT}.1.1", NumberOfStudyRelatedSeries="",
              NumberOfStudyRelatedInstances="", ModalitiesInStudy="", SOPClassesInStudy="")
    (r,) = archive.find("STUDY", q)
    assert (r.NumberOfStudyRelatedSeries, r.NumberOfStudyRelatedInstances) == (2, 3)
    assert sorted(r.ModalitiesInStudy) == ["CT", "MR"]
    assert sorted(r.SOPClassesInStudy) == sorted([CTImageStorage, MRImageStorage])


def test_modalities_in_study_matches_any_series_modality(archive: Archive) -> None:
    found = [r.StudyInstanceUID for r in archive.find("STUDY", query(ModalitiesInStudy="MR"))]
    assert found == [f"{ROOT}.1.1"]
    assert len(list(archive.find("STUDY", query(ModalitiesInStudy="CT\\US")))) == 3
    assert len(list(archive.find("STUDY", query(SOPClassesInStudy=SecondaryCaptureImageStorage)))) == 0


def test_patient_root_patient_level_counts(archive: Archive) -> None:
    q = query(PatientID="PID1", NumberOfPatientRelatedStudies="", NumberOfPatientRelatedSeries="",
              NumberOfPatientRelatedInstances="")
    (r,) = archive.find("PATIENT", q, model="patient")
    assert (r.NumberOfPatientRelatedStudies, r.NumberOfPatientRelatedSeries,
            r.NumberOfPatientRelatedInstances) == (2, 3, 4)


def test_study_root_refuses_patient_level(archive: Archive) -> None:
    with pytest.raises(QueryError) as info:
        archive.find("PATIENT", query(PatientID=""), model="study")
    assert info.value.status == 0xA900


@pytest.mark.parametrize(("level", "model", "keys"), [
    ("STUDY", "study", {"SeriesDescription": ""}),
    ("STUDY", "study", {"NumberOfSeriesRelatedInstances": ""}),
    ("SERIES", "study", {"SOPInstanceUID": ""}),
    ("PATIENT", "patient", {"StudyDate": ""}),
    ("PATIENT", "patient", {"ModalitiesInStudy": ""}),
    ("BOGUS", "study", {}),
])
def test_keys_below_the_level_or_bad_levels_are_refused(archive: Archive, level: str, model: str,
                                                         keys: dict) -> None:
    with pytest.raises(QueryError) as info:
        archive.find(level, query(**keys), model=model)
    assert info.value.status == 0xA900


def test_series_level_within_a_study(archive: Archive) -> None:
    q = query(StudyInstanceUID=f"{ROOT}.1.1", SeriesInstanceUID="", Modality="",
              NumberOfSeriesRelatedInstances="", SeriesNumber="")
    results = list(archive.find("SERIES", q))
    assert [(r.Modality, r.NumberOfSeriesRelatedInstances, r.SeriesNumber) for r in results] == [
        ("CT", 2, 1), ("MR", 1, 2)]
    assert all(r.StudyInstanceUID == f"{ROOT}.1.1" for r in results)


def test_image_level_with_uid_list_and_integer_match(archive: Archive) -> None:
    series = f"{ROOT}.1.1.1"
    q = query(SeriesInstanceUID=series, SOPInstanceUID=f"{series}.1\\{series}.2\\9.9", SOPClassUID="",
              InstanceNumber="")
    results = list(archive.find("IMAGE", q))
    assert [(r.SOPInstanceUID, r.InstanceNumber) for r in results] == [(f"{series}.1", 1), (f"{series}.2", 2)]
    assert [r.SOPInstanceUID for r in archive.find("IMAGE", query(SeriesInstanceUID=series,
                                                                     InstanceNumber="2"))] == [f"{series}.2"]


def test_unknown_and_sequence_keys_are_returned_empty(archive: Archive) -> None:
    q = query(StudyInstanceUID=f"{ROOT}.1.1", PatientAge="", InstanceAvailability="",
              RetrieveAETitle="", ProcedureCodeSequence=Sequence([]))
    (r,) = archive.find("STUDY", q, retrieve_ae_title="DICOMDESK")
    assert r["PatientAge"].is_empty and r["ProcedureCodeSequence"].is_empty
    assert (r.InstanceAvailability, r.RetrieveAETitle) == ("ONLINE", "DICOMDESK")
    assert sorted(build_find("STUDY", q).unsupported) == [0x00081032, 0x00101010]


def test_non_ascii_names_set_utf8_character_set(archive: Archive) -> None:
    (r,) = archive.find("STUDY", query(PatientName="MÜLLER*", SpecificCharacterSet=""))
    assert str(r.PatientName) == "Müller^Hans" and r.SpecificCharacterSet == "ISO_IR 192"
    (r,) = archive.find("STUDY", query(PatientID="PID1", StudyDate="20240111", SpecificCharacterSet=""))
    assert r["SpecificCharacterSet"].is_empty


def test_date_range_and_combined_datetime(archive: Archive) -> None:
    assert len(list(archive.find("STUDY", query(StudyDate="20240101-")))) == 2
    assert len(list(archive.find("STUDY", query(StudyDate="-20231231")))) == 1
    # 2023-03-01 23:00 lies in "from 20230301 22:00 to 20230302 02:00" only when combined
    q = query(StudyDate="20230301-20230302", StudyTime="2200-0200")
    assert len(list(archive.find("STUDY", q))) == 0
    assert len(list(archive.find("STUDY", q, combined_datetime=True))) == 1
    with pytest.warns(UserWarning, match="VR DA"):
        bad = query(StudyDate="2024-01-01")
    with pytest.raises(QueryError):
        archive.find("STUDY", bad)


def test_locate_resolves_unique_keys_to_instances(archive: Archive) -> None:
    refs = archive.locate("STUDY", query(StudyInstanceUID=f"{ROOT}.1.1\\{ROOT}.1.2"))
    assert len(refs) == 4
    assert refs[0].path == archive.root / f"{ROOT}.1.1" / f"{ROOT}.1.1.1" / f"{ROOT}.1.1.1.1.dcm"
    assert (refs[0].sop_class_uid, refs[0].transfer_syntax, refs[0].size) == (
        CTImageStorage, "1.2.840.10008.1.2.1", 100)
    assert len(archive.locate("SERIES", query(SeriesInstanceUID=f"{ROOT}.1.1.2"))) == 1
    assert len(archive.locate("IMAGE", query(SOPInstanceUID=f"{ROOT}.1.1.1.2"))) == 1
    assert len(archive.locate("PATIENT", query(PatientID="PID1"), model="patient")) == 4
    with pytest.raises(QueryError):
        archive.locate("SERIES", query(StudyInstanceUID=f"{ROOT}.1.1"))


def test_reupsert_with_empty_description_keeps_the_known_value(archive: Archive) -> None:
    archive.index.upsert(record(1, 1, 1, 3, StudyDescription=""))
    (r,) = archive.find("STUDY", query(StudyInstanceUID=f"{ROOT}.1.1", StudyDescription=""))
    assert r.StudyDescription == "Study 1"


def test_moving_the_only_instance_prunes_empty_series_study_and_patient(archive: Archive) -> None:
    moved = record(1, 1, 1, 1, SOPInstanceUID=f"{ROOT}.2.1.1.1", PatientID="PID1")
    archive.index.upsert(moved)  # patient 2's only instance now belongs to patient 1's study 1
    assert [r.PatientID for r in archive.find("PATIENT", query(PatientID=""), model="patient")] == ["PID1"]
    assert archive.count() == 5


def test_second_connection_reads_while_writer_holds_a_transaction(archive: Archive, tmp_path: Path) -> None:
    writer = archive.index.connect()
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM instance")  # uncommitted
        with Archive(archive.root, read_only=True) as reader:
            assert reader.count() == 5
        script = textwrap.dedent(f"""
            from dicomdesk.archive import Archive
            with Archive({str(archive.root)!r}, read_only=True) as a:
                print(a.count())
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                             cwd=Path(__file__).resolve().parents[2], check=True)
        assert out.stdout.strip() == "5"
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_forward_queue_due_and_marking(archive: Archive) -> None:
    idx = archive.index
    idx.enqueue_forward("1.2.3", "PACS", now=100.0)
    idx.enqueue_forward("1.2.4", "PACS", now=200.0)
    assert [i.sop_instance_uid for i in idx.due_forwards(150.0)] == ["1.2.3"]
    item = idx.due_forwards(150.0)[0]
    idx.mark_forward(item.id, state="pending", error="connection refused", next_attempt_at=300.0)
    assert [i.sop_instance_uid for i in idx.due_forwards(250.0)] == ["1.2.4"]
    (retry,) = [i for i in idx.due_forwards(300.0) if i.sop_instance_uid == "1.2.3"]
    assert (retry.attempts, retry.last_error) == (1, "connection refused")
    idx.mark_forward(retry.id, state="done")
    assert [i.sop_instance_uid for i in idx.due_forwards(1000.0)] == ["1.2.4"]
    with pytest.raises(ValueError):
        idx.mark_forward(retry.id, state="bogus")


def test_ten_thousand_instances(tmp_path: Path) -> None:
    with Archive(tmp_path / "big", durable=False) as arc:
        arc.index.upsert_many(record(p, s, 1, i) for p in range(10) for s in range(10) for i in range(100))
        assert arc.count() == 10_000
        first = next(arc.find("STUDY", query(PatientName="Patient3*", NumberOfStudyRelatedInstances="")))
        assert first.NumberOfStudyRelatedInstances == 100
        assert sum(1 for _ in arc.find("STUDY", query(StudyDate=""))) == 100
        assert sum(1 for _ in arc.find("IMAGE", query(SOPInstanceUID="", InstanceNumber=""))) == 10_000


def test_each_key_carries_its_keywords_tag():
    """``Key.tag`` is written out (the index imports no pydicom: a server starts without it)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    from dicomdesk.archive.index import KEYS

    for keyword, key in KEYS.items():
        assert key.tag == tag_for_keyword(keyword), keyword
        assert key.vr == dictionary_VR(key.tag), keyword
