"""Presentation contexts of a storage SCU (PS3.8 9.3.2.2, PS3.4 B.4.1): which to propose
for a set of files, and which accepted one a file goes on. Pure: no I/O.

``plan_contexts`` groups (SOP class, transfer syntax) pairs into contexts, split over several
associations when more than 128 are needed (odd IDs 1..255); ``choose_context`` picks the
accepted context a file is sent on (its own syntax, else a conversion between uncompressed
syntaxes).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .. import uids
from ..part10 import CONVERTIBLE_TRANSFER_SYNTAXES, transfer_syntax_name
from ..records import Record

#: At most 128 presentation contexts per association (PS3.8 9.3.2.2, odd IDs 1..255).
MAX_CONTEXTS = 128

#: The fallback context's syntaxes: what any file we can convert may be sent as (PS3.5 A.1/A.2).
FALLBACK_TRANSFER_SYNTAXES: tuple[str, ...] = (uids.EXPLICIT_VR_LITTLE_ENDIAN, uids.IMPLICIT_VR_LITTLE_ENDIAN)


def proposed_transfer_syntaxes(file_ts: str) -> tuple[str, ...]:
    """The context a file in ``file_ts`` is meant for: its own syntax alone.

    One syntax per context, so the peer's choice never forces a conversion of a file it
    could take as is (an SCP picks one syntax per context in its own order of preference).
    """
    return (file_ts,)


class AssociationPlan(Record):
    """The presentation contexts to propose on one association: (SOP class, (TS, ...))."""

    _fields = ("contexts",)

    def __init__(self, contexts: list[tuple[str, tuple[str, ...]]] | None = None) -> None:
        self.contexts = [] if contexts is None else contexts

    @property
    def sop_classes(self) -> set[str]:
        return {c for c, _ in self.contexts}


def contexts_for_class(transfer_syntaxes: Iterable[str]) -> list[tuple[str, ...]]:
    """Proposals for one SOP class: one context per syntax its files are in, plus a fallback
    context with the uncompressed syntaxes (for conversion) unless those are all covered."""
    own = list(dict.fromkeys(transfer_syntaxes))
    proposals = [proposed_transfer_syntaxes(ts) for ts in own]
    if not set(FALLBACK_TRANSFER_SYNTAXES) <= set(own):
        proposals.append(FALLBACK_TRANSFER_SYNTAXES)
    return proposals


def plan_contexts(pairs: Iterable[tuple[str, str]], max_contexts: int = MAX_CONTEXTS
                  ) -> list[AssociationPlan]:
    """Group files' (SOP class, transfer syntax) pairs into presentation contexts per association.

    Each SOP class gets ``contexts_for_class``; a class's contexts stay on one association
    (so its fallback is there when its own syntax is refused), and a new association starts
    when ``max_contexts`` would be exceeded (PS3.8 9.3.2.2). A class needing more than
    ``max_contexts`` alone is split. Pure: no I/O; order of first appearance.
    """
    by_class: dict[str, list[str]] = {}
    for sop_class, ts in pairs:
        by_class.setdefault(sop_class, [])
        if ts not in by_class[sop_class]:
            by_class[sop_class].append(ts)
    plans: list[AssociationPlan] = []
    current = AssociationPlan()
    for sop_class, syntaxes in by_class.items():
        proposals = contexts_for_class(syntaxes)
        if current.contexts and len(current.contexts) + len(proposals) > max_contexts:
            plans.append(current)
            current = AssociationPlan()
        for proposal in proposals:
            if len(current.contexts) >= max_contexts:
                plans.append(current)
                current = AssociationPlan()
            current.contexts.append((sop_class, proposal))
    if current.contexts:
        plans.append(current)
    return plans


def plan_for(plans: Sequence[AssociationPlan], sop_class: str, file_ts: str) -> int | None:
    """Index of the plan holding the context meant for a file (its own syntax's context)."""
    wanted = (sop_class, proposed_transfer_syntaxes(file_ts))
    for index, plan in enumerate(plans):
        if wanted in plan.contexts:
            return index
    return None


def choose_context(contexts: Sequence[Any], file_ts: str) -> tuple[Any | None, str | None]:
    """The accepted context to send a file in ``file_ts`` on, and why none fits.

    Prefer a context in the file's own syntax (sent as is), else an uncompressed one when the
    file is uncompressed too (converted). A compressed file with no context in its syntax
    cannot be sent: returns (None, reason naming the syntax).
    """
    for ctx in contexts:
        if ctx.supported_ts == file_ts:
            return ctx, None
    if file_ts in CONVERTIBLE_TRANSFER_SYNTAXES:
        for preferred in CONVERTIBLE_TRANSFER_SYNTAXES:
            for ctx in contexts:
                if ctx.supported_ts == preferred:
                    return ctx, None
    if not contexts:
        return None, "the peer accepted no presentation context for this SOP class"
    return None, (f"the peer does not accept the file's transfer syntax {transfer_syntax_name(file_ts)} "
                  f"({file_ts}) and it cannot be converted")

