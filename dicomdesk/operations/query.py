"""Query and retrieve: find, get and move (PS3.4 Annex C, Query/Retrieve Service Class).

``build_identifier`` turns what a user typed (keyword or ``gggg,eeee`` → value) into a
C-FIND/C-GET/C-MOVE identifier with its Query/Retrieve Level (PS3.4 C.4.1.1.3); it is pure.
``find``, ``get`` and ``move`` each open one association, run one operation and return a
result value; network and peer failures end up in ``result.error`` as a sentence.
"""

from __future__ import annotations

import copy
import difflib
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from ..net import uids
from ..net.applicationentity import ClientAE, write_meta
from ..net.records import FrozenRecord
from ..net.sopclass.qr import qr_find_scu
from ..net.sopclass.retrieve import qr_get_scu, qr_move_scu
from ..net.part10 import Part10Error
from ..net.part10_structure import check_file_structure
from ..net.statuses import C_STORE_CANNOT_UNDERSTAND, C_STORE_OUT_OF_RESOURCES, SUCCESS, Status
from .common import Peer, describe_error

logger = logging.getLogger(__name__)

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
MODELS = ("patient", "study")

#: (model, operation) → SOP class of the information model (PS3.4 C.6.1, C.6.2).
MODEL_SOP_CLASSES = {
    ("patient", "find"): uids.PATIENT_ROOT_FIND_SOP_CLASS,
    ("patient", "get"): uids.PATIENT_ROOT_GET_SOP_CLASS,
    ("patient", "move"): uids.PATIENT_ROOT_MOVE_SOP_CLASS,
    ("study", "find"): uids.STUDY_ROOT_FIND_SOP_CLASS,
    ("study", "get"): uids.STUDY_ROOT_GET_SOP_CLASS,
    ("study", "move"): uids.STUDY_ROOT_MOVE_SOP_CLASS,
}

#: Storage contexts a C-GET proposes with the SCP role: one context per SOP class and the
#: C-GET context itself must fit in 128 (PS3.8 9.3.2.2); the common classes come first.
GET_STORAGE_CLASSES = uids.STORAGE_SOP_CLASSES[:127]

_TAG_FORM = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?$")
_INT_VRS = {"US", "SS", "UL", "SL", "UV", "SV"}
_FLOAT_VRS = {"FL", "FD"}


# ---------------------------------------------------------------------------- identifiers
def parse_key(key: str) -> tuple[int, str, str]:
    """(tag, VR, keyword) of a key given as a keyword or as ``gggg,eeee``.

    Raises ``ValueError`` naming the key when it is neither (with close keywords as a hint).
    """
    text = str(key).strip()
    match = _TAG_FORM.match(text)
    if match:
        tag = (int(match.group(1), 16) << 16) | int(match.group(2), 16)
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            raise ValueError(f"unknown DICOM tag {text!r} (not in the data dictionary)") from None
        from pydicom.datadict import keyword_for_tag

        return tag, vr.split(" or ")[0], keyword_for_tag(tag) or f"{tag >> 16:04X},{tag & 0xFFFF:04X}"
    tag = tag_for_keyword(text)
    if tag is None:
        hints = difflib.get_close_matches(text, keyword_dict.keys(), n=3)
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise ValueError(f"unknown attribute keyword {text!r}{hint}")
    return tag, dictionary_VR(tag).split(" or ")[0], text


def _element(tag: int, vr: str, keyword: str, value: Any) -> DataElement:
    """A query element; an empty value is a universal match / return key (PS3.4 C.2.2.2.3)."""
    empty = value is None or (isinstance(value, str) and value == "")
    if vr == "SQ":
        if empty:
            value = []
        elif isinstance(value, Dataset):
            value = [value]
        elif not (isinstance(value, list) and all(isinstance(v, Dataset) for v in value)):
            raise ValueError(f"{keyword} is a sequence: give no value (return key) or data sets")
    elif empty:
        value = None if vr in _INT_VRS | _FLOAT_VRS else ""
    elif vr in _INT_VRS | _FLOAT_VRS and isinstance(value, str):
        convert = int if vr in _INT_VRS else float
        try:
            parts = [convert(v) for v in value.split("\\")]
        except ValueError:
            raise ValueError(f"{keyword} ({vr}) needs a number, not {value!r}") from None
        value = parts[0] if len(parts) == 1 else parts
    # Query values legitimately break the VR's storage rules (wildcards, ranges), so they
    # are not validated as stored values would be (PS3.4 C.2.2.2).
    return DataElement(tag, vr, value, validation_mode=pydicom_config.IGNORE)


