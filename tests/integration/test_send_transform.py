"""Changes in flight (issue 15) against real peers: decompress when refused, --compress,
de-identify (PS3.15 Annex E, checked against the profile's own table), --set edits.

The sender is ``dicomdesk send`` in its own process; the receivers are DCMTK ``storescp``
(uncompressed only, or every syntax) and pynetdicom. The source files' bytes are hashed
before and after every send: nothing is ever written to them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import UID

from peers import DcmtkProcess, start_storescp
from test_storage_interop import TEST_FILES, read_quietly

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]


def dicomdesk(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "dicomdesk", *args], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def digest(paths) -> dict[Path, str]:
    return {Path(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def received_files(folder: Path) -> list:
    return [read_quietly(p) for p in sorted(folder.iterdir()) if p.is_file()]


@pytest.fixture
def storescp_uncompressed(tmp_path):
    """storescp with its default transfer syntaxes: uncompressed only (no +xa); unique file
    names, since several of pydicom's files share a SOP Instance UID."""
    out = tmp_path / "uncompressed"
    out.mkdir()
    proc = DcmtkProcess("storescp", "-aet", "PLAIN", "-pm", "+uf", "-od", out,
                        log_dir=tmp_path / "logs")
    proc.output_dir = out  # type: ignore[attr-defined]
    with proc:
        yield proc


def _decoded(path: Path):
    """pydicom's own decoding of a file, or None when no installed plugin decodes it."""
    try:
        ds = read_quietly(path)
        return ds.pixel_array
    except Exception:  # noqa: BLE001 - any plugin failure means "cannot be decoded"
        return None


def test_every_decodable_compressed_file_arrives_decompressed_and_pixel_equal(storescp_uncompressed):
    from dicomdesk.operations.files import scan_paths

    infos = [i for i in scan_paths([TEST_FILES]) if i.sendable]
    compressed = [i for i in infos if UID(i.transfer_syntax).is_compressed
                  and not UID(i.transfer_syntax).is_deflated]
    before = digest(i.path for i in compressed)
    run = dicomdesk("send", "--aec", "PLAIN", "--decompress", "all", "127.0.0.1",
                    str(storescp_uncompressed.port), *(str(i.path) for i in compressed))
    received: dict[str, list] = {}
    for ds in received_files(storescp_uncompressed.output_dir):
        received.setdefault(str(ds.SOPInstanceUID), []).append(ds)
    decodable = 0
    for info in compressed:
        expected = _decoded(info.path)
        if expected is None:
            assert f"failed: {info.path}: not sent: the pixel data cannot be decoded" in run.stdout
            continue
        decodable += 1
        assert f"sent decompressed from {UID(info.transfer_syntax).name}: {info.path}" in run.stdout
        arrived = received.get(info.sop_instance_uid)
        assert arrived, f"{info.path} did not arrive\n{run.stdout}"
        matches = [ds for ds in arrived
                   if not UID(ds.file_meta.TransferSyntaxUID).is_compressed
                   and ds.pixel_array.shape == expected.shape
                   and np.array_equal(ds.pixel_array, expected)]
        assert matches, f"{info.path}: no received copy equals pydicom's decoding"
    assert decodable >= 25, run.stdout
    assert f"{decodable} file(s) sent decompressed" in run.stdout
    assert digest(before) == before


def test_lossy_files_are_not_decompressed_by_default_and_say_why(storescp_uncompressed):
    lossy = TEST_FILES / "JPEG-lossy.dcm"
    lossless = TEST_FILES / "MR_small_RLE.dcm"
    run = dicomdesk("send", "--aec", "PLAIN", "127.0.0.1", str(storescp_uncompressed.port),
                    str(lossy), str(lossless))
    assert run.returncode == 1
    assert f"failed: {lossy}: not sent:" in run.stdout
    assert "decompressed only with --decompress all" in run.stdout
    assert f"sent decompressed from RLE Lossless: {lossless}" in run.stdout
    never = dicomdesk("send", "--aec", "PLAIN", "--decompress", "never", "127.0.0.1",
                      str(storescp_uncompressed.port), str(lossless))
    assert never.returncode == 1 and "not sent" in never.stdout


def test_pynetdicom_peer_taking_only_implicit_vr_gets_decompressed_files(pynetdicom_scp, tmp_path):
    from pynetdicom import evt
    from pynetdicom.sop_class import MRImageStorage

    arrived = []

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        arrived.append((event.context.transfer_syntax, ds))
        return 0x0000

    scp = pynetdicom_scp([(MRImageStorage, ["1.2.840.10008.1.2"])], [(evt.EVT_C_STORE, on_store)])
    sources = [TEST_FILES / n for n in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                                        "MR_small_jpeg_ls_lossless.dcm")]
    run = dicomdesk("send", "--aec", "PYNETDICOM", "127.0.0.1", str(scp.port), *map(str, sources))
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(arrived) == 3
    for source, (ts, ds) in zip(sources, arrived):
        assert ts == "1.2.840.10008.1.2"
        assert np.array_equal(ds.pixel_array, read_quietly(source).pixel_array), source


