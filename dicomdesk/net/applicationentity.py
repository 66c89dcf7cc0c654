"""Application entities: the public entry to the network stack (reference chapter 3).

* ``ClientAE``: SCU only; ``request_association(remote_ae)`` returns an established
  ``AssociationRequester`` (a context manager).
* ``AE``: also listens (a ``socketserver.ThreadingTCPServer``); each connection is served in
  an association thread (kept for the next connection once its association ends), at most
  ``max_associations`` associations at once; a request over the limit is answered with
  A-ASSOCIATE-RJ "local limit exceeded" (PS3.8 Table 9-21) instead of hanging. A connection
  takes a slot only when its A-ASSOCIATE-RQ arrives (after the TLS handshake): idle sockets
  wait as *pending* connections, bounded per source address and in all, the oldest closed to
  make room (``admission``), so they cannot lock a real requestor out. The accept loop waits on the
  listening socket and a wake-up pipe, never polls.

Subclasses customise behaviour through the ``on_*`` hooks and ``get_file``.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from . import uids
from .asceprovider import AssociationAcceptor, AssociationRequester
from .admission import PendingConnection, make_room
from .exceptions import EventHandlingError
from .negotiation import PContextDef
from .statuses import C_STORE_ELEMENTS_DISCARDED, SUCCESS

if TYPE_CHECKING:  # pydicom is imported only where a file meta is written by pydicom
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

#: Association threads kept waiting for the next connection once theirs has ended.
MAX_IDLE_ASSOCIATION_THREADS = 8
#: Longest TLS handshake; it runs before the connection holds an association slot.
TLS_HANDSHAKE_TIMEOUT_S = 5.0


def _plain_meta_bytes(command_set: Dataset, ts: str) -> bytes | None:
    """``part10.file_meta_bytes`` of a C-STORE-RQ's command set (None: not plain)."""
    from .part10 import file_meta_bytes  # here: a C-ECHO's start-up never loads the Part-10 reader

    sop_class = command_set.get(0x00000002)
    sop_instance = command_set.get(0x00001000)
    return file_meta_bytes(getattr(sop_class, "value", None), getattr(sop_instance, "value", None), ts)


def write_meta(fp: Any, command_set: Dataset, ts: str) -> None:
    """Write the Part-10 preamble and File Meta Information for a received C-STORE.

    Used by ``get_file`` so that the data set fragments written after it make a complete
    DICOM file (PS3.10 7.1) without the data set ever being held in memory.
    """
    plain = _plain_meta_bytes(command_set, str(ts))
    if plain is not None:
        fp.write(plain)
        return
    from .part10 import write_file_meta

    write_file_meta(fp, command_set.AffectedSOPClassUID, command_set.AffectedSOPInstanceUID, ts)


def write_meta_of(fp: Any, sop_class: str, sop_instance: str, ts: str) -> None:
    """``write_meta`` from the C-STORE-RQ's Affected SOP Class/Instance UIDs (message fields)."""
    from .part10 import write_file_meta

    write_file_meta(fp, sop_class, sop_instance, ts)


#: Outstanding requests an acceptor lets a requestor invoke when it proposes a window (PS3.7
#: D.3.3.3): enough to keep both sides of a C-STORE stream busy, small enough that a peer's
#: burst stays a few objects deep.
DEFAULT_MAX_OPS_PERFORMED = 16