def build_identifier(level: str, keys: Mapping[str, Any] | Dataset) -> Dataset:
    """The identifier of a C-FIND/C-GET/C-MOVE: ``keys`` plus Query/Retrieve Level.

    ``keys`` maps a keyword (``PatientName``) or a tag (``0010,0020``) to the matching value
    (``DOE*``, ``20200101-20201231``); an empty value asks for the attribute back (universal
    match). A Dataset is copied as it is. Non-ASCII text selects UTF-8 (ISO_IR 192) unless
    a Specific Character Set was given.
    """
    level = normalise_level(level)
    if isinstance(keys, Dataset):
        ds = copy.deepcopy(keys)
    else:
        ds = Dataset()
        for key, value in keys.items():
            tag, vr, keyword = parse_key(key)
            ds.add(_element(tag, vr, keyword, value))
        non_ascii = any(isinstance(v, str) and not v.isascii() for v in keys.values())
        if non_ascii and "SpecificCharacterSet" not in ds:
            ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level
    return ds


def normalise_level(level: str) -> str:
    """PATIENT, STUDY, SERIES or IMAGE (any case); ValueError otherwise."""
    value = str(level).strip().upper()
    if value not in LEVELS:
        raise ValueError(f"query level must be one of {', '.join(LEVELS)}, not {level!r}")
    return value


def resolve_model(level: str, model: str | None) -> str:
    """The information model: study by default, patient for a PATIENT-level query.

    The Study Root model has no PATIENT level (PS3.4 C.6.2.1), so that pair is refused.
    """
    level = normalise_level(level)
    if model is None:
        return "patient" if level == "PATIENT" else "study"
    value = str(model).strip().lower()
    if value not in MODELS:
        raise ValueError(f"query model must be 'patient' or 'study', not {model!r}")
    if value == "study" and level == "PATIENT":
        raise ValueError("the Study Root model has no PATIENT level; use --model patient")
    return value


# ---------------------------------------------------------------------------- results
class FindResult(FrozenRecord):
    """The outcome of one C-FIND: the final status and every match received."""

    _fields = ("status", "matches", "error")

    def __init__(self, status: Status | None, matches: list | None = None, error: str | None = None) -> None:
        self._assign(status, [] if matches is None else matches, error)

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and self.status.is_success


class RetrieveProgress(FrozenRecord):
    """Sub-operation counts from a pending C-GET/C-MOVE response (PS3.7 9.3.3.2)."""

    _fields = ("remaining", "completed", "failed", "warning")

    def __init__(self, remaining: int | None, completed: int, failed: int, warning: int) -> None:
        self._assign(remaining, completed, failed, warning)


class RetrieveResult(FrozenRecord):
    """The outcome of one C-GET/C-MOVE: final status, counts, failed instances.

    ``files`` lists the files a C-GET wrote (complete, renamed from their temporary name).
    """

    #: ``error_comment``: the final response's Error Comment (0000,0902), e.g. where a C-MOVE
    #: SCP tried to send
    _fields = ("status", "completed", "failed", "warning", "failed_uids", "error", "files",
               "error_comment")

    def __init__(self, status: Status | None, completed: int = 0, failed: int = 0, warning: int = 0,
                 failed_uids: tuple = (), error: str | None = None, files: tuple = (),
                 error_comment: str | None = None) -> None:
        self._assign(status, completed, failed, warning, failed_uids, error, files, error_comment)

    @property
    def ok(self) -> bool:
        """True only when every sub-operation succeeded."""
        return (self.error is None and self.status is not None and self.status.is_success
                and self.failed == 0 and self.warning == 0)


def _status_error(status: Status | None) -> str | None:
    if status is None:
        return "no final response"
    if status.is_cancel:
        return "cancelled"
    if status.is_failure:
        return f"peer answered {status}"
    return None