@pytest.mark.parametrize("choice, ts", [("rle", "1.2.840.10008.1.2.5"),
                                        ("jpeg-ls-lossless", "1.2.840.10008.1.2.4.80"),
                                        ("jpeg2000-lossless", "1.2.840.10008.1.2.4.90")])
def test_compress_sends_uncompressed_images_compressed_and_lossless(tmp_path, choice, ts):
    sources = [TEST_FILES / n for n in ("CT_small.dcm", "MR_small.dcm")]
    before = digest(sources)
    with start_storescp(tmp_path) as scp:
        run = dicomdesk("send", "--aec", "STORESCP", "--compress", choice, "127.0.0.1",
                        str(scp.port), *map(str, sources))
        assert run.returncode == 0, run.stdout + run.stderr
        got = {str(ds.SOPInstanceUID): ds for ds in received_files(scp.output_dir)}
    for source in sources:
        original = read_quietly(source)
        ds = got[str(original.SOPInstanceUID)]
        assert ds.file_meta.TransferSyntaxUID == ts
        assert np.array_equal(ds.pixel_array, original.pixel_array)
        assert f"sent compressed to {UID(ts).name}: {source}" in run.stdout
    assert digest(before) == before


# ------------------------------------------------------------------------------ de-identify
def _study_files() -> list[Path]:
    """pydicom's DICOMDIR test tree: several patients, studies and series (real structure)."""
    root = TEST_FILES / "dicomdirtests"
    seen: dict[str, Path] = {}  # one file per SOP Instance UID (the tree repeats a few)
    from dicomdesk.operations.files import scan_paths

    for info in scan_paths([root]):
        if info.sendable and info.path.parent != root:
            seen.setdefault(info.sop_instance_uid, info.path)
    return sorted(seen.values())


def _elements(ds, depth=0):
    for elem in ds:
        yield elem, depth
        if elem.VR == "SQ":
            for item in elem.value or ():
                yield from _elements(item, depth + 1)


