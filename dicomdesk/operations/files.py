"""Finding what to send: folders, DICOMDIRs and files, read header only (PS3.10).

``scan_paths`` turns what a user dropped or typed into one ``FileInfo`` per file. Only
headers are read (``stop_before_pixels`` and ``specific_tags``), never pixel data, so a
folder of large images is scanned quickly and in little memory.

Decisions:
* A folder is walked recursively; a DICOMDIR (PS3.10 8.6) is listed but not sent
  (``is_dicom=False``); the files it references are added even when they lie outside the
  paths given.
* A file that is not DICOM at all gets ``is_dicom=False`` and a reason (it is skipped).
* A DICOM file that cannot be sent as it is (unreadable meta, truncated header, no SOP
  Class or Instance UID) gets ``is_dicom=True`` and a reason: sending reports it as failed,
  naming the fault, and goes on.
* A bare data set without the Part-10 header (no preamble/"DICM", older tools write them)
  is sent when pydicom reads its header and it has both SOP UIDs: the C-STORE carries only
  the data set anyway. Its transfer syntax is the encoding found in the data (Implicit VR
  Little Endian per PS3.5 A.1 unless it is visibly explicit or big endian).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..net.inflate import DEFAULT_MAX_INFLATED_SIZE
from ..net.records import FrozenRecord
from ..net.part10 import (MEDIA_STORAGE_DIRECTORY, SOP_UID_TAGS, Part10Error, Part10Header,
                          pydicom_warnings_logged, read_file_meta, read_part10_header, scan_header)
from ..net.part10_structure import check_structure, check_structure_of

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

_HEADER_KEYWORDS = ["SOPClassUID", "SOPInstanceUID", "PatientName", "PatientID", "StudyInstanceUID",
                    "StudyDescription", "SpecificCharacterSet"]
_SOP_CLASS, _SOP_INSTANCE = 0x00080016, 0x00080018
# The same elements by tag (PS3.6), for the fast header scan.
_HEADER_TAGS = frozenset({0x00080005, _SOP_CLASS, _SOP_INSTANCE, 0x00100010, 0x00100020,
                          0x0020000D, 0x00081030})


#: why a DICOMDIR is not sent (the files it references are)
DICOMDIR_REASON = "DICOMDIR: a media directory, not an instance (its files are sent)"


class FileInfo(FrozenRecord):
    """One file found by ``scan_paths``: what it is and, when DICOM, what it holds.

    ``reason`` is None for a file that can be sent; otherwise why it is skipped
    (``is_dicom=False``) or broken (``is_dicom=True``).
    """

    #: ``part10``: a Part-10 file that is not an instance to send (a DICOMDIR): never summed
    #: up with files that are not DICOM at all, it is named with its reason
    #: ``data_offset``: where the data set starts in the file, when its Part-10 header was read
    #: (None otherwise), so sending it does not read the File Meta Information again
    _fields = ("path", "is_dicom", "reason", "patient_name", "patient_id", "study_uid",
               "study_description", "sop_class_uid", "sop_instance_uid", "transfer_syntax", "size",
               "part10", "data_offset")

    def __init__(self, path: Path, is_dicom: bool, reason: str | None = None, patient_name: str = "",
                 patient_id: str = "", study_uid: str = "", study_description: str = "",
                 sop_class_uid: str = "", sop_instance_uid: str = "", transfer_syntax: str = "",
                 size: int = 0, part10: bool = False, data_offset: int | None = None) -> None:
        self._assign(path, is_dicom, reason, patient_name, patient_id, study_uid, study_description,
                     sop_class_uid, sop_instance_uid, transfer_syntax, size, part10, data_offset)

    @property
    def not_dicom(self) -> bool:
        """True only for a file that is not DICOM at all (these may be counted, not named)."""
        return not self.is_dicom and not self.part10

    @property
    def sendable(self) -> bool:
        """True for a DICOM file with nothing wrong in its header."""
        return self.is_dicom and self.reason is None

    @property
    def header(self) -> Part10Header | None:
        """The file's header as inspected (for ``prepare_store``), None when its data set
        offset is not known."""
        if self.data_offset is None or not self.sendable:
            return None
        return Part10Header(self.transfer_syntax, self.sop_class_uid, self.sop_instance_uid, self.data_offset)


def _text(value: object) -> str:
    return "" if value is None else str(value).strip("\0 ")


def _names(ds: Dataset) -> tuple[str, str]:
    """Patient's Name and Study Description as text ("" for a value pydicom cannot decode:
    a bad character set must not make the file unsendable)."""
    try:
        with pydicom_warnings_logged():
            return _text(ds.get("PatientName")), _text(ds.get("StudyDescription"))
    except Exception:
        return "", ""


def _looks_like_dicom(path: Path) -> bool:
    with open(path, "rb") as fp:
        head = fp.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _inspect_fast(path: Path, size: int, details: bool = True) -> FileInfo | None:
    """``inspect_file`` for a plain Part-10 file in one open and one read of its start.

    ``scan_header`` hands back pydicom's own raw elements, so names and descriptions decode
    (character sets included) exactly as ``dcmread`` would; the structure check runs on the
    same file. Anything unusual (no preamble, DICOMDIR, deflate, missing UIDs, a fault)
    returns None and the general path below reads the file with pydicom and says why.
    Without ``details`` (``inspect_for_sending``) the walk stops at the SOP Instance UID,
    names are not decoded and the structure is not checked: only what plans the association
    is read.
    """
    try:
        with open(path, "rb") as fp:
            # A deflated file is scanned from its first inflated bytes only: pydicom's reader
            # (the general path) would inflate all of it in memory (a deflate bomb).
            scan = scan_header(fp, _HEADER_TAGS, max_inflated_size=DEFAULT_MAX_INFLATED_SIZE) \
                if details else scan_header(fp, SOP_UID_TAGS, until_last_tag=True, raw=True,
                                            max_inflated_size=DEFAULT_MAX_INFLATED_SIZE)
            if scan is None:
                return None
            elements = scan.elements
            sop_class, sop_instance = scan.sop_class_uid, scan.sop_instance_uid
            if not sop_class or not sop_instance or scan.data_offset >= size:
                return None
            if not details:
                return FileInfo(path, True, None, sop_class_uid=sop_class, sop_instance_uid=sop_instance,
                                transfer_syntax=scan.transfer_syntax, size=size, data_offset=scan.data_offset)
            try:
                check_structure_of(fp, scan, scan.stop_offset)
            except Part10Error:
                return None  # the general path reports the fault
    except (OSError, Part10Error):
        return None
    from pydicom.dataset import Dataset  # names decode as dcmread would (character sets)
    from pydicom.tag import BaseTag

    ds = Dataset({BaseTag(tag): elem for tag, elem in elements.items()})
    patient_name, study_description = _names(ds)
    try:
        with pydicom_warnings_logged():
            patient_id, study_uid = _text(ds.get("PatientID")), _text(ds.get("StudyInstanceUID"))
    except Exception:  # the general path decides what an undecodable value means
        return None
    return FileInfo(path, True, None, patient_name, patient_id, study_uid, study_description,
                    sop_class, sop_instance, scan.transfer_syntax, size, data_offset=scan.data_offset)


def inspect_for_sending(path: Path) -> FileInfo:
    """``inspect_file`` without what sending does not need before the association: a plain
    Part-10 file gives its SOP class, instance and transfer syntax from one header scan
    (no names decoded, no structure check — ``storage.prepare_store`` checks the structure
    of each file just before it is sent, and fails it with the same reason). Anything else
    is inspected in full, so refusals and skips read exactly as ``inspect_file``'s."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return inspect_file(path)
    fast = _inspect_fast(path, size, details=False) if size > 132 else None
    return fast if fast is not None else inspect_file(path)


