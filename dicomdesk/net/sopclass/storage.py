"""Storage service class (PS3.4 Annex B; C-STORE, PS3.7 9.1.1) in both roles.

* ``storage_scu`` sends one object. A file is streamed from disk: the File Meta Information
  (PS3.10 7.1) is parsed here, and the open file, positioned at the first byte of the data
  set, becomes the message's data set, so the association reads it in PDV-sized pieces and
  the object is never held whole in memory. Only when the accepted transfer syntax differs
  from the file's (both uncompressed, PS3.5 A.1-A.5) is the file decoded and re-encoded.
  Its three steps are public (``prepare_store``, ``send_prepared``, ``receive_store_status``)
  so that a sender of many objects prepares the next while the peer answers the last.
* ``storage_scp`` receives into a file (``@store_in_file``: ``AE.get_file`` supplies it) and
  answers with the status of ``AE.on_receive_store`` (PS3.4 B.2.3).
* ``plan_contexts`` is the pure part of a storage SCU's negotiation: which presentation
  contexts to propose for a set of (SOP class, transfer syntax) pairs, split over several
  associations when more than 128 are needed (PS3.8 9.3.2.2: odd IDs 1..255).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import sys
import warnings
from typing import TYPE_CHECKING, Any, BinaryIO, Container, Iterable, NamedTuple, Sequence

from .. import dimsemessages, statuses, trace, uids
from ..asceprovider import encode_data_set
from ..pdu import PDataTfPDU, PresentationDataValueItem
from ..exceptions import EventHandlingError
from ..inflate import DEFAULT_MAX_INFLATED_SIZE, InflateError, InflateLimitExceeded, InflatingReader
from ..records import FrozenRecord, Record
from .base import sop_classes_on_first_use, store_in_file

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# pydicom (and numpy, which it imports) is loaded only where a data set must be decoded or
# converted: sending a plain Part-10 file as it is (``dicomdesk send``) never needs it.


def _dcmread(*args: Any, **kwargs: Any) -> Any:
    from pydicom import dcmread

    return dcmread(*args, **kwargs)


def _is_dataset(value: Any) -> bool:
    """True for a pydicom ``Dataset``; never imports pydicom (nobody holds a Dataset unless
    pydicom is loaded already)."""
    module = sys.modules.get("pydicom.dataset")
    return module is not None and isinstance(value, module.Dataset)


def _ts_name(uid: str) -> str:
    """The name of a UID for messages (pydicom's dictionary, loaded on this error path only)."""
    from pydicom.uid import UID

    return UID(uid).name

logger = logging.getLogger(__name__)

#: The uncompressed transfer syntaxes we can convert between with pydicom (PS3.5 A.1-A.5).
CONVERTIBLE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    uids.EXPLICIT_VR_LITTLE_ENDIAN,
    uids.IMPLICIT_VR_LITTLE_ENDIAN,
    uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    uids.EXPLICIT_VR_BIG_ENDIAN,
)

#: At most 128 presentation contexts per association (PS3.8 9.3.2.2, odd IDs 1..255).
MAX_CONTEXTS = 128

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR (PS3.10 8.6); never sent

_META_TS = 0x00020010
_META_SOP_CLASS = 0x00020002
_META_SOP_INSTANCE = 0x00020003
# VRs whose explicit-VR length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
# Word sizes of the VRs whose raw bytes change order with endianness (PS3.5 7.3).
_SWAP_WIDTH = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}