# ---------------------------------------------------------------------------- find
def find(peer: Peer, level: str, keys: Mapping[str, Any] | Dataset, model: str | None = None,
         on_match: Callable[[Dataset], None] | None = None,
         cancel: threading.Event | None = None, keep_matches: bool = True) -> FindResult:
    """One C-FIND (PS3.4 C.4.1): every match is passed to ``on_match`` as it arrives.

    Setting ``cancel`` sends C-CANCEL-FIND-RQ; the result then holds what arrived before
    the peer's final (FE00) response. Bad ``level``/``model``/``keys`` raise ValueError.
    ``keep_matches=False`` leaves ``FindResult.matches`` empty: a caller that consumes
    ``on_match`` (the desktop app) then does not hold every identifier, whose ~100 objects
    each made the cyclic garbage collector's full passes long (tens of ms per 10,000 matches).
    """
    model = resolve_model(level, model)
    identifier = build_identifier(level, keys)
    sop_class = MODEL_SOP_CLASSES[(model, "find")]
    if cancel is not None and cancel.is_set():
        return FindResult(None, [], "cancelled")
    ae = _client_ae(peer).add_scu(qr_find_scu, [sop_class])
    matches: list[Dataset] = []
    status: Status | None = None
    try:
        with ae.request_association(peer.remote_ae()) as assoc:
            scu = assoc.get_scu(sop_class)
            for data, status in scu(identifier, assoc.next_message_id(), cancel=cancel):
                if not status.is_pending:
                    break
                if not isinstance(data, Dataset):
                    logger.warning("a C-FIND match could not be decoded; skipped")
                    continue
                if keep_matches:
                    matches.append(data)
                if on_match is not None:
                    on_match(data)
    except Exception as exc:  # every failure becomes a sentence, never a traceback
        return FindResult(status, matches, describe_error(exc, peer))
    return FindResult(status, matches, _status_error(status))


def _client_ae(peer: Peer) -> ClientAE:
    ae = ClientAE(peer.calling_aet)
    ae.timeout = peer.timeout
    ae.dimse_timeout = peer.timeout
    return ae


# ---------------------------------------------------------------------------- retrieve
class _RetrieveTracker:
    """Counts from the C-GET/C-MOVE responses, reported as ``RetrieveProgress``."""

    def __init__(self, progress: Callable[[RetrieveProgress], None] | None):
        self.progress = progress
        self.status: Status | None = None
        self.counts = RetrieveProgress(None, 0, 0, 0)
        self.failed_uids: tuple = ()
        self.error_comment: str | None = None

    def update(self, status: Status, rsp: Any) -> None:
        self.status = status
        last = self.counts
        self.counts = RetrieveProgress(
            _count(rsp.num_of_remaining_sub_ops, None if not status.is_pending else last.remaining),
            _count(rsp.num_of_completed_sub_ops, last.completed),
            _count(rsp.num_of_failed_sub_ops, last.failed),
            _count(rsp.num_of_warning_sub_ops, last.warning))
        if status.is_pending:
            if self.progress is not None:
                self.progress(self.counts)
            return
        comment = getattr(rsp, "error_comment", None)
        self.error_comment = str(comment).strip() or None if comment else None
        data = rsp.data_set
        if isinstance(data, Dataset) and "FailedSOPInstanceUIDList" in data:
            value = data.FailedSOPInstanceUIDList
            values = [value] if isinstance(value, str) else list(value or [])
            self.failed_uids = tuple(str(v) for v in values if v)

    def result(self, error: str | None = None, files: tuple = ()) -> RetrieveResult:
        return RetrieveResult(self.status, self.counts.completed, self.counts.failed,
                              self.counts.warning, self.failed_uids,
                              error if error is not None else _status_error(self.status), files,
                              self.error_comment)


def _count(value: Any, default: Any) -> Any:
    return default if value is None or value == "" else int(value)


def move(peer: Peer, destination_aet: str, level: str, keys: Mapping[str, Any] | Dataset,
         model: str | None = None, progress: Callable[[RetrieveProgress], None] | None = None,
         cancel: threading.Event | None = None) -> RetrieveResult:
    """One C-MOVE (PS3.4 C.4.2): the peer sends the matches to ``destination_aet``.

    ``progress`` gets the counts of every pending response; ``cancel`` sends
    C-CANCEL-MOVE-RQ and the result holds the counts of the peer's final response.
    """
    model = resolve_model(level, model)
    identifier = build_identifier(level, keys)
    sop_class = MODEL_SOP_CLASSES[(model, "move")]
    tracker = _RetrieveTracker(progress)
    if cancel is not None and cancel.is_set():
        return tracker.result("cancelled")
    ae = _client_ae(peer).add_scu(qr_move_scu, [sop_class])
    try:
        with ae.request_association(peer.remote_ae()) as assoc:
            scu = assoc.get_scu(sop_class)
            for status, rsp in scu(identifier, destination_aet, assoc.next_message_id(), cancel=cancel):
                tracker.update(status, rsp)
    except Exception as exc:
        return tracker.result(describe_error(exc, peer))
    return tracker.result()


