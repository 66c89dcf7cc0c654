"""Association doctor: propose what a task needs and explain every answer in words.

A failed send or an echo that works while storage fails usually comes down to the
association negotiation (PS3.8 7.1.1): which presentation contexts the peer accepted and
with which transfer syntax (PS3.8 7.1.1.13, result/reason in Table 9-18), what it said
in its user information (maximum length PS3.8 D.1, implementation class UID and version
name PS3.7 D.3.3.2-3, SCP/SCU role selection D.3.3.4, user identity D.3.3.7), or why it
rejected the association outright (PS3.8 7.1.1.9-11, Table 9-21).

``diagnose`` opens an association proposing one presentation context per
(SOP class, transfer syntax), so each answer concerns exactly one syntax, then releases it
without sending any DIMSE message. More than 128 contexts (PS3.8 9.3.2.2: odd IDs 1-255)
are spread over several associations. The pure ``explain`` turns the outcome into lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..naming import uid_name
from ..net import uids
from .common import Peer, describe_error

logger = logging.getLogger(__name__)

#: PS3.8 9.3.2.2: at most 128 presentation contexts (odd IDs 1..255) per association.
MAX_CONTEXTS = 128

#: PS3.8 Table 9-18: Result/Reason of a presentation context in the A-ASSOCIATE-AC.
CONTEXT_RESULTS = {
    0: "accepted",
    1: "refused by the user (the peer's configuration)",
    2: "refused: no reason given",
    3: "refused: abstract syntax not supported",
    4: "refused: transfer syntax not supported",
}

_JPEG_BASELINE = uids.JPEG_BASELINE_PROCESS_1
_JPEG_LOSSLESS = uids.JPEG_LOSSLESS_NON_HIERARCHICAL_FIRST_ORDER_PREDICTION_PROCESS_14_SELECTION_VALUE_1
_IMAGE_SYNTAXES = (*uids.UNCOMPRESSED_TRANSFER_SYNTAXES, _JPEG_BASELINE, _JPEG_LOSSLESS,
                   uids.JPEG_2000_IMAGE_COMPRESSION_LOSSLESS_ONLY, uids.JPEG_2000_IMAGE_COMPRESSION,
                   uids.RLE_LOSSLESS)

#: Image storage classes a typical peer is asked about (PS3.4 B.5), with compressed syntaxes.
STANDARD_IMAGE_CLASSES = (
    uids.CT_IMAGE_STORAGE, uids.MR_IMAGE_STORAGE, uids.CR_IMAGE_STORAGE,
    uids.DX_IMAGE_STORAGE_FOR_PRESENTATION, uids.ULTRASOUND_IMAGE_STORAGE,
    uids.ULTRASOUND_MULTI_FRAME_IMAGE, uids.SC_IMAGE_STORAGE, uids.RT_IMAGE_STORAGE,
)
#: Non-image storage classes and the other services: uncompressed syntaxes only.
STANDARD_OTHER_CLASSES = (
    uids.VERIFICATION_SOP_CLASS,
    uids.RT_DOSE_STORAGE, uids.RT_STRUCTURE_SET_STORAGE, uids.RT_PLAN_STORAGE,
    uids.BASIC_TEXT_SR_STORAGE, uids.ENHANCED_SR_STORAGE, uids.COMPREHENSIVE_SR_STORAGE,
    uids.ENCAPSULATED_PDF_STORAGE,
    uids.PATIENT_ROOT_FIND_SOP_CLASS, uids.PATIENT_ROOT_MOVE_SOP_CLASS, uids.PATIENT_ROOT_GET_SOP_CLASS,
    uids.STUDY_ROOT_FIND_SOP_CLASS, uids.STUDY_ROOT_MOVE_SOP_CLASS, uids.STUDY_ROOT_GET_SOP_CLASS,
    uids.MODALITY_WORK_LIST_INFORMATION_FIND, uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS,
)

#: What a user can do about the common A-ASSOCIATE-RJ reasons: (source, reason) → hint.
_REJECT_HINTS = {
    (1, 2): "the peer does not support the DICOM application context",
    (1, 3): "add our AE title {calling!r} (and address) to the peer's list of known callers",
    (1, 7): "the peer is not called {called!r}: use the AE title it is configured with (--aec)",
    (3, 1): "the peer is busy: try again later",
    (3, 2): "the peer has reached its association limit: try again later",
}


# ------------------------------------------------------------------------------------ values
@dataclass(frozen=True)
class ContextOutcome:
    """One proposed presentation context and the peer's answer to it.

    ``result`` is the Table 9-18 code, or None when the A-ASSOCIATE-AC did not mention the
    context; ``accepted_ts`` is the syntax the peer chose (only meaningful when accepted).
    """

    context_id: int
    sop_class: str
    proposed: tuple[str, ...]
    result: int | None
    accepted_ts: str | None = None

    @property
    def usable(self) -> bool:
        """Accepted with a syntax we proposed (else the context cannot be used)."""
        return self.result == 0 and self.accepted_ts in self.proposed


@dataclass(frozen=True)
class Negotiation:
    """What one association attempt established (or why it failed: ``error``)."""

    contexts: tuple[ContextOutcome, ...] = ()
    accepted: bool = False
    error: str | None = None
    reject: tuple[int, int, int] | None = None  # (result, source, reason) of an A-ASSOCIATE-RJ
    association_ms: float | None = None
    max_pdu: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    roles_proposed: tuple[str, ...] = ()
    role_replies: tuple[tuple[str, int, int], ...] = ()  # (SOP class, SCU role, SCP role)
    user_identity_proposed: bool = False
    user_identity_response: bytes | None = None  # None: no response sub-item in the AC
    released: bool = True


@dataclass(frozen=True)
class Diagnosis:
    """The doctor's report: every association attempt and the explanation in lines."""

    peer: Peer
    negotiations: tuple[Negotiation, ...] = ()
    lines: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the peer accepted the association(s) (whatever it said to each context)."""
        return bool(self.negotiations) and all(n.accepted for n in self.negotiations)

    def report(self) -> str:
        return "\n".join(self.lines)


# ------------------------------------------------------------------------------------ planning
def standard_contexts() -> list[tuple[str, str]]:
    """(SOP class, transfer syntax) pairs of the standard set, one context each."""
    pairs = [(c, ts) for c in STANDARD_OTHER_CLASSES[:1] for ts in uids.UNCOMPRESSED_TRANSFER_SYNTAXES]
    pairs += [(c, ts) for c in STANDARD_IMAGE_CLASSES for ts in _IMAGE_SYNTAXES]
    pairs += [(c, ts) for c in STANDARD_OTHER_CLASSES[1:] for ts in uids.UNCOMPRESSED_TRANSFER_SYNTAXES]
    return pairs


def contexts_for_files(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each files' SOP class with its own syntax, plus the uncompressed ones we can convert to
    (what a send proposes, PS3.5 A.1-A.3), one (class, syntax) per context, first-seen order."""
    wanted: dict[tuple[str, str], None] = {}
    by_class: dict[str, list[str]] = {}
    for sop_class, ts in pairs:
        by_class.setdefault(sop_class, []).append(ts)
    for sop_class, syntaxes in by_class.items():
        for ts in (*syntaxes, *uids.UNCOMPRESSED_TRANSFER_SYNTAXES):
            wanted[(sop_class, ts)] = None
    return list(wanted)


