"""Archive storage: commit of received files, refusals, replacement, crash recovery, commitment."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from dicomdesk.archive import Archive, ArchiveError, ArchiveRefusal, is_path_safe_uid
from dicomdesk.net.statuses import CLASS_INSTANCE_CONFLICT as FAILURE_CLASS_INSTANCE_CONFLICT
from dicomdesk.net.statuses import NO_SUCH_SOP_INSTANCE as FAILURE_NO_SUCH_OBJECT_INSTANCE
from dicomdesk.net.statuses import PROCESSING_FAILURE as FAILURE_PROCESSING

STUDY = "1.2.826.0.1.3680043.99.1"
SERIES = STUDY + ".1"


def part10_bytes(sop_uid: str = SERIES + ".1", *, study: str = STUDY, series: str = SERIES,
                 sop_class: str = CTImageStorage, patient_name: str = "Doe^John",
                 description: str = "", drop: tuple[str, ...] = ()) -> bytes:
    """A small synthetic Part-10 file (preamble + meta + data set), as a C-STORE SCP writes it."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientName = patient_name
    ds.PatientID = "P1"
    ds.StudyDate = "20240115"
    ds.Modality = "CT"
    ds.StudyDescription = description
    for keyword in drop:
        delattr(ds, keyword)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def receive(archive: Archive, data: bytes, fragment: int = 100, **kwargs: object):
    """Write ``data`` into an incoming file in fragments, like the network layer does, and commit."""
    incoming = archive.open_incoming()
    for start in range(0, len(data), fragment):
        incoming.fp.write(data[start:start + fragment])
    return archive.commit_incoming(incoming, **kwargs)


@pytest.fixture
def archive(tmp_path: Path):
    with Archive(tmp_path / "archive") as arc:
        yield arc


def incoming_files(archive: Archive) -> list[Path]:
    return list(archive.incoming_dir.iterdir())


def test_commit_moves_file_to_uid_path_and_indexes_it(archive: Archive) -> None:
    data = part10_bytes()
    stored = receive(archive, data, calling_aet="MODALITY ")
    assert stored.path == archive.root / STUDY / SERIES / f"{SERIES}.1.dcm"
    assert stored.path.read_bytes() == data
    assert (stored.sop_class_uid, stored.size, stored.calling_aet) == (CTImageStorage, len(data), "MODALITY")
    assert stored.transfer_syntax == ExplicitVRLittleEndian
    assert stored.patient_name == "Doe^John" and not stored.replaced
    assert archive.count() == 1
    assert incoming_files(archive) == []


def test_commit_accepts_the_raw_file_object_given_to_the_network_layer(archive: Archive) -> None:
    incoming = archive.open_incoming()
    incoming.fp.write(part10_bytes())
    stored = archive.commit_incoming(incoming.fp, expected_sop_instance_uid=SERIES + ".1",
                                     expected_sop_class_uid=CTImageStorage)
    assert stored.path.exists()


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm"])
def test_pydicom_test_files_are_stored_byte_for_byte(archive: Archive, name: str) -> None:
    source = Path(get_testdata_file(name, download=False))
    stored = receive(archive, source.read_bytes(), fragment=4096)
    assert stored.path.read_bytes() == source.read_bytes()
    assert dcmread(stored.path).SOPInstanceUID == stored.sop_instance_uid


@pytest.mark.parametrize(("data", "kwargs", "status"), [
    (b"not dicom at all" * 20, {}, 0xC000),
    (part10_bytes()[:150], {}, 0xC000),
    (part10_bytes(drop=("SOPInstanceUID",)), {}, 0xA900),
    (part10_bytes(drop=("SeriesInstanceUID",)), {}, 0xA900),
    (part10_bytes(), {"expected_sop_instance_uid": "1.2.3.4"}, 0xA900),
    (part10_bytes(), {"expected_sop_class_uid": MRImageStorage}, 0xA900),
])
def test_refused_objects_get_a_status_and_leave_no_file(archive: Archive, data: bytes, kwargs: dict,
                                                         status: int) -> None:
    with pytest.raises(ArchiveRefusal) as info:
        receive(archive, data, **kwargs)
    assert info.value.status == status
    assert incoming_files(archive) == []
    assert archive.count() == 0
    assert not any(p.suffix == ".dcm" for p in archive.root.rglob("*"))


def with_bad_uid(placeholder: str, bad: str, **kwargs: str) -> bytes:
    """Part-10 bytes whose UID is invalid (pydicom would refuse to build it directly)."""
    assert len(placeholder) == len(bad)
    data = part10_bytes(**kwargs)
    assert data.count(placeholder.encode()) >= 1
    return data.replace(placeholder.encode(), bad.encode())


