"""``send`` prepares file N+1 while the peer handles file N, and nothing else changes.

The send loop opens, checks and builds the request of the next file between sending a file
and reading its response. These tests run it against real peers on 127.0.0.1 (DCMTK
storescp, dicomdesk's own server, pynetdicom SCPs) and check what must not move: every
file arrives byte for byte, a file that cannot be prepared fails alone with its reason,
progress events stay in order per file, an association lost mid-run fails only the file in
flight (the prepared next one goes on the new association), and no file is left open.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomdesk import config
from dicomdesk.net import uids
from dicomdesk.net.part10 import read_part10_header
from dicomdesk.operations.common import Peer
from dicomdesk.operations.files import FileInfo, inspect_file
from dicomdesk.operations.sending import SendProgress, send
from dicomdesk.operations.server import LocalServer

pytestmark = pytest.mark.interop

SYNTAXES = [uids.EXPLICIT_VR_LITTLE_ENDIAN, uids.IMPLICIT_VR_LITTLE_ENDIAN]
FD_DIR = Path("/proc/self/fd")  # Linux: where the look-ahead shows as an open file


def write_images(folder: Path, count: int, rows: int = 64) -> list[Path]:
    """``count`` small CT images with distinct pixel values, alternating two uncompressed syntaxes."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for n in range(count):
        ts = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)[n % 2]
        ds = Dataset()
        ds.SOPClassUID = uids.CT_IMAGE_STORAGE
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName, ds.Modality = "PIPE", "Pipe^Line", "CT"
        ds.InstanceNumber = n + 1
        ds.Rows = ds.Columns = rows
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = bytes((n + i) % 251 for i in range(rows * rows * 2))
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ts
        path = folder / f"img{n:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def data_set_bytes(path: Path) -> tuple[str, bytes]:
    """(SOP Instance UID, the bytes after the File Meta Information): what went on the wire."""
    header = read_part10_header(path)
    with open(path, "rb") as fp:
        fp.seek(header.data_offset)
        return header.sop_instance_uid, fp.read()


def received_by_uid(folder: Path) -> dict[str, bytes]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and ".incoming" not in path.parts and ".journal" not in path.parts \
                and path.suffix != ".log":
            try:
                uid, raw = data_set_bytes(path)
            except ValueError:
                continue  # an index or log file of the server
            found[uid] = raw
    return found


def open_paths_under(folder: Path) -> list[str]:
    """Files under ``folder`` this process holds open (the SCU runs in this process)."""
    found = []
    for fd in os.listdir(FD_DIR):
        try:
            target = os.readlink(FD_DIR / fd)
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def assert_all_arrived(paths: list[Path], result, received: dict[str, bytes]) -> None:
    assert result.ok, [o for o in result.outcomes if o.state != "stored"]
    assert result.stored == len(paths)
    for path in paths:
        uid, raw = data_set_bytes(path)
        assert received.get(uid) == raw, f"{path.name} differs at the peer"


def store_handler(received: dict[str, bytes], before_answer=None):
    """A pynetdicom C-STORE handler keeping each data set's bytes by SOP Instance UID."""
    def on_store(event):
        uid = str(event.request.AffectedSOPInstanceUID)
        if before_answer is not None:
            before_answer(event, uid)
        received[uid] = event.request.DataSet.getvalue()
        return 0x0000
    return on_store


def pynetdicom_store_scp(pynetdicom_scp, handler):
    from pynetdicom import evt

    return pynetdicom_scp([(uids.CT_IMAGE_STORAGE, SYNTAXES)], [(evt.EVT_C_STORE, handler)],
                          ae_title="STORESCP")


# ------------------------------------------------------------------ (1) everything arrives
def test_many_files_arrive_intact_at_dcmtk_storescp(dcmtk_storescp, tmp_path):
    paths = write_images(tmp_path / "src", 60)
    result = send(Peer("127.0.0.1", dcmtk_storescp.port, "STORESCP"), paths)
    assert_all_arrived(paths, result, received_by_uid(dcmtk_storescp.output_dir))
    assert not open_paths_under(tmp_path / "src")


