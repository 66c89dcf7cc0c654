"""Helpers of the security and fault suites: ``dicomdesk serve`` as a subprocess, and a raw
DICOM peer that can misbehave at any byte.

The server runs as a real process (``python -m dicomdesk serve --port 0``) so that a hostile
peer or a ``kill -9`` meets exactly what a user runs; its port is read from the line it prints.
Thread count and RSS come from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from dicomdesk.net import pdu, uids
from dicomdesk.net.commandset import encode_command
from dicomdesk.net.dimsemessages import CEchoRQMessage, CStoreRQMessage

REPO = Path(__file__).resolve().parents[2]
LOCALHOST = "127.0.0.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = uids.EXPLICIT_VR_LITTLE_ENDIAN


class ServeProcess:
    """``dicomdesk serve`` on 127.0.0.1, a free port and ``storage``; stop() or kill9() ends it."""

    def __init__(self, storage: Path, *args: str, aet: str = "DICOMDESK", log: Path | None = None,
                 port: int = 0):
        self.requested_port = port
        self.storage = Path(storage)
        self.aet = aet
        self.args = args
        self.log_path = log or self.storage.parent / f"serve-{self.storage.name}.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 20.0) -> ServeProcess:
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        env.pop("PYTHONWARNINGS", None)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dicomdesk", "serve", "-v", "--port", str(self.requested_port), "--aet", self.aet,
             "--storage", str(self.storage), *self.args],
            stdout=subprocess.PIPE, stderr=self._log, cwd=REPO, env=env, text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("listening as"):
                self.port = int(line.rsplit(":", 1)[1])
                return self
        self.stop()
        raise RuntimeError(f"dicomdesk serve did not start: {line!r}\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status_field(self, name: str) -> int:
        """A number from /proc/<pid>/status (``Threads``, ``VmRSS`` in kB, ``VmHWM``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        raise KeyError(name)

    def threads(self) -> int:
        return self.status_field("Threads")

    def wait_threads(self, at_most: int, timeout: float = 10.0) -> int:
        """Wait until the thread count falls to ``at_most``; return the last count seen."""
        deadline = time.monotonic() + timeout
        count = self.threads()
        while count > at_most and time.monotonic() < deadline:
            time.sleep(0.05)  # polling /proc: there is no event for another process's threads
            count = self.threads()
        return count

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _lenient(build):
    """Build with pydicom's value validation silenced: hostile values are the point."""
    import functools
    import warnings

    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return build(*args, **kwargs)

    return wrapper



# ------------------------------------------------------------------------------- raw peer
def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection((LOCALHOST, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def read_pdu(sock: socket.socket) -> bytes:
    """One whole PDU (header + body); b"" when the connection ended first."""
    header = _read_exact(sock, 6)
    if len(header) < 6:
        return b""
    length = struct.unpack(">L", header[2:6])[0]
    return header + _read_exact(sock, length)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data
        data += chunk
    return data


def associate_rq(called: str = "DICOMDESK", calling: str = "HOSTILE",
                 contexts: Iterable[tuple[int, str]] = ((1, uids.VERIFICATION_SOP_CLASS),),
                 identity: Any = None, max_pdu: int = 16384) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing (pc_id, SOP class) contexts in Explicit VR LE."""
    from dicomdesk.net.negotiation import APPLICATION_CONTEXT_NAME, build_user_information

    items: list[Any] = [pdu.ApplicationContextItem(APPLICATION_CONTEXT_NAME)]
    for pc_id, sop_class in contexts:
        items.append(pdu.PresentationContextItemRQ(pc_id, pdu.AbstractSyntaxSubItem(sop_class),
                                                   [pdu.TransferSyntaxSubItem(EXPLICIT_LE)]))
    items.append(build_user_information(max_pdu, user_identity=identity))
    return pdu.AAssociateRqPDU(called, calling, items).encode()


def p_data(pc_id: int, value: bytes, *, command: bool, last: bool) -> bytes:
    header = (1 if command else 0) | (2 if last else 0)
    return pdu.PDataTfPDU([pdu.PresentationDataValueItem(pc_id, bytes((header,)) + value)]).encode()


@_lenient
def command_bytes(message: Any) -> bytes:
    return message.set_length() if hasattr(message, "set_length") else encode_command(message)


class RawAssociation:
    """An association driven byte by byte: the test decides every PDU, so it can stop anywhere."""

    def __init__(self, port: int, contexts=((1, uids.VERIFICATION_SOP_CLASS),), *,
                 called: str = "DICOMDESK", calling: str = "HOSTILE", identity: Any = None):
        self.sock = connect(port)
        self.sock.sendall(associate_rq(called, calling, contexts, identity))
        self.answer = read_pdu(self.sock)
        self.accepted = bool(self.answer) and self.answer[0] == 0x02

    def send_command(self, pc_id: int, message: Any) -> None:
        self.sock.sendall(p_data(pc_id, command_bytes(message), command=True, last=True))

    def send_data(self, pc_id: int, value: bytes, last: bool) -> None:
        self.sock.sendall(p_data(pc_id, value, command=False, last=last))

    def receive_message(self) -> Dataset:
        """The next response's command set (data PDUs of it are skipped)."""
        from dicomdesk.net.commandset import decode_command

        command = b""
        while True:
            raw = read_pdu(self.sock)
            if not raw:
                raise ConnectionError("the server closed the connection")
            if raw[0] != 0x04:
                raise ConnectionError(f"PDU type 0x{raw[0]:02x} instead of P-DATA-TF")
            for item in pdu.PDataTfPDU.decode(raw).data_value_items:
                if item.is_command:
                    command += item.data_value[1:]
                    if item.is_last:
                        return decode_command(command)

    def release(self) -> bytes:
        self.sock.sendall(pdu.AReleaseRqPDU().encode())
        answer = read_pdu(self.sock)
        self.sock.close()
        return answer

    def abort(self) -> None:
        self.sock.sendall(pdu.AAbortPDU(0, 0).encode())
        self.sock.close()

    def vanish(self) -> None:
        """Close without FIN: SO_LINGER 0 makes the kernel send RST and drop the connection."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def echo_rq(message_id: int = 1) -> CEchoRQMessage:
    msg = CEchoRQMessage()
    msg.message_id = message_id
    msg.affected_sop_class_uid = uids.VERIFICATION_SOP_CLASS
    return msg


@_lenient
def store_rq(instance_uid: str, class_uid: str = CT_IMAGE_STORAGE, message_id: int = 1) -> CStoreRQMessage:
    msg = CStoreRQMessage()
    msg.message_id = message_id
    msg.affected_sop_class_uid = class_uid
    msg.affected_sop_instance_uid = instance_uid
    msg.priority = 0
    msg.data_set = b"present"  # only its presence matters to set_length
    return msg


@_lenient
def make_dataset(instance_uid: str, *, study: str = "1.2.3.4", series: str = "1.2.3.4.5",
                 pixels: int = 0, patient: str = "HOSTILE^TEST") -> Dataset:
    """A small CT-like data set; ``pixels`` bytes of OB pixel data make it as large as wanted."""
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = instance_uid
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientName = patient
    ds.PatientID = "HOST-1"
    ds.Modality = "CT"
    if pixels:
        ds.add_new(0x7FE00010, "OB", bytes(range(256)) * (pixels // 256) + b"\0" * (pixels % 256))
    return ds


@_lenient
def encode_dataset(ds: Dataset) -> bytes:
    """The data set in Explicit VR Little Endian, as a C-STORE carries it."""
    from dicomdesk.net.dataset_encoding import encode_data_set

    return encode_data_set(ds, EXPLICIT_LE)


def store_status(port: int, ds: Dataset, contexts=((1, uids.VERIFICATION_SOP_CLASS), (3, CT_IMAGE_STORAGE))
                 ) -> int:
    """One C-STORE of ``ds`` (Explicit VR LE, context 3) on a new association; its status."""
    raw = RawAssociation(port, contexts)
    assert raw.accepted
    uid = str(ds.SOPInstanceUID)
    data = encode_dataset(ds)
    raw.send_command(3, store_rq(uid))
    for start in range(0, len(data), 16000):
        raw.send_data(3, data[start:start + 16000], last=start + 16000 >= len(data))
    status = int(raw.receive_message().Status)
    raw.release()
    return status


def data_set_bytes(path: Path) -> bytes:
    """A Part-10 file's bytes after its File Meta Information (PS3.10 7.1): what was sent."""
    raw = Path(path).read_bytes()
    assert raw[128:132] == b"DICM"
    group_length = struct.unpack("<L", raw[140:144])[0]  # (0002,0000) UL, explicit VR
    return raw[144 + group_length:]


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` (state of another process: there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def write_part10(ds: Dataset, path: Path) -> Path:
    from pydicom.dataset import FileMetaDataset

    ds = ds.copy()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def echo_ok(port: int, aet: str = "DICOMDESK", timeout: float = 10.0) -> None:
    """A C-ECHO through the real client succeeds (the server is up and serving)."""
    from dicomdesk.operations import Peer, echo

    result = echo(Peer(LOCALHOST, port, aet, timeout=timeout))
    assert result.ok, result.error


def archive_state(storage: Path, settle: float = 30.0) -> tuple[set[str], set[str], list[Path]]:
    """(SOP Instance UIDs with a file, UIDs with an index row, files in .incoming).

    The server writes an object's index row just after its C-STORE response (write-behind,
    docs/internals.md), so another process may see the file a few ms before its row: wait up
    to ``settle`` seconds for the rows to catch up before answering.
    """
    deadline = time.monotonic() + settle
    while True:
        files = {p.stem for p in storage.rglob("*.dcm") if ".incoming" not in p.parts}
        rows = _index_rows(storage)
        if files <= rows or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    incoming = storage / ".incoming"
    temp = sorted(p for p in incoming.iterdir()) if incoming.exists() else []
    return files, rows, temp


def _index_rows(storage: Path) -> set[str]:
    import sqlite3

    index = storage / "index.sqlite3"
    if not index.exists():
        return set()
    with sqlite3.connect(f"file:{index}?mode=ro", uri=True) as db:
        rows = {r[0] for r in db.execute("SELECT sop_instance_uid FROM instance")}
    db.close()
    return rows