@pytest.mark.parametrize("data", [
    with_bad_uid("1.2.93", "1.2..3", study="1.2.93"),
    with_bad_uid("1.2.3.4.5", "../../etc", series="1.2.3.4.5"),
    with_bad_uid("1.2.3.4.6", "1.2.3/4.6", series="1.2.3.4.6"),
])
def test_uids_that_are_not_path_safe_are_refused(archive: Archive, data: bytes) -> None:
    # pydicom warns about the invalid UID while reading; the archive refuses it anyway
    with pytest.warns(UserWarning, match="Invalid value for VR UI"), pytest.raises(ArchiveRefusal) as info:
        receive(archive, data)
    assert info.value.status == 0xC000
    assert incoming_files(archive) == [] and archive.count() == 0
    assert not any(p.suffix == ".dcm" for p in archive.root.rglob("*"))


@pytest.mark.parametrize(("uid", "safe"), [
    ("1.2.840.10008.1.2", True), ("1.02.3", True), ("1.2.", False), (".1.2", False), ("1..2", False),
    ("1.2.a", False), ("", False), ("1" * 64, True), ("1" * 65, False), ("1/2", False),
])
def test_path_safe_uids(uid: str, safe: bool) -> None:
    assert is_path_safe_uid(uid) is safe


def test_leading_zero_component_is_accepted(archive: Archive) -> None:
    data = with_bad_uid("1.2.93.4", "1.2.03.4", sop_uid="1.2.93.4")
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        stored = receive(archive, data)
    assert stored.path.name == "1.2.03.4.dcm"


def test_free_space_below_minimum_refuses_with_out_of_resources(tmp_path: Path) -> None:
    total = shutil.disk_usage(tmp_path).total
    with Archive(tmp_path / "a", min_free_bytes=total + 1) as arc:
        assert not arc.has_free_space()
        with pytest.raises(ArchiveRefusal) as info:
            receive(arc, part10_bytes())
        assert info.value.status == 0xA700
        assert incoming_files(arc) == [] and arc.count() == 0


def test_disk_full_while_flushing_refuses_with_out_of_resources(archive: Archive) -> None:
    incoming = archive.open_incoming()
    incoming.fp.close()
    incoming.fp = open("/dev/full", "wb")  # noqa: SIM115 - a real ENOSPC from the kernel
    incoming.fp.write(part10_bytes())
    with pytest.raises(ArchiveRefusal) as info:
        archive.commit_incoming(incoming)
    assert info.value.status == 0xA700
    assert incoming_files(archive) == []


def test_discard_incoming_removes_the_temp_file(archive: Archive) -> None:
    incoming = archive.open_incoming()
    incoming.fp.write(b"partial")
    archive.discard_incoming(incoming)
    assert incoming_files(archive) == []


def test_same_instance_again_replaces_file_and_row(archive: Archive, caplog: pytest.LogCaptureFixture) -> None:
    receive(archive, part10_bytes(description="first"))
    with caplog.at_level("INFO", logger="dicomdesk.archive.placement"):
        stored = receive(archive, part10_bytes(description="second"))
    assert stored.replaced and "replaced" in caplog.text
    assert archive.count() == 1
    assert dcmread(stored.path).StudyDescription == "second"


def test_replacement_in_another_series_removes_old_file_and_empty_folders(archive: Archive) -> None:
    first = receive(archive, part10_bytes("1.2.3.9"))
    second = receive(archive, part10_bytes("1.2.3.9", series=SERIES + "2"))
    archive.wait_indexed()  # the old copy goes once the new row is written (write-behind)
    assert not first.path.exists() and not first.path.parent.exists()
    assert second.path.exists() and archive.count() == 1
    q = Dataset()
    q.SeriesInstanceUID = ""
    assert [r.SeriesInstanceUID for r in archive.find("SERIES", q)] == [SERIES + "2"]


def test_add_file_copies_and_move_removes_the_source(archive: Archive, tmp_path: Path) -> None:
    src = tmp_path / "x.dcm"
    src.write_bytes(part10_bytes("1.2.3.1"))
    archive.add_file(src)
    assert src.exists()
    src2 = tmp_path / "y.dcm"
    src2.write_bytes(part10_bytes("1.2.3.2"))
    archive.add_file(src2, copy=False)
    assert not src2.exists() and archive.count() == 2


