"""Real DICOM peers for interoperability tests: DCMTK processes and in-thread pynetdicom servers.

Every peer listens on 127.0.0.1 on a port the OS gave us, is waited for by connecting (never by
sleeping blindly) and is stopped when its context ends. A missing DCMTK tool fails the test
loudly: the suite must not pass by skipping the interop half of it.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

logger = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
_STARTUP_ATTEMPTS = 3  # a free port can be taken between free_port() and the peer's bind()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int,
    timeout: float = 15.0,
    host: str = LOCALHOST,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Connect until the port accepts; raise TimeoutError after ``timeout`` seconds.

    ``alive`` lets the caller stop early when the server process has already died.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            if alive is not None and not alive():
                raise RuntimeError(f"the server for port {port} exited before accepting") from exc
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing accepted on {host}:{port} within {timeout} s") from exc
            time.sleep(delay)  # short retry while the peer starts up
            delay = min(delay * 2, 0.2)


def dcmtk_path(tool: str) -> str:
    """The path of a DCMTK tool, or fail the test: interop tests must not be skipped."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"DCMTK {tool} not found: run ./scripts/test", pytrace=False)
    return path


def dcmtk_env() -> dict[str, str]:
    """The environment for DCMTK tools: TCP_NODELAY=1 so small PDUs are not delayed by Nagle."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def run_dcmtk(
    tool: str, *args: str | os.PathLike[str], timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK SCU (echoscu, storescu, findscu, getscu, movescu...) to completion.

    Output is captured as text; the return code is not checked, so a test can assert on it.
    """
    command = [dcmtk_path(tool), *map(os.fspath, args)]
    logger.debug("running %s", command)
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        cwd=cwd,
        env=dcmtk_env(),
        check=False,
    )


class DcmtkProcess:
    """A DCMTK server (storescp, dcmqrscp, wlmscpfs...) on a free port, as a context manager.

    The port is appended as the last argument (the positional ``port`` of these tools) unless
    ``port_argument`` is False (then put ``str(proc.port)`` in ``args`` yourself via ``port``).
    stdout and stderr go to ``log_dir/<tool>-<port>.log``; ``log_text()`` reads it back for
    assertion messages. Readiness is probed with one bare TCP connection, which the tool logs
    as a failed association: do not count associations in its log.
    """

    def __init__(
        self,
        tool: str,
        *args: str | os.PathLike[str],
        log_dir: Path,
        port: int | None = None,
        port_argument: bool = True,
        cwd: Path | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.tool = tool
        self.args = [os.fspath(a) for a in args]
        self.log_dir = Path(log_dir)
        self.port = port if port is not None else free_port()
        self._fixed_port = port is not None or not port_argument
        self.port_argument = port_argument
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def __enter__(self) -> DcmtkProcess:
        if self.process is None:  # start_storescp() & co. return a process already started
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the tool and return once its port accepts connections."""
        executable = dcmtk_path(self.tool)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _STARTUP_ATTEMPTS + 1):
            self.log_path = self.log_dir / f"{self.tool}-{self.port}.log"
            command = [executable, *self.args]
            if self.port_argument:
                command.append(str(self.port))
            logger.debug("starting %s", command)
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=dcmtk_env(),
                )
            try:
                wait_for_port(self.port, self.startup_timeout, alive=self.running)
                return
            except (RuntimeError, TimeoutError) as exc:
                self.stop()
                if "already in use" in self.log_text() and not self._fixed_port:
                    if attempt < _STARTUP_ATTEMPTS:
                        self.port = free_port()
                        continue
                raise RuntimeError(
                    f"{self.tool} did not start ({exc}); its log:\n{self.log_text()}"
                ) from exc

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Terminate (then kill) the process and wait for it: no orphan outlives a test."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        logger.debug("%s exited with %s", self.tool, self.process.returncode)

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_text(self) -> str:
        """Everything the tool has written so far."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")


# ------------------------------------------------------------------------------------ storescp


def start_storescp(
    tmp_path: Path, *extra: str, aet: str = "STORESCP", output_dir: Path | None = None
) -> DcmtkProcess:
    """A running storescp accepting every storage class (-pm) and transfer syntax (+xa).

    Received files land in ``output_dir`` (default ``tmp_path/"storescp"``). Call ``.stop()``
    (or use it as a context manager).
    """
    output_dir = output_dir if output_dir is not None else tmp_path / "storescp"
    output_dir.mkdir(parents=True, exist_ok=True)
    proc = DcmtkProcess(
        "storescp", "-aet", aet, "-pm", "+xa", "-od", output_dir, *extra, log_dir=tmp_path / "logs"
    )
    proc.output_dir = output_dir  # type: ignore[attr-defined]
    proc.aet = aet  # type: ignore[attr-defined]
    proc.start()
    return proc


# ------------------------------------------------------------------------------------ dcmqrscp