def test_many_files_arrive_intact_at_our_own_server(tmp_path):
    paths = write_images(tmp_path / "src", 60)
    settings = config.ServerSettings(aet="DICOMDESK", port=0, storage_dir=tmp_path / "archive",
                                     durable=False)
    server = LocalServer(settings).start()
    try:
        result = send(Peer("127.0.0.1", server.port, "DICOMDESK"), paths)
    finally:
        server.stop()
    assert_all_arrived(paths, result, received_by_uid(tmp_path / "archive"))
    assert not open_paths_under(tmp_path / "src")


def test_the_next_file_is_prepared_while_the_peer_handles_the_current_one(pynetdicom_scp, tmp_path):
    # The SCP runs in this process: while it holds file N's response back, it looks for file
    # N+1 among this process's open files. Only a pipelined SCU has it open at that point.
    paths = write_images(tmp_path / "src", 6)
    order = {data_set_bytes(p)[0]: n for n, p in enumerate(paths)}
    seen_open: dict[int, bool] = {}

    def look_ahead(event, uid):
        n = order[uid]
        if n + 1 < len(paths):
            deadline = time.monotonic() + 20.0
            wanted = str(paths[n + 1])
            while wanted not in open_paths_under(tmp_path / "src") and time.monotonic() < deadline:
                time.sleep(0.005)  # bounded wait for the SCU thread to get there
            seen_open[n] = wanted in open_paths_under(tmp_path / "src")

    received: dict[str, bytes] = {}
    scp = pynetdicom_store_scp(pynetdicom_scp, store_handler(received, look_ahead))
    result = send(Peer("127.0.0.1", scp.port, "STORESCP"), paths)
    assert_all_arrived(paths, result, received)
    assert seen_open == {n: True for n in range(len(paths) - 1)}
    assert not open_paths_under(tmp_path / "src")


# ------------------------------------------------- (2) a file that cannot be prepared fails alone
def test_a_file_that_cannot_be_prepared_fails_alone_with_its_reason(dcmtk_storescp, tmp_path):
    paths = write_images(tmp_path / "src", 12)
    infos = [inspect_file(p) for p in paths]  # scanned while intact, as the GUI does
    assert all(i.sendable for i in infos)
    truncated, deleted = paths[4], paths[7]
    with open(truncated, "r+b") as fp:
        fp.truncate(os.path.getsize(truncated) - 1000)
    deleted.unlink()

    events: list[SendProgress] = []
    result = send(Peer("127.0.0.1", dcmtk_storescp.port, "STORESCP"), infos, progress=events.append)

    by_path = {o.path: o for o in result.outcomes}
    assert by_path[truncated].state == "failed"
    assert by_path[truncated].message.startswith(f"{truncated}: not sent: truncated")
    assert by_path[deleted].state == "failed"
    assert by_path[deleted].message.startswith(f"{deleted}: not sent: cannot read the file")
    others = [p for p in paths if p not in (truncated, deleted)]
    assert result.stored == len(others) and result.failed == 2 and result.error is None
    received = received_by_uid(dcmtk_storescp.output_dir)
    for path in others:
        uid, raw = data_set_bytes(path)
        assert received[uid] == raw
    # As before: "sending" then "failed" for each, in file order, and no byte counted twice.
    for path in (truncated, deleted):
        assert [e.state for e in events if e.path == path] == ["sending", "failed"]
    assert events[-1].bytes_done == events[-1].bytes_total == sum(i.size for i in infos)
    assert not open_paths_under(tmp_path / "src")


# --------------------------------------------------------------- (3) progress events in order
def test_progress_events_keep_their_order_per_file_and_across_files(pynetdicom_scp, tmp_path):
    paths = write_images(tmp_path / "src", 20, rows=256)  # 128 KiB each: several PDVs per file
    received: dict[str, bytes] = {}
    scp = pynetdicom_store_scp(pynetdicom_scp, store_handler(received))
    events: list[SendProgress] = []
    result = send(Peer("127.0.0.1", scp.port, "STORESCP"), paths, progress=events.append,
                  max_pdu_length=16384)
    assert_all_arrived(paths, result, received)

    # Per file: "sending" first (when its data starts going out), "stored" last, nothing else.
    for n in range(len(paths)):
        states = [e.state for e in events if e.index == n]
        assert states[0] == "sending" and states[-1] == "stored", (n, states)
        assert set(states[:-1]) == {"sending"}, (n, states)
    # Across files: file N's outcome is reported before file N+1 starts.
    indexes = [e.index for e in events]
    assert indexes == sorted(indexes)
    done = [e.bytes_done for e in events]
    assert done == sorted(done) and done[-1] == events[-1].bytes_total
    # When a file starts, exactly the earlier files' bytes are counted.
    sizes = [os.path.getsize(p) for p in paths]
    for e in events:
        if e.state == "sending" and e == next(x for x in events if x.index == e.index):
            assert e.bytes_done == sum(sizes[:e.index])


