"""Performance regression guards that are not timings (bench/ has the timings).

* One gathered write per batch of P-DATA PDUs (issue 13): a C-STORE of a known file at a
  peer's 16 KiB maximum PDU (DCMTK's default) leaves in ONE ``sendmsg`` — the command PDU and
  all 19 data PDUs, their file bytes read with one ``preadv`` — and one write for the response
  on the SCP side, counted by a wrapper around the real socket (a write the kernel took only
  in part, and its continuation, count once). A change that writes each PDU, or headers and
  bodies, separately fails here. Fragments of 64 KiB and more keep ``os.sendfile``: their
  headers go first with MSG_MORE (one write), the file bytes follow from the page cache.
  The state machine gets the message as two items, the command PDU and one run of data
  PDUs (``pdu.PDataFileRun``), at either PDU size: Python work per file does not grow with
  its number of PDUs.
* No polling: over an idle second with an idle association open, no thread of the stack
  wakes up (voluntary context switches of every thread of the process, from /proc).
* The hand-written fast paths (File Meta Information, SOP UIDs from a file header) give
  exactly what pydicom gives.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         generate_uid)

from dicomdesk.net import applicationentity
from dicomdesk.net.applicationentity import AE, ClientAE, write_meta
from dicomdesk.net.sopclass import storage_scp, storage_scu
from dicomdesk.net.part10 import read_part10_header
from dicomdesk.net.statuses import SUCCESS

REPO = Path(__file__).resolve().parents[2]
CT = "1.2.840.10008.5.1.4.1.1.2"

class CountingSocket:
    """A real socket whose writes are counted (everything else is passed through).

    A write the kernel takes only in part (a full window) is continued by the next call:
    that continuation is the same write, not one more."""

    def __init__(self, sock):
        self._sock = sock
        self.writes = 0
        self.lock = threading.Lock()
        self._continuing = False

    def _count(self, asked, sent):
        with self.lock:
            if not self._continuing:
                self.writes += 1
            self._continuing = sent < asked

    def send(self, data, *args):
        sent = self._sock.send(data, *args)
        self._count(len(data), sent)
        return sent

    def sendall(self, data, *args):
        self._sock.sendall(data, *args)
        self._count(len(data), len(data))

    def sendmsg(self, buffers, *args):
        buffers = list(buffers)
        try:
            sent = self._sock.sendmsg(buffers, *args)
        except BlockingIOError:
            with self.lock:
                self.writes += 0 if self._continuing else 1
                self._continuing = True
            raise
        self._count(sum(memoryview(b).nbytes for b in buffers), sent)
        return sent

    def __getattr__(self, name):
        return getattr(self._sock, name)


def _write_ct(path: Path, pixel_bytes: int, ts: str = ExplicitVRLittleEndian) -> Path:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Guard^Test"
    ds.PatientID = "G1"
    ds.Modality = "CT"
    ds.Rows, ds.Columns, ds.BitsAllocated = 1, 1, 16
    ds.PixelData = bytes(pixel_bytes)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ts
    ds.save_as(path, enforce_file_format=True)
    return path


class _CountingServer(AE):
    """Storage SCP that wraps each accepted association's socket in a CountingSocket."""

    sockets: list

    def on_association_accepted(self, asce):
        asce.dul.dul_socket = CountingSocket(asce.dul.dul_socket)
        self.sockets.append(asce.dul.dul_socket)

    def on_receive_store(self, context, fp):
        fp.close()
        return SUCCESS


