"""The local receiving server: an AE that reports every association and stored object.

``LocalServer`` is what ``dicomdesk serve`` and the server panel run. It owns one
``ServerAE`` (a ``net.applicationentity.AE``) serving in a background thread, and turns the
AE's hooks into two plain callbacks, ``on_association`` and ``on_stored``, called on the
association threads (the GUI re-emits them as Qt signals).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..archive.forwarding import ForwardEvent
from ..archive.scp import ArchiveHooks
from ..net.applicationentity import AE, write_meta, write_meta_of
from ..net.exceptions import AssociationRejectedError
from ..net.printable import printable
from ..net.sopclass import storage_scp, verification_scp
from ..net.statuses import C_STORE_OUT_OF_RESOURCES, SUCCESS, Status
from ..net.uids import VERIFICATION_SOP_CLASS

logger = logging.getLogger(__name__)

#: Final C-FIND status when ``max_find_matches`` cut the answer short: a Warning (PS3.7 C.1.3
#: Bxxx range); the Error Comment says how many matches were returned.
MAX_MATCHES_WARNING = 0xB000


@dataclass(frozen=True)
class AssociationEvent:
    """One step in an incoming association's life (for the log and the server window)."""

    peer_address: str
    calling_aet: str
    called_aet: str
    contexts: tuple[str, ...]
    state: str  # "open", "released", "aborted", "rejected"
    reason: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class StoredObject:
    """An object the server stored (or refused, when ``error`` is set)."""

    path: Path | None
    sop_class_uid: str
    sop_instance_uid: str
    patient_name: str
    study_uid: str
    calling_aet: str
    size: int
    error: str | None = None


def _context_names(asce: Any) -> tuple[str, ...]:
    from ..net.uids import sop_class_name

    return tuple(sorted({sop_class_name(c.sop_class) for c in asce.accepted_contexts.values()}))