def _dciodvfy_errors(path: Path) -> set[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    # values (<...>) differ after de-identification: compare the messages without them
    return {re.sub(r"<[^>]*>", "<>", line) for line in (run.stdout + run.stderr).splitlines()
            if line.startswith("Error")}


def test_deidentified_objects_follow_the_profile_table_and_keep_the_study_structure(tmp_path):
    from dicomdesk.transform.profile import basic_profile_rows

    sources = _study_files()
    sources += [TEST_FILES / n for n in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")]
    before = digest(sources)
    mapping = tmp_path / "map.json"
    with start_storescp(tmp_path) as scp:
        run = dicomdesk("send", "--aec", "STORESCP", "--deidentify", "--mapping", str(mapping),
                        "127.0.0.1", str(scp.port), *map(str, sources))
        assert run.returncode == 0, run.stdout + run.stderr
        out_files = sorted(p for p in scp.output_dir.iterdir() if p.is_file())
    assert digest(before) == before
    assert len(out_files) == len(sources)
    assert oct(mapping.stat().st_mode & 0o777) == "0o600"
    table = json.loads(mapping.read_text())
    uids = table["uids"]
    originals = {str(read_quietly(p).SOPInstanceUID): read_quietly(p) for p in sources}
    rows = basic_profile_rows()
    for path in out_files:
        ds = read_quietly(path)
        new_to_old = {v: k for k, v in uids.items()}
        source = originals[new_to_old[str(ds.SOPInstanceUID)]]
        # every attribute the table names is removed, emptied, replaced or re-UIDed
        for elem, _ in _elements(ds):
            tag = int(elem.tag)
            assert not elem.tag.is_private, f"{path}: private {elem.tag} kept"
            for row in rows:
                if not row.matches(tag):
                    continue
                action = row.action
                assert action != "X", f"{path}: {elem.keyword} must be removed (X)"
                if action == "Z":
                    assert elem.is_empty, f"{path}: {elem.keyword} must be empty (Z)"
                if "U" in action and elem.VR == "UI" and not elem.is_empty:
                    values = elem.value if elem.VM > 1 else [elem.value]
                    for value in values:
                        assert value in new_to_old, f"{path}: {elem.keyword} not replaced (U)"
                if action in ("D", "Z/D", "X/D", "X/Z/D") and elem.VR not in ("SQ", "UI") \
                        and not elem.is_empty and elem.tag in source:
                    assert elem.value != source[elem.tag].value or elem.value in ("ANONYMIZED",), \
                        f"{path}: {elem.keyword} kept its value under D"
        assert ds.PatientIdentityRemoved == "YES"
        codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
        assert "113100" in codes
        # structure: same study and series grouping, through the mapping
        assert uids[str(source.StudyInstanceUID)] == ds.StudyInstanceUID
        assert uids[str(source.SeriesInstanceUID)] == ds.SeriesInstanceUID
        # still a valid object: no validation error the original did not have
        new_errors = _dciodvfy_errors(path) - _dciodvfy_errors(next(
            p for p in sources if str(read_quietly(p).SOPInstanceUID) == str(source.SOPInstanceUID)))
        assert not new_errors, f"{path}: {new_errors}"
        assert subprocess.run(["dcmdump", "+E", str(path)], capture_output=True).returncode == 0
    studies = {(str(s.StudyInstanceUID)) for s in originals.values()}
    received_studies = {str(read_quietly(p).StudyInstanceUID) for p in out_files}
    assert len(received_studies) == len(studies) >= 3


def test_burned_in_annotation_is_refused_unless_allowed(tmp_path):
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.BurnedInAnnotation = "YES"
    burned = tmp_path / "burned.dcm"
    ds.save_as(burned)
    with start_storescp(tmp_path) as scp:
        refused = dicomdesk("send", "--aec", "STORESCP", "--deidentify", "127.0.0.1", str(scp.port),
                            str(burned))
        assert refused.returncode == 1
        assert "Burned In Annotation is YES" in refused.stdout
        assert not any(scp.output_dir.iterdir())
        allowed = dicomdesk("send", "--aec", "STORESCP", "--deidentify", "--allow-burned-in",
                            "127.0.0.1", str(scp.port), str(burned))
        assert allowed.returncode == 0, allowed.stdout
        assert len(list(scp.output_dir.iterdir())) == 1


def test_options_keep_what_they_promise(tmp_path):
    source = TEST_FILES / "CT_small.dcm"
    original = read_quietly(source)
    with start_storescp(tmp_path) as scp:
        run = dicomdesk("send", "--aec", "STORESCP", "--deidentify",
                        "basic,retain-dates,retain-patient-characteristics,retain-device-identity,"
                        "clean-descriptors", "127.0.0.1", str(scp.port), str(source))
        assert run.returncode == 0, run.stdout
        (ds,) = received_files(scp.output_dir)
    assert ds.StudyDate == original.StudyDate
    assert ds.PatientSex == original.PatientSex
    assert ds.StationName == original.StationName
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert {i.CodeValue for i in ds.DeidentificationMethodCodeSequence} == {
        "113100", "113106", "113108", "113109", "113105"}
    assert ds.PatientName == ""


# ------------------------------------------------------------------------------------ edits
def test_edits_arrive_as_asked_and_the_sources_are_unchanged(tmp_path):
    sources = [TEST_FILES / n for n in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")]
    before = digest(sources)
    with start_storescp(tmp_path) as scp:
        run = dicomdesk("send", "--aec", "STORESCP", "--set", "PatientID=123", "--set",
                        "PatientName=DOE^JOHN", "--set", "0008,1030=Corrected", "127.0.0.1",
                        str(scp.port), *map(str, sources))
        assert run.returncode == 0, run.stdout + run.stderr
        got = received_files(scp.output_dir)
    assert len(got) == 3
    for ds in got:
        assert ds.PatientID == "123"
        assert str(ds.PatientName) == "DOE^JOHN"
        assert ds.StudyDescription == "Corrected"
    assert digest(before) == before
    by_uid = {str(ds.SOPInstanceUID): ds for ds in got}
    for source in sources:  # pixel data copied unchanged (streamed, encapsulated included)
        original = read_quietly(source)
        assert by_uid[str(original.SOPInstanceUID)].PixelData == original.PixelData


@pytest.mark.parametrize("edit, reason", [
    ("TransferSyntaxUID=1.2.840.10008.1.2", "group 0002"),
    ("StudyInstanceUID=1.2.3", "--allow-uid-edits"),
    ("PatientAge=45", "does not fit VR AS"),
    ("Rows=12", "cannot be edited"),
    ("StudyDate=2024-01-01", "does not fit VR DA"),
    ("NoSuchKeyword=1", "no such attribute"),
])
def test_edits_that_would_break_the_object_are_refused_before_sending(edit, reason):
    run = dicomdesk("send", "--set", edit, "127.0.0.1", "9", str(TEST_FILES / "CT_small.dcm"))
    assert run.returncode != 0
    assert reason in run.stderr


def test_uid_edits_when_asked(tmp_path):
    with start_storescp(tmp_path) as scp:
        run = dicomdesk("send", "--aec", "STORESCP", "--allow-uid-edits", "--set",
                        "StudyInstanceUID=1.2.826.0.1.3680043.8.498.1", "127.0.0.1", str(scp.port),
                        str(TEST_FILES / "CT_small.dcm"))
        assert run.returncode == 0, run.stdout
        (ds,) = received_files(scp.output_dir)
    assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.1"


def test_mapping_file_is_reused_so_a_second_batch_joins_the_same_study(tmp_path):
    mapping = tmp_path / "map.json"
    series = sorted((TEST_FILES / "dicomdirtests" / "77654033" / "CT2").iterdir())[:2]
    assert len(series) == 2
    with start_storescp(tmp_path) as scp:
        for path in series:
            run = dicomdesk("send", "--aec", "STORESCP", "--deidentify", "--mapping", str(mapping),
                            "127.0.0.1", str(scp.port), str(path))
            assert run.returncode == 0, run.stdout
        got = received_files(scp.output_dir)
    assert len({str(ds.StudyInstanceUID) for ds in got}) == 1
    assert len({str(ds.PatientID) for ds in got}) == 1
    shutil.rmtree(scp.output_dir)