def split_contexts(pairs: Sequence[tuple[str, str]], max_contexts: int = MAX_CONTEXTS
                   ) -> list[list[tuple[str, str]]]:
    """Groups of at most ``max_contexts``, keeping a class's contexts together when they fit."""
    groups: list[list[tuple[str, str]]] = []
    by_class: dict[str, list[tuple[str, str]]] = {}
    for pair in pairs:
        by_class.setdefault(pair[0], []).append(pair)
    current: list[tuple[str, str]] = []
    for contexts in by_class.values():
        if current and len(current) + len(contexts) > max_contexts:
            groups.append(current)
            current = []
        for pair in contexts:
            if len(current) >= max_contexts:
                groups.append(current)
                current = []
            current.append(pair)
    if current:
        groups.append(current)
    return groups


# ------------------------------------------------------------------------------------ explaining
def _syntax_list(syntaxes: Iterable[str]) -> str:
    return ", ".join(uid_name(ts) for ts in syntaxes)


def explain_contexts(contexts: Sequence[ContextOutcome]) -> list[str]:
    """One line per SOP class and answer: accepted with which syntaxes, refused and why."""
    lines: list[str] = []
    by_class: dict[str, list[ContextOutcome]] = {}
    for ctx in contexts:
        by_class.setdefault(ctx.sop_class, []).append(ctx)
    for sop_class, outcomes in by_class.items():
        name = uid_name(sop_class)
        accepted = [c.accepted_ts for c in outcomes if c.usable]
        if accepted:
            lines.append(f"{name}: accepted with {_syntax_list(dict.fromkeys(accepted))}")
        odd = [c for c in outcomes if c.result == 0 and not c.usable]
        for c in odd:
            lines.append(f"{name}: accepted with {uid_name(c.accepted_ts or '?')}, which we did not "
                         f"propose (proposed {_syntax_list(c.proposed)}): unusable")
        refused: dict[int | None, list[str]] = {}
        for c in outcomes:
            if c.result != 0:
                refused.setdefault(c.result, []).extend(c.proposed)
        for result, syntaxes in refused.items():
            if result == 3 and not accepted:
                lines.append(f"{name}: refused: abstract syntax not supported")
            elif result is None:
                lines.append(f"{name}: no answer from the peer (proposed {_syntax_list(syntaxes)})")
            else:
                reason = CONTEXT_RESULTS.get(result, f"refused (result {result})")
                lines.append(f"{name}: {reason} (proposed {_syntax_list(dict.fromkeys(syntaxes))})")
    return lines