def write_dcmqrscp_config(
    directory: Path,
    aet: str,
    port: int,
    peers: Mapping[str, tuple[str, int]] | None = None,
    max_pdu: int = 16384,
) -> Path:
    """Write ``directory/dcmqrscp.cfg`` with one storage area (``directory/storage``).

    ``peers`` maps AE title -> (host, port): the C-MOVE destinations dcmqrscp may connect to.
    Any calling AE may query, store and retrieve (access "ANY", RW).
    """
    directory = Path(directory)
    storage = directory / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    hosts = [
        f"peer{index} = ({peer_aet}, {host}, {peer_port})"
        for index, (peer_aet, (host, peer_port)) in enumerate((peers or {}).items(), start=1)
    ]
    lines = [
        f"NetworkTCPPort  = {port}",
        f"MaxPDUSize      = {max_pdu}",
        "MaxAssociations = 16",
        "",
        "HostTable BEGIN",
        *hosts,
        "HostTable END",
        "",
        "VendorTable BEGIN",
        "VendorTable END",
        "",
        "AETable BEGIN",
        f"{aet}  {storage}  RW  (500, 1024mb)  ANY",
        "AETable END",
        "",
    ]
    config = directory / "dcmqrscp.cfg"
    config.write_text("\n".join(lines), encoding="ascii")
    return config


def start_dcmqrscp(
    directory: Path,
    *extra: str,
    aet: str = "DCMQRSCP",
    peers: Mapping[str, tuple[str, int]] | None = None,
) -> DcmtkProcess:
    """A running dcmqrscp (Q/R SCP and storage) with its config and database in ``directory``.

    Store objects into it with ``run_dcmtk("storescu", "-aec", aet, "127.0.0.1", port, file)``.
    ``.config_path`` and ``.storage_dir`` are set on the returned process.
    """
    directory = Path(directory)
    port = free_port()
    config = write_dcmqrscp_config(directory, aet, port, peers)
    proc = DcmtkProcess(
        "dcmqrscp", "-c", config, *extra, port=port, log_dir=directory / "logs", cwd=directory
    )
    proc.aet = aet  # type: ignore[attr-defined]
    proc.config_path = config  # type: ignore[attr-defined]
    proc.storage_dir = directory / "storage"  # type: ignore[attr-defined]
    proc.start()
    return proc


# ------------------------------------------------------------------------------------ wlmscpfs


def start_wlmscpfs(directory: Path, *extra: str, aet: str = "WLMSCP") -> DcmtkProcess:
    """A running worklist SCP (PS3.4 K) serving ``*.wl`` files of ``directory/<aet>``.

    The called AE title must be ``aet``; put worklist files in ``.worklist_dir``.
    """
    directory = Path(directory)
    worklist_dir = directory / "worklists" / aet
    worklist_dir.mkdir(parents=True, exist_ok=True)
    # wlmscpfs locks this file before reading *.wl and answers A700 without it.
    (worklist_dir / "lockfile").touch()
    proc = DcmtkProcess(
        "wlmscpfs", "-dfp", worklist_dir.parent, *extra, log_dir=directory / "logs"
    )
    proc.aet = aet  # type: ignore[attr-defined]
    proc.worklist_dir = worklist_dir  # type: ignore[attr-defined]
    proc.start()
    return proc


# ------------------------------------------------------------------------------------ pynetdicom


class ReactorCheckpoint:
    """pynetdicom 3.0's ``Association._reactor_checkpoint`` with a pause its senders can trust.

    A pynetdicom association runs a reactor thread that takes every DIMSE message off the
    queue unless it is paused. Each ``send_*()`` pauses it: clear the checkpoint, wait until
    ``assoc._is_paused``, send, take the response, set the checkpoint again. The reactor sets
    ``_is_paused = True`` before ``checkpoint.wait()`` and False after it, so once a send has
    set the checkpoint the flag still says "paused" until the woken reactor runs again; and
    ``threading.Event.wait()`` returns once notified even when the event was cleared again
    meanwhile. A ``send_*()`` that follows at once (a loop of C-STOREs or C-ECHOs) is let
    through by the stale flag while the reactor is about to call ``get_msg``: when our reply
    comes first, the reactor takes it ("Received unexpected C-STORE service message"), the
    sender waits out its DIMSE timeout (30 s) and aborts. Seen 1 in ~250 C-ECHOs to
    ``dicomdesk serve`` on a loaded 2-core machine.

    Here the reactor cannot pass a cleared checkpoint (``wait`` re-checks the flag) and
    ``parked`` says it is blocked in ``wait``; ``_is_paused`` reads True while it is parked
    (``fix_pynetdicom_reactor_pause``), whatever else wrote the flag (pynetdicom writes it
    around every request it serves, from other threads too). A clear from another thread
    withdraws a "paused" the reactor wrote unless it is parked: the sender then waits for its
    next real pause. Calls from the reactor's own thread keep pynetdicom's behaviour.
    """

    def __init__(self, assoc: Any) -> None:
        self._assoc = assoc
        self._cond = threading.Condition(threading.Lock())
        self._flag = False
        self.parked = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._flag = False
            if not self.parked and threading.current_thread() is not self._assoc:
                self._assoc._is_paused = False  # running: paused only once it waits again

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            if not self._flag:
                self.parked = True
                try:
                    self._cond.wait_for(lambda: self._flag, timeout)
                finally:
                    self.parked = False
            return self._flag