@contextlib.contextmanager
def pydicom_warnings_logged() -> Any:
    """Read a peer's or user's file without pydicom's warnings reaching the user as errors.

    pydicom warns about every oddity of real-world files (wrong VR, bad padding); they are
    logged at DEBUG instead, so a CLI run with ``-W error`` or a GUI is not interrupted.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        logger.debug("pydicom: %s", w.message)


class Part10Error(ValueError):
    """A file whose DICOM header cannot be used for sending (the message says why)."""


class Part10Header(FrozenRecord):
    """What a storage SCU needs from a file, read without reading the data set's values.

    ``data_offset`` is where the data set starts (after the File Meta Information, or 0 for
    a bare data set without a Part-10 header); ``has_meta`` is False for the latter.
    """

    _fields = ("transfer_syntax", "sop_class_uid", "sop_instance_uid", "data_offset", "has_meta")

    def __init__(self, transfer_syntax: str, sop_class_uid: str, sop_instance_uid: str, data_offset: int,
                 has_meta: bool = True) -> None:
        self._assign(transfer_syntax, sop_class_uid, sop_instance_uid, data_offset, has_meta)


def _clean_uid(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("ascii", "replace")
    return str(value).strip("\0 ")


def read_file_meta(fp: BinaryIO) -> tuple[dict[int, str], int] | None:
    """Parse the File Meta Information group (PS3.10 7.1) from the file's current start.

    Returns ({tag: text value}, offset of the data set) or None when the file has no
    group 0002 (a bare data set). The group is always Explicit VR Little Endian; its
    length is taken from the elements themselves, so a wrong or missing group length
    (0002,0000) does not matter. Raises ``Part10Error`` when the group is truncated.
    """
    fp.seek(0)
    head = fp.read(132)
    if len(head) == 132 and head[128:132] == b"DICM":
        offset = 132
    elif len(head) >= 6 and head[:2] == b"\x02\x00" and head[4:6].isalpha():
        offset = 0  # meta without the preamble (seen in the wild)
    else:
        return None
    fp.seek(offset)
    values: dict[int, str] = {}
    while True:
        header = fp.read(8)
        if len(header) < 8:
            if len(header) == 0 and values:
                return values, offset  # only meta, empty data set
            raise Part10Error("truncated File Meta Information")
        group, elem = struct.unpack("<HH", header[:4])
        if group != 0x0002:
            break
        vr = header[4:6]
        if not vr.isalpha():
            raise Part10Error(f"unreadable File Meta Information (bad VR at ({group:04X},{elem:04X}))")
        if vr in _LONG_VRS:
            more = fp.read(4)
            if len(more) < 4:
                raise Part10Error("truncated File Meta Information")
            length = struct.unpack("<L", more)[0]
            head_len = 12
        else:
            length = struct.unpack("<H", header[6:8])[0]
            head_len = 8
        if length == 0xFFFFFFFF:
            raise Part10Error("undefined length in the File Meta Information")
        value = fp.read(length)
        if len(value) < length:
            raise Part10Error("truncated File Meta Information")
        if vr == b"UI":
            values[(group << 16) | elem] = _clean_uid(value)
        offset += head_len + length
    return values, offset


def _bare_encoding(fp: BinaryIO, offset: int = 0) -> str:
    """Guess the transfer syntax of a data set without a Part-10 header (PS3.5 7.1).

    PS3.10 says such a data set is Implicit VR Little Endian; some tools write Explicit VR,
    recognisable by two letters where the implicit length would start.
    """
    fp.seek(offset)
    first = fp.read(8)
    if len(first) < 8:
        raise Part10Error("too short to be a DICOM data set")
    little = struct.unpack("<H", first[:2])[0] <= struct.unpack(">H", first[:2])[0]
    explicit = first[4:6].isalpha() and first[4:6].isupper()
    if not little:
        return uids.EXPLICIT_VR_BIG_ENDIAN
    return uids.EXPLICIT_VR_LITTLE_ENDIAN if explicit else uids.IMPLICIT_VR_LITTLE_ENDIAN


_SOP_CLASS_TAG, _SOP_INSTANCE_TAG = 0x00080016, 0x00080018


def _scan_sop_uids(fp: BinaryIO, offset: int, ts: str) -> tuple[str, str] | None:
    """SOP Class and Instance UID (0008,0016/0018) read from the first element headers.

    The fast path of ``read_part10_header``: it reads only the few elements before
    (0008,0018) with plain ``struct`` (PS3.5 7.1), never pydicom's reader, since a storage
    SCU reads every file's header once or twice. It answers only when the layout is plain
    (defined lengths, both UIDs present, every element in order, tags ascending); anything
    else (deflate, sequences, odd VRs, absent UIDs) returns None and pydicom decides.
    """
    if ts == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return None
    implicit = ts == uids.IMPLICIT_VR_LITTLE_ENDIAN
    e = ">" if ts == uids.EXPLICIT_VR_BIG_ENDIAN else "<"
    fp.seek(offset)
    head = fp.read(4096)  # the UIDs sit in the first few hundred bytes of a data set
    values: dict[int, str] = {}
    pos, previous = 0, -1
    while pos + 8 <= len(head):
        group, elem = struct.unpack_from(e + "HH", head, pos)
        tag = (group << 16) | elem
        if tag <= previous or tag > _SOP_INSTANCE_TAG:
            break
        previous = tag
        if implicit:
            length = struct.unpack_from(e + "L", head, pos + 4)[0]
            pos += 8
            vr = None
        else:
            vr = head[pos + 4:pos + 6]
            if not (vr.isalpha() and vr.isupper()):
                return None
            if vr in _LONG_VRS:
                if pos + 12 > len(head):
                    return None
                length = struct.unpack_from(e + "L", head, pos + 8)[0]
                pos += 12
            else:
                length = struct.unpack_from(e + "H", head, pos + 6)[0]
                pos += 8
        if length == 0xFFFFFFFF or pos + length > len(head):
            return None
        if tag in (_SOP_CLASS_TAG, _SOP_INSTANCE_TAG):
            if vr is not None and vr != b"UI":
                return None
            raw = head[pos:pos + length]
            if not raw.isascii():
                return None
            values[tag] = _clean_uid(raw)
        pos += length
    sop_class, sop_instance = values.get(_SOP_CLASS_TAG), values.get(_SOP_INSTANCE_TAG)
    if not sop_class or not sop_instance or "\\" in sop_class or "\\" in sop_instance:
        return None
    return sop_class, sop_instance


def read_part10_header(path: str | os.PathLike[str]) -> Part10Header:
    """Transfer syntax, SOP class/instance and data set offset of a file to send.

    The SOP UIDs come from the data set (what the peer will check, PS3.4 B.2.3 A900),
    falling back to the meta group's Media Storage UIDs; only the header is read.
    Raises ``Part10Error`` (or OSError) with the fault.
    """
    with open(path, "rb") as fp:
        meta = read_file_meta(fp)
        if meta is None:
            ts, offset, values = _bare_encoding(fp), 0, {}
        else:
            values, offset = meta
            ts = values.get(_META_TS, "")
            if not ts:
                raise Part10Error("the File Meta Information has no Transfer Syntax UID")
        found = _scan_sop_uids(fp, offset, ts)
        if found is not None:
            sop_class, sop_instance = found
        elif ts in _DEFLATED_SYNTAXES:
            # Never dcmread a deflated file here: pydicom inflates the whole data set in memory
            # (a 1 MB bomb is 1 GiB), and this runs for every C-GET/C-MOVE sub-operation.
            ds = read_deflated_header(fp, offset, _SOP_INSTANCE_TAG, DEFAULT_MAX_INFLATED_SIZE)
            sop_class = _clean_uid(ds.get("SOPClassUID"))
            sop_instance = _clean_uid(ds.get("SOPInstanceUID"))
        else:
            try:
                fp.seek(0)
                with pydicom_warnings_logged():
                    ds = _dcmread(fp, force=True, stop_before_pixels=True,
                                 specific_tags=["SOPClassUID", "SOPInstanceUID"])
                sop_class = _clean_uid(ds.get("SOPClassUID"))
                sop_instance = _clean_uid(ds.get("SOPInstanceUID"))
            except Exception as exc:  # pydicom raises many types on a damaged header
                raise Part10Error(f"unreadable data set header: {exc}") from exc
    sop_class = sop_class or values.get(_META_SOP_CLASS, "")
    sop_instance = sop_instance or values.get(_META_SOP_INSTANCE, "")
    if not sop_class:
        raise Part10Error("no SOP Class UID")
    if not sop_instance:
        raise Part10Error("no SOP Instance UID")
    return Part10Header(ts, sop_class, sop_instance, offset, meta is not None)


# ------------------------------------------------------------------------- fast header scan
_PIXEL_DATA_TAG = 0x7FE00010
#: How much of a file the fast header scan reads: the elements before Pixel Data of a
#: typical image fit in a few KiB; a longer header is left to pydicom.
_SCAN_BYTES = 64 * 1024


class HeaderScan(FrozenRecord):
    """The top-level elements a caller asked for, as pydicom's ``RawDataElement``s.

    ``elements`` maps tag -> RawDataElement (undecoded bytes, exactly what pydicom's reader
    yields), so a ``Dataset(elements)`` decodes values, character sets included, the way
    ``dcmread`` would. ``meta`` holds the File Meta Information's UI values.
    """

    #: ``stop_offset``: the file offset where the walk stopped (Pixel Data's element header,
    #: or the end): every element before it was seen whole, so a structure check may start there.
    _fields = ("meta", "transfer_syntax", "data_offset", "elements", "stop_offset")

    def __init__(self, meta: dict[int, str], transfer_syntax: str, data_offset: int,
                 elements: dict[int, Any], stop_offset: int = 0) -> None:
        self._assign(meta, transfer_syntax, data_offset, elements, stop_offset)


#: Transfer syntaxes whose data set is deflated (PS3.5 A.5, JPIP Referenced Deflate): scanned
#: only through bounded inflation (``scan_header(max_inflated_size=...)``).
_DEFLATED_SYNTAXES = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95",
                                "1.2.840.10008.1.2.4.205"})

#: How much of a deflated data set pydicom may read, inflated, for a header whose layout the
#: plain scan declines (long sequences before the wanted tags): the header must fit in it.
_DEFLATED_HEADER_BYTES = 1024 * 1024


def read_deflated_header(fp: BinaryIO, offset: int, last_tag: int, max_inflated_size: int) -> Dataset:
    """pydicom's reading of a deflated data set's top-level elements up to ``last_tag``,
    from at most ``_DEFLATED_HEADER_BYTES`` inflated bytes (never the whole data set).

    ``offset`` is where the deflated stream starts in ``fp``. Raises ``Part10Error`` when
    the stream is corrupt or the elements do not fit in that many bytes.
    """
    from pydicom.filereader import read_dataset
    from pydicom.filebase import DicomBytesIO

    fp.seek(offset)
    try:
        head = InflatingReader(fp, max_inflated_size).read(_DEFLATED_HEADER_BYTES)
    except InflateError as exc:
        raise Part10Error(str(exc)) from exc

    def past(tag: int, vr: Any, length: int) -> bool:
        return tag > last_tag

    try:
        with pydicom_warnings_logged():
            ds = read_dataset(DicomBytesIO(head), False, True, stop_when=past, defer_size=1024)
            for _ in ds:  # convert now: a value cut at the buffer's end fails here
                pass
    except Exception as exc:  # pydicom raises many types on a damaged header
        raise Part10Error(f"unreadable deflated data set header: {exc}") from exc
    return ds


def _scannable_syntax(ts: str) -> bool:
    """The uncompressed syntaxes and the encapsulated ones (JPEG family, RLE: Explicit VR
    Little Endian headers, PS3.5 A.4); private or deflated syntaxes are left to pydicom."""
    if ts in CONVERTIBLE_TRANSFER_SYNTAXES:
        return ts != uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    return (ts.startswith("1.2.840.10008.1.2.4.") or ts == "1.2.840.10008.1.2.5") \
        and ts not in _DEFLATED_SYNTAXES


#: The VRs of PS3.5 Table 6.2-1 with a 2-byte length in explicit VR (the rest: ``_LONG_VRS``).
_SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO",
                        b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
_VR_TEXT = {vr: vr.decode("ascii") for vr in _SHORT_VRS | _LONG_VRS}
#: Element header structs by byte order: group and element, the explicit VR with its
#: 2-byte length, a 4-byte length.
_STRUCTS = {e: {"tag": struct.Struct(e + "HH").unpack_from,
                "short": struct.Struct(e + "2sH").unpack_from,
                "long": struct.Struct(e + "L").unpack_from} for e in "<>"}


def _vr_and_length(buf: bytes, pos: int, implicit: bool, e: str) -> tuple[bytes | None, int, int] | None:
    """(VR bytes or None, value length, position of the value) of the element header at
    ``pos`` (PS3.5 7.1; ``implicit`` also for item and delimiter tags, which have no VR);
    None when the header is not one pydicom would read the same way."""
    if implicit:
        return None, struct.unpack_from(e + "L", buf, pos + 4)[0], pos + 8
    vr = buf[pos + 4:pos + 6]
    if not (vr.isalpha() and vr.isupper()):
        return None
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            return None
        return vr, struct.unpack_from(e + "L", buf, pos + 8)[0], pos + 12
    return vr, struct.unpack_from(e + "H", buf, pos + 6)[0], pos + 8


def _skip_undefined(buf: bytes, pos: int, end_tag: int, implicit: bool, e: str, depth: int) -> int | None:
    """Position after the delimiter ``end_tag`` (PS3.5 7.5), or None when unsure."""
    if depth > 16:
        return None
    size = len(buf)
    while pos + 8 <= size:
        group, elem = struct.unpack_from(e + "HH", buf, pos)
        tag = (group << 16) | elem
        header = _vr_and_length(buf, pos, implicit or group == 0xFFFE, e)
        if header is None:
            return None
        vr, length, pos = header
        if tag == end_tag:
            return pos
        if length == _UNDEFINED:
            if tag == _ITEM:
                inner = _skip_undefined(buf, pos, _ITEM_END, implicit, e, depth + 1)
            elif vr in (b"SQ", b"UN", None) and tag != _PIXEL_DATA_TAG:
                inner = _skip_undefined(buf, pos, _SEQ_END, implicit, e, depth + 1)
            else:
                return None
            if inner is None:
                return None
            pos = inner
        else:
            pos += length
    return None


class RawValue(NamedTuple):
    """An element as ``scan_header(raw=True)`` gives it: its VR (None in implicit VR) and
    undecoded value bytes, the two fields of pydicom's ``RawDataElement`` a storage SCU
    reads, without importing pydicom."""

    VR: str | None
    value: bytes


def scan_header(fp: BinaryIO, tags: frozenset[int] | set[int], *,
                until_last_tag: bool = False, raw: bool = False,
                max_inflated_size: int | None = None) -> HeaderScan | None:
    """Read a Part-10 file's meta and the top-level ``tags`` with plain ``struct`` (PS3.5 7.1).

    The fast path of header reading for a storage SCU (``inspect_file``) and the archive
    (``Archive.commit_incoming``): one read of the file's start instead of pydicom's
    element-by-element reader. It walks every top-level element before Pixel Data, as
    ``dcmread(stop_before_pixels=True)`` does, and answers only when that walk is plain:
    a preamble and meta group, a little/big endian uncompressed syntax (not deflated),
    well-formed VRs, ascending tags, every value inside the file, the wanted elements of
    defined length. Anything else returns None and the caller asks pydicom. Raises
    ``Part10Error`` only where ``read_file_meta`` does. With ``until_last_tag`` the walk
    stops after the last wanted tag (tags ascend): for a caller that checks the rest later
    (a storage SCU planning its association; ``stop_offset`` then says where it stopped).
    With ``raw`` the elements are ``RawValue``s (VR and bytes), and pydicom is not imported:
    the storage SCU's planning and sending of plain files need nothing more.
    With ``max_inflated_size`` a deflated data set (PS3.5 A.5) is scanned too, from its first
    ``_SCAN_BYTES`` inflated bytes (the rest is never inflated); its ``stop_offset`` and the
    elements' value offsets then count inflated bytes, not file bytes. A corrupt stream, or
    one inflating past the bound within those bytes, returns None.
    """
    if not raw:
        from pydicom.dataelem import RawDataElement, empty_value_for_VR
        from pydicom.tag import BaseTag

    meta = read_file_meta(fp)
    if meta is None:
        return None
    fp.seek(128)
    if fp.read(4) != b"DICM":
        return None
    values, offset = meta
    ts = values.get(_META_TS, "")
    deflated = max_inflated_size is not None and ts in _DEFLATED_SYNTAXES
    if not (deflated or _scannable_syntax(ts)) or values.get(_META_SOP_CLASS) == MEDIA_STORAGE_DIRECTORY:
        return None
    implicit = ts == uids.IMPLICIT_VR_LITTLE_ENDIAN
    little = ts != uids.EXPLICIT_VR_BIG_ENDIAN
    e = "<" if little else ">"
    fp.seek(offset)
    if deflated:  # Explicit VR Little Endian once inflated (PS3.5 A.5)
        try:
            buf = InflatingReader(fp, max_inflated_size).read(_SCAN_BYTES)
        except InflateError:
            return None
    else:
        buf = fp.read(_SCAN_BYTES)
    at_eof = len(buf) < _SCAN_BYTES
    size = len(buf)
    found: dict[int, Any] = {}
    pos, previous = 0, -1
    stop_after = max(tags) if until_last_tag and tags else _PIXEL_DATA_TAG
    # One precompiled struct per header shape (this loop runs for every top-level element).
    tag_of = _STRUCTS[e]["tag"]
    short_header = _STRUCTS[e]["short"]
    long_length = _STRUCTS[e]["long"]
    while True:
        if pos == size:
            if not at_eof:
                return None
            break
        if pos + 8 > size:
            return None
        group, elem = tag_of(buf, pos)
        tag = (group << 16) | elem
        if tag <= previous or group == 0xFFFE:
            return None
        if tag >= _PIXEL_DATA_TAG or tag > stop_after:
            break
        previous = tag
        if implicit:
            raw_vr, length, pos = None, long_length(buf, pos + 4)[0], pos + 8
        else:
            raw_vr, short_length = short_header(buf, pos + 4)
            if raw_vr in _LONG_VRS:
                if pos + 12 > size:
                    return None
                length, pos = long_length(buf, pos + 8)[0], pos + 12
            elif raw_vr in _SHORT_VRS:
                length, pos = short_length, pos + 8
            else:
                header = _vr_and_length(buf, pos, implicit, e)  # an unusual VR: the careful path
                if header is None:
                    return None
                raw_vr, length, pos = header
        vr = _VR_TEXT.get(raw_vr) or raw_vr.decode("ascii") if raw_vr is not None else None
        if length == _UNDEFINED:
            if tag in tags or vr not in ("SQ", "UN", None):
                return None
            end = _skip_undefined(buf, pos, _SEQ_END, implicit, e, 0)
            if end is None:
                return None
            pos = end
            continue
        if pos + length > size:
            return None
        if tag in tags:
            if vr == "SQ":
                return None
            if raw:
                found[tag] = RawValue(vr, buf[pos:pos + length])
            else:
                value = buf[pos:pos + length] if length else empty_value_for_VR(vr, raw=True)
                found[tag] = RawDataElement(BaseTag(tag), vr, length, value, offset + pos,
                                            implicit, little, True, False)
        pos += length
    return HeaderScan(values, ts, offset, found, offset + pos)


# ------------------------------------------------------------------------- context planning
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
    return None, (f"the peer does not accept the file's transfer syntax {_ts_name(file_ts)} "
                  f"({file_ts}) and it cannot be converted")


# ------------------------------------------------------------------------------ conversion
def _swap_bytes(ds: Dataset) -> None:
    """Reverse the byte order of OW/OL/OF/OD/OV values, in sequences too (PS3.5 7.3).

    pydicom keeps these values as raw bytes, so changing endianness must swap them here.
    """
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_bytes(item)
            continue
        width = _SWAP_WIDTH.get(elem.VR)
        if width and isinstance(elem.value, (bytes, bytearray)) and len(elem.value) % width == 0:
            data = bytearray(elem.value)
            for i in range(width):
                data[i::width] = elem.value[width - 1 - i::width]
            elem.value = bytes(data)


def converted_dataset(path: str | os.PathLike[str], target_ts: str) -> Dataset:
    """Read a whole uncompressed file and prepare it for ``target_ts`` (only path that loads it).

    The association encodes the returned data set in the context's syntax; values in raw
    word VRs are byte-swapped here when the endianness changes.
    """
    with pydicom_warnings_logged():
        ds = _dcmread(path, force=True)
    source_ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    source_little = source_ts != uids.EXPLICIT_VR_BIG_ENDIAN
    if ds.original_encoding[1] is not None:
        source_little = bool(ds.original_encoding[1])
    target_little = target_ts != uids.EXPLICIT_VR_BIG_ENDIAN
    if source_little != target_little:
        # Ambiguous VRs (US or SS, OB or OW) must be resolved in the source's order first.
        from pydicom.filewriter import correct_ambiguous_vr
        ds = correct_ambiguous_vr(ds, source_little)
        _swap_bytes(ds)
    return ds


# ------------------------------------------------------------------------------ services
class StorageNotSent(ValueError):
    """A C-STORE that was not attempted: nothing went on the wire, the association is intact."""


class _DataSetReader:
    """The data set part of a file, read in place; reports progress; pads an odd length.

    PS3.5 A.5: a deflated data set shall be padded to an even length; some files are not,
    and a strict peer (DCMTK) aborts on an odd PDV. Padding the stream with one trailing
    NUL byte is exactly what the standard asks for.
    """

    def __init__(self, fp: BinaryIO, length: int, pad: bool, on_bytes: Any):
        self._fp = fp
        self._length = length
        self._pad = pad and length % 2 == 1
        self._on_bytes = on_bytes

    def file_region(self) -> tuple[int, int] | None:
        """(offset, length) of the data set in the file, for ``dimsemessages.FileRegion``:
        the DUL then hands the bytes from the page cache to the socket (``os.sendfile``)
        without reading them into Python. None when a pad byte must be added."""
        if self._pad:
            return None
        try:
            self._fp.fileno()
            return self._fp.tell(), self._length
        except (OSError, AttributeError, ValueError):  # not a real file
            return None

    def fileno(self) -> int:
        return self._fp.fileno()

    def read_region(self, offset: int, length: int) -> bytes:
        """The bytes of a region (a TLS socket, or a trace, needs them in memory)."""
        data = os.pread(self._fp.fileno(), length, offset)
        while len(data) < length:
            more = os.pread(self._fp.fileno(), length - len(data), offset + len(data))
            if not more:
                raise OSError(f"the file ended {length - len(data)} bytes early while sending")
            data += more
        return data

    def sent(self, count: int) -> None:
        """Progress of a data set sent as file regions (``on_bytes``)."""
        if count and self._on_bytes is not None:
            self._on_bytes(count)

    def readinto(self, view: Any) -> int:
        count = self._fp.readinto(view)
        if not count and self._pad and len(view):
            self._pad = False
            view[0] = 0
            count = 1
        if count and self._on_bytes is not None:
            self._on_bytes(count)
        return count

    def read(self, size: int = -1) -> bytes:
        buf = bytearray(size if size >= 0 else 1 << 20)
        count = self.readinto(memoryview(buf))
        return bytes(buf[:count])


_SOP_UID_TAGS = frozenset({_SOP_CLASS_TAG, _SOP_INSTANCE_TAG})


def _prepare_plain_file(rq: Any, ctx: Any, path: Any, on_bytes: Any) -> BinaryIO | None:
    """The common case of ``_prepare`` in one open: a plain Part-10 file in the context's syntax.

    The header is read once (``scan_header``), the structure check starts where that walk
    stopped, and the same open file is then streamed. Returns None (file closed) for
    anything else, and the general path decides, with the same checks and messages.
    """
    try:
        fp = open(path, "rb")
    except (OSError, TypeError):
        return None
    try:
        scan = scan_header(fp, _SOP_UID_TAGS, raw=True)
        if scan is None or scan.transfer_syntax != ctx.supported_ts:
            fp.close()
            return None
        uids_found = []
        for tag in (_SOP_CLASS_TAG, _SOP_INSTANCE_TAG):
            elem = scan.elements.get(tag)
            raw = elem.value if elem is not None and elem.VR in (None, "UI") else None
            if not raw or not raw.isascii() or b"\\" in raw:
                fp.close()
                return None
            uids_found.append(_clean_uid(raw))
        if not all(uids_found):
            fp.close()
            return None
        header = Part10Header(scan.transfer_syntax, uids_found[0], uids_found[1], scan.data_offset)
        check_structure_of(fp, header, scan.stop_offset)
        length = fp.seek(0, os.SEEK_END) - header.data_offset
    except (OSError, Part10Error):
        fp.close()
        return None
    except BaseException:
        fp.close()
        raise
    fp.seek(header.data_offset)
    rq.affected_sop_instance_uid = header.sop_instance_uid
    rq.data_set = _DataSetReader(fp, length, False, on_bytes)
    return fp


def _prepare(rq: Any, ctx: Any, dataset: Any, on_bytes: Any) -> BinaryIO | None:
    """Fill the C-STORE-RQ's instance UID and data set; return the file to close, if any."""
    if _is_dataset(dataset):
        rq.affected_sop_instance_uid = _clean_uid(dataset.get("SOPInstanceUID"))
        meta = getattr(dataset, "file_meta", None)
        meta_ts = _clean_uid(meta.get("TransferSyntaxUID")) if meta is not None else ""
        if meta_ts and meta_ts != ctx.supported_ts and meta_ts not in CONVERTIBLE_TRANSFER_SYNTAXES:
            raise StorageNotSent(f"a data set in {_ts_name(meta_ts)} cannot be sent as "
                                 f"{_ts_name(ctx.supported_ts)}")
        rq.data_set = dataset
        return None
    fast = _prepare_plain_file(rq, ctx, dataset, on_bytes)
    if fast is not None:
        return fast
    try:
        header = read_part10_header(dataset)
    except OSError as exc:
        raise StorageNotSent(f"cannot read the file: {exc.strerror or exc}") from exc
    except Part10Error as exc:
        raise StorageNotSent(str(exc)) from exc
    rq.affected_sop_instance_uid = header.sop_instance_uid
    try:
        check_structure(dataset, header)  # a truncated file would make the peer abort
    except Part10Error as exc:
        raise StorageNotSent(str(exc)) from exc
    if header.transfer_syntax == ctx.supported_ts:
        try:
            fp = open(dataset, "rb")
        except OSError as exc:
            raise StorageNotSent(f"cannot read the file: {exc.strerror or exc}") from exc
        length = fp.seek(0, os.SEEK_END) - header.data_offset
        fp.seek(header.data_offset)
        pad = header.transfer_syntax == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
        rq.data_set = _DataSetReader(fp, length, pad, on_bytes)
        return fp
    if header.transfer_syntax in CONVERTIBLE_TRANSFER_SYNTAXES \
            and ctx.supported_ts in CONVERTIBLE_TRANSFER_SYNTAXES:
        logger.debug("converting %s from %s to %s", dataset, header.transfer_syntax, ctx.supported_ts)
        if header.transfer_syntax in _DEFLATED_SYNTAXES:
            _check_inflated_size(dataset, header)  # conversion holds the inflated data set
        try:
            with pydicom_warnings_logged():
                rq.data_set = encode_data_set(converted_dataset(dataset, ctx.supported_ts),
                                              ctx.supported_ts)
        except Exception as exc:  # pydicom raises many types on a damaged file
            raise StorageNotSent(f"cannot convert to {_ts_name(ctx.supported_ts)}: {exc}") from exc
        return None
    raise StorageNotSent(f"the file's transfer syntax {_ts_name(header.transfer_syntax)} "
                         f"({header.transfer_syntax}) cannot be converted to {_ts_name(ctx.supported_ts)}")


