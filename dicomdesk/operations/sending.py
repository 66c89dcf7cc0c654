"""Sending files to a peer: the Storage SCU use case (PS3.4 Annex B, C-STORE).

``send`` proposes, per association, the contexts ``plan_contexts`` computed from the files'
SOP classes and transfer syntaxes (several associations only when more than 128 contexts
are needed), streams each file from disk, preparing the next one while the peer answers
(and keeping several C-STOREs outstanding where the peer accepts an asynchronous operations
window, PS3.7 D.3.3.3), and reports per file. Statuses (PS3.4 B.2.3): success → "stored"; warnings B000/B006/B007 →
"stored" with the warning in the message; anything else → "failed" with the status
description. A file that cannot be sent (broken header, syntax the peer will not take, SOP
class refused) fails alone; if the association is lost, every file not yet confirmed is
"failed" and listed in ``SendResult.not_sent``, so a retry can send just those.

A ``Transform`` (``dicomdesk.transform.spec``) changes what is sent, never the files: a file to
de-identify, edit, decompress (the peer refused its compressed syntax; lossless ones by
default) or compress is rewritten into a temporary file (``transform.rewrite``, bounded memory)
which is then streamed like any file and removed. Files sent as they are keep the direct path
(page cache to socket). Outcomes say which files were sent decompressed or compressed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..net.applicationentity import ClientAE
from ..net.asceprovider import PC_RESULT_TEXT
from ..net.exceptions import NetDICOMError
from ..net.records import FrozenRecord, Record
from ..net.part10 import CONVERTIBLE_TRANSFER_SYNTAXES
from ..net.sopclass.storage_plan import AssociationPlan, choose_context, plan_contexts, proposed_transfer_syntaxes
from ..net.sopclass.storage_send import (PreparedStore, StorageNotSent, prepare_store, receive_any_store_status,
                                         send_prepared)
from ..net.statuses import Status
from .common import Peer, describe_error
from .files import FileInfo, inspect_for_sending

logger = logging.getLogger(__name__)

#: Progress callbacks while a file streams are coalesced to this interval (s).
PROGRESS_INTERVAL = 0.1
#: C-STOREs we propose to keep outstanding (PS3.7 D.3.3.3); the peer's answer decides.
MAX_OUTSTANDING = 8


class SendProgress(FrozenRecord):
    """One step of a send: file ``index`` (0-based) of ``total`` is in ``state``.

    ``bytes_done``/``bytes_total`` count the whole send (file sizes), so a progress bar and
    a rate follow them directly.
    """

    #: ``state``: "sending", "stored", "failed", "skipped"
    _fields = ("index", "total", "path", "state", "status", "message", "bytes_done", "bytes_total")

    def __init__(self, index: int, total: int, path: Path, state: str, status: Status | None = None,
                 message: str = "", bytes_done: int = 0, bytes_total: int = 0) -> None:
        self._assign(index, total, path, state, status, message, bytes_done, bytes_total)


class FileOutcome(FrozenRecord):
    """How one file ended: ``state`` is "stored", "failed" or "skipped"."""

    #: ``note``: what happened to the pixel data in flight ("decompressed from JPEG Lossless
    #: ...", "compressed to RLE Lossless"), empty when sent as stored
    _fields = ("path", "state", "status", "message", "note")

    def __init__(self, path: Path, state: str, status: Status | None = None, message: str = "",
                 note: str = "") -> None:
        self._assign(path, state, status, message, note)


class SendResult(FrozenRecord):
    """Counts and per-file outcomes of a send; ``error`` is set when the association failed."""

    #: ``mapping_path``: where the de-identification mapping (original -> new identifiers)
    #: was written
    _fields = ("stored", "failed", "skipped", "outcomes", "error", "warnings", "cancelled", "not_sent",
               "mapping_path")

    def __init__(self, stored: int, failed: int, skipped: int, outcomes: tuple[FileOutcome, ...] = (),
                 error: str | None = None, warnings: int = 0, cancelled: bool = False,
                 not_sent: tuple[Path, ...] = (), mapping_path: Path | None = None) -> None:
        self._assign(stored, failed, skipped, outcomes, error, warnings, cancelled, not_sent,
                     mapping_path)

    @property
    def decompressed(self) -> list[FileOutcome]:
        """Stored files that were sent decompressed (the peer refused their syntax)."""
        return [o for o in self.outcomes if o.state == "stored" and o.note.startswith("decompressed")]

    @property
    def failed_paths(self) -> list[Path]:
        """DICOM files that did not reach the peer (failed or cancelled): what to retry."""
        return [o.path for o in self.outcomes if o.state == "failed"] + \
            [o.path for o in self.outcomes if o.state == "skipped" and o.message == "cancelled"]

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.error is None and not self.cancelled


class _Run:
    """State of one ``send`` call: outcomes by index, byte counters, progress throttling."""

    def __init__(self, infos: list[FileInfo], progress: Callable[[SendProgress], None] | None,
                 transform: Any = None):
        self.infos = infos
        self.transform = transform
        self.deidentifier: Any = None
        #: per file index, the transfer syntax it is planned to travel in (``--compress``)
        self.wire_ts: dict[int, str] = {}
        self.notes: dict[int, str] = {}
        self.progress = progress
        self.outcomes: dict[int, FileOutcome] = {}
        self.bytes_total = sum(i.size for i in infos if i.sendable)
        self.bytes_done = 0
        self._last_emit = 0.0

    def emit(self, index: int, state: str, status: Status | None = None, message: str = "") -> None:
        if self.progress is None:
            return
        try:
            self.progress(SendProgress(index, len(self.infos), self.infos[index].path, state, status,
                                       message, self.bytes_done, self.bytes_total))
        except Exception:  # a listener's bug must not stop the send
            logger.exception("send progress callback failed")

    def finish(self, index: int, state: str, status: Status | None = None, message: str = "") -> None:
        note = self.notes.get(index, "") if state == "stored" else ""
        if note and not message:
            message = f"sent {note}"
        self.outcomes[index] = FileOutcome(self.infos[index].path, state, status, message, note)
        if state == "failed":
            logger.info("%s", message)
        self.emit(index, state, status, message)

    def streaming(self, index: int) -> Callable[[int], None]:
        """An ``on_bytes`` callback that advances ``bytes_done`` and emits at most 10/s."""
        def on_bytes(count: int) -> None:
            self.bytes_done += count
            now = time.monotonic()
            if now - self._last_emit >= PROGRESS_INTERVAL:
                self._last_emit = now
                self.emit(index, "sending")
        return on_bytes


def _as_info(item: FileInfo | str | os.PathLike[str]) -> FileInfo:
    return item if isinstance(item, FileInfo) else inspect_for_sending(Path(item))


def _describe_status(status: Status) -> str:
    comment = getattr(status, "error_comment", None)
    return f"{status}" + (f" ({comment})" if comment else "")


def send(peer: Peer, files: Iterable[FileInfo | str | os.PathLike[str]],
         progress: Callable[[SendProgress], None] | None = None,
         cancel: threading.Event | None = None, *, max_pdu_length: int = 65536,
         transform: Any = None, max_outstanding: int = MAX_OUTSTANDING) -> SendResult:
    """C-STORE every sendable file to ``peer``; never raises for peer or network failures.

    ``files`` are ``FileInfo``s from ``scan_paths`` (or paths, inspected here). Non-DICOM
    files are "skipped"; broken DICOM files "failed" without being sent. Extension:
    ``max_pdu_length`` is the Maximum Length we receive (PS3.8 D.1); ``transform`` a
    ``dicomdesk.transform.spec.Transform`` (default: none, lossless files decompressed when
    the peer refuses their syntax); ``max_outstanding`` the C-STOREs kept outstanding where
    the peer accepts an asynchronous operations window (PS3.7 D.3.3.3; 1: none is proposed).
    """
    infos = [_as_info(f) for f in files]
    run = _Run(infos, progress, transform)
    if transform is not None and transform.deidentify is not None:
        from ..transform.deidentify import Deidentifier

        run.deidentifier = Deidentifier(transform.deidentify, transform.allow_burned_in)
        if transform.mapping_path:
            run.deidentifier.continue_from(transform.mapping_path)
    to_send: list[int] = []
    for index, info in enumerate(infos):
        if not info.is_dicom:
            run.finish(index, "skipped", message=info.reason or "not a DICOM file")
        elif info.reason:
            run.finish(index, "failed", message=f"{info.path}: not sent: {info.reason}")
        else:
            to_send.append(index)

    compress_ts = transform.compress_syntax() if transform is not None else None
    for i in to_send:
        ts = infos[i].transfer_syntax
        run.wire_ts[i] = compress_ts if compress_ts and ts in CONVERTIBLE_TRANSFER_SYNTAXES else ts
    plans = plan_contexts([(infos[i].sop_class_uid, run.wire_ts[i]) for i in to_send])
    error: str | None = None
    cancelled = False
    for plan in plans:
        while error is None and not cancelled:
            # Each (SOP class, proposal) is in exactly one plan: the file goes with it.
            members = [i for i in to_send
                       if i not in run.outcomes and _in_plan(plan, infos[i], run.wire_ts[i])]
            if not members:
                break
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            error, cancelled, connected = _send_on_association(peer, plan, members, run, cancel,
                                                               max_pdu_length, max_outstanding)
            if error is not None and connected:
                # The association was lost after it was established: the file in flight is
                # failed; carry on with the others on a new association (a peer that aborts
                # on one bad object). If the peer is gone, the next connect says so.
                logger.info("association lost (%s); reconnecting for the remaining files", error)
                error = None
        if error is not None or cancelled:
            break

    reason_left = "cancelled" if cancelled else f"not sent: {error}" if error else "not sent"
    not_sent: list[Path] = []
    for index in to_send:
        if index not in run.outcomes:
            if cancelled and error is None:
                run.finish(index, "skipped", message="cancelled")
            else:
                run.finish(index, "failed", message=f"{infos[index].path}: {reason_left}")
            not_sent.append(infos[index].path)
    outcomes = tuple(run.outcomes[i] for i in range(len(infos)))
    mapping_path = None
    if run.deidentifier is not None and transform.mapping_path:
        mapping_path = run.deidentifier.write_mapping(transform.mapping_path)
    return SendResult(
        stored=sum(o.state == "stored" for o in outcomes),
        failed=sum(o.state == "failed" for o in outcomes),
        skipped=sum(o.state == "skipped" for o in outcomes),
        outcomes=outcomes, error=error,
        warnings=sum(o.state == "stored" and o.status is not None and o.status.is_warning for o in outcomes),
        cancelled=cancelled, not_sent=tuple(not_sent), mapping_path=mapping_path)


def _in_plan(plan: AssociationPlan, info: FileInfo, wire_ts: str | None = None) -> bool:
    ts = wire_ts or info.transfer_syntax
    return (info.sop_class_uid, proposed_transfer_syntaxes(ts)) in plan.contexts


def _refusal_reason(assoc: Any, sop_class: str) -> str:
    reasons = {assoc.context_def_list[pc_id].sop_class: reason
               for pc_id, reason in getattr(assoc, "refused_contexts", {}).items()
               if pc_id in assoc.context_def_list}
    reason = reasons.get(sop_class)
    text = PC_RESULT_TEXT.get(reason, "not accepted") if reason is not None else "not accepted"
    from ..naming import uid_name  # pydicom's UID table loads on this path only

    return f"the peer refused {uid_name(sop_class)} ({text})"


class _Turn(Record):
    """File ``index`` made ready before its turn on the association.

    Exactly one of the other fields is set: the prepared C-STORE; why no accepted context
    fits (the file fails without "sending"); why ``prepare_store`` refused it
    (``StorageNotSent``: "sending" then failed, as when it was prepared at its turn); or an
    unexpected error, raised only at the file's turn so it ends the association at the same
    point as before preparation moved ahead.
    """

    _fields = ("index", "prepared", "refused", "not_sent", "error")

    def __init__(self, index: int, prepared: PreparedStore | None = None, refused: str | None = None,
                 not_sent: str | None = None, error: Exception | None = None) -> None:
        self.index = index
        self.prepared = prepared
        self.refused = refused
        self.not_sent = not_sent
        self.error = error

    def close(self) -> None:
        if self.prepared is not None:
            self.prepared.close()


def _uncompressed_context(contexts: Sequence[Any]) -> Any | None:
    for preferred in CONVERTIBLE_TRANSFER_SYNTAXES:
        for ctx in contexts:
            if ctx.supported_ts == preferred:
                return ctx
    return None


def _transfer_plan(assoc: Any, run: _Run, index: int) -> tuple[Any | None, str | None, bool]:
    """(context, why none fits, whether the pixel data must be decoded or encoded) for a file.

    The planned syntax first (``--compress``: falls back to the file's own when refused),
    then the file's own, then, for a compressed file the peer refused, an uncompressed
    context when the decompress policy allows its syntax.
    """
    info = run.infos[index]
    contexts = assoc.contexts_for(info.sop_class_uid)
    wire = run.wire_ts.get(index, info.transfer_syntax)
    if wire != info.transfer_syntax:
        for ctx in contexts:
            if ctx.supported_ts == wire:
                return ctx, None, True
    ctx, why = choose_context(contexts, info.transfer_syntax)
    if ctx is not None:
        return ctx, None, False
    from ..transform.spec import may_decompress

    policy = run.transform.decompress if run.transform is not None else "lossless"
    fallback = _uncompressed_context(contexts)
    if fallback is not None and may_decompress(policy, info.transfer_syntax):
        return fallback, None, True
    if fallback is not None and policy == "lossless":
        why = f"{why}; it is lossy, decompressed only with --decompress all"
    return None, why, False


def _prepare_turn(assoc: Any, run: _Run, index: int) -> _Turn:
    """Choose the context for file ``index`` and prepare its C-STORE; reports nothing yet."""
    info = run.infos[index]
    ctx, why, recode = _transfer_plan(assoc, run, index)
    if ctx is None:
        if not assoc.contexts_for(info.sop_class_uid):
            why = _refusal_reason(assoc, info.sop_class_uid)
        return _Turn(index, refused=why)
    transform = run.transform
    rewrite = recode or (transform is not None and transform.rewrites(info.path))
    try:
        if not rewrite:
            return _Turn(index, prepare_store(ctx, str(info.path), assoc.next_message_id(),
                                              on_bytes=run.streaming(index), header=info.header))
        return _prepare_rewritten(assoc, run, index, ctx, recode)
    except StorageNotSent as exc:
        return _Turn(index, not_sent=str(exc))
    except Exception as exc:  # kept for the file's turn (see _Turn)
        return _Turn(index, error=exc)


def _prepare_rewritten(assoc: Any, run: _Run, index: int, ctx: Any, recode: bool) -> _Turn:
    """Rewrite file ``index`` for ``ctx`` into a temp file and prepare it (see module doc).

    The temp file is unlinked as soon as the prepared store holds it open, so it goes away
    when the file is sent or the preparation closed, whatever happens in between.
    """
    from ..transform.deidentify import DeidentifyRefused
    from ..transform.rewrite import RewriteError, rewrite_file

    info = run.infos[index]
    transform = run.transform
    try:
        result = rewrite_file(info.path, ctx.supported_ts, deidentifier=run.deidentifier,
                              edits=transform.edits_for(info.path) if transform is not None else (),
                              decode=recode)
    except (RewriteError, DeidentifyRefused, OSError) as exc:
        if recode and ctx.supported_ts != info.transfer_syntax and \
                run.wire_ts.get(index) == ctx.supported_ts:
            # --compress could not encode this one: send it in its own syntax instead
            run.wire_ts[index] = info.transfer_syntax
            return _prepare_turn(assoc, run, index)
        return _Turn(index, not_sent=str(exc))
    try:
        prepared = prepare_store(ctx, result.path, assoc.next_message_id(),
                                 on_bytes=run.streaming(index))
    finally:
        os.unlink(result.path)
    if result.pixel_note:
        run.notes[index] = result.pixel_note
    return _Turn(index, prepared)


def _send_on_association(peer: Peer, plan: AssociationPlan, members: Sequence[int], run: _Run,
                         cancel: threading.Event | None, max_pdu_length: int,
                         max_outstanding: int = MAX_OUTSTANDING) -> tuple[str | None, bool, bool]:
    """Send ``members`` on one association proposing ``plan``.

    Pipelined in this one thread: once file N is on the wire, file N+1 is prepared (opened,
    header read, structure checked, request built) before N's response is awaited, so our
    preparation overlaps the peer's handling of N instead of following it.

    We propose an Asynchronous Operations Window of ``max_outstanding`` (PS3.7 D.3.3.3).
    A peer that answers none (DCMTK, pynetdicom) or 1 gets one C-STORE at a time, exactly as
    before. A peer that accepts more (``dicomdesk serve``) gets up to that many C-STOREs
    before their responses: it receives object N+1 while it stores N and we read N+2, so
    both sides work at once. Responses are matched to their files by Message ID Being
    Responded To, whatever their order; a file's outcome is reported when its response
    comes. A prepared file that is never sent (cancel, association lost) is closed and left
    for the caller to retry; files sent but not answered when the association is lost fail.

    Returns (error sentence, cancelled, whether the association had been established).
    """
    ae = ClientAE(peer.calling_aet, max_pdu_length=max_pdu_length)
    ae.timeout = peer.timeout
    ae.dimse_timeout = peer.timeout
    ae.max_ops_invoked = max(1, max_outstanding)
    for sop_class, proposal in plan.contexts:
        ae.update_context_def_list([sop_class], transfer_syntaxes=list(proposal))
    try:
        assoc = ae.request_association(peer.remote_ae())
    except Exception as exc:  # rejected, refused, unreachable: a sentence for every file
        return describe_error(exc, peer), False, False
    current: int | None = None  # the file being sent now
    outstanding: dict[int, int] = {}  # Message ID -> file index, sent and not yet answered
    turn: _Turn | None = None
    queue = iter(members)

    def following() -> _Turn | None:
        index = next(queue, None)
        return None if index is None else _prepare_turn(assoc, run, index)

    def collect_one() -> None:
        msg_id, status = receive_any_store_status(assoc, outstanding)
        index = outstanding.pop(msg_id)
        if status.is_success:
            run.finish(index, "stored", status)
        elif status.is_warning:
            run.finish(index, "stored", status, f"stored with warning: {_describe_status(status)}")
        else:
            run.finish(index, "failed", status, f"{run.infos[index].path}: {_describe_status(status)}")

    try:
        with assoc:
            window = assoc.ops_window
            turn = following()
            while turn is not None:
                if len(outstanding) >= window:
                    collect_one()
                    continue
                if cancel is not None and cancel.is_set():
                    while outstanding:  # what was sent is answered: its outcome is known
                        collect_one()
                    return None, True, True
                index, info, prepared = turn.index, run.infos[turn.index], turn.prepared
                if turn.refused is not None:
                    run.finish(index, "failed", message=f"{info.path}: not sent: {turn.refused}")
                    turn = following()
                    continue
                current = index
                run.emit(index, "sending")
                base = run.bytes_done
                if turn.error is not None:
                    raise turn.error
                if prepared is None:
                    run.bytes_done = base + info.size
                    run.finish(index, "failed", message=f"{info.path}: not sent: {turn.not_sent}")
                    current, turn = None, following()
                    continue
                send_prepared(assoc, prepared)
                outstanding[prepared.message_id] = index
                current = None
                run.bytes_done = base + info.size
                turn = following()  # while the peer handles this file
            while outstanding:
                collect_one()
    except Exception as exc:  # NetDICOMError, OSError and anything else: never raise to the caller
        if not isinstance(exc, (NetDICOMError, OSError)):
            logger.exception("unexpected error while sending")
        error = describe_error(exc, peer)
        lost = list(outstanding.values()) + ([current] if current is not None else [])
        for index in sorted(lost):
            run.finish(index, "failed", message=f"{run.infos[index].path}: not stored: {error}")
        return error, False, bool(lost)
    finally:
        if turn is not None:
            turn.close()  # prepared but never sent: the file is closed, its outcome still open
    return None, False, True
