"""The panels' operations as callables that a worker thread runs (echo, find, retrieve, send,
worklist, commitment, diagnose, scan, local-archive checks).

Each factory takes plain values (captured on the GUI thread) and returns a callable for
:meth:`dicomdesk.ui.workers.TaskTracker.run`. ``operations`` is imported inside those callables,
on the worker thread, so that the window opens even before every operation exists and so that the
network stack's import cost is never paid on the GUI thread.

It is not the window's only way below ``ui/``: ``server_host.py`` runs ``operations.LocalServer``,
the archive browser (``panels/archive_browser.py``, ``models/archive_tree.py``) reads the archive
and its index, the Nodes panel and ``nodebook.py`` read and write ``config``, and the Send panel
builds ``transform`` values. None of them opens a socket or imports ``dicomdesk.net``
(tests/test_import_contract.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dicomdesk.ui.workers import WorkerContext

__all__ = [
    "RetrieveItem",
    "RetrieveRun",
    "RetrieveStep",
    "Target",
    "diagnose_call",
    "echo_call",
    "find_call",
    "local_studies_call",
    "retrieve_call",
    "scan_call",
    "send_call",
    "target_from_node",
    "worklist_call",
    "CommitOutcome",
    "CommitState",
    "commit_call",
]

_log = logging.getLogger(__name__)

WorkerCall = Callable[[WorkerContext], Any]


@dataclass(frozen=True)
class Target:
    """Association parameters for one remote node (PS3.8 7.1.1: calling/called AE titles)."""

    name: str
    host: str
    port: int
    called_aet: str
    calling_aet: str
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    #: ``config.TLSSettings`` (frozen: cert, key, ca) for DICOM TLS (PS3.15 B.1), None for TCP
    tls: Any = None


def target_from_node(node: Any, calling_aet: str, timeout: float = 30.0) -> Target:
    """A config ``Node`` (its ``aet`` is the peer's, i.e. the Called AE title) as a Target.

    The node's user identity (PS3.7 D.3.3.7) and TLS files go with it, so every panel talks to
    a node the way the address book says, as the command line does.
    """
    return Target(
        name=node.name,
        host=node.host,
        port=int(node.port),
        called_aet=node.aet,
        calling_aet=calling_aet,
        username=getattr(node, "username", None),
        password=getattr(node, "password", None),
        timeout=timeout,
        tls=getattr(node, "tls", None),
    )


def _peer(target: Target) -> Any:
    from dicomdesk import operations

    return operations.Peer(
        host=target.host,
        port=target.port,
        called_aet=target.called_aet,
        calling_aet=target.calling_aet,
        timeout=target.timeout,
        username=target.username,
        password=target.password,
        tls=target.tls,
    )


def echo_call(target: Target) -> WorkerCall:
    """C-ECHO (PS3.4 Annex A) to one node; returns ``operations.EchoResult``."""

    def call(ctx: WorkerContext) -> Any:
        from dicomdesk import operations

        return operations.echo(_peer(target), cancel=ctx.cancel)

    return call


def diagnose_call(target: Target, files: Sequence[Any] | None = None) -> WorkerCall:
    """Association doctor (PS3.8 7.1.1): what the peer accepts of ``files`` (FileInfos or paths)
    or of a standard set; returns ``operations.Diagnosis``."""
    files = list(files) if files else None

    def call(ctx: WorkerContext) -> Any:
        from dicomdesk.operations.doctor import diagnose

        return diagnose(_peer(target), files=files, cancel=ctx.cancel)

    return call


def scan_call(paths: Sequence[str]) -> WorkerCall:
    """Read the headers of dropped files/folders; each FileInfo also goes out as a row."""

    def call(ctx: WorkerContext) -> Any:
        from dicomdesk import operations

        return operations.scan_paths(list(paths), on_file=ctx.emit_row, cancel=ctx.cancel)

    return call


def send_call(target: Target, files: Sequence[Any], transform: Any = None) -> WorkerCall:
    """C-STORE (PS3.4 Annex B) of ``files`` (FileInfos or paths); final per-file states are rows.

    ``transform``: a ``dicomdesk.transform.spec.Transform`` (de-identify, edits) or None."""
    files = list(files)

    def call(ctx: WorkerContext) -> Any:
        from dicomdesk import operations

        def progress(p: Any) -> None:
            ctx.report_progress(p)
            if getattr(p, "state", None) in ("stored", "failed", "skipped"):
                ctx.emit_row(p)

        return operations.send(_peer(target), files, progress=progress, cancel=ctx.cancel,
                               transform=transform)

    return call


def find_call(
    target: Target,
    level: str,
    keys: Mapping[str, str],
    model: str | None,
    to_row: Callable[[Any], Any],
) -> WorkerCall:
    """C-FIND (PS3.4 C.4.1): each Pending response's identifier becomes a row via ``to_row``.

    ``to_row`` runs on the worker thread and must turn the pydicom Dataset into an immutable value.
    """
    keys = dict(keys)

    def call(ctx: WorkerContext) -> Any:
        from dicomdesk import operations

        def on_match(ds: Any) -> None:
            ctx.emit_row(to_row(ds))

        return operations.find(
            _peer(target), level, keys, model=model, on_match=on_match, cancel=ctx.cancel,
            keep_matches=False,  # the rows are the results; holding the Datasets slows the GC
        )

    return call


@dataclass(frozen=True)
class RetrieveItem:
    """One selected tree row to retrieve: its level and unique keys (PS3.4 C.4.2.1.4)."""

    level: str
    keys: tuple[tuple[str, str], ...]

    def key_dict(self) -> dict[str, str]:
        return dict(self.keys)


@dataclass(frozen=True)
class RetrieveStep:
    """Progress of a multi-item retrieve: which item, and that item's pending counts."""

    index: int
    total: int
    progress: Any


@dataclass(frozen=True)
class RetrieveRun:
    """What a retrieve worker returns: one ``RetrieveResult`` per item retrieved before a
    cancel, and for C-GET the objects imported into the local archive (``StoredObject``s) and
    the files that could not be imported ((path, reason) pairs)."""

    results: tuple = ()
    imported: tuple = ()
    import_failed: tuple = ()


def retrieve_call(
    target: Target,
    method: str,
    items: Iterable[RetrieveItem],
    model: str | None,
    destination_aet: str = "",
    out_dir: str = "",
    archive_dir: str = "",
) -> WorkerCall:
    """C-MOVE to ``destination_aet`` (C.4.2) or C-GET into ``out_dir`` (C.4.3), item by item.

    A C-MOVE's objects reach the local server (and so its archive) by themselves; with
    ``archive_dir`` the files a C-GET wrote are moved into that archive and indexed after each
    item, so both methods end with the study in the local archive. Returns a ``RetrieveRun``.
    """
    items = tuple(items)

    def call(ctx: WorkerContext) -> RetrieveRun:
        from dicomdesk import operations
        from dicomdesk.operations import query as query_operations

        peer = _peer(target)
        results, imported, import_failed = [], [], []
        for index, item in enumerate(items):
            if ctx.cancel.is_set():
                break

            def progress(p: Any, index: int = index) -> None:
                ctx.report_progress(RetrieveStep(index, len(items), p))

            if method == "get":
                result = operations.get(
                    peer, item.level, item.key_dict(), out_dir, model=model,
                    progress=progress, cancel=ctx.cancel,
                )
                if archive_dir and result.files:
                    outcome = query_operations.import_into_archive(
                        result.files, archive_dir, calling_aet=target.called_aet)
                    imported += outcome.stored
                    import_failed += outcome.failed
            else:
                result = operations.move(
                    peer, destination_aet, item.level, item.key_dict(), model=model,
                    progress=progress, cancel=ctx.cancel,
                )
            results.append(result)
            ctx.emit_row(result)
        return RetrieveRun(tuple(results), tuple(imported), tuple(import_failed))

    return call


def local_studies_call(archive_dir: str, study_uids: Iterable[str]) -> WorkerCall:
    """Which of ``study_uids`` the local archive holds, with how many instances of each
    (a dict; its keys are the studies held). Reads the index off the GUI thread."""
    study_uids = tuple(study_uids)

    def call(ctx: WorkerContext) -> dict:
        from dicomdesk.operations import query as query_operations

        if not archive_dir:
            return {}
        return query_operations.study_instance_counts(archive_dir, study_uids)

    return call


def worklist_call(target: Target, keys: Mapping[str, str], to_row: Callable[[Any], Any]) -> WorkerCall:
    """Modality Worklist C-FIND (PS3.4 K.6) through ``operations.worklist`` (the function the
    CLI's ``dicomdesk worklist`` runs); each match becomes a row via ``to_row`` (worker thread)."""
    keys = dict(keys)

    def call(ctx: WorkerContext) -> Any:
        from dicomdesk import operations

        return operations.worklist(_peer(target), keys, on_match=lambda ds: ctx.emit_row(to_row(ds)),
                                   cancel=ctx.cancel)

    return call


class CommitState(StrEnum):
    """How one file's Storage Commitment ended (PS3.4 J.3.3: the peer's N-EVENT-REPORT lists it
    under Referenced SOP Sequence or Failed SOP Sequence)."""

    COMMITTED = "committed"
    FAILED = "failed"
    #: not asked for: the file is not a DICOM instance
    NOT_REQUESTED = "not requested"


@dataclass(frozen=True)
class CommitOutcome:
    """What a commitment worker returns: per file (path, SOP Instance UID, ``CommitState``,
    reason in words), and the ``operations.CommitResult``."""

    rows: tuple = ()
    result: Any = None


def commit_call(target: Target, files: Sequence[str], timeout: float = 60.0,
                listen_port: int | None = 0, reports: Any = None) -> WorkerCall:
    """Storage Commitment (PS3.4 J.3) of the files' instances through ``operations.commit``
    (as ``dicomdesk commit``): the N-EVENT-REPORT may come on the same association or on a new
    one to our listener, whose port is reported as progress, or to the running local server
    (``reports``: the address the peer knows for our AE title). Returns a ``CommitOutcome``."""
    files = [str(f) for f in files]

    def call(ctx: WorkerContext) -> CommitOutcome:
        from dicomdesk import operations
        from dicomdesk.operations.commitment import describe_reason, read_references

        uids = {}
        for path in files:
            try:
                uids[path] = read_references([path])[0][1]
            except ValueError as exc:
                uids[path] = ""
                _log.info("not asking commitment for %s: %s", path, exc)
        wanted = [p for p in files if uids[p]]
        result = operations.commit(_peer(target), wanted, timeout=timeout,
                                   listen_port=listen_port, on_listening=ctx.report_progress,
                                   cancel=ctx.cancel, reports=reports) if wanted else None
        committed = set(getattr(result, "committed", ()) or ())
        failed = dict(getattr(result, "failed", ()) or ())
        rows = []
        for path in files:
            uid = uids[path]
            if not uid:
                rows.append((path, "", CommitState.NOT_REQUESTED, "not a DICOM instance"))
            elif uid in committed:
                rows.append((path, uid, CommitState.COMMITTED, ""))
            elif uid in failed:
                rows.append((path, uid, CommitState.FAILED, describe_reason(failed[uid])))
            else:
                rows.append((path, uid, CommitState.FAILED,
                             getattr(result, "error", None) or "no result"))
        return CommitOutcome(tuple(rows), result)

    return call
