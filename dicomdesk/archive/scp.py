"""The archive as a small PACS: the service hooks of the local server's AE (PS3.4 B, C, J, K).

``ArchiveSCP`` holds every hook the SCP services of ``net/sopclass`` call; an AE is given one
and forwards its hooks to it (composed, not inherited: ``operations.server.ServerAE``). A hook
reaches the association it serves through the context it is given (``context.association``),
never by thread identity.

- ``get_file`` / ``get_file_for_message``: a received C-STORE's data set goes straight into an
  archive temp file (``ReceivedFile``); ``on_receive_store`` (or ``begin_receive_store``, out
  of line within an asynchronous operations window) commits it, and the C-STORE status says
  how it went (PS3.4 B.2.3); ``on_receive_store_failed`` discards one that did not arrive
  whole, and ``association_ended`` those an association left half received;
- ``on_receive_find``: C-FIND for the Patient Root and Study Root models (PS3.4 C.4.1) from the
  index, one pending response per match — FF00, or FF01 when the identifier held optional keys
  the index does not support (PS3.4 C.4.1.1.4) — and the Modality Worklist query (PS3.4 K.6)
  from a ``WorklistStore`` when the context's SOP class is the worklist's;
- ``on_receive_get`` / ``on_receive_move``: the files selected by the identifier's unique keys
  (PS3.4 C.4.2.2.1, C.4.3.2.1); a C-MOVE destination is looked up in the address book by AE
  title, and an unknown one answers A801 (PS3.4 C.4.2.1.4);
- ``on_commitment_request``: Storage Commitment (PS3.4 J.3) — instances present with their
  indexed size are committed; the N-EVENT-REPORT goes to the requester's address-book node, or
  on the same association when the requester is not in the book.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..net import uids
from ..net.applicationentity import write_meta, write_meta_of
from ..net.exceptions import EventHandlingError
from ..net.printable import printable
from ..net.statuses import (C_FIND_MATCHES_LIMITED, C_FIND_OUT_OF_RESOURCES, C_FIND_PENDING,
                            C_FIND_PENDING_WARNING, C_FIND_UNABLE_TO_PROCESS,
                            C_STORE_ELEMENTS_DISCARDED, C_STORE_OUT_OF_RESOURCES, SUCCESS, Status)
from .errors import ArchiveRefusal
from .matching import QueryError

if TYPE_CHECKING:  # pydicom loads on first use: `dicomdesk serve` starts without it
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredObject:
    """An object the server stored (or refused, when ``error`` is set): what ``on_stored``
    listeners are told (the server window, the forwarder, ``dicomdesk serve``'s log)."""

    path: Path | None
    sop_class_uid: str
    sop_instance_uid: str
    patient_name: str
    study_uid: str
    calling_aet: str
    size: int
    error: str | None = None


#: Query/Retrieve SOP classes → information model (PS3.4 C.6.1 Patient Root, C.6.2 Study Root).
QR_MODELS = {
    uids.PATIENT_ROOT_FIND_SOP_CLASS: "patient",
    uids.PATIENT_ROOT_GET_SOP_CLASS: "patient",
    uids.PATIENT_ROOT_MOVE_SOP_CLASS: "patient",
    uids.STUDY_ROOT_FIND_SOP_CLASS: "study",
    uids.STUDY_ROOT_GET_SOP_CLASS: "study",
    uids.STUDY_ROOT_MOVE_SOP_CLASS: "study",
}


def node_by_ae_title(nodes: Sequence[Any], aet: str, *, exact: bool = False) -> Any | None:
    """The address-book node with AE title ``aet`` (exact, then ignoring case), else by name.

    AE titles are compared without their non-significant spaces (PS3.5 6.2, VR AE) and NUL
    padding. ``exact`` (for titles a peer sends: C-MOVE destinations, storage commitment
    requesters) matches the AE title only, case-sensitively — never a node's name, so a peer
    cannot steer objects to a node by guessing how the operator named it.
    """
    wanted = (aet or "").rstrip("\0").strip() if isinstance(aet, str) else ""
    if not wanted:
        return None
    matches = [lambda n: n.aet.strip() == wanted]
    if not exact:
        matches += [lambda n: n.aet.casefold() == wanted.casefold(),
                    lambda n: n.name.casefold() == wanted.casefold()]
    for match in matches:
        for node in nodes:
            if match(node):
                return node
    return None


def remote_ae_of(node: Any, timeout: float | None = None) -> dict[str, Any]:
    """The reference's remote AE dict (``{"aet", "address", "port"}``) for an address-book node."""
    remote: dict[str, Any] = {"aet": node.aet, "address": node.host, "port": node.port}
    if timeout is not None:
        remote["timeout"] = timeout
    if getattr(node, "username", None):
        remote["username"] = node.username
        remote["password"] = node.password or ""
    return remote


def _failure(status: int, reason: str, command: str = "C-FIND") -> Status:
    result = Status(status, command)
    result.error_comment = reason[:64]  # Error Comment is LO (PS3.7 C.4)
    return result


class _BoundedWrite:
    """``fp.write`` refusing (EFBIG) a write that would take the file past ``limit`` bytes."""

    __slots__ = ("_fp", "_limit")

    def __init__(self, fp: Any, limit: int) -> None:
        self._fp, self._limit = fp, limit

    def __call__(self, data: Any) -> int:
        if self._fp.tell() + len(data) > self._limit:
            raise OSError(errno.EFBIG, f"object larger than the {self._limit} bytes allowed")
        return self._fp.write(data)


class ReceivedFile:
    """The file a C-STORE's data set is written into, as ``get_file`` hands it to the DIMSE
    decoder: an archive temp file (``incoming``), the request's UIDs, and the context (so
    the association) it arrives on. The store hook is given this very object back as its
    ``ds``: it carries what the hook needs, nothing is looked up.

    With ``limit`` it refuses to grow past that many bytes: the DIMSE decoder turns the
    OSError into "cannot write", answered A700 Out of Resources (PS3.4 B.2.3), and drops the
    remaining fragments instead of filling the disk."""

    __slots__ = ("incoming", "context", "sop_instance_uid", "sop_class_uid", "write")

    def __init__(self, incoming: Any, context: Any, sop_instance_uid: str, sop_class_uid: str,
                 limit: int = 0) -> None:
        self.incoming = incoming
        self.context = context
        self.sop_instance_uid = sop_instance_uid
        self.sop_class_uid = sop_class_uid
        # the temp file's own write unless bounded: no extra call per fragment
        self.write = _BoundedWrite(incoming.fp, limit) if limit else incoming.fp.write

    @property
    def association(self) -> Any:
        """The association receiving it (None once that is gone)."""
        return getattr(self.context, "association", None)

    def __getattr__(self, name: str) -> Any:  # flush, seek, close, closed, fileno, name …
        return getattr(self.incoming.fp, name)


class ArchiveSCP:
    """The hooks of an AE serving from the archive: storage, Q/R, worklist, commitment.

    ``archive`` keeps received objects and answers queries; ``nodes`` (address book) names
    C-MOVE destinations and commitment requesters; ``worklist`` (``WorklistStore`` or None)
    answers MWL. ``max_object_size`` and ``max_find_matches`` bound what one request may cost
    (0: no bound). ``on_stored`` is told every object stored or refused, on the association's
    thread. ``ae`` is the AE the hooks serve (its AE title and timeout)."""

    def __init__(self, ae: Any, archive: Any, *, nodes: Sequence[Any] = (), worklist: Any = None,
                 max_object_size: int = 0, max_find_matches: int = 0,
                 on_stored: Callable[[StoredObject], None] | None = None) -> None:
        self.ae = ae
        self.archive = archive
        self.nodes = list(nodes)
        self.worklist = worklist
        self.max_object_size = max_object_size
        self.max_find_matches = max_find_matches
        self.on_stored = on_stored
        #: Temp files being received, discarded when their association ends before their
        #: C-STORE is answered (``association_ended``).
        self._receiving: set[ReceivedFile] = set()
        self._receiving_lock = threading.Lock()

    # ------------------------------------------------------------------ negotiation
    @staticmethod
    def storage_transfer_syntaxes(result: dict[str, list[str]], classes: Iterable[str]
                                  ) -> dict[str, list[str]]:
        """``result`` (SOP class → transfer syntaxes) with every syntax we can store for the
        storage ``classes`` among its keys: a received file is kept as it came (C-STORE SCP),
        and C-GET sends stored files back in their own syntax, so a requestor's storage
        context proposed with the SCP role (PS3.7 D.3.3.4) may use any of them."""
        from ..net.sopclass.storage_receive import STORAGE_SCP_TRANSFER_SYNTAXES

        for uid in classes:
            if uid in result:
                result[uid] = list(STORAGE_SCP_TRANSFER_SYNTAXES)
        return result

    # ------------------------------------------------------------------ C-STORE
    def get_file(self, context: Any, command_set: Any) -> tuple[ReceivedFile, int]:
        """An archive temp file with the Part-10 header written; the DIMSE decoder appends
        the data set fragments to it as they arrive (called on the association's thread)."""
        return self._open(context, lambda fp: write_meta(fp, command_set, context.supported_ts),
                          str(command_set.get("AffectedSOPInstanceUID", "") or ""),
                          str(command_set.get("AffectedSOPClassUID", "") or ""))

    def get_file_for_message(self, context: Any, msg: Any) -> tuple[ReceivedFile, int]:
        """``get_file`` from the C-STORE-RQ's fields, as the DIMSE decoder calls it: building
        a pydicom command set for every received object cost ~30-100 us. Falls back to
        ``get_file`` when the UIDs are not plain strings."""
        sop_class, sop_instance = msg.affected_sop_class_uid, msg.affected_sop_instance_uid
        if not isinstance(sop_class, str) or not isinstance(sop_instance, str):
            return self.get_file(context, msg.command_set)
        return self._open(
            context, lambda fp: write_meta_of(fp, sop_class, sop_instance, context.supported_ts),
            sop_instance, sop_class)

    def _open(self, context: Any, write_header: Callable[[Any], None], instance_uid: str,
              class_uid: str) -> tuple[ReceivedFile, int]:
        archive = self.archive
        # The free-space floor is measured at commit; here only a known refusal (or --min-free).
        refusal = archive.refusal_reason(measure=archive.min_free_bytes > 0)
        if refusal is not None:  # OSError → A700, the fragments are dropped
            raise OSError(errno.ENOSPC, refusal)
        incoming = archive.open_incoming()
        try:
            write_header(incoming.fp)
        except BaseException:
            archive.discard_incoming(incoming)
            raise
        received = ReceivedFile(incoming, context, instance_uid, class_uid, self.max_object_size)
        with self._receiving_lock:
            self._receiving.add(received)
        return received, 0

    def _received(self, ds: Any) -> ReceivedFile | None:
        """``ds`` as the file this SCP opened, no longer being received (None: not ours)."""
        if not isinstance(ds, ReceivedFile):
            return None
        with self._receiving_lock:
            if ds not in self._receiving:
                return None
            self._receiving.discard(ds)
        return ds

    def association_ended(self, association: Any) -> None:
        """Discard the temp files of objects whose transfer never completed on ``association``."""
        with self._receiving_lock:
            left = [r for r in self._receiving if r.association is association]
            self._receiving.difference_update(left)
        for received in left:
            logger.info("discarding incomplete object %s", received.incoming.path.name)
            self.archive.discard_incoming(received.incoming)

    def on_receive_store_failed(self, context: Any, ds: Any, reason: str) -> None:
        """The data set could not be received (``storage_scp`` answers a failure): discard it."""
        received = self._received(ds)
        if received is not None:
            self.archive.discard_incoming(received.incoming)
        self._notify_stored(StoredObject(None, received.sop_class_uid if received else "",
                                         received.sop_instance_uid if received else "", "", "",
                                         _calling_aet(context), 0, reason))

    def on_receive_store(self, context: Any, ds: Any) -> Any:
        """Commit the received file to the archive; the C-STORE status says how it went."""
        received = self._received(ds)
        if received is None:
            return C_STORE_ELEMENTS_DISCARDED  # not a file of ours: nothing is kept
        calling = _calling_aet(context)
        instance_uid, class_uid = received.sop_instance_uid, received.sop_class_uid
        try:
            stored = self.archive.commit_incoming(received.incoming, calling_aet=calling,
                                                  expected_sop_instance_uid=instance_uid or None,
                                                  expected_sop_class_uid=class_uid or None)
        except Exception as exc:
            return self._store_outcome(None, exc, class_uid, instance_uid, calling)
        return self._store_outcome(stored, None, class_uid, instance_uid, calling)

    def begin_receive_store(self, context: Any, ds: Any) -> Future | None:
        """``on_receive_store`` out of line, for a sender that keeps several C-STOREs
        outstanding (``storage_scp`` asks only then): a future of a callable that gives the
        C-STORE status on the association's thread, or None to commit in line. Only a durable
        archive gains: its fsyncs overlap the transfer of the next objects
        (``archive/committer.py``); the status, and so the response, still waits until this
        object is durable."""
        archive = self.archive
        if not archive.durable:
            return None
        received = self._received(ds)
        if received is None:
            return None
        instance_uid, class_uid = received.sop_instance_uid, received.sop_class_uid
        calling = _calling_aet(context)
        status: Future = Future()
        try:
            stored = archive.commit_incoming_later(received.incoming, calling_aet=calling,
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

    def _notify_stored(self, obj: StoredObject) -> None:
        if self.on_stored is None:
            return
        try:
            self.on_stored(obj)
        except Exception:  # a listener's bug must not fail the C-STORE
            logger.exception("on_stored callback failed")

    # ------------------------------------------------------------------ C-FIND / MWL
    def on_receive_find(self, context: Any, ds: Dataset) -> Iterator[tuple[Dataset | None, Any]]:
        """(identifier, status) per match, then possibly a final failure status; at most
        ``max_find_matches`` matches, then a final warning whose Error Comment says the answer
        was cut short — PS3.4 C.4.1 leaves the limit to the SCP."""
        results = self._find(context, ds)
        if not self.max_find_matches:
            return results
        return _LimitedMatches(results, self.max_find_matches)

    def _find(self, context: Any, ds: Dataset) -> Iterator[tuple[Dataset | None, Any]]:
        if context.sop_class == uids.MODALITY_WORK_LIST_INFORMATION_FIND:
            return self._worklist_find(ds)
        model = QR_MODELS.get(context.sop_class)
        if model is None:
            raise EventHandlingError(f"C-FIND on {context.sop_class} is not served from the archive")
        level = str(ds.get("QueryRetrieveLevel", "") or "").strip().upper()
        try:
            query = self.archive.prepare_find(level, ds, model, retrieve_ae_title=self.ae.ae_title)
        except QueryError as exc:
            logger.info("C-FIND refused: %s", exc.reason)
            return iter([(None, _failure(exc.status, exc.reason))])
        pending = C_FIND_PENDING_WARNING if query.unsupported else C_FIND_PENDING
        if query.unsupported:
            logger.debug("C-FIND: unsupported optional keys %s", ", ".join(map(str, query.unsupported)))
        return self._matches(query, pending, _transfer_syntax(context))

    def _matches(self, query: Any, pending: int, transfer_syntax: str = "") -> "_Matches":
        """The matches, each encoded in the context's transfer syntax by the index where it
        can (bytes go out as they are, ``qr_find_scp``), else a Dataset."""
        return _Matches(self.archive.index.encoded_responses(query, transfer_syntax), pending,
                        query.level)

    def _worklist_find(self, ds: Dataset) -> Iterator[tuple[Dataset | None, Any]]:
        if self.worklist is None:
            logger.info("worklist query, but no worklist folder is configured")
            return
        count = 0
        try:
            for item in self.worklist.find(ds):
                count += 1
                yield item, C_FIND_PENDING
        except Exception as exc:  # a broken folder answers a failure, not an abort
            logger.warning("worklist query failed: %s", exc)
            yield None, _failure(C_FIND_UNABLE_TO_PROCESS, str(exc))
            return
        logger.info("worklist query: %d matches", count)

    # ------------------------------------------------------------------ C-GET / C-MOVE
    def _locate(self, context: Any, ds: Dataset, command: str) -> list[Any]:
        model = QR_MODELS.get(context.sop_class)
        if model is None:
            raise EventHandlingError(f"{command} on {context.sop_class} is not served from the archive")
        level = str(ds.get("QueryRetrieveLevel", "") or "").strip().upper()
        try:
            refs = self.archive.locate(level, ds, model)
        except QueryError as exc:  # the SCP answers the query's status (A900) with the reason
            logger.info("%s refused: %s", command, exc.reason)
            raise EventHandlingError(exc.reason, status=exc.status) from exc
        logger.info("%s %s level: %d instances", command, level, len(refs))
        return refs

    def on_receive_get(self, context: Any, ds: Dataset) -> tuple[int, Iterator[str]]:
        """(number of sub-operations, file paths) for the C-GET SCP to send back (PS3.4 C.4.3)."""
        refs = self._locate(context, ds, "C-GET")
        return len(refs), iter([str(r.path) for r in refs])

    def on_receive_move(self, context: Any, ds: Dataset, destination: str
                        ) -> tuple[dict[str, Any] | None, int, Iterator[str]]:
        """(destination AE dict or None → A801, number of sub-operations, file paths)."""
        node = node_by_ae_title(self.nodes, destination, exact=True)
        if node is None:
            logger.warning("C-MOVE destination %r is not in the address book", destination)
            return None, 0, iter(())
        refs = self._locate(context, ds, "C-MOVE")
        remote = remote_ae_of(node, self.ae.timeout)
        remote["aet"] = node.aet.strip()  # the Called AE of the sub-association
        logger.info("C-MOVE of %d instances to %s (%s:%d)", len(refs), remote["aet"], node.host, node.port)
        return remote, len(refs), iter([str(r.path) for r in refs])

    # ------------------------------------------------------------------ Storage Commitment
    def on_commitment_request(self, remote_ae: str, references: Iterable[Sequence[str]]
                              ) -> tuple[dict[str, Any] | None, list, list]:
        """Commit what the archive holds intact (PS3.4 J.3.2); the result goes to the
        requester's node of the address book, or back on this association (``None``)."""
        committed, failed = self.archive.commitment_status((r[0], r[1]) for r in references)
        node = node_by_ae_title(self.nodes, remote_ae, exact=True)
        logger.info("storage commitment from %s: %d committed, %d failed; report %s", remote_ae,
                    len(committed), len(failed),
                    f"to {node.aet}@{node.host}:{node.port}" if node else "on the same association")
        remote = remote_ae_of(node, self.ae.timeout) if node is not None else None
        return remote, committed, failed


def _calling_aet(context: Any) -> str:
    """The calling AE title of the association a hook's context belongs to."""
    return getattr(getattr(context, "association", None), "calling_ae_title", "") or ""


class _Matches:
    """``(identifier, pending status)`` per match of the index; an index error (SQLite: disk,
    locks) ends them with an A700 failure status, not an abort. ``ready()`` passes on how
    many the index has in hand, so ``qr_find_scp`` writes those it holds before a fetch."""

    def __init__(self, responses: Any, pending: int, level: str) -> None:
        self._responses, self._pending, self._level = responses, pending, level
        self._count = 0
        self._done = False

    def __iter__(self) -> "_Matches":
        return self

    def __next__(self) -> tuple[Dataset | bytes | None, Any]:
        if self._done:
            raise StopIteration
        try:
            identifier = next(self._responses)
        except StopIteration:
            self._done = True
            logger.info("C-FIND %s level: %d matches", self._level, self._count)
            raise
        except Exception as exc:  # sqlite3 errors: a failure status, not an abort
            self._done = True
            logger.warning("C-FIND failed after %d matches: %s", self._count, exc)
            return None, _failure(C_FIND_OUT_OF_RESOURCES, f"index error: {exc}")
        self._count += 1
        return identifier, self._pending

    def ready(self) -> int:
        return 0 if self._done else self._responses.ready()

    def close(self) -> None:
        self._done = True
        self._responses.close()



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
                warning = Status(C_FIND_MATCHES_LIMITED, "C-FIND")
                warning.error_comment = f"more than {self._limit} matches; only {self._limit} returned"
                return None, warning
            self._count += 1
        return identifier, status

    def ready(self) -> int:
        ready = getattr(self._results, "ready", None)
        return 0 if self._done or ready is None else ready()


def _transfer_syntax(context: Any) -> str:
    """The transfer syntax accepted for a presentation context ("" when unknown)."""
    ts = getattr(context, "supported_ts", None)
    if isinstance(ts, (list, tuple)):
        ts = ts[0] if ts else None
    return str(ts) if ts else ""
