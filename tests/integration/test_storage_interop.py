"""Storage service (PS3.4 Annex B) against real peers: every pydicom test file, both roles.

(b) dicomdesk's storage SCU → pynetdicom SCP (every storage class, every transfer syntax),
with fragmentation at a 4096-byte, unlimited (0) and 1 MiB peer maximum PDU, a peer that
refuses CT, a peer that only takes Implicit VR Little Endian (conversion), and an
association that drops mid-way; (c) DCMTK storescu → ``dicomdesk serve``; (d) pynetdicom
SCU → ``dicomdesk serve``. Each clean file must arrive and equal the original element by
element; broken and non-DICOM files are reported and the rest of the send goes on.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset

from dicomdesk.net import uids
from dicomdesk.operations.common import Peer
from dicomdesk.operations.files import FileInfo, scan_paths
from dicomdesk.operations.sending import send
from peers import free_port, run_dcmtk, wait_for_port

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def read_quietly(source: Path | bytes, ts: str | None = None) -> Dataset:
    """dcmread a file (or a data set's bytes in ``ts``) with pydicom's warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(source, bytes):
            uid = pydicom.uid.UID(ts)
            raw = source
            if uid.is_deflated:
                import zlib
                raw = zlib.decompress(raw, -zlib.MAX_WBITS)
            ds = pydicom.filereader.read_dataset(io.BytesIO(raw), uid.is_implicit_VR, uid.is_little_endian)
            ds.file_meta = pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = uid
            return ds
        return pydicom.dcmread(source, force=True)


def differences(original: Dataset, received: Dataset, *, values_only: bool = False) -> list[str]:
    """Tags whose value differs (top level, File Meta excluded; sequences compared whole).

    ``values_only``: the object was converted to another syntax, so PixelData is compared
    as decoded pixels rather than as bytes.
    """
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Group 0002 is the file's, not the data set's; group lengths and the trailing
        # padding (FFFC,FFFC) may be dropped on the way (PS3.5 7.2, PS3.10 7.2).
        def kept(t):
            return t.group != 0x0002 and t.element != 0 and t != 0xFFFCFFFC

        tags = {t for t in original.keys() if kept(t)} | {t for t in received.keys() if kept(t)}
        for tag in sorted(tags):
            if tag not in original or tag not in received:
                found.append(f"{tag} missing on one side")
                continue
            if values_only and tag == 0x7FE00010:
                if not (original.pixel_array == received.pixel_array).all():
                    found.append("pixel values differ")
                continue
            try:
                same = original[tag].value == received[tag].value
            except Exception as exc:  # an undecodable value: compare the raw bytes instead
                same = original.get_item(tag).value == received.get_item(tag).value
                if not same:
                    found.append(f"{tag}: {exc}")
                continue
            if not same:
                found.append(str(tag))
    return found


# ------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def scanned() -> list[FileInfo]:
    return scan_paths([TEST_FILES])


def _file_classes(infos: list[FileInfo]) -> list[str]:
    return sorted({i.sop_class_uid for i in infos if i.sendable})


def _recording_scp(pynetdicom_scp, classes, transfer_syntaxes=None, **attrs):
    """A pynetdicom storage SCP keeping every received data set's bytes by SOP Instance UID."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES, evt

    received: dict[str, tuple[bytes, str]] = {}

    def on_store(event):
        raw = event.request.DataSet.getvalue()
        received[str(event.request.AffectedSOPInstanceUID)] = (raw, str(event.context.transfer_syntax))
        return 0x0000

    ts = list(transfer_syntaxes or ALL_TRANSFER_SYNTAXES)
    scp = pynetdicom_scp([(c, ts) for c in classes], [(evt.EVT_C_STORE, on_store)],
                         ae_title="STORESCP", **attrs)
    scp.received = received
    return scp


def _check_outcomes(infos: list[FileInfo], result, received_uids: set[str]) -> None:
    by_path = {o.path: o for o in result.outcomes}
    for info in infos:
        outcome = by_path[info.path]
        if not info.is_dicom:
            assert outcome.state == "skipped", info.path
        elif info.reason:
            assert outcome.state == "failed" and str(info.path) in outcome.message \
                and info.reason in outcome.message, outcome
        if outcome.state == "failed":
            assert str(info.path) in outcome.message
        if outcome.state == "stored":
            assert info.sop_instance_uid in received_uids


def _compare_received(infos: list[FileInfo], result, received, *, values_only=False) -> int:
    stored = {o.path for o in result.outcomes if o.state == "stored"}
    seen: set[str] = set()
    compared = 0
    for info in infos:
        # Some pydicom files share a SOP Instance UID; the last one sent is the one kept.
        if info.path not in stored:
            continue
        raw, ts = received[info.sop_instance_uid]
        twins = [i for i in infos if i.sop_instance_uid == info.sop_instance_uid and i.path in stored]
        if len(twins) > 1:
            continue
        assert info.sop_instance_uid not in seen
        seen.add(info.sop_instance_uid)
        diff = differences(read_quietly(info.path), read_quietly(raw, ts), values_only=values_only)
        assert not diff, f"{info.path.name}: {diff}"
        compared += 1
    return compared


# ----------------------------------------------------------- (b) SCU → pynetdicom SCP
def test_every_pydicom_file_reaches_a_pynetdicom_scp_unchanged(pynetdicom_scp, scanned):
    scp = _recording_scp(pynetdicom_scp, _file_classes(scanned))
    result = send(Peer("127.0.0.1", scp.port, "STORESCP"), scanned)
    assert result.error is None
    assert result.skipped == sum(not i.is_dicom for i in scanned) >= 10
    broken = [i for i in scanned if i.is_dicom and i.reason]
    assert broken and result.failed >= len(broken)
    assert result.stored >= 140
    _check_outcomes(scanned, result, set(scp.received))
    assert _compare_received(scanned, result, scp.received) >= 100


@pytest.mark.parametrize("peer_max_pdu", [4096, 0, 1024 * 1024])
def test_fragments_honour_the_peers_maximum_pdu(pynetdicom_scp, scanned, peer_max_pdu):
    largest = sorted((i for i in scanned if i.sendable), key=lambda i: i.size)[-6:]
    scp = _recording_scp(pynetdicom_scp, _file_classes(largest), maximum_pdu_size=peer_max_pdu)
    result = send(Peer("127.0.0.1", scp.port, "STORESCP"), largest)
    assert result.ok, result.outcomes
    assert _compare_received(largest, result, scp.received) == len({i.sop_instance_uid for i in largest})


def test_a_refused_sop_class_fails_those_files_only(pynetdicom_scp, scanned):
    sendable = [i for i in scanned if i.sendable]
    classes = [c for c in _file_classes(sendable) if c != uids.CT_IMAGE_STORAGE]
    scp = _recording_scp(pynetdicom_scp, classes)
    result = send(Peer("127.0.0.1", scp.port, "STORESCP"), sendable)
    for info, outcome in zip(sendable, result.outcomes):
        if info.sop_class_uid == uids.CT_IMAGE_STORAGE:
            assert outcome.state == "failed"
            assert "refused CT Image Storage" in outcome.message
    assert any(i.sop_class_uid == uids.CT_IMAGE_STORAGE for i in sendable)
    assert result.stored == len(sendable) - sum(i.sop_class_uid == uids.CT_IMAGE_STORAGE
                                                for i in sendable)


def test_uncompressed_files_are_converted_when_the_peer_takes_only_implicit_vr(pynetdicom_scp, scanned):
    picked = [i for i in scanned if i.sendable and i.path.name in (
        "MR_small_bigendian.dcm", "CT_small.dcm", "image_dfl.dcm", "MR_small.dcm", "JPEG2000.dcm",
        "MR_small_expb.dcm")]
    assert len(picked) == 6
    scp = _recording_scp(pynetdicom_scp, _file_classes(picked), [uids.IMPLICIT_VR_LITTLE_ENDIAN])
    result = send(Peer("127.0.0.1", scp.port, "STORESCP"), picked)
    jpeg2000 = next(o for o in result.outcomes if o.path.name == "JPEG2000.dcm")
    assert jpeg2000.state == "failed" and "JPEG 2000" in jpeg2000.message
    assert result.stored == 5
    assert all(ts == uids.IMPLICIT_VR_LITTLE_ENDIAN for _, ts in scp.received.values())
    # MR_small and its big endian twins share one SOP Instance UID: each is compared alone.
    for info in picked[:]:
        if info.path.name == "JPEG2000.dcm":
            continue
        single = [info]
        alone = send(Peer("127.0.0.1", scp.port, "STORESCP"), single)
        assert alone.ok
        assert _compare_received(single, alone, scp.received, values_only=True) == 1


def test_files_not_sent_when_the_association_drops_are_failed_and_listed(pynetdicom_scp, scanned):
    from pynetdicom import evt

    sendable = [i for i in scanned if i.sendable and i.sop_class_uid == uids.CT_IMAGE_STORAGE]
    sendable += [i for i in scanned if i.sendable and i.sop_class_uid == uids.MR_IMAGE_STORAGE]
    count = [0]

    def on_store(event):
        count[0] += 1
        if count[0] == 3:
            event.assoc.ae.require_calling_aet = ["NOBODY"]  # no new association either
            event.assoc.abort()
        return 0x0000

    scp = pynetdicom_scp([(c, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                               "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.5",
                               "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.80",
                               "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.51",
                               "1.2.840.10008.1.2.1.99"])
                          for c in _file_classes(sendable)], [(evt.EVT_C_STORE, on_store)])
    result = send(Peer("127.0.0.1", scp.port, "PYNETDICOM"), sendable)
    assert result.stored == 2
    assert result.error and "reject" in result.error.lower()
    assert len(result.not_sent) == len(sendable) - 3
    assert set(result.failed_paths) == {i.path for i in sendable[2:]}
    assert all(str(o.path) in o.message for o in result.outcomes if o.state == "failed")


# ------------------------------------------------------------- dicomdesk serve (SCP)
class Serve:
    """``dicomdesk serve`` as a separate process on a free port with its own storage folder."""

    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.storage = tmp_path / "archive"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dicomdesk", "serve", "--port", str(self.port), "--aet", "DICOMDESK",
             "--storage", str(self.storage)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for_port(self.port, alive=lambda: self.proc.poll() is None)

    def stop(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return out.decode(errors="replace")

    def stored_files(self) -> dict[str, Path]:
        found = {}
        for path in self.storage.rglob("*.dcm"):
            if ".incoming" not in path.parts:
                found[path.stem] = path
        return found


@pytest.fixture
def serve(tmp_path):
    server = Serve(tmp_path)
    yield server
    server.stop()


def _compare_archive(infos: list[FileInfo], stored: dict[str, Path]) -> int:
    compared = 0
    counts: dict[str, int] = {}
    for info in infos:
        counts[info.sop_instance_uid] = counts.get(info.sop_instance_uid, 0) + 1
    for info in infos:
        if info.sop_instance_uid not in stored or counts[info.sop_instance_uid] > 1:
            continue
        diff = differences(read_quietly(info.path), read_quietly(stored[info.sop_instance_uid]))
        assert not diff, f"{info.path.name}: {diff}"
        compared += 1
    return compared


def _archivable(info: FileInfo) -> bool:
    """What the archive keeps: it also needs Study and Series Instance UIDs (PS3.4 B.4.2)."""
    if not info.sendable:
        return False
    ds = read_quietly(info.path)
    return bool(ds.get("StudyInstanceUID")) and bool(ds.get("SeriesInstanceUID"))


def test_dcmtk_storescu_sends_every_file_to_dicomdesk_serve(serve, scanned):
    result = run_dcmtk("storescu", "-aec", "DICOMDESK", "-nh", "-R", "+C", "+sd", "+r",
                       "127.0.0.1", str(serve.port), TEST_FILES, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    stored = serve.stored_files()
    assert len(stored) >= 90
    assert _compare_archive(scanned, stored) >= 80
    assert not list((serve.storage / ".incoming").iterdir())
    log = serve.stop()
    assert "association released" in log


def test_pynetdicom_scu_sends_every_file_to_dicomdesk_serve(serve, scanned):
    from pynetdicom import AE

    dicom = [i for i in scanned if i.is_dicom and i.sop_class_uid and i.transfer_syntax]
    ae = AE(ae_title="PYNETSCU")
    for sop_class in sorted({i.sop_class_uid for i in dicom}):
        for ts in sorted({i.transfer_syntax for i in dicom if i.sop_class_uid == sop_class}):
            ae.add_requested_context(sop_class, ts)
    assert len(ae.requested_contexts) <= 128
    statuses: dict[Path, int] = {}
    assoc = ae.associate("127.0.0.1", serve.port, ae_title="DICOMDESK")
    assert assoc.is_established
    try:
        for info in dicom:
            ds = read_quietly(info.path)
            if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
                continue  # pynetdicom cannot send a data set without its UIDs
            if "TransferSyntaxUID" not in ds.file_meta:  # a bare data set: the syntax we found
                ds.file_meta.TransferSyntaxUID = info.transfer_syntax
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    rsp = assoc.send_c_store(ds)
            except ValueError:  # pynetdicom cannot encode some broken files: not sent
                continue
            statuses[info.path] = int(rsp.Status) if "Status" in rsp else -1
    finally:
        assoc.release()
    stored = serve.stored_files()
    for info in dicom:
        if info.path in statuses and _archivable(info) and info.reason is None:
            assert statuses[info.path] == 0, (info.path, hex(statuses[info.path]))
    refused = [p for p, s in statuses.items() if s not in (0, -1)]
    assert all(s in (0xA900, 0xC000, 0xA700, -1, 0) for s in statuses.values())
    assert refused, "files without Study/Series UIDs are refused"
    assert _compare_archive([i for i in dicom if statuses.get(i.path) == 0], stored) >= 80
    log = serve.stop()
    assert "refused" in log


def test_an_object_aborted_mid_transfer_leaves_no_temp_file(serve):
    import time

    from dicomdesk.net import dimsemessages
    from dicomdesk.net.applicationentity import ClientAE
    from dicomdesk.net.pdu import PDataTfPDU, PresentationDataValueItem

    ae = ClientAE("ABORTER")
    ae.update_context_def_list([uids.CT_IMAGE_STORAGE], transfer_syntaxes=[uids.EXPLICIT_VR_LITTLE_ENDIAN])
    assoc = ae.request_association({"aet": "DICOMDESK", "address": "127.0.0.1", "port": serve.port})
    ctx = assoc.contexts_for(uids.CT_IMAGE_STORAGE)[0]
    rq = dimsemessages.CStoreRQMessage()
    rq.message_id = 1
    rq.affected_sop_class_uid = uids.CT_IMAGE_STORAGE
    rq.affected_sop_instance_uid = "1.2.3.4.5"
    rq.data_set = b"\x08\x00\x16\x00UI\x1a\x00" + b"1" * 26  # the data set is never finished
    items = [item for p in rq.encode(ctx.id, assoc.peer_max_pdu_length) for item in p.data_value_items]
    for item in items[:-1]:
        assoc.dul.send(PDataTfPDU([item]))
    last = items[-1].data_value
    assoc.dul.send(PDataTfPDU([PresentationDataValueItem(ctx.id, bytes((0x00,)) + bytes(last[1:]))]))
    incoming = serve.storage / ".incoming"
    deadline = time.monotonic() + 30
    while not list(incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)  # the temp file appears once the command set has arrived
    assert list(incoming.iterdir())
    assoc.abort()
    deadline = time.monotonic() + 30
    while list(incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not list(incoming.iterdir())
    assert "aborted" in serve.stop()
