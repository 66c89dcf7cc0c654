"""``--set TAG=VALUE``: corrections applied to what is sent (patient reconciliation).

An edit is checked once, when it is parsed, against the data dictionary (PS3.6) and the VR's
rules (PS3.5 6.2, through pydicom's validation), so a value that would break the object is
refused before anything is sent: File Meta Information (group 0002, PS3.10 7.1) is never
edited, UIDs only when asked for (changing one splits a study or orphans references), and
sequences, binary values and private tags are not editable here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class EditError(ValueError):
    """An edit that cannot be applied (the message says why)."""


#: VRs whose value is text, checked by pydicom's value validation (PS3.5 6.2).
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UR", "UT"})
_INT_RANGES = {"US": (0, 0xFFFF), "SS": (-0x8000, 0x7FFF), "UL": (0, 0xFFFFFFFF),
               "SL": (-0x80000000, 0x7FFFFFFF), "UV": (0, 2**64 - 1), "SV": (-2**63, 2**63 - 1)}
_FLOAT_VRS = frozenset({"FL", "FD"})
_SINGLE_VALUE_VRS = frozenset({"LT", "ST", "UT", "UR"})
#: How PS3.5 Table 6.2-1 writes the values people most often get wrong.
_FORMAT_HINTS = {"DA": "YYYYMMDD", "TM": "HHMMSS.FFFFFF", "DT": "YYYYMMDDHHMMSS.FFFFFF&ZZXX",
                 "AS": "nnnD, nnnW, nnnM or nnnY, e.g. 045Y", "PN": "Family^Given^Middle^Prefix^Suffix"}
_TAG = re.compile(r"^\(?([0-9A-Fa-f]{4})[,]?([0-9A-Fa-f]{4})\)?$")


@dataclass(frozen=True)
class Edit:
    """Set the top-level attribute ``tag`` (VR ``vr``) to ``value`` (already converted)."""

    tag: int
    vr: str
    keyword: str
    value: Any

    def apply(self, ds: Any) -> None:
        if self.value is None or self.value == "":
            ds.add_new(self.tag, self.vr, None)
        else:
            ds.add_new(self.tag, self.vr, self.value)

    def __str__(self) -> str:
        return f"{self.keyword or f'({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})'}={self.value}"


def _resolve(name: str) -> tuple[int, str, str]:
    from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

    name = name.strip()
    match = _TAG.match(name)
    if match:
        tag = (int(match.group(1), 16) << 16) | int(match.group(2), 16)
    else:
        tag = tag_for_keyword(name)
        if tag is None:
            raise EditError(f"{name}: no such attribute keyword in the DICOM dictionary "
                            "(use a keyword such as PatientID, or a tag such as 0010,0020)")
    if tag >> 16 == 0x0002:
        raise EditError(f"{name}: the File Meta Information (group 0002) is written by the sender "
                        "and cannot be edited")
    if tag >> 16 == 0x0000:
        raise EditError(f"{name}: command set elements (group 0000) cannot be edited")
    if tag >> 16 == 0x7FE0 or (tag >> 16 == 0x0028 and (tag & 0xFFFF) < 0x0200):
        raise EditError(f"{name}: the pixel data and the attributes that describe it (rows, "
                        "columns, bits, photometric interpretation) cannot be edited")
    if (tag >> 16) % 2:
        raise EditError(f"{name}: private attributes cannot be edited (their VR is not known)")
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        raise EditError(f"{name}: not in the DICOM dictionary") from None
    return tag, vr, keyword_for_tag(tag) or ""


def parse_edit(text: str, *, allow_uids: bool = False) -> Edit:
    """``KEY=VALUE`` -> an ``Edit``; raises ``EditError`` with a sentence for a bad one."""
    if "=" not in text:
        raise EditError(f"{text!r}: expected TAG=VALUE (for example PatientID=123)")
    name, value = text.split("=", 1)
    tag, vr, keyword = _resolve(name)
    label = keyword or name.strip()
    if vr == "UI" and not allow_uids:
        raise EditError(f"{label}: UIDs are not edited unless asked for (--allow-uid-edits): "
                        "a changed UID splits a study or orphans references")
    if vr == "SQ":
        raise EditError(f"{label}: a sequence cannot be set from text")
    if vr not in _TEXT_VRS and vr not in _INT_RANGES and vr not in _FLOAT_VRS:
        raise EditError(f"{label}: its VR {vr} (binary) cannot be set from text")
    return Edit(tag, vr, keyword, _convert(label, vr, value))


def _convert(label: str, vr: str, value: str) -> Any:
    from pydicom import config
    from pydicom.valuerep import validate_value

    if value == "":
        return None
    parts = [value] if vr in _SINGLE_VALUE_VRS else value.split("\\")
    converted: list[Any] = []
    for part in parts:
        if vr in _INT_RANGES:
            try:
                number = int(part)
            except ValueError:
                raise EditError(f"{label}: {part!r} is not an integer (VR {vr})") from None
            low, high = _INT_RANGES[vr]
            if not low <= number <= high:
                raise EditError(f"{label}: {number} is outside the range of VR {vr} ({low}..{high})")
            converted.append(number)
        elif vr in _FLOAT_VRS:
            try:
                converted.append(float(part))
            except ValueError:
                raise EditError(f"{label}: {part!r} is not a number (VR {vr})") from None
        else:
            try:
                validate_value(vr, part, config.RAISE)
            except (ValueError, TypeError) as exc:
                hint = _FORMAT_HINTS.get(vr, "")
                raise EditError(f"{label}: {part!r} does not fit VR {vr}: {exc}"
                                + (f" (expected {hint})" if hint else "")) from None
            converted.append(part)
    return converted[0] if len(converted) == 1 else converted


def parse_edits(texts: list[str] | tuple[str, ...], *, allow_uids: bool = False) -> tuple[Edit, ...]:
    """Every ``--set``; raises ``EditError`` naming the first bad one."""
    return tuple(parse_edit(t, allow_uids=allow_uids) for t in texts)


def apply_edits(ds: Any, edits: tuple[Edit, ...]) -> None:
    """Apply the edits to ``ds``; an edited SOP Instance UID is mirrored in the meta group."""
    for edit in edits:
        edit.apply(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and any(e.tag == 0x00080018 for e in edits) and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