class _BoundedWriter:
    """A received object's temp file that refuses to grow past ``limit`` bytes: the DIMSE
    decoder turns the OSError into "cannot write", answered A700 Out of Resources (PS3.4 B.2.3),
    and drops the remaining fragments instead of filling the disk."""

    def __init__(self, fp: Any, limit: int):
        self._fp = fp
        self._limit = limit

    def write(self, data: Any) -> int:
        if self._fp.tell() + len(data) > self._limit:
            raise OSError(errno.EFBIG, f"object larger than the {self._limit} bytes allowed")
        return self._fp.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class ServerAE(ArchiveHooks, AE):
    """The AE behind the local server: reports association events through a callback.

    ``ArchiveHooks`` answers C-FIND/C-GET/C-MOVE, worklist and storage commitment from
    ``self.archive``, ``self.nodes`` (address book) and ``self.worklist``. ``policy`` (a
    ``security.AccessPolicy``) decides who may associate; ``max_object_size`` and
    ``max_find_matches`` bound what one request may cost (0: no bound)."""

    # A burst of connections waits in the kernel's accept queue instead of SYN retries
    # (socketserver's default of 5 makes 200 simultaneous peers wait seconds to be refused).
    request_queue_size = 128

    def __init__(self, ae_title: str, port: int, *, address: str, max_pdu_length: int,
                 max_associations: int, on_association: Callable[[AssociationEvent], None] | None,
                 supported_ts: list[str] | None = None, ssl_context: Any = None):
        super().__init__(ae_title, port, supported_ts, max_pdu_length, address=address,
                         max_associations=max_associations, ssl_context=ssl_context)
        self._on_association = on_association
        self.policy: Any = None
        self.max_object_size = 0
        self.max_find_matches = 0
        # Storage SCP (PS3.4 B.2.2): the archive that keeps received objects, the listener for
        # stored objects, and the temp files still open, by id(fp): (incoming, receiving
        # association, command set UIDs) — leftovers of an aborted association are discarded.
        self.archive: Any = None
        self.on_stored: Callable[[StoredObject], None] | None = None
        self._incoming: dict[int, tuple[Any, Any, str, str]] = {}
        self._incoming_lock = threading.Lock()
        self.nodes: list[Any] = []  # address book: C-MOVE destinations, commitment reports
        self.worklist: Any = None   # archive.WorklistStore when a worklist folder is set
        #: results of our own commitment requests that a peer sends to this server's address
        self.commitment_reports: Any = None

    def on_commitment_response(self, transaction_uid: str, success: Any, failure: Any) -> None:
        """A commitment result (N-EVENT-REPORT, PS3.4 J.3.3) for a request this process made:
        the peer sent it to the address it knows for our AE title, this server's."""
        reports = self.commitment_reports
        if reports is None or not reports.deliver(transaction_uid, success, failure):
            from ..net.exceptions import EventHandlingError

            raise EventHandlingError(f"no storage commitment request {transaction_uid} waits here")

    def _report(self, asce: Any, state: str, reason: str = "") -> None:
        address = getattr(asce, "client_address", None) or ("?", 0)
        event = AssociationEvent(f"{address[0]}:{address[1]}", asce.calling_ae_title, asce.called_ae_title,
                                 _context_names(asce), state, reason,
                                 time.monotonic() - asce.started_at)
        level = logging.INFO if state in ("open", "released") else logging.WARNING
        logger.log(level, "association %s from %s (%s -> %s)%s%s", state, event.peer_address,
                   printable(event.calling_aet), printable(event.called_aet),
                   printable(f" contexts: {', '.join(event.contexts)}") if state == "open" else "",
                   f" after {event.duration_s:.3f} s" if state != "open" else "")
        if reason and state != "open":
            logger.log(level, "  reason: %s", printable(reason))
        if self._on_association is not None:
            try:
                self._on_association(event)
            except Exception:  # a listener's bug must not end the association
                logger.exception("on_association callback failed")

    def on_association_request(self, asce: Any, assoc: Any) -> None:
        """Apply the access policy (PS3.8 Table 9-21, PS3.7 D.3.3.7): refuse with its RJ fields."""
        if self.policy is None:
            return
        address = (getattr(asce, "client_address", None) or ("?", 0))[0]
        decision = self.policy.decide(asce.calling_ae_title, asce.called_ae_title, address,
                                      asce.peer.user_identity)
        if decision.admitted:
            if decision.user:
                logger.info("%s", decision.sentence)
            return
        logger.warning("%s", decision.sentence)
        raise AssociationRejectedError(*decision.rejection, decision.sentence)

    def on_association_accepted(self, asce: Any) -> None:
        if any(c.sop_class != VERIFICATION_SOP_CLASS for c in asce.accepted_contexts.values()):
            # data sets may come: pydicom loaded by one thread at a time (load_pydicom)
            from ..net.pydicom_tables import load_pydicom

            load_pydicom()
        self._report(asce, "open")

    def on_association_rejected(self, asce: Any, error: Any) -> None:
        reason = error.describe() if hasattr(error, "describe") else str(error)
        if hasattr(error, "describe") and str(error) != reason:  # the policy's sentence says why
            reason = f"{reason} — {error}"
        self._report(asce, "rejected", reason)

    def on_association_released(self, asce: Any) -> None:
        self._discard_leftovers(asce)
        self._report(asce, "released")

    def on_association_aborted(self, asce: Any, error: Any) -> None:
        self._discard_leftovers(asce)
        self._report(asce, "aborted", str(error))

    # -- Storage SCP (PS3.4 B.2.2): received bytes go straight into an archive temp file
    def scp_transfer_syntaxes(self) -> dict[str, list[str]]:
        """Storage classes accept every transfer syntax: the file is kept as received."""
        from ..net.sopclass.storage import STORAGE_SCP_TRANSFER_SYNTAXES  # pydicom's table

        result = super().scp_transfer_syntaxes()
        for uid, service in self.supported_scp.items():
            if service is storage_scp:
                result[uid] = list(STORAGE_SCP_TRANSFER_SYNTAXES)
        return result

    def get_file(self, context: Any, command_set: Any) -> tuple[Any, int]:
        """An archive temp file with the Part-10 header written; the DIMSE decoder appends
        the data set fragments to it as they arrive (called on the association's DUL thread)."""
        if self.archive is None:
            return super().get_file(context, command_set)
        return self._open_incoming(
            context, lambda fp: write_meta(fp, command_set, context.supported_ts),
            str(command_set.get("AffectedSOPInstanceUID", "") or ""),
            str(command_set.get("AffectedSOPClassUID", "") or ""))

    def get_file_for_message(self, context: Any, msg: Any) -> tuple[Any, int]:
        """``get_file`` from the C-STORE-RQ's fields, as the DIMSE decoder calls it: building
        a pydicom command set for every received object cost ~30-100 us. Falls back to
        ``get_file`` when a subclass overrides it or the UIDs are not plain strings."""
        sop_class, sop_instance = msg.affected_sop_class_uid, msg.affected_sop_instance_uid
        if self.archive is None or type(self).get_file is not ServerAE.get_file \
                or not isinstance(sop_class, str) or not isinstance(sop_instance, str):
            return self.get_file(context, msg.command_set)
        return self._open_incoming(
            context, lambda fp: write_meta_of(fp, sop_class, sop_instance, context.supported_ts),
            sop_instance, sop_class)

    def _open_incoming(self, context: Any, write_header: Callable[[Any], None], instance_uid: str,
                       class_uid: str) -> tuple[Any, int]:
        # The free-space floor is measured at commit; here only a known refusal (or --min-free).
        refusal = self.archive.refusal_reason(measure=self.archive.min_free_bytes > 0)
        if refusal is not None:  # OSError → A700, the fragments are dropped
            raise OSError(errno.ENOSPC, refusal)
        incoming = self.archive.open_incoming()
        try:
            write_header(incoming.fp)
        except BaseException:
            self.archive.discard_incoming(incoming)
            raise
        fp = _BoundedWriter(incoming.fp, self.max_object_size) if self.max_object_size else incoming.fp
        with self._incoming_lock:
            # the association that receives it: a hook reaches it through its context
            self._incoming[id(fp)] = (incoming, getattr(context, "association", None), instance_uid,
                                      class_uid)
        return fp, 0

    def _take_incoming(self, fp: Any) -> tuple[Any, Any, str, str] | None:
        with self._incoming_lock:
            return self._incoming.pop(id(fp), None)

    def _discard_leftovers(self, asce: Any) -> None:
        """Discard temp files of objects whose transfer never completed on this association."""
        if self.archive is None:
            return
        with self._incoming_lock:
            left = [key for key, (_, owner, _, _) in self._incoming.items() if owner is asce]
            entries = [self._incoming.pop(key) for key in left]
        for incoming, *_ in entries:
            logger.info("discarding incomplete object %s", incoming.path.name)
            self.archive.discard_incoming(incoming)

    def on_receive_store_failed(self, context: Any, ds: Any, reason: str) -> None:
        """The data set could not be received (storage_scp answers a failure): discard it."""
        entry = self._take_incoming(ds)
        if entry is not None and self.archive is not None:
            self.archive.discard_incoming(entry[0])
        self._notify_stored(StoredObject(None, entry[3] if entry else "", entry[2] if entry else "",
                                         "", "", self._calling_aet(context), 0, reason))

    def on_receive_store(self, context: Any, ds: Any) -> Any:
        """Commit the received file to the archive; the C-STORE status says how it went."""
        entry = self._take_incoming(ds)
        if entry is None or self.archive is None:
            return super().on_receive_store(context, ds)
        incoming, _, instance_uid, class_uid = entry
        calling = self._calling_aet(context)
        try:
            stored = self.archive.commit_incoming(incoming, calling_aet=calling,
                                                  expected_sop_instance_uid=instance_uid or None,
                                                  expected_sop_class_uid=class_uid or None)
        except Exception as exc:
            return self._store_outcome(None, exc, class_uid, instance_uid, calling)
        return self._store_outcome(stored, None, class_uid, instance_uid, calling)

    def begin_receive_store(self, context: Any, ds: Any) -> Future | None:
        """``on_receive_store`` out of line, for a sender that keeps several C-STOREs
        outstanding (``storage_scp`` asks only then): a future of a callable that gives the
        C-STORE status on the association's thread, or None to commit in line. Only a durable archive gains: its fsyncs overlap the transfer of
        the next objects (``archive/committer.py``); the status, and so the response, still
        waits until this object is durable."""
        archive = self.archive
        if archive is None or not archive.durable or type(self).on_receive_store is not ServerAE.on_receive_store:
            return None
        entry = self._take_incoming(ds)
        if entry is None:
            return None
        incoming, _, instance_uid, class_uid = entry
        calling = self._calling_aet(context)
        status: Future = Future()
        try:
            stored = archive.commit_incoming_later(incoming, calling_aet=calling,
                                                   expected_sop_instance_uid=instance_uid or None,
                                                   expected_sop_class_uid=class_uid or None)
        except Exception as exc:
            refused = exc  # ``exc`` is unbound after the block; the callable runs later
            status.set_result(lambda: self._store_outcome(None, refused, class_uid, instance_uid, calling))
            return status

        def settle(done: Future) -> None:
            # The outcome is told (``on_stored``) on the association's thread, as in line:
            # listeners count objects per association thread (ui/server_host.py).
            exc = done.exception()
            status.set_result(lambda: self._store_outcome(None if exc else done.result(), exc,
                                                          class_uid, instance_uid, calling))
        stored.add_done_callback(settle)
        return status

    def _store_outcome(self, stored: Any, error: BaseException | None, class_uid: str,
                       instance_uid: str, calling: str) -> Any:
        """The C-STORE status of one commit, told to ``on_stored`` as well."""
        from ..archive import ArchiveRefusal

        if isinstance(error, ArchiveRefusal):
            logger.warning("refused %s from %s: %s", printable(instance_uid), printable(calling),
                           printable(error.reason))
            self._notify_stored(StoredObject(None, class_uid, instance_uid, "", "", calling, 0, error.reason))
            status = Status(error.status, "C-STORE")
            status.error_comment = error.reason
            return status
        if error is not None:  # disk or index trouble: out of resources, never an abort
            logger.error("cannot store %s", instance_uid, exc_info=error)
            self._notify_stored(StoredObject(None, class_uid, instance_uid, "", "", calling, 0, str(error)))
            return C_STORE_OUT_OF_RESOURCES
        self._notify_stored(StoredObject(stored.path, stored.sop_class_uid, stored.sop_instance_uid,
                                         stored.patient_name, stored.study_uid, calling, stored.size))
        return SUCCESS

    def on_receive_find(self, context: Any, ds: Any) -> Any:
        """At most ``max_find_matches`` matches, then a final warning status (B000) whose Error
        Comment says the answer was cut short — PS3.4 C.4.1 leaves the limit to the SCP."""
        results = super().on_receive_find(context, ds)
        if not self.max_find_matches:
            return results
        return self._limited(results, self.max_find_matches)

    @staticmethod
    def _limited(results: Any, limit: int) -> Any:
        return _LimitedMatches(results, limit)

    @staticmethod
    def _calling_aet(context: Any) -> str:
        """The calling AE title of the association a hook's context belongs to."""
        return getattr(getattr(context, "association", None), "calling_ae_title", "") or ""

    def _notify_stored(self, obj: StoredObject) -> None:
        if self.on_stored is None:
            return
        try:
            self.on_stored(obj)
        except Exception:  # a listener's bug must not fail the C-STORE
            logger.exception("on_stored callback failed")


