"""De-identify a data set with the PS3.15 Annex E Basic Profile and its options.

One ``Deidentifier`` serves a whole send (or export): UIDs are replaced through one map, so
the same source UID always becomes the same new UID and studies, series and references stay
whole (E.1-1 action U); Patient IDs become pseudonyms the same way. ``mapping()`` is what a
holder of the mapping file needs to re-identify (E.1.1 "a means of recovering identity").

Actions (PS3.15 Table E.1-1): D dummy value, Z zero length, X remove, K keep, C clean, U new
UID. Where the table offers a choice (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) the least destructive one
is taken (D, else Z, else U*), so Type 1 and Type 2 attributes stay valid for the IOD and a
validator (dciodvfy) still accepts the object. Sequences kept are de-identified item by item.
Private attributes are removed (E.1-1 "Private attributes": X).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .profile import OPTION_CODES, OPTIONS, PROFILE_CODE, TABLE_EDITION, action_table

BURNED_IN_ANNOTATION = 0x00280301


class DeidentifyRefused(ValueError):
    """The object must not be de-identified as asked (burned-in annotation), with the reason."""


@dataclass(frozen=True)
class Profile:
    """The Basic Profile with the chosen options (names in ``profile.OPTIONS``)."""

    options: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> "Profile":
        """``basic`` or ``basic,retain-dates,...`` (``basic`` may be left out)."""
        names = [n.strip().lower() for n in (text or "basic").split(",") if n.strip()]
        options = []
        for name in names:
            if name == "basic":
                continue
            if name not in OPTIONS:
                raise ValueError(f"unknown de-identification option {name!r} "
                                 f"(choose from basic, {', '.join(OPTIONS)})")
            if name not in options:
                options.append(name)
        return cls(tuple(o for o in OPTIONS if o in options))

    def describe(self) -> str:
        return "basic" + "".join(f",{o}" for o in self.options)


#: Dummy values by VR for action D (PS3.15 E.1-1: "a non-zero length value that may be a
#: dummy value and consistent with the VR").
_DUMMY = {
    "AE": "ANONYMIZED", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101", "DS": "0",
    "DT": "19000101000000", "IS": "0", "LO": "ANONYMIZED", "LT": "ANONYMIZED", "PN": "ANONYMIZED",
    "SH": "ANONYMIZED", "ST": "ANONYMIZED", "TM": "000000", "UC": "ANONYMIZED", "UT": "ANONYMIZED",
    "UR": "urn:anonymized", "FL": 0.0, "FD": 0.0, "SL": 0, "SS": 0, "UL": 0, "US": 0, "SV": 0,
    "UV": 0, "OB": b"\0\0", "OW": b"\0\0", "OD": b"\0" * 8, "OF": b"\0" * 4, "OL": b"\0" * 4,
    "OV": b"\0" * 8, "UN": b"\0\0",
}

_PATIENT_ID = 0x00100020
_UI_VRS = ("UI",)


def _choose(action: str) -> str:
    """The one action taken for a table entry that offers several (see module docstring)."""
    if action in ("D", "Z", "X", "K", "C", "U"):
        return action
    if action == "X/Z/U*":
        return "U*"
    if "D" in action.split("/"):
        return "D"
    if "Z" in action.split("/"):
        return "Z"
    return "X"


@dataclass
class Deidentifier:
    """Applies one profile to many data sets with one UID map (thread-safe)."""

    profile: Profile = field(default_factory=Profile)
    allow_burned_in: bool = False
    uid_map: dict[str, str] = field(default_factory=dict)
    patient_ids: dict[str, str] = field(default_factory=dict)
    files: list[dict[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -------------------------------------------------------------------- identifiers
    def new_uid(self, uid: str) -> str:
        """The replacement of ``uid``, the same one every time within this de-identifier."""
        from pydicom.uid import generate_uid

        uid = str(uid).strip("\0 ")
        if not uid:
            return uid
        with self._lock:
            new = self.uid_map.get(uid)
            if new is None:
                new = self.uid_map[uid] = generate_uid()  # random, under pydicom's root (PS3.5 9)
            return new

    def pseudonym(self, patient_id: str) -> str:
        with self._lock:
            new = self.patient_ids.get(patient_id)
            if new is None:
                new = self.patient_ids[patient_id] = f"ANON{len(self.patient_ids) + 1:06d}"
            return new

    # -------------------------------------------------------------------- the profile
    def check(self, ds: Any) -> None:
        """Raise ``DeidentifyRefused`` for an object with burned-in identifying text."""
        value = ds.get(BURNED_IN_ANNOTATION)
        text = str(value.value).strip().upper() if value is not None and value.value else ""
        if text == "YES" and not self.allow_burned_in:
            raise DeidentifyRefused("Burned In Annotation is YES: the pixels may show the patient's "
                                    "identity (allow it explicitly to send it anyway)")

    def apply(self, ds: Any, source: str = "") -> None:
        """De-identify ``ds`` (and its ``file_meta``) in place; records the file in the map."""
        self.check(ds)
        plain, masked = action_table(self.profile.options)
        original_instance = str(ds.get("SOPInstanceUID", ""))
        clean_words = self._identifying_words(ds) if "clean-descriptors" in self.profile.options else []
        self._walk(ds, plain, masked, clean_words)
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", meta.MediaStorageSOPInstanceUID)
        self._mark(ds)
        with self._lock:
            self.files.append({"source": source, "sop_instance_uid": original_instance,
                               "new_sop_instance_uid": str(ds.get("SOPInstanceUID", ""))})

    def _walk(self, ds: Any, plain: dict[int, str], masked: tuple, clean_words: list[str]) -> None:
        for elem in list(ds):
            tag = int(elem.tag)
            if elem.tag.is_private:
                del ds[elem.tag]
                continue
            action = plain.get(tag)
            if action is None:
                action = next((row.action for row in masked if row.matches(tag)), None)
            if action is None:
                if elem.VR == "SQ":
                    for item in elem.value or ():
                        self._walk(item, plain, masked, clean_words)
                continue
            self._act(ds, elem, _choose(action), plain, masked, clean_words)

    def _act(self, ds: Any, elem: Any, action: str, plain: dict[int, str], masked: tuple,
             clean_words: list[str]) -> None:
        vr = elem.VR
        if action == "X":
            del ds[elem.tag]
        elif action == "K":
            if vr == "SQ":
                for item in elem.value or ():
                    self._walk(item, plain, masked, clean_words)
        elif action == "Z":
            elem.value = [] if vr == "SQ" else None
        elif action == "U*" or (vr == "SQ" and action in ("D", "U", "C")):
            for item in elem.value or ():
                self._walk(item, plain, masked, clean_words)
        elif action == "U":
            if vr in _UI_VRS and not elem.is_empty:
                values = elem.value if elem.VM > 1 else [elem.value]
                new = [self.new_uid(v) for v in values]
                elem.value = new if elem.VM > 1 else new[0]
        elif action == "C":
            if not elem.is_empty and isinstance(elem.value, str):
                elem.value = _clean_text(elem.value, clean_words)
        elif action == "D":
            if elem.tag == _PATIENT_ID:
                elem.value = self.pseudonym(str(elem.value or ""))
            elif vr in _UI_VRS:
                elem.value = self.new_uid(str(elem.value or "")) if not elem.is_empty else None
            elif vr in _DUMMY:
                value = _DUMMY[vr]
                if vr in ("SH", "CS", "AE") and isinstance(value, str):
                    value = value[:16]
                elem.value = value
            else:
                del ds[elem.tag]

    def _mark(self, ds: Any) -> None:
        """Patient Identity Removed, De-identification Method (Code Sequence) (PS3.3 C.7.1.1)
        and Longitudinal Temporal Information Modified (PS3.3 C.12.1)."""
        from pydicom.dataset import Dataset
        from pydicom.sr.codedict import codes

        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = f"PS3.15 E {TABLE_EDITION} {self.profile.describe()}"[:64]
        items = []
        for keyword in (PROFILE_CODE, *(OPTION_CODES[o] for o in self.profile.options)):
            code = getattr(codes.DCM, keyword)
            item = Dataset()
            item.CodeValue = code.value
            item.CodingSchemeDesignator = code.scheme_designator
            item.CodeMeaning = code.meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = items
        ds.LongitudinalTemporalInformationModified = (
            "UNMODIFIED" if "retain-dates" in self.profile.options else "REMOVED")

    @staticmethod
    def _identifying_words(ds: Any) -> list[str]:
        """Identifying values of the object (names, IDs, birth date, institution), to strike
        from descriptors under the Clean Descriptors option."""
        words: set[str] = set()
        for keyword in ("PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames",
                        "PatientBirthDate", "AccessionNumber", "InstitutionName",
                        "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
                        "PatientAddress", "StudyID"):
            value = ds.get(keyword)
            if value is None:
                continue
            for part in re.split(r"[\^\\=, ]+", str(value)):
                if len(part) >= 2:
                    words.add(part)
        return sorted(words, key=len, reverse=True)

    # -------------------------------------------------------------------- mapping file
    def mapping(self) -> dict[str, Any]:
        with self._lock:
            return {"profile": self.profile.describe(), "table_edition": TABLE_EDITION,
                    "uids": dict(self.uid_map), "patient_ids": dict(self.patient_ids),
                    "files": list(self.files)}

    def continue_from(self, path: str | os.PathLike[str]) -> None:
        """Reuse the identifiers of an earlier run's mapping file, if there is one, so a retry
        or a second batch of the same study gets the same new UIDs and pseudonyms."""
        try:
            with open(path, encoding="utf-8") as fp:
                earlier = json.load(fp)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the mapping file {path}: {exc}") from exc
        with self._lock:
            self.uid_map.update({str(k): str(v) for k, v in earlier.get("uids", {}).items()})
            self.patient_ids.update({str(k): str(v) for k, v in earlier.get("patient_ids", {}).items()})
            self.files.extend(earlier.get("files", []))

    def write_mapping(self, path: str | os.PathLike[str]) -> Path:
        """Write the original -> new identifiers as JSON, readable by the owner only (it
        re-identifies the patients); written to a temp file and renamed, so never half."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            json.dump(self.mapping(), fp, indent=1)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
        return path


def _clean_text(text: str, words: list[str]) -> str:
    for word in words:
        text = re.sub(re.escape(word), "", text, flags=re.IGNORECASE)
    return re.sub(r"\s{2,}", " ", text).strip()
