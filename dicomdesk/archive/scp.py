"""The archive as a small PACS: AE hooks answering Q/R, MWL and Storage Commitment from it.

``ArchiveHooks`` is a mixin for a ``net.applicationentity.AE`` subclass (the local server's
``ServerAE``).  The SCP services of ``net/sopclass`` do the DIMSE exchange and call these hooks:

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

The mixin expects ``self.archive`` (``Archive``), ``self.nodes`` (``list[config.Node]``) and
``self.worklist`` (``WorklistStore | None``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..net import uids
from ..net.exceptions import EventHandlingError
from ..net.statuses import Status
from .matching import STATUS_UNABLE_TO_PROCESS, QueryError

if TYPE_CHECKING:  # pydicom loads on first use: `dicomdesk serve` starts without it
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

STATUS_PENDING = 0xFF00
STATUS_PENDING_WARNING = 0xFF01  # PS3.4 C.4.1.1.4: optional keys not supported
STATUS_OUT_OF_RESOURCES = 0xA700

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


class ArchiveHooks:
    """AE hooks serving Query/Retrieve, Modality Worklist and Storage Commitment from the archive."""

    archive: Any
    nodes: list[Any]
    worklist: Any

    # ------------------------------------------------------------------ negotiation
    def scu_transfer_syntaxes(self) -> dict[str, list[str]]:
        """C-GET sends stored files back in their own transfer syntax, so a requestor's storage
        context proposed with the SCP role (PS3.7 D.3.3.4) may use any syntax we can store."""
        from ..net.sopclass.storage import STORAGE_SCP_TRANSFER_SYNTAXES

        result = super().scu_transfer_syntaxes()  # type: ignore[misc]
        for uid in uids.STORAGE_SOP_CLASSES:
            if uid in self.supported_scu:  # type: ignore[attr-defined]
                result[uid] = list(STORAGE_SCP_TRANSFER_SYNTAXES)
        return result

    # ------------------------------------------------------------------ C-FIND / MWL
    def on_receive_find(self, context: Any, ds: Dataset) -> Iterator[tuple[Dataset | None, Any]]:
        """(identifier, status) per match, then possibly a final failure status."""
        if context.sop_class == uids.MODALITY_WORK_LIST_INFORMATION_FIND:
            return self._worklist_find(ds)
        model = QR_MODELS.get(context.sop_class)
        if model is None:
            raise EventHandlingError(f"C-FIND on {context.sop_class} is not served from the archive")
        level = str(ds.get("QueryRetrieveLevel", "") or "").strip().upper()
        try:
            query = self.archive.prepare_find(level, ds, model,
                                              retrieve_ae_title=getattr(self, "ae_title", ""))
        except QueryError as exc:
            logger.info("C-FIND refused: %s", exc.reason)
            return iter([(None, _failure(exc.status, exc.reason))])
        pending = STATUS_PENDING_WARNING if query.unsupported else STATUS_PENDING
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
                yield item, STATUS_PENDING
        except Exception as exc:  # a broken folder answers a failure, not an abort
            logger.warning("worklist query failed: %s", exc)
            yield None, _failure(STATUS_UNABLE_TO_PROCESS, str(exc))
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
        node = node_by_ae_title(self.nodes or [], destination, exact=True)
        if node is None:
            logger.warning("C-MOVE destination %r is not in the address book", destination)
            return None, 0, iter(())
        refs = self._locate(context, ds, "C-MOVE")
        remote = remote_ae_of(node, getattr(self, "timeout", None))
        remote["aet"] = node.aet.strip()  # the Called AE of the sub-association
        logger.info("C-MOVE of %d instances to %s (%s:%d)", len(refs), remote["aet"], node.host, node.port)
        return remote, len(refs), iter([str(r.path) for r in refs])

    # ------------------------------------------------------------------ Storage Commitment
    def on_commitment_request(self, remote_ae: str, references: Iterable[Sequence[str]]
                              ) -> tuple[dict[str, Any] | None, list, list]:
        """Commit what the archive holds intact (PS3.4 J.3.2); the result goes to the
        requester's node of the address book, or back on this association (``None``)."""
        committed, failed = self.archive.commitment_status((r[0], r[1]) for r in references)
        node = node_by_ae_title(self.nodes or [], remote_ae, exact=True)
        logger.info("storage commitment from %s: %d committed, %d failed; report %s", remote_ae,
                    len(committed), len(failed),
                    f"to {node.aet}@{node.host}:{node.port}" if node else "on the same association")
        remote = remote_ae_of(node, getattr(self, "timeout", None)) if node is not None else None
        return remote, committed, failed


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
            return None, _failure(STATUS_OUT_OF_RESOURCES, f"index error: {exc}")
        self._count += 1
        return identifier, self._pending

    def ready(self) -> int:
        return 0 if self._done else self._responses.ready()

    def close(self) -> None:
        self._done = True
        self._responses.close()


def _transfer_syntax(context: Any) -> str:
    """The transfer syntax accepted for a presentation context ("" when unknown)."""
    ts = getattr(context, "supported_ts", None)
    if isinstance(ts, (list, tuple)):
        ts = ts[0] if ts else None
    return str(ts) if ts else ""