def _decompressed_by_default(ts: str) -> bool:
    """What ``send`` does by default with a compressed file whose syntax is refused."""
    from ..transform.spec import may_decompress

    return may_decompress("lossless", ts)


def explain_files(contexts: Sequence[ContextOutcome], files: Mapping[tuple[str, str], int]) -> list[str]:
    """What would happen to the files on a send: as they are, converted, or not at all."""
    if not files:
        return []
    accepted: dict[str, set[str]] = {}
    for c in contexts:
        if c.usable:
            accepted.setdefault(c.sop_class, set()).add(str(c.accepted_ts))
    as_is = converted = decompressed = impossible = 0
    for (sop_class, ts), count in files.items():
        taken = accepted.get(sop_class, set())
        uncompressed_taken = taken & set(uids.UNCOMPRESSED_TRANSFER_SYNTAXES)
        if ts in taken:
            as_is += count
        elif ts in uids.UNCOMPRESSED_TRANSFER_SYNTAXES and uncompressed_taken:
            converted += count
        elif uncompressed_taken and _decompressed_by_default(ts):
            decompressed += count
        else:
            impossible += count
    total = as_is + converted + decompressed + impossible
    parts = [f"{as_is} as they are"]
    if converted:
        parts.append(f"{converted} after conversion to an accepted uncompressed transfer syntax")
    if decompressed:
        parts.append(f"{decompressed} decompressed (lossless compression the peer does not accept)")
    if impossible:
        parts.append(f"{impossible} cannot be sent (class or transfer syntax refused)")
    return [f"Files: {total} selected; {', '.join(parts)}"]