def inspect_file(path: Path) -> FileInfo:
    """A ``FileInfo`` for one file, from its header only."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return FileInfo(path, False, f"cannot read: {exc.strerror or exc}")
    if size > 132:
        fast = _inspect_fast(path, size)
        if fast is not None:
            return fast
    try:
        has_preamble = _looks_like_dicom(path)
    except OSError as exc:
        return FileInfo(path, False, f"cannot read: {exc.strerror or exc}")
    if size == 0:
        return FileInfo(path, False, "empty file", size=size)
    try:
        with open(path, "rb") as fp:
            meta = read_file_meta(fp)
    except Part10Error as exc:
        return FileInfo(path, True, str(exc), size=size)
    except OSError as exc:
        return FileInfo(path, False, f"cannot read: {exc.strerror or exc}", size=size)
    if meta is not None and meta[0].get(0x00020002) == MEDIA_STORAGE_DIRECTORY:
        return FileInfo(path, False, DICOMDIR_REASON,
                        sop_class_uid=MEDIA_STORAGE_DIRECTORY, size=size, part10=True)
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        with pydicom_warnings_logged():
            ds = dcmread(path, force=True, stop_before_pixels=True, specific_tags=_HEADER_KEYWORDS)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OverflowError, TypeError,
            NotImplementedError, UnicodeError, AttributeError, IndexError) as exc:
        if meta is None and not has_preamble:
            return FileInfo(path, False, "not a DICOM file", size=size)
        return FileInfo(path, True, f"truncated or unreadable header: {exc}", size=size)
    if meta is None and not has_preamble:
        # force=True reads almost anything; a bare data set counts only with its SOP UIDs.
        try:
            elements = len(ds._dict)
        except Exception:  # pragma: no cover - defensive
            elements = 0
        if not elements or ("SOPClassUID" not in ds and "SOPInstanceUID" not in ds):
            return FileInfo(path, False, "not a DICOM file", size=size)
    try:
        header = read_part10_header(path)
        reason = None
        ts, sop_class, sop_instance = header.transfer_syntax, header.sop_class_uid, header.sop_instance_uid
    except (Part10Error, OSError) as exc:
        reason = str(exc)
        ts = _text(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
        sop_class, sop_instance = _text(ds.get("SOPClassUID")), _text(ds.get("SOPInstanceUID"))
    if reason is None and header.data_offset >= size:
        reason = "no data set after the File Meta Information"
    if reason is None:
        try:
            check_structure(path, header)
        except (Part10Error, OSError) as exc:
            reason = str(exc)
    patient_name, study_description = _names(ds)
    return FileInfo(path, True, reason, patient_name, _text(ds.get("PatientID")),
                    _text(ds.get("StudyInstanceUID")), study_description, sop_class, sop_instance,
                    ts, size, data_offset=header.data_offset if reason is None else None)


def dicomdir_files(path: Path) -> list[Path]:
    """The files a DICOMDIR references (Referenced File ID, PS3.3 F.5), that exist."""
    from pydicom import dcmread

    try:
        with pydicom_warnings_logged():
            ds = dcmread(path, force=True)
    except Exception as exc:  # a broken DICOMDIR still lets the folder walk find the files
        logger.info("cannot read DICOMDIR %s: %s", path, exc)
        return []
    found = []
    for record in ds.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        candidate = path.parent.joinpath(*[str(p) for p in parts])
        if candidate.is_file():
            found.append(candidate)
    return found


def _walk(paths: Iterable[str | os.PathLike[str]], cancel: threading.Event | None) -> list[Path]:
    seen: dict[Path, None] = {}

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen[key] = None

    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                # The folder is resolved once; a file's own name needs resolving only when it
                # is a link (realpath costs a stat per path component, per file).
                folder = Path(dirpath).resolve()
                for name in sorted(filenames):
                    path = folder / name
                    if os.path.islink(path):
                        add(path)
                    elif path not in seen:
                        seen[path] = None
                if cancel is not None and cancel.is_set():
                    break
        else:
            add(root)
    return list(seen)


def scan_paths(paths: Iterable[str | os.PathLike[str]],
               on_file: Callable[[FileInfo], None] | None = None,
               cancel: threading.Event | None = None, *, details: bool = True) -> list[FileInfo]:
    """Every file under ``paths`` (recursively), with DICOMDIR-referenced files added.

    ``on_file`` is called per file as it is inspected (a GUI fills its queue with it);
    ``cancel`` stops the scan early (what was found so far is returned). Without
    ``details`` each file is read as ``inspect_for_sending`` reads it (what plans the
    association, no names): for a sender that shows no names (``dicomdesk send``).
    """
    inspect = inspect_file if details else inspect_for_sending
    pending = _walk(paths, cancel)
    known = set(pending)
    result: list[FileInfo] = []
    i = 0
    while i < len(pending):
        if cancel is not None and cancel.is_set():
            break
        path = pending[i]
        i += 1
        if not path.exists():
            info = FileInfo(path, False, "no such file")
        else:
            info = inspect(path)
        result.append(info)
        if on_file is not None:
            on_file(info)
        if info.sop_class_uid == MEDIA_STORAGE_DIRECTORY:
            for ref in dicomdir_files(path):
                key = ref.resolve()
                if key not in known:
                    known.add(key)
                    pending.append(key)
    return result