class AEBase:
    """What every application entity has: transfer syntaxes, contexts, services, hooks.

    Variables: ``supported_ts``, ``timeout`` (connection and ACSE, s), ``max_pdu_length``,
    ``supported_scu`` and ``supported_scp`` (SOP class UID → service callable).
    Extension, the Asynchronous Operations Window (PS3.7 D.3.3.3): ``max_ops_invoked`` is
    how many requests this AE proposes to keep outstanding as requestor (1: no window item
    is proposed at all, every exchange is synchronous); ``max_ops_performed`` how many
    outstanding requests it lets a requestor invoke when it accepts (it performs them in
    order, one after the other; a peer that proposes no window gets none).
    """

    default_ts = [uids.EXPLICIT_VR_LITTLE_ENDIAN, uids.IMPLICIT_VR_LITTLE_ENDIAN,
                  uids.EXPLICIT_VR_BIG_ENDIAN]

    def __init__(self, supported_ts: Iterable[str] | None, max_pdu_length: int):
        self.supported_ts = list(supported_ts) if supported_ts else list(self.default_ts)
        self.timeout: float | None = 15
        self.dimse_timeout: float | None = 120
        self.network_timeout: float | None = None
        self.artim_timeout: float | None = 30
        self.max_pdu_length = max_pdu_length
        self.supported_scu: dict[str, Any] = {}
        self.supported_scp: dict[str, Any] = {}
        self.store_in_file: set[str] = set()
        self.scp_role_classes: set[str] = set()
        self.context_def_list: dict[int, PContextDef] = {}
        self._context_lock = threading.Lock()
        self.ae_title = ""
        self.max_ops_invoked = 1
        self.max_ops_performed = DEFAULT_MAX_OPS_PERFORMED

    # -- services and contexts
    def add_scu(self, service: Any, sop_classes: Iterable[str] | None = None) -> "AEBase":
        """Use ``service`` as SCU for its SOP classes (or ``sop_classes``); chainable."""
        classes = list(sop_classes if sop_classes is not None else getattr(service, "sop_classes", []))
        for uid in classes:
            self.supported_scu[uid] = service
        self.update_context_def_list(classes, getattr(service, "store_in_file", False))
        return self

    def update_context_def_list(self, sop_classes: Iterable[str], store_in_file: bool = False, *,
                                transfer_syntaxes: Iterable[str] | None = None,
                                scp_role: bool = False) -> None:
        """Add a presentation context per SOP class (odd IDs, PS3.8 9.3.2.2).

        Extensions: ``transfer_syntaxes`` overrides the AE's list for these contexts (a storage
        SCU proposes each file's own syntax); ``scp_role`` proposes the SCP role for them
        (SCP/SCU role selection, needed to receive C-GET's C-STORE sub-operations).
        """
        ts_list = list(transfer_syntaxes) if transfer_syntaxes is not None else list(self.supported_ts)
        with self._context_lock:
            for uid in sop_classes:
                if store_in_file:
                    self.store_in_file.add(uid)
                if scp_role:
                    self.scp_role_classes.add(uid)
                if any(c.sop_class == uid and list(c.supported_ts) == ts_list
                       for c in self.context_def_list.values()):
                    continue
                # IDs past 255 are allowed here (an AE may serve many classes as SCU on
                # associations it accepts); a request refuses to propose more than 128.
                pc_id = 2 * len(self.context_def_list) + 1
                self.context_def_list[pc_id] = PContextDef(pc_id, uid, ts_list)

    def copy_context_def_list(self) -> dict[int, PContextDef]:
        """A shallow copy of the presentation context definitions (thread-safe)."""
        with self._context_lock:
            return dict(self.context_def_list)

    def scp_transfer_syntaxes(self) -> dict[str, list[str]]:
        """SOP classes we serve as SCP → transfer syntaxes we accept (negotiation input)."""
        return {uid: self.supported_ts for uid in self.supported_scp}

    def scu_transfer_syntaxes(self) -> dict[str, list[str]]:
        """SOP classes we may use as SCU when a requestor asks to be SCP (C-GET sub-ops)."""
        return {uid: self.supported_ts for uid in self.supported_scu}

    def request_association(self, remote_ae: Mapping[str, Any]) -> AssociationRequester:
        """Open an association to ``remote_ae`` (keys: aet, address, port, username, password)."""
        assoc = AssociationRequester(self, self.max_pdu_length, remote_ae)
        try:
            assoc.request()
        except BaseException:
            assoc.kill()
            raise
        return assoc

    # -- storage of received data sets
    def get_file(self, context: PContextDef, command_set: Dataset) -> tuple[Any, int]:
        """File object for a received data set of a ``store_in_file`` SOP class, and the
        offset where the Part-10 file starts. Default: a temporary file (the service closes it).
        """
        import tempfile  # a server's need only (it also loads shutil, random)

        fp = tempfile.TemporaryFile()
        start = fp.tell()
        write_meta(fp, command_set, context.supported_ts)
        return fp, start

    # -- hooks (override in a subclass)
    def on_association_request(self, asce: Any, assoc: Any) -> None:
        """Extra checks of an A-ASSOCIATE-RQ; raise AssociationRejectedError to refuse."""

    def on_association_response(self, response: Any) -> None:
        """Called with the A-ASSOCIATE-AC after a request was accepted."""

    def on_association_accepted(self, asce: Any) -> None:
        """Extension: an incoming association was accepted."""

    def on_association_rejected(self, asce: Any, error: Any) -> None:
        """Extension: an incoming association was rejected (``error`` has the RJ fields)."""

    def on_association_released(self, asce: Any) -> None:
        """Extension: an incoming association ended by release."""

    def on_association_aborted(self, asce: Any, error: Any) -> None:
        """Extension: an incoming association ended by abort or connection loss."""

    def on_receive_echo(self, context: PContextDef) -> Any:
        """C-ECHO: answer Success."""
        return SUCCESS

    def on_receive_store(self, context: PContextDef, ds: Any) -> Any:
        """C-STORE: the default discards the data set (B006 Elements Discarded)."""
        return C_STORE_ELEMENTS_DISCARDED

    def on_receive_find(self, context: PContextDef, ds: Dataset) -> Iterable:
        """C-FIND: iterator of (result data set, status); the default finds nothing.

        Yield each match with a Pending status (``statuses.C_FIND_PENDING``); when the
        iterator ends, Success is sent. A non-pending status ends the search with that
        status; if it comes with a data set (``(identifier, SUCCESS)``, as code written for
        the reference may yield for its last match), that data set is first sent as one more
        Pending match, because a final C-FIND response carries no identifier (PS3.4 C.4.1).
        """
        return iter(())

    def on_receive_get(self, context: PContextDef, ds: Dataset) -> tuple[int, Iterable]:
        """C-GET (extension of the reference): (number of sub-operations, iterator of data sets
        or file names to send back on the same association)."""
        return 0, iter(())

    def on_receive_move(self, context: PContextDef, ds: Dataset, destination: str) -> tuple:
        """C-MOVE: (remote AE dict or None if unknown, number of sub-operations, iterator)."""
        return None, 0, iter(())

    def on_commitment_request(self, remote_ae: str, uids: Iterable) -> tuple:
        """Storage commitment request: (remote AE dict, committed UIDs, failed UIDs)."""
        raise EventHandlingError("storage commitment is not provided by this AE")

    def on_commitment_response(self, transaction_uid: str, success: Iterable, failure: Iterable) -> None:
        """Storage commitment result (N-EVENT-REPORT) received."""
        raise EventHandlingError("storage commitment results are not handled by this AE")


