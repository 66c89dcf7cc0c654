"""Index schema 2 (issue 14): the counters behind the computed C-FIND keys stay equal to the
aggregates through inserts, moves, re-sends and deletes; a schema-1 index is migrated when
opened for writing; the queried keys and the browser's pages are answered from indexes, in
index order (EXPLAIN QUERY PLAN: no full scan, no sort); the browser's keyset pages cover a
level exactly once, in order."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicomdesk.archive import Archive
from dicomdesk.archive import browse
from dicomdesk.archive.index import SCHEMA_VERSION, Index

from test_index import record

#: The definitions the counters replace (schema 1 computed these per match).
AGGREGATES = {
    "study": ("SELECT study_uid, num_series, num_instances, modalities, "
              "(SELECT COUNT(*) FROM series x WHERE x.study_uid = s.study_uid), "
              "(SELECT COUNT(*) FROM instance x WHERE x.study_uid = s.study_uid), "
              "(SELECT ifnull(group_concat(DISTINCT x.modality), '') FROM series x "
              " WHERE x.study_uid = s.study_uid AND x.modality <> '') FROM study s"),
    "series": ("SELECT series_uid, num_instances, "
               "(SELECT COUNT(*) FROM instance x WHERE x.series_uid = se.series_uid) FROM series se"),
}


def assert_counters_match(index: Index) -> None:
    conn = index.connect()
    try:
        for level, sql in AGGREGATES.items():
            for row in conn.execute(sql):
                values = tuple(row)
                half = (len(values) - 1) // 2
                kept, computed = values[1:1 + half], values[1 + half:]
                if level == "study":  # the modality list: the same set, any order
                    kept = (*kept[:2], set(kept[2].split(",")) - {""})
                    computed = (*computed[:2], set(computed[2].split(",")) - {""})
                assert kept == computed, (level, values[0], kept, computed)
    finally:
        conn.close()


@pytest.fixture
def archive(tmp_path: Path):
    with Archive(tmp_path / "a", durable=False) as arc:
        yield arc


def test_counters_follow_inserts_moves_resends_and_deletes(archive: Archive) -> None:
    index = archive.index
    index.upsert_many([record(p, st, se, i) for p in (1, 2) for st in (1, 2) for se in (1, 2)
                       for i in (1, 2, 3)])
    assert_counters_match(index)
    # the same objects again (a re-send): nothing counted twice
    index.upsert_many([record(1, 1, se, i) for se in (1, 2) for i in (1, 2, 3)])
    assert_counters_match(index)
    # an instance moves to another series of another study; a series changes modality
    index.upsert(record(1, 1, 1, 1, SeriesInstanceUID=f"{record(2, 2, 2, 1).values['SeriesInstanceUID']}",
                        StudyInstanceUID=record(2, 2, 2, 1).values["StudyInstanceUID"],
                        PatientID="PID2"))
    index.upsert(record(1, 2, 2, 1, Modality="US"))
    assert_counters_match(index)
    # a study moves to another patient (re-sent with another PatientID)
    index.upsert_many([record(2, 1, se, i, PatientID="PID9", PatientName="Moved^Patient")
                       for se in (1, 2) for i in (1, 2, 3)])
    assert_counters_match(index)
    index.remove_instance(record(1, 2, 1, 2).values["SOPInstanceUID"])
    archive.delete_study(record(1, 1, 1, 1).values["StudyInstanceUID"])
    assert_counters_match(index)
    index.clear()
    assert_counters_match(index)
    assert index.counts() == {"patient": 0, "study": 0, "series": 0, "instance": 0}


def test_study_find_reads_the_counters(archive: Archive) -> None:
    archive.index.upsert_many([record(1, 1, 1, 1), record(1, 1, 1, 2), record(1, 1, 2, 1),
                               record(1, 2, 1, 1)])
    ds = Dataset()
    ds.StudyInstanceUID = ""
    ds.NumberOfStudyRelatedInstances = ""
    ds.NumberOfStudyRelatedSeries = ""
    ds.ModalitiesInStudy = ""
    results = {r.StudyInstanceUID: r for r in archive.find("STUDY", ds)}
    first = results[record(1, 1, 1, 1).values["StudyInstanceUID"]]
    assert (first.NumberOfStudyRelatedInstances, first.NumberOfStudyRelatedSeries) == (3, 2)
    assert sorted(first.ModalitiesInStudy) == ["CT", "MR"]
    query = archive.prepare_find("STUDY", ds)
    assert "COUNT(" not in query.sql and "group_concat" not in query.sql


def _downgrade_to_schema_1(path: Path) -> None:
    """Turn a schema-2 index into what schema 1 wrote: no counters, triggers or new indexes."""
    conn = sqlite3.connect(path)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    for name in ("patient_birth_date_idx", "patient_browse_idx", "study_browse_idx",
                 "series_browse_idx", "series_modality_idx", "instance_browse_idx",
                 "instance_path_idx"):
        conn.execute(f"DROP INDEX {name}")
    for table, columns in (("study", ("num_series", "num_instances", "modalities")),
                           ("series", ("num_instances",))):
        for column in columns:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute("CREATE INDEX study_patient_idx ON study(patient_pk)")
    conn.execute("CREATE INDEX series_study_idx ON series(study_uid)")
    conn.execute("CREATE INDEX instance_series_idx ON instance(series_uid)")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()


def test_a_schema_1_index_is_migrated_when_opened_for_writing(tmp_path: Path) -> None:
    root = tmp_path / "old"
    with Archive(root, durable=False) as arc:
        arc.index.upsert_many([record(p, st, se, i) for p in (1, 2) for st in (1, 2)
                               for se in (1, 2) for i in (1, 2)])
    path = root / "index.sqlite3"
    _downgrade_to_schema_1(path)
    # read-only (the window on an archive nobody serves): browsed with aggregates, unchanged
    reader = Index(path, read_only=True)
    try:
        patients = reader.browse("patient")
        assert [p.get("num_instances") for p in patients] == [8, 8]
        assert reader.browse_totals() == {"patient": 2, "study": 4, "series": 8, "instance": 16}
    finally:
        reader.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    with Archive(root, durable=False) as arc:
        conn = arc.index.connect()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()
        assert_counters_match(arc.index)
        arc.index.upsert(record(1, 1, 1, 9))  # the triggers run from now on
        assert_counters_match(arc.index)
        assert arc.index.browse("patient")[0].get("num_instances") == 9


def _plan(index: Index, sql: str, params: list) -> list[str]:
    conn = index.connect()
    try:
        return [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    finally:
        conn.close()


@pytest.mark.parametrize("keys, index_name", [
    ({"PatientBirthDate": "19700101"}, "patient_birth_date_idx"),
    ({"StudyDate": "20240111-20240112"}, "study_date_idx"),
    ({"AccessionNumber": "ACC11"}, "study_accession_idx"),
])
def test_queried_study_keys_use_an_index_and_no_sort(archive: Archive, keys: dict,
                                                     index_name: str) -> None:
    ds = Dataset()
    ds.StudyInstanceUID = ""
    for k, v in keys.items():
        setattr(ds, k, v)
    query = archive.prepare_find("STUDY", ds)
    plan = " | ".join(_plan(archive.index, query.sql, query.params))
    assert index_name in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_series_modality_and_path_prefix_use_their_indexes(archive: Archive) -> None:
    ds = Dataset()
    ds.Modality = "CT"
    ds.SeriesInstanceUID = ""
    query = archive.prepare_find("SERIES", ds)
    plan = " | ".join(_plan(archive.index, query.sql, query.params))
    assert "series_modality_idx" in plan and "TEMP B-TREE" not in plan, plan
    plan = " | ".join(_plan(archive.index, "SELECT DISTINCT series_uid, study_uid FROM instance "
                                           "WHERE path GLOB ?", ["1.2.3/*"]))
    assert "instance_path_idx" in plan, plan


@pytest.mark.parametrize("kind, ref", [("patient", None), ("study", 1), ("series", "s"),
                                       ("instance", "x")])
def test_browser_pages_read_an_index_in_its_order(archive: Archive, kind: str, ref: object) -> None:
    conn = archive.index.connect()
    try:
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        browse.page(conn, kind, ref, after=("a", "b"))
        sql = [s for s in statements if s.startswith("SELECT") and "ORDER BY" in s][-1]
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
    finally:
        conn.close()
    assert "_browse_idx" in plan and "TEMP B-TREE" not in plan and "SCAN" not in plan.replace(
        "SCAN p USING COVERING INDEX patient_browse_idx", ""), plan


def test_keyset_pages_cover_each_level_once_in_order(archive: Archive) -> None:
    records = [record(p, st, se, i, InstanceNumber=str(i) if i % 3 else "")
               for p in range(1, 8) for st in (1, 2) for se in (1, 2, 3) for i in range(1, 8)]
    archive.index.upsert_many(records)
    index = archive.index

    def walk(kind: str, ref: object) -> list:
        rows, after = [], None
        while True:
            page = index.browse(kind, ref, after, limit=4)
            rows.extend(page)
            if len(page) < 4:
                return rows
            after = page[-1].key

    patients = walk("patient", None)
    assert [p.uid for p in patients] == sorted(f"PID{p}" for p in range(1, 8))
    studies = walk("study", patients[0].ref)
    assert len(studies) == 2 and studies[0].children == 3
    series = walk("series", studies[0].ref)
    assert [s.get("series_number") for s in series] == [1, 2, 3]
    instances = walk("instance", series[0].ref)
    assert len(instances) == 7 == len({i.uid for i in instances})
    assert [i.key for i in instances] == sorted(i.key for i in instances)
    assert instances[0].get("instance_number") is None  # no InstanceNumber sorts first


@pytest.mark.parametrize("text, patients", [("patient3", ["PID3"]), ("PID", [f"PID{p}" for p in (1, 2, 3)]),
                                            ("ACC21", ["PID2"]), ("2024-01-12", ["PID1", "PID2", "PID3"]),
                                            ("nobody", []), ("50%", [])])
def test_search_queries_the_index(archive: Archive, text: str, patients: list[str]) -> None:
    archive.index.upsert_many([record(p, st, 1, 1) for p in (1, 2, 3) for st in (1, 2)])
    found = archive.index.browse("patient", search=text)
    assert [p.uid for p in found] == patients
    if text == "ACC21":  # found by a study key: only that study under the patient
        studies = archive.index.browse("study", found[0].ref, search=text)
        assert [s.get("accession_number") for s in studies] == ["ACC21"]


def test_fast_responses_encode_as_pydicom_encodes_the_same_values(archive: Archive) -> None:
    """The responses are built from raw elements (``FindQuery.response``): a peer receives
    the bytes pydicom writes for a Dataset of the same values built element by element."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from dicomdesk.net.dataset_codec import encode_identifier

    archive.index.upsert_many([record(1, 1, 1, 1), record(1, 1, 2, 1, StudyDescription=""),
                               record(2, 1, 1, 1, PatientName="Müller^Hans")])
    ds = Dataset()
    for keyword in ("SpecificCharacterSet", "PatientName", "PatientID", "StudyInstanceUID",
                    "StudyDate", "AccessionNumber", "StudyDescription", "ModalitiesInStudy",
                    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
                    "ReferringPhysicianName", "InstanceAvailability", "OtherPatientIDs"):
        setattr(ds, keyword, "")
    responses = list(archive.find("STUDY", ds))
    assert len(responses) == 2
    for n, syntax, implicit in ((0, "1.2.840.10008.1.2", True), (0, "1.2.840.10008.1.2.1", False),
                                (1, "1.2.840.10008.1.2.1", False)):
        response = list(archive.find("STUDY", ds))[n]
        ours = encode_identifier(response, syntax)  # before any element is converted
        if n == 1:
            assert ours is None  # non-ASCII text: pydicom encodes it (the codec's rule)
            continue
        assert ours is not None
        reference = Dataset()
        for elem in response:
            reference.add_new(elem.tag, elem.VR, elem.value)
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
        write_dataset(buffer, reference)
        assert ours == buffer.getvalue()
    assert responses[1].SpecificCharacterSet == "ISO_IR 192"
    assert str(responses[1].PatientName) == "Müller^Hans"
    assert responses[0].StudyDescription == "Study 1"
    assert responses[0].InstanceAvailability == "ONLINE"


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
@pytest.mark.parametrize("level, keys", [
    ("STUDY", ("SpecificCharacterSet", "PatientName", "PatientID", "StudyInstanceUID",
               "StudyDate", "StudyTime", "AccessionNumber", "StudyDescription",
               "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
               "ReferringPhysicianName", "InstanceAvailability", "OtherPatientIDs",
               "RetrieveAETitle")),
    ("SERIES", ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
                "NumberOfSeriesRelatedInstances")),
    ("IMAGE", ("SOPInstanceUID", "SOPClassUID", "InstanceNumber")),
])
def test_row_encoder_gives_the_codec_bytes_of_the_response(archive: Archive, syntax: str,
                                                           level: str, keys: tuple) -> None:
    """``FindQuery.encoder`` (the SCP's path) writes what encoding ``response(row)`` writes;
    rows it cannot write plainly (non-ASCII, a trailing '^', a backslash) fall back."""
    from dicomdesk.net.dataset_codec import encode_identifier

    archive.index.upsert_many([
        record(1, 1, 1, 1), record(1, 1, 2, 1), record(1, 2, 1, 1, StudyDescription=""),
        record(2, 1, 1, 1, PatientName="Müller^Hans"), record(3, 1, 1, 1, PatientName="Odd^"),
        record(4, 1, 1, 1, StudyDescription="A\\B", InstanceNumber=""),
        record(5, 1, 1, 1, AccessionNumber="X", StudyTime="1015")])
    ds = Dataset()
    for keyword in keys:
        setattr(ds, keyword, "")
    query = archive.prepare_find(level, ds, retrieve_ae_title="DICOMDESK")
    encode = query.encoder(syntax)
    assert encode is not None
    conn = archive.index.connect()
    rows = conn.execute(query.sql, query.params).fetchall()
    conn.close()
    assert len(rows) >= 5
    plain = 0
    for row in rows:
        ours = encode(row)
        reference = encode_identifier(query.response(row), syntax)
        if ours is None:
            continue
        plain += 1
        assert ours == reference
    # at STUDY level the rows of Müller^Hans, Odd^ and 'A\\B' go through pydicom
    assert plain == len(rows) - (3 if level == "STUDY" else 0)
    sent = list(archive.index.encoded_responses(query, syntax))
    assert len(sent) == len(rows)
    assert any(isinstance(r, Dataset) for r in sent) == (level == "STUDY")
    assert query.encoder("1.2.840.10008.1.2.4.50") is None  # not a little-endian VR syntax