class _LimitedMatches:
    """At most ``limit`` pending matches of ``results``, then the B000 warning that says the
    answer was cut; ``ready()`` is passed on (``qr_find_scp`` gathers the ready ones)."""

    def __init__(self, results: Any, limit: int) -> None:
        self._results, self._limit = results, limit
        self._iterator = iter(results)
        self._count = 0
        self._done = False

    def __iter__(self) -> "_LimitedMatches":
        return self

    def __next__(self) -> tuple[Any, Any]:
        if self._done:
            raise StopIteration
        identifier, status = next(self._iterator)
        if identifier is not None and Status(int(status)).is_pending:
            if self._count >= self._limit:
                self._done = True
                logger.warning("C-FIND answer cut at %d matches (max_find_matches)", self._limit)
                close = getattr(self._results, "close", None)
                if close is not None:
                    close()
                warning = Status(MAX_MATCHES_WARNING, "C-FIND")
                warning.error_comment = f"more than {self._limit} matches; only {self._limit} returned"
                return None, warning
            self._count += 1
        return identifier, status

    def ready(self) -> int:
        ready = getattr(self._results, "ready", None)
        return 0 if self._done or ready is None else ready()


class LocalServer:
    """Start/stop the local server with its settings (see ``config.ServerSettings``)."""

    def __init__(self, settings: Any, on_association: Callable[[AssociationEvent], None] | None = None,
                 on_stored: Callable[[StoredObject], None] | None = None, *,
                 nodes_path: Path | None = None, nodes: list[Any] | None = None,
                 on_forward: Callable[[ForwardEvent], None] | None = None,
                 forward_retry: tuple[float, float, int] = (5.0, 600.0, 20)):
        """``nodes`` (or the address book at ``nodes_path``, default: the user's) name the C-MOVE
        destinations, storage commitment requesters and forwarding destinations;
        ``forward_retry`` is (first delay s, maximum delay s, attempts) of forwarding."""
        self.settings = settings
        self.on_association = on_association
        self.on_stored = on_stored
        self.on_forward = on_forward
        self.nodes_path = nodes_path
        self.nodes = nodes
        self.forward_retry = forward_retry
        self.ae: ServerAE | None = None
        self.forwarder: Any = None
        self._reconciler: threading.Thread | None = None
        self._stop_reconciling = threading.Event()

    def build_ae(self) -> ServerAE:
        """The configured AE, bound but not yet serving (raises OSError if the port is taken)."""
        s = self.settings
        policy = access_policy(s)
        ae = ServerAE(s.aet, s.port, address=s.bind, max_pdu_length=s.max_pdu_length,
                      max_associations=s.max_associations, on_association=self.on_association,
                      ssl_context=tls_context(s))
        ae.policy = None if policy.is_open else policy
        ae.max_object_size = getattr(s, "max_object_size", 0)
        ae.max_find_matches = getattr(s, "max_find_matches", 0)
        warning = bind_warning(s)
        if warning:
            logger.warning("%s", warning)
        ae.add_scp(verification_scp)
        from ..archive import Archive  # storage SCP: received objects go to the archive
        try:
            ae.archive = Archive(Path(s.storage_dir), durable=getattr(s, "durable", True),
                                 min_free_bytes=getattr(s, "min_free_bytes", 0),
                                 max_inflated_size=getattr(s, "max_inflated_size", 0))
            # A killed predecessor leaves temp files and journal entries: bounded by the
            # objects that were in flight, so the port answers at once at any archive size.
            ae.archive.recover()
            ae.on_stored = self.on_stored
            ae.add_scp(storage_scp)
            self._add_archive_services(ae)
        except BaseException:  # e.g. a malformed address book: release the port and the index
            if ae.archive is not None:
                ae.archive.close()
            ae.quit()
            self.forwarder = None
            raise
        for attr in ("acse_timeout", "dimse_timeout", "network_timeout"):
            if hasattr(s, attr):
                setattr(ae, {"acse_timeout": "timeout"}.get(attr, attr), getattr(s, attr))
        return ae

    def _load_nodes(self) -> list[Any]:
        from .. import config

        if self.nodes is not None:
            return list(self.nodes)
        if self.nodes_path is not None:
            return config.load_nodes(self.nodes_path)  # a broken named file is an error
        try:
            return config.load_nodes(config.default_nodes_path())
        except config.ConfigError as exc:
            logger.warning("address book not used: %s", exc)
            return []

    def _add_archive_services(self, ae: ServerAE) -> None:
        """Q/R (PS3.4 C), worklist (K.6) and storage commitment (J.3) SCPs from the archive,
        and the forwarder of received objects."""
        from ..archive import WorklistStore
        from ..archive.forwarding import Forwarder
        from ..net import uids
        from ..net.sopclass import (StorageCommitment, modality_work_list_scp, qr_find_scp,
                                    qr_get_scp, qr_move_scp, storage_scu)

        from .commitment import CommitmentReports
        from ..net.sopclass.commitment import storage_commitment_scu

        s = self.settings
        ae.nodes = self._load_nodes()
        for service in (qr_find_scp, qr_get_scp, qr_move_scp, StorageCommitment()):
            ae.add_scp(service)
        # the results of our own commitment requests may come here (a peer proposes the class
        # asking to be SCP, so we take the SCU role for it as well)
        ae.add_scu(storage_commitment_scu)
        ae.commitment_reports = CommitmentReports()
        # C-GET sends on the requestor's contexts with our SCU role (PS3.7 D.3.3.4); no own
        # contexts are defined, so all storage classes fit (add_scu would propose them).
        for uid in uids.STORAGE_SOP_CLASSES:
            ae.supported_scu[uid] = storage_scu
        worklist_dir = getattr(s, "worklist_dir", None)
        if worklist_dir is not None:
            ae.worklist = WorklistStore(Path(worklist_dir))
            ae.add_scp(modality_work_list_scp)
        rules = tuple(getattr(s, "forward_rules", ()) or ())
        if rules:
            initial, maximum, attempts = self.forward_retry
            self.forwarder = Forwarder(
                ae.archive, ae.nodes, rules,
                _forward_sender(s.aet, getattr(s, "network_timeout", 30.0), s.max_pdu_length),
                on_forward=self.on_forward, initial_delay=initial, max_delay=maximum,
                max_attempts=attempts)
            user_on_stored = ae.on_stored
            forwarder = self.forwarder

            def on_stored(obj: StoredObject) -> None:  # queue before the C-STORE response
                if obj.error is None and obj.sop_instance_uid:
                    forwarder.on_stored(obj.sop_instance_uid, obj.calling_aet)
                if user_on_stored is not None:
                    user_on_stored(obj)

            ae.on_stored = on_stored

    @property
    def port(self) -> int:
        return self.ae.port if self.ae is not None else self.settings.port

    def start(self) -> "LocalServer":
        if self.ae is None:
            self.ae = self.build_ae()
            self.ae.start()
            if self.forwarder is not None:
                self.forwarder.start()
            if self.ae.archive is not None and self.ae.archive.needs_full_scan:
                self._start_reconciling(self.ae.archive)
            logger.info("listening as %s on %s:%d", self.settings.aet, self.settings.bind, self.ae.port)
        return self

    def _start_reconciling(self, archive: Any) -> None:
        """An archive written before the journal existed may hold acknowledged files whose
        rows a crash lost: walk it once, beside the running server (echo, queries and stores
        are answered meanwhile; the files it finds become visible as it indexes them)."""
        self._stop_reconciling.clear()

        def run() -> None:
            logger.info("reconciling the archive folder with its index (once, in the background)")
            try:
                from ..net.pydicom_tables import load_pydicom

                load_pydicom()  # the scan reads headers; other threads may load it at once
                report = archive.reconcile(self._stop_reconciling)
            except Exception:  # a broken file system: the server keeps serving what it has
                logger.exception("reconciling the archive failed")
                return
            if not self._stop_reconciling.is_set():
                logger.info("archive reconciled: %d files indexed", report.indexed_files)

        self._reconciler = threading.Thread(target=run, name="archive-reconcile", daemon=True)
        self._reconciler.start()

    def stop(self) -> None:
        if self.ae is not None:
            self.ae.quit()
            if self._reconciler is not None:
                self._stop_reconciling.set()
                self._reconciler.join()
                self._reconciler = None
            if self.forwarder is not None:
                self.forwarder.stop()
                self.forwarder = None
            if self.ae.archive is not None:
                self.ae.archive.close()
            self.ae = None

    @property
    def storage_dir(self) -> Path:
        return Path(self.settings.storage_dir)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def is_loopback(address: str) -> bool:
    """True when ``address`` only accepts connections from this computer."""
    import ipaddress

    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip()).is_loopback
    except ValueError:
        return False


