"""Modality Worklist Information Model - FIND SCP from a folder of worklist items (PS3.4 K.6).

Like DCMTK's ``wlmscpfs``, each scheduled procedure is a file (``*.wl`` or ``*.dcm``, Part 10 or a
bare data set) in a folder that other software drops in; the folder is re-scanned on each query
(only changed files are re-read).  Matching follows PS3.4 C.2.2.2 through ``matching.matches``,
including sequence matching (C.2.2.2.6): a query sequence item with keys matches a stored
sequence if at least one stored item matches all its keys, and only the matching items are
returned, each reduced to the requested item keys.  Typical keys are the Scheduled Procedure Step
Sequence's ScheduledStationAETitle, ScheduledProcedureStepStartDate (range) and Modality, plus
PatientName, PatientID and AccessionNumber.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .matching import is_universal, matches, value_text

if TYPE_CHECKING:  # pydicom loads on first use: `dicomdesk serve` starts without it
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

_SUFFIXES = (".wl", ".dcm")
_CHARSET = 0x00080005  # SpecificCharacterSet


class WorklistStore:
    """A folder of worklist items answering Modality Worklist C-FIND requests."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[int, int, Dataset | None]] = {}

    def items(self) -> list[Dataset]:
        """The current worklist items (unreadable files are logged and skipped)."""
        from pydicom import dcmread

        with self._lock:
            seen: dict[Path, tuple[int, int, Dataset | None]] = {}
            paths = sorted(p for p in self.folder.iterdir()
                           if p.suffix.lower() in _SUFFIXES and p.is_file()) if self.folder.is_dir() else []
            for path in paths:
                st = path.stat()
                cached = self._cache.get(path)
                if cached is not None and cached[:2] == (st.st_mtime_ns, st.st_size):
                    seen[path] = cached
                    continue
                try:
                    ds: Dataset | None = dcmread(path, force=True)
                    if not any(tag.group > 2 for tag in ds.keys()):  # type: ignore[union-attr]
                        raise ValueError("no data set elements")  # e.g. junk read by force=True
                except Exception as exc:  # a broken item must not break the worklist
                    logger.warning("unreadable worklist item %s: %s", path.name, exc)
                    ds = None
                seen[path] = (st.st_mtime_ns, st.st_size, ds)
            self._cache = seen
            return [entry[2] for entry in seen.values() if entry[2] is not None]

    def find(self, identifier: Dataset) -> Iterator[Dataset]:
        """Matching items, each with the requested keys only (PS3.4 K.6.1.2)."""
        for item in self.items():
            response = match_and_project(identifier, item)
            if response is not None:
                yield response


def _has_constraint(query: Dataset) -> bool:
    for elem in query:
        if elem.VR == "SQ":
            if any(_has_constraint(q) for q in elem.value or ()):
                return True
        elif elem.tag != _CHARSET and not is_universal(value_text(elem.value)):
            return True
    return False


def match_and_project(query: Dataset, stored: Dataset) -> Dataset | None:
    """``None`` if ``stored`` does not match ``query``; else ``stored`` reduced to the query's keys."""
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    out = Dataset()
    for elem in query:
        tag = elem.tag
        if tag == _CHARSET or tag.element == 0 or tag.group == 2:
            continue
        have = stored.get(tag)
        if elem.VR == "SQ":
            q_items = list(elem.value or ())
            s_items = list(have.value or ()) if have is not None and have.VR == "SQ" else []
            if not q_items or not len(q_items[0]):
                out.add(DataElement(tag, "SQ", Sequence([_copy(i) for i in s_items])))
                continue
            q_item = q_items[0]
            kept = [p for p in (match_and_project(q_item, s) for s in s_items) if p is not None]
            if not kept and _has_constraint(q_item):
                return None
            out.add(DataElement(tag, "SQ", Sequence(kept)))
            continue
        stored_value = have.value if have is not None else None
        if not matches(elem.VR, value_text(elem.value), stored_value):
            return None
        out.add(DataElement(tag, have.VR if have is not None else elem.VR,
                            stored_value if stored_value not in ("", None) else None))
    if _CHARSET in stored:
        out.SpecificCharacterSet = stored.SpecificCharacterSet
    return out


def _copy(item: Dataset) -> Dataset:
    from pydicom.dataset import Dataset

    new = Dataset()
    for elem in item:
        new.add(elem)
    return new