#: Converting a deflated file to another syntax holds the whole inflated data set in memory
#: (pydicom), so it is done only up to this size; a larger one is sent only as it is stored
#: (to a peer accepting Deflated Explicit VR Little Endian), streamed from the file.
MAX_CONVERTED_INFLATED_SIZE = 64 * 1024 * 1024


def _check_inflated_size(path: Any, header: Part10Header) -> None:
    """Refuse (``StorageNotSent``) to convert a deflated file that inflates past the bound:
    pydicom would hold all of it in memory (a deflate bomb taking the server with it)."""
    try:
        with open(path, "rb") as fp:
            check_deflated_structure(fp, header.data_offset, MAX_CONVERTED_INFLATED_SIZE)
    except InflateLimitExceeded as exc:
        raise StorageNotSent(f"not converted: {exc}") from exc
    except OSError as exc:
        raise StorageNotSent(f"cannot read the file: {exc.strerror or exc}") from exc
    except Part10Error as exc:
        raise StorageNotSent(str(exc)) from exc


class PreparedStore:
    """A C-STORE-RQ ready to go and the open file its data set streams from (if any).

    ``prepare_store`` does all of a storage SCU's own work on an object (open, header,
    structure check, request) before anything is sent, so a caller sending many objects
    can prepare the next one while the peer is still answering the previous one. The
    file stays open until ``send_prepared`` has sent it or ``close()`` is called (safe
    twice; also a context manager), so an unsent preparation never leaks a descriptor.
    """

    __slots__ = ("rq", "ctx", "_fp")

    def __init__(self, rq: Any, ctx: Any, fp: BinaryIO | None):
        self.rq, self.ctx, self._fp = rq, ctx, fp

    @property
    def message_id(self) -> int:
        return self.rq.message_id

    def close(self) -> None:
        fp, self._fp = self._fp, None
        if fp is not None:
            fp.close()

    def __enter__(self) -> "PreparedStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def prepare_store(ctx: Any, dataset: Any, msg_id: int, *, on_bytes: Any = None,
                  move_originator: tuple[str, int] | None = None) -> PreparedStore:
    """Build the C-STORE-RQ for ``dataset`` (a pydicom Dataset or a file name) on ``ctx``.

    Nothing touches the association. Raises ``StorageNotSent`` (nothing opened is left
    open) for the reasons ``storage_scu`` documents; ``on_bytes(n)`` is called later, as
    ``send_prepared`` streams the file. ``move_originator`` — (AE title, Message ID) of the
    C-MOVE-RQ this store is a sub-operation of — fills Move Originator Application Entity
    Title and Move Originator Message ID (PS3.7 9.3.1.1, required then by PS3.4 C.4.2.2).
    """
    rq = dimsemessages.CStoreRQMessage()
    rq.message_id = msg_id
    rq.affected_sop_class_uid = ctx.sop_class
    if move_originator is not None:
        rq.move_originator_aet, rq.move_originator_message_id = move_originator
    return PreparedStore(rq, ctx, _prepare(rq, ctx, dataset, on_bytes))