def test_encoded_responses_say_how_many_come_without_a_fetch(archive: Archive) -> None:
    """``ready()`` counts the rows of the last SQLite fetch still in hand: the C-FIND SCP
    writes what it holds before a fetch (which may scan the index for a while)."""
    archive.index.upsert_many([record(1, study, 1, 1) for study in range(1, 6)])
    ds = Dataset()
    ds.StudyInstanceUID = ""
    query = archive.prepare_find("STUDY", ds)
    responses = archive.index.encoded_responses(query, "1.2.840.10008.1.2.1", batch=2)
    assert responses.ready() == 0  # nothing fetched yet: the first match needs SQLite
    readiness = []
    for _ in responses:
        readiness.append(responses.ready())
    assert readiness == [1, 0, 1, 0, 0]
    assert responses.ready() == 0
    responses.close()  # idempotent after the end


def test_queries_reuse_their_reader_connection_and_leave_no_snapshot_open(archive: Archive) -> None:
    """A C-FIND's connection is kept for the next query (a warm page cache and a parsed
    schema: issue 14), and only once its statement is finished: a query stopped early (a
    C-CANCEL) holds no read snapshot that would keep a checkpoint from the WAL's end."""
    archive.index.upsert_many([record(1, study, 1, 1) for study in range(1, 6)])
    ds = Dataset()
    ds.StudyInstanceUID = ""
    query = archive.prepare_find("STUDY", ds)
    responses = archive.index.encoded_responses(query, "1.2.840.10008.1.2.1", batch=2)
    next(responses)
    responses.close()  # stopped after the first match
    [reader] = archive.index._readers
    archive.index.upsert_many([record(2, 9, 1, 1)])  # frames in the WAL
    conn = archive.index.connect()
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    assert busy == 0
    assert len(list(archive.index.responses(query))) == 6  # the new study is seen
    assert archive.index._readers == [reader]
    archive.index.close()
    assert archive.index._readers == []
    with pytest.raises(sqlite3.ProgrammingError):
        reader.execute("SELECT 1")