def test_add_file_without_copy_keeps_a_refused_source(archive: Archive, tmp_path: Path) -> None:
    src = tmp_path / "bad.dcm"
    src.write_bytes(b"garbage" * 50)
    with pytest.raises(ArchiveRefusal):
        archive.add_file(src, copy=False)
    assert src.exists()


def test_read_only_archive_answers_queries_and_refuses_writes(archive: Archive) -> None:
    receive(archive, part10_bytes())
    archive.wait_indexed()  # another reader of the file sees the row once it is written
    with Archive(archive.root, read_only=True) as ro:
        assert ro.count() == 1
        with pytest.raises(ArchiveError):
            ro.open_incoming()
        q = Dataset()
        q.PatientName = ""
        assert [str(r.PatientName) for r in ro.find("STUDY", q)] == ["Doe^John"]


# ------------------------------------------------------------------ crash points and recover()


def test_recover_removes_leftover_temp_files(archive: Archive) -> None:
    incoming = archive.open_incoming()
    incoming.fp.write(b"half a file")
    incoming.fp.close()  # process killed mid-transfer
    report = archive.recover()
    assert report.removed_temp_files == 1 and incoming_files(archive) == []


# An archive written before the journal (or by hand) is reconciled once: ``reconcile`` walks
# the whole folder against the index. The journal's crash points are below.


def test_reconcile_indexes_a_file_renamed_but_not_indexed(archive: Archive) -> None:
    final = archive.root / STUDY / SERIES / "1.2.3.7.dcm"
    final.parent.mkdir(parents=True)
    final.write_bytes(part10_bytes("1.2.3.7"))  # killed between os.replace and the index row
    report = archive.reconcile()
    assert report.indexed_files == 1 and archive.count() == 1
    assert archive.reconcile().indexed_files == 0
    assert not archive.needs_full_scan


def test_reconcile_drops_rows_whose_file_is_gone(archive: Archive) -> None:
    stored = receive(archive, part10_bytes())
    stored.path.unlink()
    report = archive.reconcile()
    assert report.dropped_rows == 1 and archive.count() == 0
    q = Dataset()
    q.StudyInstanceUID = ""
    assert list(archive.find("STUDY", q)) == []


def test_reconcile_reindexes_a_file_replaced_but_not_reindexed(archive: Archive) -> None:
    stored = receive(archive, part10_bytes(description="a"))
    stored.path.write_bytes(part10_bytes(description="a much longer description"))
    report = archive.reconcile()
    assert report.reindexed_rows == 1
    q = Dataset()
    q.StudyDescription = ""
    assert [r.StudyDescription for r in archive.find("STUDY", q)] == ["a much longer description"]
    assert archive.commitment_status([(CTImageStorage, stored.sop_instance_uid)])[0]


def test_reconcile_removes_a_stale_copy_indexed_elsewhere(archive: Archive) -> None:
    stored = receive(archive, part10_bytes("1.2.3.9", series=SERIES + "2"))
    stale = archive.root / STUDY / SERIES / "1.2.3.9.dcm"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(part10_bytes("1.2.3.9"))  # killed before the old copy was unlinked
    older = stored.path.stat().st_mtime_ns - 10**9
    os.utime(stale, ns=(older, older))
    report = archive.reconcile()
    assert report.removed_stale_files == 1 and not stale.exists() and stored.path.exists()


def test_reconcile_keeps_a_newer_replacement_whose_row_was_lost(archive: Archive) -> None:
    """Rows are written just after the response (write-behind): a crash in between leaves the
    replacement in place and the old row; the newer file wins, the older copy goes."""
    old = receive(archive, part10_bytes("1.2.3.9", description="old"))
    archive.wait_indexed()
    newer = archive.root / STUDY / (SERIES + "2") / "1.2.3.9.dcm"
    newer.parent.mkdir(parents=True)
    newer.write_bytes(part10_bytes("1.2.3.9", series=SERIES + "2", description="new"))
    later = old.path.stat().st_mtime_ns + 10**9
    os.utime(newer, ns=(later, later))
    report = archive.reconcile()
    archive.wait_indexed()
    assert report.indexed_files == 1 and newer.exists() and not old.path.exists()
    q = Dataset()
    q.SeriesInstanceUID = ""
    assert [r.SeriesInstanceUID for r in archive.find("SERIES", q)] == [SERIES + "2"]


def test_reconcile_reports_unreadable_files_and_keeps_them(archive: Archive) -> None:
    junk = archive.root / STUDY / SERIES / "junk.dcm"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"junk")
    report = archive.reconcile()
    assert report.unreadable_files == [junk] and junk.exists()