def send_prepared(asce: Any, prepared: PreparedStore) -> None:
    """Send a prepared C-STORE-RQ and its data set, then close its file (even on failure)."""
    try:
        asce.send(prepared.rq, prepared.ctx.id)
    finally:
        prepared.close()


def receive_store_status(asce: Any, msg_id: int) -> statuses.Status:
    """Wait for the C-STORE-RSP to ``msg_id``; its status, with ``error_comment`` (or None).

    Other messages arriving meanwhile are kept for the association's next ``receive``.
    """
    rsp, _ = asce.receive_response(msg_id)
    return _store_status(rsp)


def receive_any_store_status(asce: Any, msg_ids: Container[int]) -> tuple[int, statuses.Status]:
    """(Message ID, status) of the next C-STORE-RSP to any of ``msg_ids``: the requests
    outstanding in an asynchronous operations window (PS3.7 D.3.3.3), whose responses a
    peer may send in any order; each is matched by Message ID Being Responded To."""
    rsp, _ = asce.receive_response_to(msg_ids)
    return rsp.message_id_being_responded_to, _store_status(rsp)


def _store_status(rsp: Any) -> statuses.Status:
    status = statuses.Status(rsp.status, 0x0001)
    # Error Comment (0000,0902) from the decoded fields: no pydicom command set per response.
    comment = rsp.get_command_value(0x0902)
    status.error_comment = str(comment).strip() if comment else None
    return status


