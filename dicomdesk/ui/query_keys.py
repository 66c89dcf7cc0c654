"""Identifiers for the query panel's C-FIND requests, built from the search form (pure).

PS3.4 C.2.2.2 defines the matching: an empty value is a *return key* (universal matching), ``*``
and ``?`` are wild cards, and a date range is ``YYYYMMDD-YYYYMMDD`` (range matching, C.2.2.2.5).
PS3.4 C.6 lists which keys each level supports; the keys asked for here are those every
Study Root / Patient Root SCP must return (Required or Unique).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

__all__ = [
    "DATE_PRESETS",
    "WORKLIST_DATE_PRESETS",
    "SearchForm",
    "date_range",
    "image_keys",
    "series_keys",
    "study_keys",
]

#: Study date presets offered in the form, in display order (as Horos offers them).
DATE_PRESETS = ("Any", "Today", "Yesterday", "Last 2 days", "Last week", "Last month",
                "Last 3 months", "Last year", "Range")
#: Scheduled date presets of the worklist form (a worklist looks ahead as well).
WORKLIST_DATE_PRESETS = ("Today", "Tomorrow", "Yesterday", "Next 7 days", "Last 7 days", "Any")

#: preset -> (days before today, days after today) of a date range ending or starting today
_PRESET_DAYS = {
    "Today": (0, 0), "Yesterday": (1, -1), "Tomorrow": (-1, 1), "Last 2 days": (1, 0),
    "Last 7 days": (6, 0), "Last week": (6, 0), "Next 7 days": (0, 6), "Last month": (30, 0),
    "Last 3 months": (91, 0), "Last year": (365, 0),
}


@dataclass(frozen=True)
class SearchForm:
    """What the user typed; plain values so it can cross into a worker thread."""

    patient_name: str = ""
    patient_id: str = ""
    accession_number: str = ""
    date_preset: str = "Any"
    date_from: _dt.date | None = None
    date_to: _dt.date | None = None
    modality: str = ""
    study_description: str = ""


def date_range(
    preset: str,
    today: _dt.date,
    date_from: _dt.date | None = None,
    date_to: _dt.date | None = None,
) -> str:
    """The StudyDate matching value for a preset (PS3.4 C.2.2.2.5 range matching).

    "Any" gives the empty value (universal matching); "Range" with a missing end is open
    on that side (``YYYYMMDD-`` / ``-YYYYMMDD``), which C.2.2.2.5.1 allows.
    """
    fmt = "%Y%m%d"
    if preset in _PRESET_DAYS:
        before, after = _PRESET_DAYS[preset]
        start = (today - _dt.timedelta(days=before)).strftime(fmt)
        end = (today + _dt.timedelta(days=after)).strftime(fmt)
        return start if start == end else f"{start}-{end}"
    if preset == "Range":
        if date_from and date_to and date_from > date_to:
            date_from, date_to = date_to, date_from
        start = date_from.strftime(fmt) if date_from else ""
        end = date_to.strftime(fmt) if date_to else ""
        if start and start == end:
            return start
        return f"{start}-{end}" if (start or end) else ""
    return ""


def study_keys(form: SearchForm, today: _dt.date) -> dict[str, str]:
    """STUDY-level identifier: the user's matching keys plus the return keys the tree shows.

    ModalitiesInStudy is an optional study key (PS3.4 C.6.2.1.2); many SCPs support it and those
    that do not simply ignore it, so it is always asked (empty: a return key).
    """
    keys = {
        "PatientName": form.patient_name.strip(),
        "PatientID": form.patient_id.strip(),
        "AccessionNumber": form.accession_number.strip(),
        "StudyDate": date_range(form.date_preset, today, form.date_from, form.date_to),
        "StudyTime": "",
        "StudyDescription": form.study_description.strip(),
        "StudyInstanceUID": "",
        "PatientBirthDate": "",
        "NumberOfStudyRelatedSeries": "",
        "NumberOfStudyRelatedInstances": "",
        # always asked (the study rows show it); an SCP that does not support this optional
        # key leaves it out of its answers (PS3.4 C.2.2.1.1)
        "ModalitiesInStudy": form.modality.strip().upper(),
    }
    return keys


def series_keys(study_uid: str, patient_id: str = "") -> dict[str, str]:
    """SERIES-level identifier under one study (PS3.4 C.6.2.1.3; hierarchical, C.4.1.3.1.1).

    The Patient ID is included so that the same identifier works for the Patient Root model,
    where a unique key is required at each level above (C.6.1.1.2).
    """
    keys = {"StudyInstanceUID": study_uid}
    if patient_id:
        keys["PatientID"] = patient_id
    keys |= {
        "SeriesInstanceUID": "",
        "SeriesNumber": "",
        "Modality": "",
        "SeriesDescription": "",
        "NumberOfSeriesRelatedInstances": "",
    }
    return keys


def image_keys(study_uid: str, series_uid: str, patient_id: str = "") -> dict[str, str]:
    """IMAGE-level identifier under one series (PS3.4 C.6.2.1.4)."""
    keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
    if patient_id:
        keys["PatientID"] = patient_id
    keys |= {"SOPInstanceUID": "", "SOPClassUID": "", "InstanceNumber": ""}
    return keys