def fix_pynetdicom_reactor_pause() -> None:
    """Give every pynetdicom Association made from now on a ``ReactorCheckpoint`` (idempotent).

    Fails loudly when pynetdicom no longer has the attributes this relies on: re-check its
    reactor then instead of silently running without the fix."""
    from pynetdicom.association import Association

    if getattr(Association.__init__, "reactor_pause_fixed", False):
        return
    original = Association.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not isinstance(self.__dict__.get("_reactor_checkpoint"), threading.Event) \
                or "_is_paused_written" not in self.__dict__:
            raise RuntimeError("pynetdicom's Association changed: re-check ReactorCheckpoint")
        checkpoint = ReactorCheckpoint(self)
        if self._reactor_checkpoint.is_set():
            checkpoint.set()
        self._reactor_checkpoint = checkpoint

    def is_paused(self: Any) -> bool:
        checkpoint = self.__dict__.get("_reactor_checkpoint")
        return self.__dict__.get("_is_paused_written", False) or getattr(checkpoint, "parked", False)

    def write_is_paused(self: Any, value: bool) -> None:
        self.__dict__["_is_paused_written"] = value

    __init__.reactor_pause_fixed = True  # type: ignore[attr-defined]
    Association.__init__ = __init__  # type: ignore[method-assign]
    Association._is_paused = property(is_paused, write_is_paused)  # type: ignore[attr-defined]


class PynetdicomSCP:
    """A pynetdicom AE serving in background threads on 127.0.0.1, port chosen by the OS."""

    def __init__(self, ae: Any, server: Any) -> None:
        self.ae = ae
        self.server = server
        self.port: int = server.server_address[1]
        self.aet: str = ae.ae_title

    def stop(self) -> None:
        """Shut the server down and wait for its threads."""
        self.server.shutdown()
        self.ae.shutdown()

    def __enter__(self) -> PynetdicomSCP:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_pynetdicom_scp(
    contexts: Iterable[str | tuple[str, Sequence[str]] | Any] = (VERIFICATION_SOP_CLASS,),
    handlers: Sequence[tuple[Any, Callable[..., Any]]] = (),
    ae_title: str = "PYNETDICOM",
    **ae_attributes: Any,
) -> PynetdicomSCP:
    """Start a pynetdicom SCP (pynetdicom 3 API) and return once it listens.

    ``contexts`` items are an abstract syntax UID, a (UID, transfer syntaxes) pair, or a
    pynetdicom PresentationContext; ``handlers`` are (evt.EVT_*, callable) pairs; other keyword
    arguments are AE attributes (``maximum_pdu_size``, ``require_called_aet``, ``acse_timeout``...).
    """
    from pynetdicom import AE
    from pynetdicom.presentation import PresentationContext

    ae = AE(ae_title=ae_title)
    for name, value in ae_attributes.items():
        setattr(ae, name, value)
    for context in contexts:
        if isinstance(context, PresentationContext):
            ae.add_supported_context(
                context.abstract_syntax,
                context.transfer_syntax,
                scu_role=context.scu_role,
                scp_role=context.scp_role,
            )
        elif isinstance(context, tuple):
            ae.add_supported_context(context[0], list(context[1]))
        else:
            ae.add_supported_context(context)
    # The socket listens when start_server returns: no probe connection, which would reach the
    # test's handlers as an extra EVT_CONN_OPEN.
    server = ae.start_server((LOCALHOST, 0), block=False, evt_handlers=list(handlers))
    return PynetdicomSCP(ae, server)


def wait_for_cancel(event, timeout: float = 60.0) -> bool:
    """Block a pynetdicom C-FIND/GET/MOVE handler until the requestor's C-CANCEL has arrived
    (bounded). pynetdicom only offers ``event.is_cancelled`` (set by its reader thread): no event
    to wait on. It is True once per C-CANCEL (reading it consumes it), so the answer is returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if event.is_cancelled:
            return True
        time.sleep(0.01)
    return False


def write_worklist_file(worklist_dir: Path, dataset: Any, name: str = "item") -> Path:
    """Save a worklist item (PS3.4 K.6 attributes) as ``worklist_dir/<name>.wl`` for wlmscpfs.

    ``dataset`` is a pydicom Dataset; it is written as a DICOM file in Explicit VR Little Endian.
    wlmscpfs ignores an item it finds incomplete: give at least PatientName, PatientID,
    AccessionNumber, RequestedProcedureID, RequestedProcedureDescription, StudyInstanceUID and one
    ScheduledProcedureStepSequence item with Modality, ScheduledStationAETitle,
    ScheduledProcedureStepStartDate/-Time, ScheduledProcedureStepID,
    ScheduledProcedureStepDescription and ScheduledPerformingPhysicianName (may be empty).
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.31"  # Modality Worklist Information Model - FIND
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = dataset.copy()
    dataset.file_meta = meta
    path = Path(worklist_dir) / f"{name}.wl"
    dataset.save_as(path, enforce_file_format=True)
    return path
