"""PS3.15 Annex E: the Basic Application Level Confidentiality Profile's action table (E.1-1).

The Basic Profile column comes from ``dicom-anonymizer`` (KitwareMedical, BSD): its
``dicomfields_2026c`` module is Table E.1-1 of the 2026c edition, generated from the standard
(not typed by hand), and the package needs only pydicom. Of the candidates it is the most
current (``deid`` ships a hand-kept recipe, ``dicognito`` a heuristic anonymizer; ``idiscore``
carries every option column but pins pydicom 2 through ``dicomgenerator``).

That table has no option columns, so the four options users ask for are derived here from
the definitions in PS3.15 E.3 applied to the rows of the table and pydicom's data dictionary
(the standard's VRs), never from a list of attributes:

* Retain Longitudinal Temporal Information with Full Dates (E.3.6, 113106): every row whose
  VR is DA, DT or TM is kept.
* Retain Patient Characteristics (E.3.4, 113108): rows of the Patient group (0010) holding a
  characteristic rather than an identity: coded or numeric VRs (AS, CS, DS, US), such as
  age, sex, size, weight, smoking and pregnancy status.
* Retain Device Identity (E.3.3, 113109): rows naming a device or station (keywords with
  Device, Station, Detector, Serial, Cassette, Plate, Gantry, Transducer, Generator, Machine,
  Source Serial).
* Clean Descriptors (E.3.5, 113105): free-text descriptions, comments and labels are kept
  after cleaning (``C``): every identifying value removed from the object is struck from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

#: Table categories of dicom-anonymizer -> the action code of Table E.1-1.
_CATEGORY_ACTIONS = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z", "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}

#: The edition of PS3.15 the table was generated from (recorded in De-identification Method).
TABLE_EDITION = "2026c"

OPTIONS = ("retain-dates", "retain-patient-characteristics", "retain-device-identity",
           "clean-descriptors")

#: PS3.16 CID 7050 codes (pydicom.sr.codedict keywords) of the profile and each option.
PROFILE_CODE = "BasicApplicationConfidentialityProfile"
OPTION_CODES = {
    "retain-dates": "RetainLongitudinalTemporalInformationFullDatesOption",
    "retain-patient-characteristics": "RetainPatientCharacteristicsOption",
    "retain-device-identity": "RetainDeviceIdentityOption",
    "clean-descriptors": "CleanDescriptorsOption",
}

_DEVICE_WORDS = re.compile(r"Device|Station|Detector|Serial|Cassette|Plate|Gantry|Transducer|"
                           r"Generator|Machine")
_DESCRIPTOR_WORDS = re.compile(r"(Description|Comments?|Label|Reasons?|Text)$")
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})


@dataclass(frozen=True)
class Row:
    """One row of Table E.1-1: a tag (with masks for repeating groups) and its action."""

    group: int
    element: int
    action: str
    group_mask: int = 0xFFFF
    element_mask: int = 0xFFFF

    def matches(self, tag: int) -> bool:
        return ((tag >> 16) & self.group_mask) == (self.group & self.group_mask) and \
            (tag & 0xFFFF & self.element_mask) == (self.element & self.element_mask)

    @property
    def tag(self) -> int:
        return (self.group << 16) | self.element


@lru_cache(maxsize=1)
def basic_profile_rows() -> tuple[Row, ...]:
    """Every row of Table E.1-1 with its Basic Profile action."""
    from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as table

    rows: list[Row] = []
    for category, action in _CATEGORY_ACTIONS.items():
        for entry in getattr(table, category):
            if len(entry) == 4:
                rows.append(Row(entry[0], entry[1], action, entry[2], entry[3]))
            else:
                rows.append(Row(entry[0], entry[1], action))
    return tuple(rows)


def _keyword_and_vr(tag: int) -> tuple[str, str]:
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    try:
        return keyword_for_tag(tag) or "", dictionary_VR(tag)
    except KeyError:
        return "", ""


def option_action(option: str, row: Row) -> str | None:
    """The action ``option`` sets for ``row`` ("K" keep, "C" clean), or None when it
    leaves the Basic Profile's action (see the module docstring for each rule)."""
    if row.group_mask != 0xFFFF or row.element_mask != 0xFFFF:
        return None
    keyword, vr = _keyword_and_vr(row.tag)
    if option == "retain-dates":
        return "K" if vr in ("DA", "DT", "TM") else None
    if option == "retain-patient-characteristics":
        return "K" if row.group == 0x0010 and vr in ("AS", "CS", "DS", "US") else None
    if option == "retain-device-identity":
        return "K" if keyword and _DEVICE_WORDS.search(keyword) and vr != "SQ" else None
    if option == "clean-descriptors":
        return "C" if keyword and vr in _TEXT_VRS and _DESCRIPTOR_WORDS.search(keyword) else None
    raise ValueError(f"unknown option {option!r}")


@lru_cache(maxsize=16)
def action_table(options: tuple[str, ...] = ()) -> tuple[dict[int, str], tuple[Row, ...]]:
    """({tag: action} for plain rows, rows with masks) for the profile with ``options``."""
    plain: dict[int, str] = {}
    masked: list[Row] = []
    for row in basic_profile_rows():
        if row.group_mask != 0xFFFF or row.element_mask != 0xFFFF:
            masked.append(row)
            continue
        action = row.action
        for option in options:
            action = option_action(option, row) or action
        plain[row.tag] = action
    return plain, tuple(masked)