def bind_warning(settings: Any) -> str | None:
    """The sentence the window and ``dicomdesk serve`` show when the server listens beyond
    this computer (None on a loopback address)."""
    if is_loopback(settings.bind):
        return None
    open_policy = not (getattr(settings, "allowed_calling_aets", ()) or getattr(settings, "users_file", None))
    tls = getattr(settings, "tls_cert", None)
    return (f"The server listens on {settings.bind}: other computers on the network can connect"
            + ("" if tls else ", without encryption (no TLS)")
            + (", and no allow-list or users file restricts who" if open_policy else "") + ".")


def access_policy(settings: Any) -> Any:
    """The ``security.AccessPolicy`` of the settings; a bad users file is a ConfigError."""
    from .. import config
    from ..security import AccessPolicy, PolicyError

    try:
        return AccessPolicy.from_settings(
            settings.aet, getattr(settings, "allowed_calling_aets", ()),
            require_called_aet=getattr(settings, "require_called_aet", False),
            users_file=getattr(settings, "users_file", None))
    except PolicyError as exc:
        raise config.ConfigError(str(exc), field="users_file") from None


def tls_context(settings: Any) -> Any:
    """DICOM TLS server context (PS3.15 B.1) when a certificate is configured, else None."""
    cert = getattr(settings, "tls_cert", None)
    if not cert:
        return None
    from .. import config
    from ..net.tls import server_context

    key, ca = getattr(settings, "tls_key", None), getattr(settings, "tls_ca", None)
    try:
        return server_context(cert, key, ca)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise config.ConfigError(f"cannot use TLS certificate {cert}"
                                 f"{f' / key {key}' if key else ''}{f' / CA {ca}' if ca else ''}: "
                                 f"{getattr(exc, 'strerror', None) or exc}", field="tls_cert") from None


def _forward_sender(calling_aet: str, timeout: float, max_pdu_length: int) -> Callable[..., dict]:
    """The forwarder's ``send(node, paths)``: one ``operations.send`` (one association per batch),
    each path mapped to None when stored, else the reason."""
    from .common import Peer
    from .sending import send

    def send_to(node: Any, paths: list[Path]) -> dict[Path, str | None]:
        peer = Peer(node.host, node.port, called_aet=node.aet, calling_aet=calling_aet,
                    timeout=timeout, username=node.username, password=node.password)
        result = send(peer, paths, max_pdu_length=max_pdu_length or 65536)
        outcomes = {Path(o.path): (None if o.state == "stored" else (result.error or o.message or o.state))
                    for o in result.outcomes}
        return {p: outcomes.get(Path(p), result.error or "not sent") for p in paths}

    return send_to
