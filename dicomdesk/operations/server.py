"""The local receiving server: start and stop it for ``dicomdesk serve`` and the window.

``LocalServer`` builds a ``ServerAE`` (a ``net.applicationentity.AE``) from the settings,
composes the archive's hooks onto it (``archive.scp.ArchiveSCP``: storage, Q/R, worklist,
storage commitment), serves it in a background thread and reports through two plain
callbacks, ``on_association`` and ``on_stored``, called on the association threads (the GUI
re-emits them as Qt signals).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..archive.forwarding import ForwardEvent
from ..archive.scp import ArchiveSCP, StoredObject
from ..net.applicationentity import AE
from ..net.exceptions import AssociationRejectedError
from ..net.printable import printable
from ..net.sopclass import storage_scp, verification_scp
from ..net.uids import VERIFICATION_SOP_CLASS

logger = logging.getLogger(__name__)

__all__ = ["AssociationEvent", "ForwardEvent", "LocalServer", "ServerAE", "StoredObject",
           "access_policy", "bind_warning", "is_loopback", "tls_context"]


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


def _context_names(asce: Any) -> tuple[str, ...]:
    from ..naming import uid_name

    return tuple(sorted({uid_name(c.sop_class) for c in asce.accepted_contexts.values()}))


class ServerAE(AE):
    """The AE behind the local server: applies the access policy, reports association events
    through a callback, and forwards its service hooks to ``scp`` (an ``ArchiveSCP``, set
    before it serves): the archive answers them.

    ``policy`` (a ``security.AccessPolicy``) decides who may associate."""

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
        self.scp: ArchiveSCP | None = None
        #: results of our own commitment requests that a peer sends to this server's address
        self.commitment_reports: Any = None

    @property
    def archive(self) -> Any:
        """The archive the hooks serve from (None before ``scp`` is set)."""
        return self.scp.archive if self.scp is not None else None

    # -- association events
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
        if self.scp is not None:
            self.scp.association_ended(asce)
        self._report(asce, "released")

    def on_association_aborted(self, asce: Any, error: Any) -> None:
        if self.scp is not None:
            self.scp.association_ended(asce)
        self._report(asce, "aborted", str(error))

    # -- negotiation: storage contexts take every transfer syntax the archive can keep
    def scp_transfer_syntaxes(self) -> dict[str, list[str]]:
        return ArchiveSCP.storage_transfer_syntaxes(
            super().scp_transfer_syntaxes(),
            [uid for uid, service in self.supported_scp.items() if service is storage_scp])

    def scu_transfer_syntaxes(self) -> dict[str, list[str]]:
        from ..net import uids

        return ArchiveSCP.storage_transfer_syntaxes(super().scu_transfer_syntaxes(),
                                                    uids.STORAGE_SOP_CLASSES)

    # -- the service hooks, answered by the archive (``archive.scp``)
    def get_file(self, context: Any, command_set: Any) -> tuple[Any, int]:
        return self.scp.get_file(context, command_set)

    def get_file_for_message(self, context: Any, msg: Any) -> tuple[Any, int]:
        return self.scp.get_file_for_message(context, msg)

    def on_receive_store(self, context: Any, ds: Any) -> Any:
        return self.scp.on_receive_store(context, ds)

    def begin_receive_store(self, context: Any, ds: Any) -> Any:
        return self.scp.begin_receive_store(context, ds)

    def on_receive_store_failed(self, context: Any, ds: Any, reason: str) -> None:
        self.scp.on_receive_store_failed(context, ds, reason)

    def on_receive_find(self, context: Any, ds: Any) -> Any:
        return self.scp.on_receive_find(context, ds)

    def on_receive_get(self, context: Any, ds: Any) -> Any:
        return self.scp.on_receive_get(context, ds)

    def on_receive_move(self, context: Any, ds: Any, destination: str) -> Any:
        return self.scp.on_receive_move(context, ds, destination)

    def on_commitment_request(self, remote_ae: str, references: Any) -> Any:
        return self.scp.on_commitment_request(remote_ae, references)


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
        warning = bind_warning(s)
        if warning:
            logger.warning("%s", warning)
        ae.add_scp(verification_scp)
        from ..archive import Archive  # storage SCP: received objects go to the archive
        archive = None
        try:
            archive = Archive(Path(s.storage_dir), durable=getattr(s, "durable", True),
                              min_free_bytes=getattr(s, "min_free_bytes", 0),
                              max_inflated_size=getattr(s, "max_inflated_size", 0))
            # A killed predecessor leaves temp files and journal entries: bounded by the
            # objects that were in flight, so the port answers at once at any archive size.
            archive.recover()
            ae.scp = ArchiveSCP(ae, archive, nodes=self._load_nodes(),
                                max_object_size=getattr(s, "max_object_size", 0),
                                max_find_matches=getattr(s, "max_find_matches", 0),
                                on_stored=self.on_stored)
            ae.add_scp(storage_scp)
            self._add_archive_services(ae, ae.scp)
        except BaseException:  # e.g. a malformed address book: release the port and the index
            if archive is not None:
                archive.close()
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

    def _add_archive_services(self, ae: ServerAE, scp: ArchiveSCP) -> None:
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
            scp.worklist = WorklistStore(Path(worklist_dir))
            ae.add_scp(modality_work_list_scp)
        rules = tuple(getattr(s, "forward_rules", ()) or ())
        if rules:
            initial, maximum, attempts = self.forward_retry
            self.forwarder = Forwarder(
                scp.archive, scp.nodes, rules,
                _forward_sender(s.aet, getattr(s, "network_timeout", 30.0), s.max_pdu_length),
                on_forward=self.on_forward, initial_delay=initial, max_delay=maximum,
                max_attempts=attempts)
            user_on_stored = scp.on_stored
            forwarder = self.forwarder

            def on_stored(obj: StoredObject) -> None:  # queue before the C-STORE response
                if obj.error is None and obj.sop_instance_uid:
                    forwarder.on_stored(obj.sop_instance_uid, obj.calling_aet)
                if user_on_stored is not None:
                    user_on_stored(obj)

            scp.on_stored = on_stored

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
            # running associations end (and are logged) before the archive they use closes
            if not self.ae.end_associations():
                logger.warning("an association thread did not end within 5 s of the stop")
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