def explain(peer: Peer, negotiations: Sequence[Negotiation], *,
            files: Mapping[tuple[str, str], int] | None = None,
            notes: Sequence[str] = ()) -> list[str]:
    """The whole report, pure: association result, user information, then each context."""
    who = peer.describe()
    lines: list[str] = [f"Association doctor: {peer.calling_aet} -> {who}"]
    lines.extend(notes)
    many = len(negotiations) > 1
    for index, n in enumerate(negotiations, 1):
        prefix = f"Association {index} of {len(negotiations)}: " if many else ""
        if not n.accepted:
            lines.append(f"{prefix}{n.error or 'association failed'}")
            if n.reject is not None:
                result, source, reason = n.reject
                lines.append(f"  (A-ASSOCIATE-RJ result {result}, source {source}, reason {reason}; "
                             "PS3.8 Table 9-21)")
                hint = _REJECT_HINTS.get((source, reason))
                if hint:
                    lines.append("  What to do: " + hint.format(calling=peer.calling_aet,
                                                                called=peer.called_aet))
            continue
        took = f" in {n.association_ms:.0f} ms" if n.association_ms is not None else ""
        accepted = sum(1 for c in n.contexts if c.usable)
        lines.append(f"{prefix}association accepted by {who}{took}: {accepted} of "
                     f"{len(n.contexts)} presentation context(s) accepted")
        if n.max_pdu is None:
            lines.append("Peer maximum PDU length: not given")
        else:
            lines.append("Peer maximum PDU length: "
                         + ("unlimited (0)" if n.max_pdu == 0 else f"{n.max_pdu} bytes"))
        lines.append(f"Peer implementation: class UID {n.implementation_class_uid or '(none)'}, "
                     f"version name {n.implementation_version_name or '(none)'}")
        if n.roles_proposed or n.role_replies:
            replies = {c: (scu, scp) for c, scu, scp in n.role_replies}
            for sop_class in dict.fromkeys([*n.roles_proposed, *replies]):
                reply = replies.get(sop_class)
                text = ("no reply (default roles: we are SCU only)" if reply is None else
                        f"SCU {'yes' if reply[0] else 'no'}, SCP {'yes' if reply[1] else 'no'}")
                lines.append(f"Role selection for {uid_name(sop_class)}: {text}")
        else:
            lines.append("Role selection: none proposed (default roles)")
        if not n.user_identity_proposed:
            lines.append("User identity: none proposed")
        elif n.user_identity_response is None:
            lines.append("User identity: proposed with a positive response requested; "
                         "the peer sent no response (it may have ignored the identity)")
        else:
            lines.append(f"User identity: accepted (server response of "
                         f"{len(n.user_identity_response)} byte(s))")
        lines.extend(explain_contexts(n.contexts))
        if not n.released:
            lines.append("The association could not be released cleanly (aborted)")
    if files:
        lines.extend(explain_files([c for n in negotiations for c in n.contexts], files))
    return lines


