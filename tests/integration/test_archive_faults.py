"""The archive loses nothing (issue 4): a killed server, many senders at once, a peer that is down.

- ``kill -9`` of ``dicomdesk serve`` while a 200 MB object arrives: after the restart no partial
  file is visible, index and folder agree, and the sender's retry stores the object;
- 20 DCMTK ``storescu`` processes at once into one server: every object once, intact, indexed;
- forwarding to a DCMTK ``storescp`` that is down at first: queued, retried with back-off,
  delivered once it listens; the states reach the callback and the log.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from dicomdesk import config
from dicomdesk.archive import Archive
from dicomdesk.archive.forwarding import ForwardEvent
from dicomdesk.operations.server import LocalServer
from peers import LOCALHOST, DcmtkProcess, dcmtk_env, dcmtk_path, free_port, run_dcmtk, wait_for_port

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
SERVER_AET = "DICOMDESK"


def dataset_offset(path: Path) -> int:
    """Where the data set starts in a Part-10 file: after preamble, DICM and the meta group,
    whose length is the value of (0002,0000) (PS3.10 7.1)."""
    with path.open("rb") as fp:
        head = fp.read(144)
    assert head[128:132] == b"DICM" and head[132:136] == b"\x02\x00\x00\x00"
    return 144 + struct.unpack("<I", head[140:144])[0]


def same_data_set_bytes(a: Path, b: Path, tail: int = 1 << 20) -> bool:
    """Equal data-set lengths and equal last ``tail`` bytes (the end of the pixel data)."""
    if a.stat().st_size - dataset_offset(a) != b.stat().st_size - dataset_offset(b):
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        fa.seek(-tail, os.SEEK_END)
        fb.seek(-tail, os.SEEK_END)
        return fa.read() == fb.read()


def data_set(path: Path) -> Dataset:
    """The data set without meta header, group lengths and trailing padding (DCMTK leaves the
    latter two out when it sends; each side writes its own meta header)."""
    ds = pydicom.dcmread(path)
    ds.file_meta = None
    for tag in [t for t in ds.keys() if t == 0xFFFCFFFC or t.element == 0]:
        del ds[tag]
    return ds


def big_object(path: Path, megabytes: int = 200) -> str:
    """A Secondary Capture image of about ``megabytes`` MB (16-bit, one frame); its UID."""
    side = int((megabytes * 1024 * 1024 / 2) ** 0.5)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Big^Object", "BIG-1", "OT"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    pixels = np.resize(np.arange(65536, dtype=np.uint16), side * side)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


class ServeProcess:
    """``python -m dicomdesk serve`` on a free port over ``storage``."""

    def __init__(self, storage: Path, log: Path, *extra: str) -> None:
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.log = log
        started = self._listening_lines()
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dicomdesk", "serve", "--port", str(self.port), "--aet", SERVER_AET,
                 "--storage", str(storage), "--nodes", str(storage.parent / "no-nodes.toml"), *extra],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
        wait_for_port(self.port, 30, alive=lambda: self.process.poll() is None)
        # The port accepts as soon as it is bound, before recover() has run: "listening as"
        # is printed after it (a test looking at .incoming right away raced recovery).
        deadline = time.monotonic() + 30
        while self._listening_lines() <= started and self.process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.02)  # another process's log: no event to wait on

    def _listening_lines(self) -> int:
        try:
            return self.log.read_text(errors="replace").count("listening as")
        except FileNotFoundError:
            return 0

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def archive_files(root: Path) -> dict[str, int]:
    """Files of the archive outside the temp folder, the journal and the index: relative path → size."""
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and ".incoming" not in p.parts and ".journal" not in p.parts
            and not p.name.startswith("index.sqlite3")}


@pytest.mark.slow
def test_kill_during_a_200_mb_transfer_leaves_no_partial_file_and_the_retry_stores_it(tmp_path: Path) -> None:
    source = tmp_path / "big.dcm"
    uid = big_object(source)
    storage = tmp_path / "archive"
    log = tmp_path / "serve.log"
    server = ServeProcess(storage, log)
    sender = None
    try:
        sender = subprocess.Popen([dcmtk_path("storescu"), "-aec", SERVER_AET, LOCALHOST, str(server.port),
                                   str(source)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=dcmtk_env())
        incoming = storage / ".incoming"
        deadline = time.monotonic() + 60
        while True:  # watch the temp file grow; kill the server in the middle of the transfer
            sizes = [p.stat().st_size for p in incoming.glob("*") if p.is_file()] if incoming.exists() else []
            if sizes and max(sizes) > 50 * 1024 * 1024:
                break
            assert time.monotonic() < deadline, "the transfer never reached 50 MB"
            assert sender.poll() is None, "storescu ended before the kill"
            time.sleep(0.02)
        server.kill()
        assert sender.wait(30) != 0  # the sender saw the transfer fail
        assert not any(name.endswith(".dcm") for name in archive_files(storage))
    finally:
        if sender is not None and sender.poll() is None:
            sender.kill()
            sender.wait(5)
        server.stop()

    server = ServeProcess(storage, log)  # restart: recover() runs before serving
    try:
        assert list((storage / ".incoming").iterdir()) == []
        with Archive(storage, read_only=True) as archive:
            assert archive.index.all_files() == {}
        assert archive_files(storage) == {}
        retry = run_dcmtk("storescu", "-aec", SERVER_AET, LOCALHOST, str(server.port), source, timeout=120)
        assert retry.returncode == 0, retry.stdout + retry.stderr
        # A second reader (the index is written just after the response: write-behind).
        deadline = time.monotonic() + 10
        while True:
            with Archive(storage, read_only=True) as archive:
                rows = archive.index.all_files()
            if rows or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert list(rows) == [uid]
        path, size = rows[uid]
        assert archive_files(storage) == {path: size}
        assert same_data_set_bytes(storage / path, source)
        assert str(pydicom.dcmread(storage / path, stop_before_pixels=True).SOPInstanceUID) == uid
    finally:
        server.stop()
    assert "recovery" in log.read_text(errors="replace")


@pytest.mark.slow
def test_twenty_storescu_processes_at_once_store_every_object_once_intact(tmp_path: Path) -> None:
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    batches: list[list[Path]] = []
    sources: dict[str, Path] = {}
    study = generate_uid()
    for sender in range(20):
        folder = tmp_path / f"sender{sender}"
        folder.mkdir()
        batch = []
        series = generate_uid()
        for number in range(3):
            ds = template.copy()
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = number + 1
            ds.SeriesNumber = sender + 1
            path = folder / f"{number}.dcm"
            ds.save_as(path, enforce_file_format=True)
            batch.append(path)
            sources[str(ds.SOPInstanceUID)] = path
        batches.append(batch)
    settings = config.ServerSettings(aet=SERVER_AET, port=0, storage_dir=tmp_path / "archive",
                                     max_associations=32)
    stored: list[str] = []
    lock = threading.Lock()

    def on_stored(obj) -> None:
        with lock:
            stored.append(obj.sop_instance_uid)

    with LocalServer(settings, on_stored=on_stored, nodes=[]) as server:
        processes = [subprocess.Popen([dcmtk_path("storescu"), "-aet", f"SENDER{i}", "-aec", SERVER_AET,
                                       LOCALHOST, str(server.port), *map(str, batch)],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dcmtk_env())
                     for i, batch in enumerate(batches)]
        outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in processes]
        assert [p.returncode for p in processes] == [0] * 20, "\n".join(outputs)
        archive = server.ae.archive
        rows = archive.index.all_files()
        assert sorted(stored) == sorted(sources)  # each object stored exactly once
        assert set(rows) == set(sources)
        on_disk = archive_files(archive.root)
        assert len(on_disk) == 60
        for uid, (path, size) in rows.items():
            assert on_disk[path] == size
            assert data_set(archive.root / path) == data_set(sources[uid])
        with Archive(archive.root, read_only=True) as reader:
            assert reader.index.counts() == {"patient": 1, "study": 1, "series": 20, "instance": 60}


@pytest.fixture
def events() -> Iterator[tuple[list[ForwardEvent], threading.Condition]]:
    yield [], threading.Condition()


def test_forwarding_retries_until_the_destination_listens(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                         events) -> None:
    caplog.set_level(logging.INFO, logger="dicomdesk.archive.forwarding")
    seen, changed = events

    def on_forward(event: ForwardEvent) -> None:
        with changed:
            seen.append(event)
            changed.notify_all()

    def wait_for(state: str, timeout: float = 30) -> ForwardEvent:
        with changed:
            assert changed.wait_for(lambda: any(e.state == state for e in seen), timeout), seen
            return next(e for e in seen if e.state == state)

    dest_port = free_port()  # nothing listens there yet
    nodes = [config.Node(name="pacs", aet="STORESCP", host=LOCALHOST, port=dest_port)]
    settings = config.ServerSettings(
        aet=SERVER_AET, port=0, storage_dir=tmp_path / "archive", durable=False,
        forward_rules=(config.ForwardRule(destinations=("pacs",), modalities=("CT",)),))
    source = Path(get_testdata_file("CT_small.dcm"))
    mr = Path(get_testdata_file("MR_small.dcm"))
    with LocalServer(settings, nodes=nodes, on_forward=on_forward, forward_retry=(0.3, 1.0, 50)) as server:
        result = run_dcmtk("storescu", "-aec", SERVER_AET, LOCALHOST, str(server.port), source, mr)
        assert result.returncode == 0, result.stdout + result.stderr
        uid = str(pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID)
        assert wait_for("queued").sop_instance_uid == uid
        retrying = wait_for("retrying")
        assert retrying.destination == "pacs" and "refused" in retrying.error
        queue = server.ae.archive.index.forwards()
        assert [(q.sop_instance_uid, q.state) for q in queue] == [(uid, "pending")]  # MR: no rule
        out = tmp_path / "received"
        out.mkdir()
        with DcmtkProcess("storescp", "-aet", "STORESCP", "-od", out, port=dest_port,
                          log_dir=tmp_path / "logs"):
            done = wait_for("done")
            assert done.attempts >= 2
            received = list(out.iterdir())
            assert [str(pydicom.dcmread(p).SOPInstanceUID) for p in received] == [uid]
        assert [q.state for q in server.ae.archive.index.forwards()] == ["done"]
    messages = [r.getMessage() for r in caplog.records if r.name == "dicomdesk.archive.forwarding"]
    assert any("retry in" in m for m in messages) and any("done after" in m for m in messages), messages