class ClientAE(AEBase):
    """SCU-only application entity: it never listens."""

    def __init__(self, ae_title: str, supported_ts: Iterable[str] | None = None,
                 max_pdu_length: int = 65536):
        super().__init__(supported_ts, max_pdu_length)
        self.ae_title = ae_title


class AE(AEBase, socketserver.ThreadingTCPServer):
    """Application entity in both roles, listening on ``(address, port)``.

    ``port`` 0 asks the OS for a free port (read it back from ``.port``). Extensions:
    ``address`` (default 127.0.0.1: open it wider on purpose), ``max_associations``,
    ``require_called_aet`` (refuse a called AE title other than ours), ``ssl_context``
    (DICOM TLS, see ``net.tls.server_context``).
    """

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, ae_title: str, port: int, supported_ts: Iterable[str] | None = None,
                 max_pdu_length: int = 65536, bind_and_activate: bool = True, *,
                 address: str = "127.0.0.1", max_associations: int = 32,
                 require_called_aet: bool = False, ssl_context: Any = None):
        AEBase.__init__(self, supported_ts, max_pdu_length)
        self.ae_title = ae_title
        self.max_associations = max_associations
        self.require_called_aet = require_called_aet
        self.ssl_context = ssl_context
        self.network_timeout = 60
        self._active = 0
        # Connections still waiting for their A-ASSOCIATE-RQ (or TLS handshake), by id.
        self._pending: dict[int, PendingConnection] = {}
        self.max_pending = max(2 * max_associations, 16)
        self.max_pending_per_address = max(self.max_pending // 2, 8)
        self._count_lock = threading.Lock()
        self._assoc_threads: set[threading.Thread] = set()
        #: The connection each association thread serves now (``end_associations``).
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._idle_workers: list[queue.SimpleQueue] = []  # inboxes of idle association threads
        self._serve_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        socketserver.ThreadingTCPServer.__init__(self, (address, port), None, bind_and_activate)
        #: Bound and listening? With ``bind_and_activate=False`` (the socketserver convention
        #: the reference inherits) the socket is made but not bound: ``start()`` — and so
        #: ``with ae:`` — binds and listens first, so the caller may set socket options
        #: (``allow_reuse_address``, ``socket.setsockopt``) in between.
        self._activated = bool(bind_and_activate)
        # Created after a successful bind: a port already taken must leak nothing.
        self._wake_r, self._wake_w = socket.socketpair()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def add_scp(self, service: Any, sop_classes: Iterable[str] | None = None) -> "AE":
        """Provide ``service`` as SCP for its SOP classes; chainable."""
        classes = list(sop_classes if sop_classes is not None else getattr(service, "sop_classes", []))
        for uid in classes:
            self.supported_scp[uid] = service
            if getattr(service, "store_in_file", False):
                self.store_in_file.add(uid)
        return self

    # -- accept loop without polling
    def _serve_loop(self) -> None:
        """Accept connections until ``quit``; waits on the socket and a wake-up pipe only."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    self._handle_request_noblock()

    def shutdown(self) -> None:
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._serve_thread is not None and self._serve_thread is not threading.current_thread():
            self._serve_thread.join(timeout=5)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        """One thread per connection, bounded. A connection holds no association slot until its
        A-ASSOCIATE-RQ has arrived (``_claim_slot``): until then it is *pending*, and pending
        connections are bounded per source address and in all; room for a new one is made by
        closing the oldest silent pending connection (or one stalled in its request)."""
        with self._count_lock:
            if not self._make_room_for(client_address[0]):
                request.close()
                logger.warning("connection from %s dropped: too many connections waiting for "
                               "their association request", client_address)
                return
            pending = PendingConnection(request, client_address[0], time.monotonic())
            self._pending[id(pending)] = pending
            # An idle association thread takes the connection at once: starting a thread
            # costs more than a whole C-ECHO association on loopback.
            inbox = self._idle_workers.pop() if self._idle_workers else None
        job = (request, client_address, pending)
        if inbox is not None:
            inbox.put(job)
            return
        thread = threading.Thread(target=self._association_worker, args=(job,),
                                  name=f"assoc-{client_address[0]}:{client_address[1]}", daemon=True)
        self._assoc_threads.add(thread)
        thread.start()

    def _make_room_for(self, host: str) -> bool:
        """Under ``_count_lock``: True when a new connection from ``host`` may wait for its
        request (``admission.make_room``)."""
        return make_room(self._pending, host, self.max_pending, self.max_pending_per_address)

    def _claim_slot(self, pending: "PendingConnection") -> tuple[int, int, int] | None:
        """The A-ASSOCIATE-RQ has arrived: take an association slot, or the RJ fields
        (rejected-transient, service-provider presentation, local limit exceeded)."""
        with self._count_lock:
            if pending.evicted or self._active >= self.max_associations:
                return (2, 3, 2)
            self._pending.pop(id(pending), None)
            pending.slot = True
            self._active += 1
        return None

    def _association_worker(self, job: tuple | None) -> None:
        """An association thread: serve one connection, then wait (blocked, never polling)
        for the next one while fewer than ``MAX_IDLE_ASSOCIATION_THREADS`` threads wait."""
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        try:
            while job is not None:
                request, client_address = job[0], job[1]
                threading.current_thread().name = f"assoc-{client_address[0]}:{client_address[1]}"
                self._serve_association(*job)
                with self._count_lock:
                    if self._stopping.is_set() or len(self._idle_workers) >= MAX_IDLE_ASSOCIATION_THREADS:
                        return
                    self._idle_workers.append(inbox)
                job = inbox.get()
        finally:
            self._assoc_threads.discard(threading.current_thread())

    def _serve_association(self, request: socket.socket, client_address: Any, pending: "PendingConnection") -> None:
        me = threading.current_thread()
        self._connections[me] = request
        try:
            connection = request
            # Nothing is read (no TLS, no DUL) before the peer speaks: a silent connection
            # is the first closed to make room, and ends with ARTIM (PS3.8 9.1.5).
            if not pending.wait_for_first_byte(self.artim_timeout):
                logger.info("connection from %s closed: no association request within %s s",
                            client_address, self.artim_timeout)
                return
            if self.ssl_context is not None:
                connection = self._tls_handshake(request, client_address, pending)
                if connection is None:
                    return
                self._connections[me] = connection
            acceptor = AssociationAcceptor(connection, client_address, self, self.max_pdu_length,
                                           refuse_reason=lambda: self._claim_slot(pending))
            acceptor.serve()
        except Exception:
            logger.exception("association thread for %s failed", client_address)
        finally:
            self._connections.pop(me, None)
            with self._count_lock:
                if pending.slot:
                    self._active -= 1
                else:
                    self._pending.pop(id(pending), None)
            for sock in {id(request): request, id(pending.sock): pending.sock}.values():
                try:
                    sock.close()
                except OSError:
                    pass

    def _tls_handshake(self, request: socket.socket, client_address: Any, pending: "PendingConnection") -> Any:
        """Server side of PS3.15 B.1, in the association's thread (never the accept loop),
        while the connection is still pending, within ``TLS_HANDSHAKE_TIMEOUT_S``."""
        from .tls import describe_tls_error

        request.settimeout(min(self.timeout or TLS_HANDSHAKE_TIMEOUT_S, TLS_HANDSHAKE_TIMEOUT_S))
        try:
            secure = self.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            with self._count_lock:
                pending.sock = secure  # an eviction now shuts down the socket the handshake uses
            if pending.evicted:
                raise ConnectionAbortedError("closed to make room for other connections")
            secure.do_handshake()
        except (OSError, ValueError) as exc:
            logger.warning("TLS handshake with %s failed: %s", client_address, describe_tls_error(exc))
            self.on_tls_failure(client_address, exc)
            return None
        secure.settimeout(None)
        return secure

    def on_tls_failure(self, client_address: Any, error: BaseException) -> None:
        """Extension: a client failed the TLS handshake (plain client, bad certificate)."""

    @property
    def active_associations(self) -> int:
        return self._active

    def activate(self) -> "AE":
        """Bind and listen, if ``bind_and_activate=False`` left that undone; idempotent."""
        if not self._activated:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                for sock in (self._wake_r, self._wake_w):
                    sock.close()
                raise
            self._activated = True
        return self

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Bind and listen if not done yet, then accept connections in this thread until
        ``quit`` (``poll_interval`` is accepted for socketserver's signature: nothing polls)."""
        self.activate()
        self._serve_loop()

    def start(self) -> "AE":
        """Bind and listen if not done yet, then serve in a background thread (what
        ``with ae:`` does)."""
        self.activate()
        if self._serve_thread is None:
            self._serve_thread = threading.Thread(target=self._serve_loop, name=f"ae-{self.ae_title}",
                                                  daemon=True)
            self._serve_thread.start()
        return self

    def quit(self) -> None:
        """Stop accepting connections and close the listening socket."""
        self.shutdown()
        with self._count_lock:
            idle, self._idle_workers = self._idle_workers, []
        for inbox in idle:
            inbox.put(None)  # an idle association thread ends
        self.server_close()
        for sock in (self._wake_r, self._wake_w):
            try:
                sock.close()
            except OSError:
                pass

    def end_associations(self, timeout: float = 5.0) -> bool:
        """After ``quit``: close the connection of every association still running (its
        thread sees the transport close and ends it as usual, logging how) and wait up to
        ``timeout`` s for every association thread to end. False when one is still running.

        Without it the threads (daemons) could outlive the server, or die with the process
        before saying how their association ended."""
        for sock in list(self._connections.values()):
            try:  # the C-level shutdown, also for a TLS socket: its thread owns the TLS state
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:  # closed already
                pass
        deadline = time.monotonic() + timeout
        for thread in self._assoc_threads.copy():
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._assoc_threads.copy()
                       if t is not threading.current_thread())

    def __enter__(self) -> "AE":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.quit()