def test_reconcile_reads_a_large_archive_in_bounded_memory(tmp_path: Path) -> None:
    """The in-window server reconciles an archive from before the journal in the window's
    process: the index is read a page at a time and the folder a folder at a time (it held
    every row in two dicts, ~580 MB at a million instances). Python's peak allocation while
    reconciling 12,000 files stays under 2.5 MB (it was ~6.5 MB, growing with the archive)."""
    import sys
    import tracemalloc

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from _archive_gen import generate

    root = tmp_path / "archive"
    generate(root, 0, 12_000)
    (root / "stray.dcm").write_bytes(part10_bytes(SERIES + ".999"))  # a file without a row
    with Archive(root, durable=False) as archive:
        tracemalloc.start()
        try:
            report = archive.reconcile()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert report.indexed_files == 1 and report.dropped_rows == 0
        assert archive.count() == 12_001
    assert peak < 2_500_000, f"{peak / 1e6:.1f} MB"


def _crash_copy(archive: Archive, to: Path) -> Path:
    """What a kill -9 leaves at this instant: the archive folder copied with its hard links
    (``cp -a``: a journal entry and its placed file stay one inode), index and WAL included."""
    import subprocess

    subprocess.run(["cp", "-a", str(archive.root), str(to)], check=True)
    return to


def _rows(root: Path) -> dict[str, str]:
    with Archive(root, read_only=True) as ro:
        return {uid: rel for uid, (rel, _size) in ro.index.all_files().items()}


def test_objects_acknowledged_before_their_rows_are_indexed_by_recover(archive: Archive, tmp_path: Path) -> None:
    """Killed after the C-STORE responses, before the write-behind transaction: the journal
    names exactly those objects, and recover reads nothing else."""
    for i in range(5):
        receive(archive, part10_bytes(f"1.2.3.{i}"))
    archive.wait_indexed()
    with archive.index._lock:  # the index thread cannot write: the rows stay queued
        stored = [receive(archive, part10_bytes(f"1.2.4.{i}")) for i in range(3)]
        crashed = _crash_copy(archive, tmp_path / "crashed")
    assert len(list((crashed / ".journal").glob("*.ack"))) == 3
    assert set(_rows(crashed)) == {f"1.2.3.{i}" for i in range(5)}
    with Archive(crashed) as after:
        report = after.recover()
        assert (report.journal_entries, report.indexed_files, report.files_examined) == (3, 3, 3)
        assert after.count() == 8
        assert not list((crashed / ".journal").glob("*.ack"))
        for s in stored:
            assert (crashed / s.path.relative_to(archive.root)).read_bytes() == s.path.read_bytes()
        assert after.recover().journal_entries == 0


def test_a_rename_lost_by_a_power_failure_is_restored_from_the_journal(archive: Archive, tmp_path: Path) -> None:
    with archive.index._lock:
        stored = receive(archive, part10_bytes("1.2.3.7"))
        crashed = _crash_copy(archive, tmp_path / "crashed")
    placed = crashed / stored.path.relative_to(archive.root)
    placed.unlink()  # the study folder's entry never reached the disk; the journal's did
    with Archive(crashed) as after:
        assert after.recover().indexed_files == 1
        assert placed.read_bytes() == stored.path.read_bytes()
        assert after.commitment_status([(CTImageStorage, "1.2.3.7")])[0]


def test_replacements_in_the_journal_end_as_the_last_one_arrived(archive: Archive, tmp_path: Path) -> None:
    """A at series 1, B (same UID) at series 2, C (same UID) at series 1, all acknowledged,
    no row written: the last (C) is indexed, and B's copy does not outlive the crash."""
    with archive.index._lock:
        receive(archive, part10_bytes("1.2.3.9", description="A"))
        receive(archive, part10_bytes("1.2.3.9", series=SERIES + "2", description="B"))
        receive(archive, part10_bytes("1.2.3.9", description="C"))
        crashed = _crash_copy(archive, tmp_path / "crashed")
    with Archive(crashed) as after:
        after.recover()
        assert _rows(crashed) == {"1.2.3.9": f"{STUDY}/{SERIES}/1.2.3.9.dcm"}
        assert dcmread(crashed / STUDY / SERIES / "1.2.3.9.dcm").StudyDescription == "C"
        assert not (crashed / STUDY / (SERIES + "2")).exists()
        assert not list((crashed / ".journal").glob("*.ack"))