# ------------------------------------------------------ (4) association lost mid-run
def test_an_association_lost_mid_run_fails_only_the_file_in_flight(pynetdicom_scp, tmp_path):
    paths = write_images(tmp_path / "src", 10)
    order = {data_set_bytes(p)[0]: n for n, p in enumerate(paths)}
    aborted: list[int] = []

    def abort_on_fourth(event, uid):
        if order[uid] == 3 and not aborted:
            aborted.append(3)
            event.assoc.abort()

    received: dict[str, bytes] = {}
    scp = pynetdicom_store_scp(pynetdicom_scp, store_handler(received, abort_on_fourth))
    events: list[SendProgress] = []
    result = send(Peer("127.0.0.1", scp.port, "STORESCP"), paths, progress=events.append)

    assert aborted == [3]
    states = {o.path: o.state for o in result.outcomes}
    assert states[paths[3]] == "failed"
    assert result.outcomes[3].message.startswith(f"{paths[3]}: not stored:")
    # File 4 was prepared when the abort came: it is sent on the new association, not failed.
    assert [states[p] for p in paths if p != paths[3]] == ["stored"] * 9
    assert result.error is None and result.not_sent == ()
    # Sent once, on the new association: "sending" (repeated by progress while its bytes go
    # out, at most 10 times a second, so a slow machine sees it more than once), then "stored".
    states_of_4 = [e.state for e in events if e.index == 4]
    assert states_of_4[-1] == "stored" and set(states_of_4[:-1]) == {"sending"}, states_of_4
    for path in paths:
        if path != paths[3]:
            uid, raw = data_set_bytes(path)
            assert received[uid] == raw
    assert not open_paths_under(tmp_path / "src")


def test_cancel_while_a_file_is_prepared_closes_it_and_skips_the_rest(pynetdicom_scp, tmp_path):
    import threading

    paths = write_images(tmp_path / "src", 8)
    order = {data_set_bytes(p)[0]: n for n, p in enumerate(paths)}
    cancel = threading.Event()

    def cancel_on_third(event, uid):
        if order[uid] == 2:
            cancel.set()

    received: dict[str, bytes] = {}
    scp = pynetdicom_store_scp(pynetdicom_scp, store_handler(received, cancel_on_third))
    result = send(Peer("127.0.0.1", scp.port, "STORESCP"), paths, cancel=cancel)

    assert result.cancelled and result.stored == 3
    assert [o.state for o in result.outcomes] == ["stored"] * 3 + ["skipped"] * 5
    assert all(o.message == "cancelled" for o in result.outcomes[3:])
    assert len(received) == 3
    assert not open_paths_under(tmp_path / "src")


def test_storage_scu_keeps_its_one_call_behaviour(pynetdicom_scp, tmp_path):
    """``storage_scu`` (the reference API) is the three public steps in a row."""
    from dicomdesk.net.applicationentity import ClientAE
    from dicomdesk.net.sopclass import storage_scu

    paths = write_images(tmp_path / "src", 4)[::2]  # Explicit VR Little Endian, sent as is
    received: dict[str, bytes] = {}
    scp = pynetdicom_store_scp(pynetdicom_scp, store_handler(received))
    ae = ClientAE("SCU")
    ae.update_context_def_list([uids.CT_IMAGE_STORAGE], transfer_syntaxes=SYNTAXES[:1])
    remote = {"aet": "STORESCP", "address": "127.0.0.1", "port": scp.port, "timeout": 30}
    counted: list[int] = []
    with ae.request_association(remote) as assoc:
        [ctx] = assoc.contexts_for(uids.CT_IMAGE_STORAGE)
        for path in paths:
            status = storage_scu(assoc, ctx, str(path), assoc.next_message_id(), on_bytes=counted.append)
            assert status.is_success and status.error_comment is None
    for path in paths:
        uid, raw = data_set_bytes(path)
        assert received[uid] == raw
    assert sum(counted) == sum(len(data_set_bytes(p)[1]) for p in paths)