# ------------------------------------------------------------------------------------ I/O
def _negotiate(peer: Peer, group: Sequence[tuple[str, str]]) -> Negotiation:
    from ..net.applicationentity import ClientAE
    from ..net.exceptions import AssociationRejectedError

    ae = ClientAE(peer.calling_aet)
    ae.timeout = peer.timeout
    ae.dimse_timeout = peer.timeout
    for sop_class, ts in group:
        ae.update_context_def_list([sop_class], transfer_syntaxes=[ts])
    proposed = ae.copy_context_def_list()
    remote = peer.remote_ae()
    identity = bool(peer.username)
    if identity:
        remote["positive_response"] = True  # PS3.7 D.3.3.7.1: ask the peer to say yes
    started = time.perf_counter()
    try:
        assoc = ae.request_association(remote)
    except AssociationRejectedError as exc:
        return Negotiation(error=describe_error(exc, peer),
                           reject=(exc.result, exc.source, exc.diagnostic))
    except Exception as exc:  # connection refused, timeout, abort: a sentence, no traceback
        return Negotiation(error=describe_error(exc, peer))
    took = (time.perf_counter() - started) * 1000
    answers = {i.context_id: i for i in assoc.ac_pdu.variable_items
               if getattr(i, "item_type", None) == 0x21}
    contexts = []
    for pc_id, ctx in sorted(proposed.items()):
        item = answers.get(pc_id)
        ts_item = getattr(item, "ts_sub_item", None)
        contexts.append(ContextOutcome(
            pc_id, ctx.sop_class, tuple(ctx.supported_ts),
            None if item is None else item.result_reason,
            None if ts_item is None else str(ts_item.name)))
    info = assoc.peer
    response = None
    if info.user_identity is not None:
        response = bytes(getattr(info.user_identity, "server_response", b"") or b"")
    try:
        assoc.release()  # PS3.8 7.2: nothing was sent, so this ends the association at once
        released = not getattr(assoc, "is_aborted", False)
    except Exception as exc:  # the report is complete; say only that the release failed
        logger.info("release after diagnosis failed: %s", exc)
        released = False
        assoc.kill()
    return Negotiation(
        tuple(contexts), True, None, None, took, info.max_pdu_length,
        info.implementation_class_uid, info.implementation_version_name,
        tuple(sorted(ae.scp_role_classes)),
        tuple((c, int(scu), int(scp)) for c, (scu, scp) in info.role_selection.items()),
        identity, response, released)


def diagnose(peer: Peer, files: Iterable[Any] | None = None,
             cancel: threading.Event | None = None) -> Diagnosis:
    """Negotiate what ``files`` need (FileInfos or paths), or the standard set, and explain.

    Never raises for a peer or network failure: the Diagnosis carries the sentence.
    """
    notes: list[str] = []
    file_counts: dict[tuple[str, str], int] = {}
    if files is not None:
        infos = []
        paths = []
        for f in files:
            (paths if isinstance(f, (str, Path)) else infos).append(f)
        if paths:
            from .files import scan_paths

            infos.extend(scan_paths(paths, cancel=cancel))
        skipped = 0
        for info in infos:
            if getattr(info, "sendable", False):
                key = (info.sop_class_uid, info.transfer_syntax)
                file_counts[key] = file_counts.get(key, 0) + 1
            else:
                skipped += 1
        if skipped:
            notes.append(f"{skipped} file(s) left out: not DICOM or unreadable")
    if file_counts:
        pairs = contexts_for_files(file_counts)
        notes.append(f"Proposed: the {len({c for c, _ in file_counts})} SOP class(es) of the files, "
                     "each with the files' transfer syntax(es) and the uncompressed ones, "
                     "one presentation context per transfer syntax")
    else:
        if files is not None:
            notes.append("No sendable file among those selected: proposing the standard set")
        pairs = standard_contexts()
        notes.append("Proposed: the standard set (Verification, common storage classes, "
                     "Q/R FIND/MOVE/GET, Modality Worklist, Storage Commitment), "
                     "one presentation context per transfer syntax")
    groups = split_contexts(pairs)
    if len(groups) > 1:
        notes.append(f"{len(pairs)} presentation contexts needed: proposed over {len(groups)} "
                     f"associations (at most {MAX_CONTEXTS} each, PS3.8 9.3.2.2)")
    negotiations: list[Negotiation] = []
    for group in groups:
        if cancel is not None and cancel.is_set():
            notes.append("Cancelled before every association was tried")
            break
        negotiation = _negotiate(peer, group)
        negotiations.append(negotiation)
        if not negotiation.accepted:
            break  # the next association would fail the same way
    lines = explain(peer, negotiations, files=file_counts, notes=notes)
    error = next((n.error for n in negotiations if n.error), None)
    if not negotiations:
        error = "cancelled"
    return Diagnosis(peer, tuple(negotiations), tuple(lines), error)