@pytest.mark.parametrize("peer_max_pdu", [16384, 262144])
def test_c_store_sends_one_gathered_write_per_batch_of_p_data_pdus(tmp_path, peer_max_pdu):
    path = _write_ct(tmp_path / "ct.dcm", 300_000)
    header = read_part10_header(path)
    data_length = path.stat().st_size - header.data_offset
    server = _CountingServer("GUARD", 0, max_pdu_length=peer_max_pdu)
    server.sockets = []
    server.add_scp(storage_scp, [CT])
    client = ClientAE("GUARDSCU", max_pdu_length=65536)
    client.update_context_def_list([CT], transfer_syntaxes=[ExplicitVRLittleEndian])
    client.supported_scu[CT] = storage_scu
    with server:
        remote = {"aet": "GUARD", "address": "127.0.0.1", "port": server.port, "timeout": 10}
        with client.request_association(remote) as assoc:
            counter = CountingSocket(assoc.dul.dul_socket)
            assoc.dul.dul_socket = counter
            handed: list[int] = []  # items per pass through the state machine
            send_pdata = assoc.dul.send_pdata
            assoc.dul.send_pdata = lambda pdus: (handed.append(len(pdus)), send_pdata(pdus))
            for _ in range(3):
                status = assoc.get_scu(CT)(str(path), assoc.next_message_id())
                assert status.is_success
            scu_writes = counter.writes
        # the data set goes as one run of PDUs (pdu.PDataFileRun), not one object per PDU:
        # one pass with two items (command PDU, run) per message, however many PDUs
        assert handed == [2, 2, 2]
        assert server.sockets
        scp_socket = server.sockets[0]
        # the release answer (A-RELEASE-RP) is the SCP's one more write; wait for it
        for _ in range(200):
            if scp_socket.writes >= 4:
                break
            threading.Event().wait(0.01)
    fragments = math.ceil(data_length / (peer_max_pdu - 6))
    if peer_max_pdu == 16384:
        assert fragments == 19
        assert scu_writes == 3  # command PDU + 19 data PDUs: one gathered write per message
    else:
        # the 256 KiB fragment goes by sendfile after its headers (one write); the short
        # last fragment's PDU is the message's second write
        assert fragments == 2
        assert scu_writes == 3 * 2
    assert scp_socket.writes == 3 + 1  # one C-STORE-RSP each, then A-RELEASE-RP


_IDLE_CHILD = textwrap.dedent("""
    import sys
    from dicomdesk.net.applicationentity import AE, ClientAE
    from dicomdesk.net.sopclass import verification_scp, verification_scu

    server = AE("IDLE", 0).add_scp(verification_scp)
    server.network_timeout = 600  # an idle timeout wakes once, long after the measurement
    with server:
        client = ClientAE("IDLESCU").add_scu(verification_scu)
        remote = {"aet": "IDLE", "address": "127.0.0.1", "port": server.port, "timeout": 10}
        with client.request_association(remote) as assoc:
            assoc.get_scu(verification_scu.sop_classes[0])(assoc.next_message_id())
            print("ready", flush=True)
            sys.stdin.readline()  # idle until the parent has measured
""")


def _switches(pid: int) -> dict[str, int]:
    counts = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue
        total = 0
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
        counts[task.name] = total
    return counts


def test_no_thread_wakes_up_while_an_association_is_idle():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", _IDLE_CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "ready"
        threading.Event().wait(0.3)  # let the last response settle
        before = _switches(child.pid)
        threading.Event().wait(1.0)
        after = _switches(child.pid)
        assert len(before) >= 3  # main (client), the AE's accept loop, the association
        woke = {tid: after.get(tid, 0) - n for tid, n in before.items() if after.get(tid, 0) - n}
        # a 1 ms poll would show ~1000 wake-ups, a 50 ms one 20: allow at most one stray
        assert sum(woke.values()) <= 1, f"threads woke without I/O: {woke}"
    finally:
        child.stdin.write("\n")
        child.stdin.close()
        child.wait(timeout=20)
        child.stdout.close()


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"])
def test_hand_written_file_meta_equals_pydicom_encoding(ts):
    command_set = Dataset()
    command_set.AffectedSOPClassUID = CT
    for instance in (generate_uid(), generate_uid()[:-1], "1.2.3"):
        command_set.AffectedSOPInstanceUID = instance
        fast = io.BytesIO()
        write_meta(fast, command_set, ts)
        assert applicationentity._plain_meta_bytes(command_set, ts) is not None  # the hand-made path
        slow = io.BytesIO()
        slow.write(b"\x00" * 128 + b"DICM")
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT
        meta.MediaStorageSOPInstanceUID = instance
        meta.TransferSyntaxUID = ts
        meta.ImplementationClassUID = applicationentity.uids.IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = applicationentity.uids.IMPLEMENTATION_VERSION_NAME
        from pydicom.filebase import DicomFileLike
        from pydicom.filewriter import write_file_meta_info

        writer = DicomFileLike(slow)
        writer.is_little_endian, writer.is_implicit_VR = True, False
        write_file_meta_info(writer, meta, enforce_standard=True)
        assert fast.getvalue() == slow.getvalue()


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_header_fast_path_reads_the_uids_pydicom_reads(tmp_path, ts):
    from pydicom import dcmread

    path = _write_ct(tmp_path / "h.dcm", 64, ts)
    header = read_part10_header(path)
    ds = dcmread(path)
    assert header.sop_class_uid == ds.SOPClassUID
    assert header.sop_instance_uid == ds.SOPInstanceUID
    assert header.transfer_syntax == ts