@sop_classes_on_first_use(lambda: uids.STORAGE_SOP_CLASSES)
def storage_scu(asce: Any, ctx: Any, dataset: Any, msg_id: int, *, on_bytes: Any = None,
                move_originator: tuple[str, int] | None = None) -> statuses.Status:
    """Send C-STORE-RQ with ``dataset`` (a pydicom Dataset or a file name); return the status.

    A file is streamed from disk when the context's transfer syntax is the file's own; an
    uncompressed file is converted otherwise. ``StorageNotSent`` means nothing was sent
    (unreadable file, compressed syntax the context cannot carry). Extension: ``on_bytes(n)``
    is called as the streamed file is read (progress). The response's Error Comment, if
    any, is on the returned status as ``error_comment``. It is ``prepare_store``,
    ``send_prepared`` and ``receive_store_status`` in a row; a caller sending many objects
    calls them itself to prepare the next object while waiting for this one's response.
    Extension: ``move_originator`` = (AE title, Message ID) of the C-MOVE this store serves.
    """
    send_prepared(asce, prepare_store(ctx, dataset, msg_id, on_bytes=on_bytes,
                                      move_originator=move_originator))
    return receive_store_status(asce, msg_id)


@store_in_file
@sop_classes_on_first_use(lambda: uids.STORAGE_SOP_CLASSES)
def storage_scp(asce: Any, ctx: Any, msg: Any) -> None:
    """Answer C-STORE with the status of ``ae.on_receive_store(ctx, file)`` (PS3.4 B.2.3).

    ``msg.data_set`` is the file ``get_file`` opened, positioned at the Part-10 file's start;
    it is closed when the hook returns.
    A data set that could not be received answers A700 (out of resources) when our write
    failed, C000 otherwise; the AE's ``on_receive_store_failed`` (an extension, if present)
    is told so it can discard the file. ``EventHandlingError`` answers C000.
    """
    error = getattr(msg, "data_set_error", None)
    if not error and msg.data_set is None:  # Command Data Set Type 0101: nothing to keep
        error = "C-STORE request without a data set"
    if error:
        logger.warning("C-STORE of %s not received: %s", msg.affected_sop_instance_uid, error)
        status = statuses.Status(int(statuses.C_STORE_OUT_OF_RESOURCES)
                                 if "cannot write" in error or "cannot open" in error
                                 else int(statuses.C_STORE_CANNOT_UNDERSTAND), "C-STORE")
        status.error_comment = error  # e.g. why the archive refuses (disk full), PS3.7 C.4
        failed = getattr(asce.ae, "on_receive_store_failed", None)
        if failed is not None:
            failed(ctx, msg.data_set, error)
        elif hasattr(msg.data_set, "close"):
            msg.data_set.close()
    else:
        begin = getattr(asce.ae, "begin_receive_store", None)
        if begin is not None and getattr(asce, "ops_performed", 1) > 1:
            # Within an asynchronous window the hook may store the object out of line (its
            # fsyncs overlap the next object's transfer); the response goes when it is done.
            # Its future resolves to the status, or to a callable giving it on this thread.
            future = begin(ctx, msg.data_set)
            if future is not None:
                asce.defer(future, lambda done: _send_store_response(
                    asce, ctx, msg, done() if callable(done) else done))
                return
        try:
            status = asce.ae.on_receive_store(ctx, msg.data_set)
        except EventHandlingError as exc:
            logger.info("on_receive_store refused %s: %s", msg.affected_sop_instance_uid, exc)
            status = statuses.C_STORE_CANNOT_UNDERSTAND
        finally:
            # As in the reference, the service closes the received file once the hook is
            # done with it (a hook that keeps the data moves or copies it first).
            close = getattr(msg.data_set, "close", None)
            if close is not None and not getattr(msg.data_set, "closed", True):
                close()
    _send_store_response(asce, ctx, msg, status)