class _GetReceiver(ClientAE):
    """A C-GET requestor that streams each received instance to ``out_dir``.

    Data fragments go straight into ``.<random>.part`` (``get_file``); once the instance is
    complete it is flushed, fsynced and renamed to ``<SOP Instance UID>.dcm``, so a file
    with the final name is always whole (PS3.10 7.1 file with meta information).
    """

    def __init__(self, ae_title: str, out_dir: Path):
        super().__init__(ae_title)
        self.out_dir = out_dir
        self.files: list[Path] = []
        self._uids: dict[str, str] = {}  # temporary file name -> SOP Instance UID

    def get_file(self, context: Any, command_set: Dataset) -> tuple[Any, int]:
        fd, name = tempfile.mkstemp(prefix=".", suffix=".part", dir=self.out_dir)
        os.close(fd)
        fp = open(name, "w+b")  # opened by name so that ``fp.name`` leads back to the file
        self._uids[name] = str(command_set.get("AffectedSOPInstanceUID", "") or "")
        write_meta(fp, command_set, context.supported_ts)
        return fp, 0

    def on_receive_store(self, context: Any, fp: Any) -> Status:
        # A data set that ends inside an element (a value claiming 2 GiB, a cut transfer)
        # is refused and removed: only whole objects get their final name (PS3.4 C.4.3.2).
        try:
            fp.flush()
            fp.seek(0)
            check_file_structure(fp)
        except Part10Error as exc:
            logger.warning("C-STORE sub-operation refused: %s", exc)
            self.on_receive_store_failed(context, fp, str(exc))
            return C_STORE_CANNOT_UNDERSTAND
        temp = Path(fp.name)
        uid = self._uids.pop(fp.name, "").strip("\0 ")
        safe = re.sub(r"[^0-9A-Za-z.]", "_", uid) or temp.stem.lstrip(".")
        target = self.out_dir / f"{safe}.dcm"
        try:  # a full disk, a UID too long for a file name: this instance fails, and goes
            os.fsync(fp.fileno())
            fp.close()
            os.replace(temp, target)
        except OSError as exc:
            logger.warning("cannot keep %s: %s", target.name[:80], exc.strerror or exc)
            fp.close()
            temp.unlink(missing_ok=True)
            return C_STORE_OUT_OF_RESOURCES
        self.files.append(target)
        return SUCCESS

    def discard_unfinished(self) -> None:
        """Remove the temporary files of instances whose transfer never completed (the peer
        aborted or vanished mid-object): nothing of them stays in ``out_dir``."""
        for name in list(self._uids):
            self._uids.pop(name, None)
            Path(name).unlink(missing_ok=True)

    def on_receive_store_failed(self, context: Any, fp: Any, error: str) -> None:
        """The data set did not arrive whole: remove its temporary file."""
        name = getattr(fp, "name", None)
        if not getattr(fp, "closed", True):
            fp.close()
        if isinstance(name, str):
            self._uids.pop(name, None)
            Path(name).unlink(missing_ok=True)


def get(peer: Peer, level: str, keys: Mapping[str, Any] | Dataset, out_dir: str | os.PathLike[str],
        model: str | None = None, progress: Callable[[RetrieveProgress], None] | None = None,
        cancel: threading.Event | None = None) -> RetrieveResult:
    """One C-GET (PS3.4 C.4.3): the matches come back on this association into ``out_dir``.

    The storage classes are proposed with the SCP role (PS3.7 D.3.3.4) in the uncompressed
    transfer syntaxes; an instance the peer can only send compressed fails on its side.
    """
    model = resolve_model(level, model)
    identifier = build_identifier(level, keys)
    sop_class = MODEL_SOP_CLASSES[(model, "get")]
    out = Path(out_dir)
    tracker = _RetrieveTracker(progress)
    if cancel is not None and cancel.is_set():
        return tracker.result("cancelled")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return tracker.result(f"cannot create {out}: {exc.strerror or exc}")
    ae = _GetReceiver(peer.calling_aet, out)
    ae.timeout = peer.timeout
    ae.dimse_timeout = peer.timeout
    ae.add_scu(qr_get_scu, [sop_class])
    ae.update_context_def_list(GET_STORAGE_CLASSES, store_in_file=True,
                               transfer_syntaxes=list(uids.UNCOMPRESSED_TRANSFER_SYNTAXES),
                               scp_role=True)
    try:
        with ae.request_association(peer.remote_ae()) as assoc:
            scu = assoc.get_scu(sop_class)
            for status, rsp in scu(identifier, assoc.next_message_id(), cancel=cancel):
                tracker.update(status, rsp)
    except Exception as exc:
        return tracker.result(describe_error(exc, peer), tuple(ae.files))
    finally:
        ae.discard_unfinished()
    return tracker.result(files=tuple(ae.files))


