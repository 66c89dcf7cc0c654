"""Modality worklist query: "what is scheduled for this station?" (PS3.4 Annex K.6).

The query keys of a worklist are split between the top level (patient, visit, imaging
service request and requested procedure attributes) and the Scheduled Procedure Step
Sequence (0040,0100), which holds the station, modality and date keys (PS3.4 Table K.6-1).
``worklist_identifier`` puts each key where it belongs, so a user types
``Modality=CT ScheduledStationAETitle=CT01`` without thinking about sequences.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag

from ..net import uids
from ..net.applicationentity import ClientAE
from ..net.sopclass.worklist import modality_work_list_scu
from .common import Peer, describe_error

try:  # the Q/R operation defines the result of every C-FIND
    from .query import FindResult
except ImportError:  # pragma: no cover - only while operations/query.py does not exist
    @dataclass(frozen=True)
    class FindResult:  # type: ignore[no-redef]
        """Outcome of a C-FIND: final status, the matches received, an error sentence."""

        status: Any
        matches: list = field(default_factory=list)
        error: str | None = None

__all__ = ["FindResult", "worklist", "worklist_identifier", "SPS_KEYWORDS"]

#: Attributes of a Scheduled Procedure Step Sequence item (PS3.4 Table K.6-1).
SPS_KEYWORDS = frozenset({
    "ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepEndDate", "ScheduledProcedureStepEndTime", "Modality",
    "ScheduledPerformingPhysicianName", "ScheduledProcedureStepDescription",
    "ScheduledProtocolCodeSequence", "ScheduledProcedureStepID", "ScheduledStationName",
    "ScheduledProcedureStepLocation", "PreMedication", "RequestedContrastAgent",
    "ScheduledProcedureStepStatus", "CommentsOnTheScheduledProcedureStep",
    "ScheduledStationNameCodeSequence", "ScheduledStationGeographicLocationCodeSequence",
    "ScheduledPerformingPhysicianIdentificationSequence", "ScheduledSpecimenSequence",
    "AnatomicalOrientationType",
})

#: Return keys asked for when the user gives no value for them (universal matching,
#: PS3.4 C.2.2.2.3), so that every match shows who, what, where and when.
DEFAULT_RETURN_KEYS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
    "ReferringPhysicianName", "RequestedProcedureID", "RequestedProcedureDescription",
    "StudyInstanceUID",
    "ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
    "Modality", "ScheduledPerformingPhysicianName", "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID", "ScheduledStationName",
)

_INT_VRS = {"US", "SS", "UL", "SL", "UV", "SV"}


def _resolve(key: str) -> tuple[int, str]:
    """(tag, keyword) of a key given as a keyword, ``gggg,eeee``, ``(gggg,eeee)`` or ``ggggeeee``."""
    text = key.strip()
    tag = tag_for_keyword(text)
    if tag is None:
        digits = text.strip("()").replace(",", "").replace(" ", "")
        if len(digits) != 8:
            raise ValueError(f"unknown attribute {key!r} (use a DICOM keyword or gggg,eeee)")
        try:
            tag = int(digits, 16)
        except ValueError:
            raise ValueError(f"unknown attribute {key!r} (use a DICOM keyword or gggg,eeee)") from None
    return int(Tag(tag)), keyword_for_tag(tag) or ""


def _set(ds: Dataset, tag: int, value: Any) -> None:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        vr = "LO"  # private or unknown: text is the best guess for a query key
    if vr == "SQ":
        ds.add_new(tag, vr, DicomSequence([]))  # a universal sequence key: return it whole
        return
    if isinstance(value, str) and vr in _INT_VRS:
        value = int(value) if value.strip() else None
    if value == "":
        value = None
    ds.add_new(tag, vr, value)


def worklist_identifier(keys: Mapping[str, Any] | Dataset, *, default_keys: bool = True) -> Dataset:
    """The C-FIND identifier of a worklist query from ``keys`` (keyword or tag → value).

    Keys of the Scheduled Procedure Step go into the single item of its sequence
    (0040,0100); the others stay at the top level. With ``default_keys`` the common return
    keys are added empty. A pydicom Dataset is taken as it is (a copy). Raises ValueError
    for a key that is neither a keyword nor a tag.
    """
    if isinstance(keys, Dataset):
        return keys.copy()
    wanted: dict[int, tuple[str, Any]] = {}
    if default_keys:
        for keyword in DEFAULT_RETURN_KEYS:
            wanted[tag_for_keyword(keyword)] = (keyword, None)
    for key, value in keys.items():
        tag, keyword = _resolve(str(key))
        wanted[tag] = (keyword, value)
    ds = Dataset()
    item = Dataset()
    for tag in sorted(wanted):
        keyword, value = wanted[tag]
        _set(item if keyword in SPS_KEYWORDS else ds, tag, value)
    if len(item) or "ScheduledProcedureStepSequence" not in ds:
        ds.ScheduledProcedureStepSequence = DicomSequence([item])
    return ds


def worklist(peer: Peer, keys: Mapping[str, Any] | Dataset,
             on_match: Callable[[Dataset], None] | None = None,
             cancel: threading.Event | None = None) -> FindResult:
    """One Modality Worklist C-FIND (PS3.4 K.6): the scheduled procedure steps that match.

    ``on_match`` is called on this thread for each pending response's identifier; ``cancel``
    sends C-CANCEL-RQ and the result then holds what arrived before the peer's final status.
    Never raises for peer or network failures: ``error`` says what happened.
    """
    try:
        identifier = worklist_identifier(keys)
    except ValueError as exc:
        return FindResult(None, [], str(exc))
    ae = ClientAE(peer.calling_aet).add_scu(modality_work_list_scu)
    ae.timeout = peer.timeout
    ae.dimse_timeout = peer.timeout
    if cancel is not None and cancel.is_set():
        return FindResult(None, [], "cancelled")
    matches: list[Dataset] = []
    status = None
    try:
        with ae.request_association(peer.remote_ae()) as assoc:
            scu = assoc.get_scu(uids.MODALITY_WORK_LIST_INFORMATION_FIND)
            for ds, status in scu(identifier, assoc.next_message_id(), cancel):
                if status.is_pending and isinstance(ds, Dataset):
                    matches.append(ds)
                    if on_match is not None:
                        on_match(ds)
    except Exception as exc:  # every failure becomes a sentence, never a traceback
        return FindResult(status, matches, describe_error(exc, peer))
    if status is not None and status.is_cancel:
        return FindResult(status, matches, "cancelled")
    error = None if status is not None and status.is_success else f"{peer.describe()} answered {status}"
    return FindResult(status, matches, error)