#: C-STORE-RSP without Error Comment (PS3.7 9.3.1.2), Implicit VR Little Endian: group
#: length, (0000,0002) header, then class UID; (0000,0100) 8001H, (0000,0120) message ID,
#: (0000,0800) 0101H (no data set), (0000,0900) status, (0000,1000) header, instance UID.
_RSP_HEAD = struct.Struct('<HHIIHHI')
_LAST_COMMAND_FRAGMENT = bytes((dimsemessages.LAST_COMMAND_FRAGMENT,))
_RSP_MIDDLE = struct.Struct('<HHIHHHIHHHIHHHIHHHI')


def _store_rsp_command(class_uid: str, message_id: int, status: int, instance_uid: str) -> bytes | None:
    """The encoded command set of a C-STORE-RSP without Error Comment: the bytes
    ``CStoreRSPMessage.set_length`` gives (pydicom's encoding), written with two ``struct``
    packs. It runs once per received object; building the message object, normalising
    each field and encoding it generically cost ~50 us. None when a value is not plain
    (the generic path handles it)."""
    try:
        cls = class_uid.encode('ascii')
        inst = instance_uid.encode('ascii')
    except (AttributeError, UnicodeEncodeError):
        return None
    if len(cls) % 2:
        cls += b'\0'
    if len(inst) % 2:
        inst += b'\0'
    if not (cls and inst and type(message_id) is int and 0 <= message_id <= 0xFFFF
            and 0 <= status <= 0xFFFF):
        return None
    length = 8 + len(cls) + 4 * 10 + 8 + len(inst)
    return b''.join((
        _RSP_HEAD.pack(0, 0, 4, length, 0, 0x0002, len(cls)), cls,
        _RSP_MIDDLE.pack(0, 0x0100, 2, 0x8001, 0, 0x0120, 2, message_id,
                         0, 0x0800, 2, dimsemessages.NO_DATA_SET, 0, 0x0900, 2, status,
                         0, 0x1000, len(inst)),
        inst))