def test_journal_entries_go_once_their_rows_are_written(archive: Archive) -> None:
    for i in range(20):
        receive(archive, part10_bytes(f"1.2.3.{i}"))
    archive.wait_indexed()
    assert not list((archive.root / ".journal").glob("*.ack"))
    assert archive.count() == 20


def test_an_archive_from_before_the_journal_needs_one_full_scan(tmp_path: Path) -> None:
    root = tmp_path / "old"
    final = root / STUDY / SERIES / "1.2.3.7.dcm"
    final.parent.mkdir(parents=True)
    final.write_bytes(part10_bytes("1.2.3.7"))  # a file without a row, no index at all
    with Archive(root) as old:
        assert old.needs_full_scan
        assert old.recover().indexed_files == 0  # bounded: the journal is empty
        assert old.reconcile().indexed_files == 1 and old.count() == 1
        assert not old.needs_full_scan
    with Archive(tmp_path / "new") as new:
        assert not new.needs_full_scan  # nothing to scan in a new archive


def test_rebuild_index_from_files(archive: Archive, tmp_path: Path) -> None:
    for i in range(3):
        receive(archive, part10_bytes(f"1.2.3.{i}"))
    archive.index.clear()
    assert archive.count() == 0
    assert archive.rebuild_index() == 3 and archive.count() == 3
    assert archive.rebuild_index(archive.root / STUDY / SERIES) == 3 and archive.count() == 3
    outside = tmp_path / "import"
    outside.mkdir()
    (outside / "a").write_bytes(part10_bytes("1.2.4.1", series=SERIES + "9"))
    (outside / "readme.txt").write_text("not dicom")
    assert archive.rebuild_index(outside) == 1 and archive.count() == 4


# ------------------------------------------------------------------ storage commitment


def test_commitment_status_reports_each_failure_reason(archive: Archive) -> None:
    ok = receive(archive, part10_bytes("1.2.3.1"))
    truncated = receive(archive, part10_bytes("1.2.3.2"))
    gone = receive(archive, part10_bytes("1.2.3.3"))
    with truncated.path.open("r+b") as fp:
        fp.truncate(10)
    gone.path.unlink()
    committed, failed = archive.commitment_status([
        (CTImageStorage, ok.sop_instance_uid),
        (CTImageStorage, "9.9.9"),
        (MRImageStorage, ok.sop_instance_uid),
        (CTImageStorage, truncated.sop_instance_uid),
        (CTImageStorage, gone.sop_instance_uid),
    ])
    assert committed == [(CTImageStorage, ok.sop_instance_uid)]
    assert failed == [
        (CTImageStorage, "9.9.9", FAILURE_NO_SUCH_OBJECT_INSTANCE),
        (MRImageStorage, ok.sop_instance_uid, FAILURE_CLASS_INSTANCE_CONFLICT),
        (CTImageStorage, truncated.sop_instance_uid, FAILURE_PROCESSING),
        (CTImageStorage, gone.sop_instance_uid, FAILURE_PROCESSING),
    ]


def test_queued_rows_never_remove_a_file_a_later_object_was_renamed_to(archive: Archive) -> None:
    """A at series 1, B (same UID) at series 2, C (same UID) back at series 1, all acknowledged
    before any row is written: the rows are written in order, and B's row must not remove
    series 1's file, which by then is C's."""
    with archive.index._lock:  # the index thread cannot write until all three are placed
        receive(archive, part10_bytes("1.2.3.9", description="A"))
        receive(archive, part10_bytes("1.2.3.9", series=SERIES + "2", description="B"))
        c = receive(archive, part10_bytes("1.2.3.9", description="C"))
    archive.wait_indexed()
    assert dcmread(c.path).StudyDescription == "C"
    assert not (archive.root / STUDY / (SERIES + "2")).exists()
    q = Dataset()
    q.SeriesInstanceUID = ""
    assert [r.SeriesInstanceUID for r in archive.find("SERIES", q)] == [SERIES]
    assert archive.commitment_status([(CTImageStorage, "1.2.3.9")])[0]


def test_a_series_folder_removed_between_two_objects_is_made_again(archive: Archive) -> None:
    """The archive remembers the folder of the previous object (a series comes as a burst);
    a folder deleted meanwhile (the study deleted from the window) is created again."""
    receive(archive, part10_bytes("1.2.3.1"))
    assert archive.delete_study(STUDY) == 1
    assert not (archive.root / STUDY).exists()
    again = receive(archive, part10_bytes("1.2.3.2"))
    assert again.path.exists() and again.path.parent == archive.root / STUDY / SERIES
    assert archive.count() == 1