# ---------------------------------------------------------------------------- local archive
class ArchiveImport(FrozenRecord):
    """What ``import_into_archive`` did: the objects now in the archive, and the files refused.

    ``stored`` holds ``operations.StoredObject`` values, the same the local server reports for
    an object received by C-STORE, so a window lists both the same way.
    """

    _fields = ("stored", "failed", "error")

    def __init__(self, stored: tuple = (), failed: tuple = (), error: str | None = None) -> None:
        self._assign(stored, failed, error)  # failed: (path, reason) pairs


def import_into_archive(files: Any, storage_dir: str | os.PathLike[str],
                        calling_aet: str = "") -> ArchiveImport:
    """Move files a C-GET wrote into the local archive and index them.

    A C-MOVE lands in the archive by itself (the peer C-STOREs to our server); a C-GET's
    sub-operations arrive on our own association (PS3.4 C.4.3) and ``get`` writes them to a
    folder. Importing them here makes both retrieves end in the same place: indexed, visible
    to the local Q/R SCP and to "present locally" checks. ``calling_aet`` is recorded as the
    source of each object.
    """
    from ..archive import Archive
    from ..archive.scp import StoredObject

    files = [Path(f) for f in files]
    try:
        archive = Archive(Path(storage_dir))
    except Exception as exc:  # unwritable folder, broken index: say so, keep the files
        reason = f"cannot open the local archive {storage_dir}: {exc}"
        return ArchiveImport((), tuple((str(f), reason) for f in files), reason)
    stored, failed = [], []
    with archive:
        for path in files:
            try:
                s = archive.add_file(path, copy=False, calling_aet=calling_aet)
            except Exception as exc:  # one bad file must not stop the others
                logger.warning("could not import %s into the archive: %s", path, exc)
                failed.append((str(path), str(exc)))
                continue
            stored.append(StoredObject(s.path, s.sop_class_uid, s.sop_instance_uid,
                                       s.patient_name, s.study_uid, calling_aet, s.size))
    return ArchiveImport(tuple(stored), tuple(failed))


def study_instance_counts(storage_dir: str | os.PathLike[str], study_uids: Any) -> dict[str, int]:
    """How many instances of each of ``study_uids`` the local archive holds (Number of Study
    Related Instances, PS3.4 C.3.4), so a window can tell a whole study from part of one (a
    retrieve cancelled at 707 of 800). Studies it does not hold are left out."""
    from ..archive import Archive

    wanted = [str(u) for u in study_uids if u]
    if not wanted:
        return {}
    try:
        archive = Archive(Path(storage_dir), read_only=True)
    except Exception as exc:
        logger.debug("no local archive in %s: %s", storage_dir, exc)
        return {}
    counts: dict[str, int] = {}
    with archive:
        for start in range(0, len(wanted), 200):
            identifier = Dataset()
            identifier.StudyInstanceUID = wanted[start:start + 200]
            identifier.NumberOfStudyRelatedInstances = None
            for ds in archive.find("STUDY", identifier):
                if "StudyInstanceUID" in ds:
                    counts[str(ds.StudyInstanceUID)] = int(ds.get("NumberOfStudyRelatedInstances")
                                                           or 0)
    return counts


def studies_in_archive(storage_dir: str | os.PathLike[str], study_uids: Any) -> frozenset:
    """Which of ``study_uids`` the local archive holds (List of UID matching, PS3.4 C.2.2.2.2).

    Opens the index read-only; a folder without an archive holds no study.
    """
    from ..archive import Archive

    wanted = [str(u) for u in study_uids if u]
    if not wanted:
        return frozenset()
    try:
        archive = Archive(Path(storage_dir), read_only=True)
    except Exception as exc:
        logger.debug("no local archive in %s: %s", storage_dir, exc)
        return frozenset()
    found: set[str] = set()
    with archive:
        for start in range(0, len(wanted), 200):
            identifier = Dataset()
            identifier.StudyInstanceUID = wanted[start:start + 200]
            found.update(str(ds.StudyInstanceUID) for ds in archive.find("STUDY", identifier)
                         if "StudyInstanceUID" in ds)
    return frozenset(found)