def _send_store_response(asce: Any, ctx: Any, msg: Any, status: Any) -> None:
    """Send the C-STORE-RSP: pre-encoded in one PDU when it is the plain case (no Error
    Comment, no protocol trace listening, one PDU fits the peer's maximum), else as any
    DIMSE message."""
    if not getattr(status, "error_comment", None) and not trace.enabled():
        command = _store_rsp_command(msg.affected_sop_class_uid, msg.message_id, int(status),
                                     msg.affected_sop_instance_uid)
        peer_max = asce.peer_max_pdu_length
        if command is not None and (not peer_max or len(command) + 6 <= peer_max):
            asce.dul.send_pdata([PDataTfPDU([PresentationDataValueItem(
                ctx.id, _LAST_COMMAND_FRAGMENT + command)])])
            return
    rsp = dimsemessages.CStoreRSPMessage()
    rsp.message_id_being_responded_to = msg.message_id
    rsp.affected_sop_class_uid = msg.affected_sop_class_uid
    rsp.affected_sop_instance_uid = msg.affected_sop_instance_uid
    rsp.status = int(status)
    comment = getattr(status, "error_comment", None)
    if comment:
        rsp.command_set.ErrorComment = str(comment)[:64]
    asce.send(rsp, ctx.id)


# ------------------------------------------------------------------------ structure check
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF


class _Walker:
    """Walks a data set's element headers, seeking over values (PS3.5 7.1, 7.5).

    Reading only tags and lengths shows whether every value fits in the file, without
    reading any value: the check costs a few reads per element, whatever the file's size.
    """

    def __init__(self, fp: BinaryIO, end: int, implicit: bool, little: bool):
        self.fp, self.end, self.implicit = fp, end, implicit
        self.e = "<" if little else ">"

    def _header(self) -> tuple[int, bytes | None, int]:
        raw = self.fp.read(8)
        if len(raw) < 8:
            raise Part10Error(f"truncated data set: element header cut at byte {self.fp.tell()}")
        group, elem = struct.unpack(self.e + "HH", raw[:4])
        tag = (group << 16) | elem
        if group == 0xFFFE or self.implicit:
            return tag, None, struct.unpack(self.e + "L", raw[4:])[0]
        vr = raw[4:6]
        if not vr.isalpha():
            raise Part10Error(f"element ({group:04X},{elem:04X}) has no VR although the transfer "
                              "syntax is explicit VR (the data set is encoded in implicit VR)")
        if vr in _LONG_VRS:
            more = self.fp.read(4)
            if len(more) < 4:
                raise Part10Error("truncated data set: element header cut")
            return tag, vr, struct.unpack(self.e + "L", more)[0]
        return tag, vr, struct.unpack(self.e + "H", raw[6:])[0]

    def _more(self) -> bool:
        return self.fp.tell() < self.end

    def _skip(self, tag: int, length: int) -> None:
        target = self.fp.tell() + length
        if target > self.end:
            raise Part10Error(f"truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs "
                              f"{length} bytes, the file ends {target - self.end} bytes too early")
        self.fp.seek(target)

    def elements(self, stop: int | None = None, depth: int = 0) -> None:
        """Walk elements until the end (or the delimiter ``stop``)."""
        if depth > 32:
            raise Part10Error("sequences nested too deeply")
        while self._more():
            tag, vr, length = self._header()
            if stop is not None and tag == stop:
                return
            if length != _UNDEFINED:
                self._skip(tag, length)
            elif vr == b"SQ" or vr == b"UN" or vr is None or tag == 0x7FE00010:
                self._items(depth)
            else:
                raise Part10Error(f"undefined length on a {vr.decode('ascii', 'replace')} element")
        if stop is not None:
            raise Part10Error("truncated data set: a sequence or item is not closed")

    def _items(self, depth: int) -> None:
        while True:
            tag, _, length = self._header()
            if tag == _SEQ_END:
                return
            if tag != _ITEM:
                raise Part10Error(f"unexpected ({tag >> 16:04X},{tag & 0xFFFF:04X}) in a sequence")
            if length == _UNDEFINED:
                self.elements(_ITEM_END, depth + 1)
            else:
                self._skip(tag, length)


class _InflatedWalker(_Walker):
    """``_Walker`` over an ``InflatingReader``: forward only, the end is the stream's end."""

    def __init__(self, reader: InflatingReader):
        super().__init__(reader, 0, False, True)  # type: ignore[arg-type]

    def _more(self) -> bool:
        return not self.fp.at_end()

    def _skip(self, tag: int, length: int) -> None:
        skipped = self.fp.skip(length)
        if skipped < length:
            raise Part10Error(f"truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs "
                              f"{length} bytes, the data set ends {length - skipped} bytes too early")


def check_deflated_structure(fp: BinaryIO, data_offset: int, max_inflated_size: int) -> int:
    """The structure check of a deflated data set (PS3.5 A.5), done while it inflates.

    The stream is inflated piece by piece (bounded memory, whatever its size) and its element
    headers walked as ``check_structure`` walks a plain file's. Returns the inflated size.
    Raises ``InflateLimitExceeded`` as soon as more than ``max_inflated_size`` bytes come out
    (a deflate bomb is refused after inflating only that much), ``Part10Error`` for a corrupt
    or truncated stream or a value running past the data set's end.
    """
    fp.seek(data_offset)
    reader = InflatingReader(fp, max_inflated_size)
    try:
        _InflatedWalker(reader).elements()
    except InflateLimitExceeded:
        raise
    except InflateError as exc:
        raise Part10Error(str(exc)) from exc
    return reader.tell()


def check_structure(path: str | os.PathLike[str], header: Part10Header) -> None:
    """Raise ``Part10Error`` when a value runs past the end of the file (a truncated file).

    Deflated data sets are not checked (their structure is only visible once inflated).
    """
    if header.transfer_syntax == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return
    with open(path, "rb") as fp:
        check_structure_of(fp, header)


def check_structure_of(fp: BinaryIO, header: Part10Header, start: int | None = None) -> None:
    """``check_structure`` on a file already open (binary, seekable); moves its position.

    ``start`` (default: the data set's start) lets a caller that has already walked the
    first elements (``HeaderScan.stop_offset``) check only the rest.
    """
    if header.transfer_syntax == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return
    end = fp.seek(0, os.SEEK_END)
    fp.seek(header.data_offset if start is None else start)
    implicit = header.transfer_syntax == uids.IMPLICIT_VR_LITTLE_ENDIAN
    little = header.transfer_syntax != uids.EXPLICIT_VR_BIG_ENDIAN
    _Walker(fp, end, implicit, little).elements()


def check_file_structure(fp: BinaryIO, *, transfer_syntax: str | None = None,
                         data_offset: int | None = None, start: int | None = None) -> None:
    """``check_structure_of`` for a received or imported file (binary, seekable).

    The receiving side of the sender's check (one walker for both): an archive runs it
    before it acknowledges a C-STORE, so a data set that ends inside an element, an item
    or a sequence is refused instead of filed as complete. Without ``transfer_syntax`` and
    ``data_offset`` the File Meta Information says them (a bare data set: PS3.10's
    Implicit VR Little Endian, or what ``_bare_encoding`` recognises). Raises ``Part10Error``.
    """
    if transfer_syntax is None or data_offset is None:
        meta = read_file_meta(fp)
        if meta is None:
            transfer_syntax, data_offset = _bare_encoding(fp), 0
        else:
            values, data_offset = meta
            transfer_syntax = values.get(_META_TS, "")
            if not transfer_syntax and fp.seek(0, os.SEEK_END) > data_offset:
                transfer_syntax = _bare_encoding(fp, data_offset)  # a meta without its TS
    check_structure_of(fp, Part10Header(transfer_syntax, "", "", data_offset), start)


def _all_transfer_syntaxes() -> tuple[str, ...]:
    from .. import pydicom_tables

    data = pydicom_tables.tables()  # pydicom's list without importing pydicom, when current
    if data is not None:
        known: tuple[str, ...] = data.TRANSFER_SYNTAXES
    else:
        pydicom_tables.load_pydicom()  # an association's thread may be the first to need it
        from pydicom.uid import AllTransferSyntaxes

        known = tuple(map(str, AllTransferSyntaxes))
    return tuple(dict.fromkeys([*CONVERTIBLE_TRANSFER_SYNTAXES, *known]))


def __getattr__(name: str) -> Any:
    """``STORAGE_SCP_TRANSFER_SYNTAXES`` (tuple of str): what a storage SCP that keeps files as
    received can accept: every syntax pydicom knows (it stores the bytes, never decodes pixel
    data; PS3.4 B.4.1 leaves the choice to the SCP). Built on first access (PEP 562) from
    pydicom's UID dictionary, so a storage SCU that never asks does not load pydicom."""
    if name == "STORAGE_SCP_TRANSFER_SYNTAXES":
        value = globals()[name] = _all_transfer_syntaxes()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
