"""Part-10 files (PS3.10 7.1): the one reader of a file's header, and the transfer-syntax table.

Everything that needs a file's header before (or instead of) pydicom reads it here:

* ``read_file_meta``: the File Meta Information group (always Explicit VR Little Endian);
* ``scan_header``: the fast path, one read of the file's start walked with plain ``struct``
  (PS3.5 7.1), answering only when the layout is plain (None: ask pydicom);
* ``read_part10_header``: what a storage SCU needs of a file (transfer syntax, SOP class and
  instance, data set offset), the fast path first, pydicom only for unusual layouts;
* ``file_meta_bytes``/``write_file_meta``: the File Meta Information of a file we write
  (a received object), by hand where plain, by pydicom otherwise.

Both readings answer one record, ``Part10Header``. The tables say which transfer syntaxes are
deflated (``DEFLATED_TRANSFER_SYNTAXES``), which can be converted into one another
(``CONVERTIBLE_TRANSFER_SYNTAXES``) and how a syntax encodes (``encoding_of``).
pydicom is imported only on the paths that hand a file to it. The structure check (a walk
of the whole data set that seeks over values) is ``part10_structure``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import struct
import warnings
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from . import uids
from .inflate import DEFAULT_MAX_INFLATED_SIZE, InflateError, InflatingReader
from .records import FrozenRecord

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------ transfer syntaxes
#: The uncompressed transfer syntaxes we can convert between with pydicom (PS3.5 A.1-A.5).
CONVERTIBLE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    uids.EXPLICIT_VR_LITTLE_ENDIAN,
    uids.IMPLICIT_VR_LITTLE_ENDIAN,
    uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    uids.EXPLICIT_VR_BIG_ENDIAN,
)

#: Transfer syntaxes whose data set is deflated (PS3.5 A.5; JPIP Referenced Deflate, A.4):
#: read only through bounded inflation (``inflate``), never by pydicom as a whole.
DEFLATED_TRANSFER_SYNTAXES = frozenset({
    uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    "1.2.840.10008.1.2.4.95",   # JPIP Referenced Deflate
    "1.2.840.10008.1.2.4.205",  # JPIP HTJ2K Referenced Deflate
})

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR (PS3.10 8.6); never sent


def encoding_of(ts: str) -> tuple[bool, bool]:
    """(implicit VR, little endian) of a data set in ``ts`` as this module reads it: only
    Implicit VR Little Endian is implicit and only Explicit VR Big Endian big endian; every
    other syntax, private ones too, is Explicit VR Little Endian (PS3.5 A.4); a deflated
    one is that once inflated (PS3.5 A.5)."""
    return ts == uids.IMPLICIT_VR_LITTLE_ENDIAN, ts != uids.EXPLICIT_VR_BIG_ENDIAN


def transfer_syntax_name(uid: str) -> str:
    """The name of a UID for messages (pydicom's dictionary, loaded on this error path only)."""
    from pydicom.uid import UID

    return UID(uid).name


def _dcmread(*args: Any, **kwargs: Any) -> Any:
    from pydicom import dcmread

    return dcmread(*args, **kwargs)


_META_TS = 0x00020010
_META_SOP_CLASS = 0x00020002
_META_SOP_INSTANCE = 0x00020003
_SOP_CLASS_TAG, _SOP_INSTANCE_TAG = 0x00080016, 0x00080018
SOP_UID_TAGS = frozenset({_SOP_CLASS_TAG, _SOP_INSTANCE_TAG})
_PIXEL_DATA_TAG = 0x7FE00010
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
# VRs whose explicit-VR length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


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
    """A file's header as this module reads it, without reading the data set's values.

    ``data_offset`` is where the data set starts (after the File Meta Information, or 0 for
    a bare data set without a Part-10 header); ``has_meta`` is False for the latter. A
    ``scan_header`` result also holds ``meta`` (the File Meta Information's UI values),
    ``elements`` (tag -> the top-level elements asked for, as pydicom's ``RawDataElement``
    or a ``RawValue``) and ``stop_offset`` (the file offset where the walk stopped: Pixel
    Data's element header, or the end; every element before it was seen whole, so a
    structure check may start there). Its SOP UIDs are "" unless they were asked for and
    are plain (``plain_uid``).
    """

    _fields = ("transfer_syntax", "sop_class_uid", "sop_instance_uid", "data_offset", "has_meta",
               "meta", "elements", "stop_offset")
    _repr_fields = _fields[:5] + ("stop_offset",)

    def __init__(self, transfer_syntax: str, sop_class_uid: str, sop_instance_uid: str, data_offset: int,
                 has_meta: bool = True, meta: dict[int, str] | None = None,
                 elements: dict[int, Any] | None = None, stop_offset: int = 0) -> None:
        self._assign(transfer_syntax, sop_class_uid, sop_instance_uid, data_offset, has_meta,
                     {} if meta is None else meta, {} if elements is None else elements, stop_offset)

    def __hash__(self) -> int:
        return hash(self._values()[:5])


def clean_uid(value: Any) -> str:
    """A UID value as text, without its padding (NUL or space)."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("ascii", "replace")
    return str(value).strip("\0 ")


def plain_uid(elem: Any) -> str:
    """The text of a scanned UID element (``RawValue`` or ``RawDataElement``) when it is
    plain: VR UI (or implicit), ASCII, one value, not empty; else ""."""
    if elem is None or elem.VR not in (None, "UI"):
        return ""
    raw = elem.value
    if not raw or not raw.isascii() or b"\\" in raw:
        return ""
    return clean_uid(raw)


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
            values[(group << 16) | elem] = clean_uid(value)
        offset += head_len + length
    return values, offset


# ---------------------------------------------------------------------------- writing
_PLAIN_UID = re.compile(r"[0-9.]{1,64}\Z")
_META_ELEMENT = struct.Struct("<HH2sH")


def _meta_element(elem: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    if len(value) % 2:
        value += pad
    return _META_ELEMENT.pack(2, elem, vr, len(value)) + value


def file_meta_bytes(sop_class: Any, sop_instance: Any, ts: str) -> bytes | None:
    """Preamble + File Meta Information (PS3.10 7.1, Explicit VR Little Endian) of an object
    we write, encoded by hand: exactly what pydicom's ``write_file_meta_info`` writes (a test
    compares them), without its general writer (every received C-STORE writes one). None for
    anything not plain (missing or non-numeric UIDs): ``write_file_meta`` then asks pydicom.
    """
    values = [sop_class, sop_instance, ts, uids.IMPLEMENTATION_CLASS_UID]
    if not all(isinstance(v, str) and _PLAIN_UID.match(v) for v in values):
        return None
    name = uids.IMPLEMENTATION_VERSION_NAME
    body = b"".join([
        b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01",  # (0002,0001) version 00 01
        *(_meta_element(elem, b"UI", v.encode("ascii"), b"\x00")
          for elem, v in zip((0x0002, 0x0003, 0x0010, 0x0012), values)),
        _meta_element(0x0013, b"SH", name.encode("ascii"), b" "),
    ])
    return b"\x00" * 128 + b"DICM" + _META_ELEMENT.pack(2, 0, b"UL", 4) + struct.pack("<L", len(body)) + body


def write_file_meta(fp: Any, sop_class: Any, sop_instance: Any, ts: str) -> None:
    """Write the preamble and File Meta Information of an object of ``sop_class`` /
    ``sop_instance`` in ``ts``: ``file_meta_bytes``, or pydicom's writer for what is not plain."""
    plain = file_meta_bytes(sop_class, sop_instance, str(ts))
    if plain is not None:
        fp.write(plain)
        return
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = uids.IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = uids.IMPLEMENTATION_VERSION_NAME
    fp.write(b"\x00" * 128 + b"DICM")
    writer = DicomFileLike(fp)
    writer.is_little_endian = True
    writer.is_implicit_VR = False
    write_file_meta_info(writer, meta, enforce_standard=True)


# ---------------------------------------------------------------------------- reading
def bare_encoding(fp: BinaryIO, offset: int = 0) -> str:
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



# ----------------------------------------------------------------------------- the walk
#: How much of a data set the fast header scan reads: the elements before Pixel Data of a
#: typical image fit in a few KiB; a longer header is left to pydicom.
SCAN_BYTES = 64 * 1024

#: How much of a deflated data set pydicom may read, inflated, for a header whose layout the
#: plain scan declines (long sequences before the wanted tags): the header must fit in it.
_DEFLATED_HEADER_BYTES = 1024 * 1024

#: The VRs of PS3.5 Table 6.2-1 with a 2-byte length in explicit VR (the rest: ``_LONG_VRS``).
_SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO",
                        b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
_VR_TEXT = {vr: vr.decode("ascii") for vr in _SHORT_VRS | _LONG_VRS}
#: Element header structs by byte order: group and element, the explicit VR with its
#: 2-byte length, a 4-byte length.
_STRUCTS = {e: {"tag": struct.Struct(e + "HH").unpack_from,
                "short": struct.Struct(e + "2sH").unpack_from,
                "long": struct.Struct(e + "L").unpack_from} for e in "<>"}


class RawValue(NamedTuple):
    """An element as ``scan_header(raw=True)`` gives it: its VR (None in implicit VR) and
    undecoded value bytes, the two fields of pydicom's ``RawDataElement`` a storage SCU
    reads, without importing pydicom."""

    VR: str | None
    value: bytes


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


def _walk(buf: bytes, at_eof: bool, ts: str, tags: frozenset[int] | set[int], stop_after: int,
          raw: bool, offset: int) -> tuple[dict[int, Any], int] | None:
    """The top-level elements of a data set's first bytes ``buf`` (file offset ``offset``)
    before Pixel Data or past ``stop_after``: ({tag: element} of ``tags``, position where
    the walk stopped), or None when the walk is not plain (see ``scan_header``)."""
    if not raw:
        from pydicom.dataelem import RawDataElement, empty_value_for_VR
        from pydicom.tag import BaseTag
    implicit, little = encoding_of(ts)
    e = "<" if little else ">"
    size = len(buf)
    found: dict[int, Any] = {}
    pos, previous = 0, -1
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
    return found, pos


def _scannable_syntax(ts: str) -> bool:
    """The uncompressed syntaxes and the encapsulated ones (JPEG family, RLE: Explicit VR
    Little Endian headers, PS3.5 A.4); private or deflated syntaxes are left to pydicom."""
    if ts in DEFLATED_TRANSFER_SYNTAXES:
        return False
    return ts in CONVERTIBLE_TRANSFER_SYNTAXES or ts.startswith("1.2.840.10008.1.2.4.") \
        or ts == "1.2.840.10008.1.2.5"


def scan_header(source: BinaryIO | bytes | bytearray, tags: frozenset[int] | set[int], *,
                until_last_tag: bool = False, raw: bool = False, max_inflated_size: int | None = None,
                whole_file: bool = True, known: Part10Header | None = None) -> Part10Header | None:
    """Read a Part-10 file's meta and the top-level ``tags`` with plain ``struct`` (PS3.5 7.1).

    The fast path of header reading for a storage SCU (``inspect_file``, ``prepare_store``)
    and the archive (``Archive.commit_incoming``): one read of the file's start instead of
    pydicom's element-by-element reader. It walks every top-level element before Pixel Data,
    as ``dcmread(stop_before_pixels=True)`` does, and answers only when that walk is plain:
    a preamble and meta group, a little/big endian uncompressed or encapsulated syntax,
    well-formed VRs, ascending tags, every value inside the file, the wanted elements of
    defined length. Anything else returns None and the caller asks pydicom. Raises
    ``Part10Error`` only where ``read_file_meta`` does. With ``until_last_tag`` the walk
    stops after the last wanted tag (tags ascend): for a caller that checks the rest later
    (a storage SCU planning its association; ``stop_offset`` then says where it stopped).
    With ``raw`` the elements are ``RawValue``s (VR and bytes), and pydicom is not imported:
    the storage SCU's planning and sending of plain files need nothing more.
    With ``max_inflated_size`` a deflated data set (PS3.5 A.5) is scanned too, from its first
    ``SCAN_BYTES`` inflated bytes (the rest is never inflated); its ``stop_offset`` and the
    elements' value offsets then count inflated bytes, not file bytes. A corrupt stream, or
    one inflating past the bound within those bytes, returns None.
    ``source`` may be the first bytes of a file held in memory: unless ``whole_file`` says
    they are all of it, the scan answers only when they hold what it would have read.
    ``known``, the result of an earlier scan of the same file, skips the meta (its transfer
    syntax, data offset and meta values are taken as they are).
    """
    fp = source if hasattr(source, "read") else io.BytesIO(source)
    if known is not None:
        values, offset, ts = known.meta, known.data_offset, known.transfer_syntax
    else:
        meta = read_file_meta(fp)
        if meta is None:
            return None
        fp.seek(128)
        if fp.read(4) != b"DICM":
            return None
        values, offset = meta
        ts = values.get(_META_TS, "")
    deflated = max_inflated_size is not None and ts in DEFLATED_TRANSFER_SYNTAXES
    if not (deflated or _scannable_syntax(ts)) or values.get(_META_SOP_CLASS) == MEDIA_STORAGE_DIRECTORY:
        return None
    if fp is not source and not whole_file and offset + SCAN_BYTES > len(source):
        return None
    fp.seek(offset)
    if deflated:  # Explicit VR Little Endian once inflated (PS3.5 A.5)
        try:
            buf = InflatingReader(fp, max_inflated_size).read(SCAN_BYTES)
        except InflateError:
            return None
    else:
        buf = fp.read(SCAN_BYTES)
    stop_after = max(tags) if until_last_tag and tags else _PIXEL_DATA_TAG
    walked = _walk(buf, len(buf) < SCAN_BYTES, ts, tags, stop_after, raw, offset)
    if walked is None:
        return None
    found, pos = walked
    return Part10Header(ts, plain_uid(found.get(_SOP_CLASS_TAG)), plain_uid(found.get(_SOP_INSTANCE_TAG)),
                        offset, True, values, found, offset + pos)


def read_part10_header(path: str | os.PathLike[str]) -> Part10Header:
    """Transfer syntax, SOP class/instance and data set offset of a file to send.

    The SOP UIDs come from the data set (what the peer will check, PS3.4 B.2.3 A900),
    falling back to the meta group's Media Storage UIDs; only the header is read: the
    first elements with ``_walk`` when their layout is plain, else pydicom (never all of a
    deflated data set). Raises ``Part10Error`` (or OSError) with the fault.
    """
    with open(path, "rb") as fp:
        meta = read_file_meta(fp)
        if meta is None:
            ts, offset, values = bare_encoding(fp), 0, {}
        else:
            values, offset = meta
            ts = values.get(_META_TS, "")
            if not ts:
                raise Part10Error("the File Meta Information has no Transfer Syntax UID")
        sop_class = sop_instance = ""
        if ts not in DEFLATED_TRANSFER_SYNTAXES:
            fp.seek(offset)
            head = fp.read(4096)  # the UIDs sit in the first few hundred bytes of a data set
            walked = _walk(head, len(head) < 4096, ts, SOP_UID_TAGS, _SOP_INSTANCE_TAG, True, offset)
            if walked is not None:
                sop_class = plain_uid(walked[0].get(_SOP_CLASS_TAG))
                sop_instance = plain_uid(walked[0].get(_SOP_INSTANCE_TAG))
        if sop_class and sop_instance:
            pass
        elif ts in DEFLATED_TRANSFER_SYNTAXES:
            # Never dcmread a deflated file here: pydicom inflates the whole data set in memory
            # (a 1 MB bomb is 1 GiB), and this runs for every C-GET/C-MOVE sub-operation.
            ds = read_deflated_header(fp, offset, _SOP_INSTANCE_TAG, DEFAULT_MAX_INFLATED_SIZE)
            sop_class = clean_uid(ds.get("SOPClassUID"))
            sop_instance = clean_uid(ds.get("SOPInstanceUID"))
        else:
            try:
                fp.seek(0)
                with pydicom_warnings_logged():
                    ds = _dcmread(fp, force=True, stop_before_pixels=True,
                                  specific_tags=["SOPClassUID", "SOPInstanceUID"])
                sop_class = clean_uid(ds.get("SOPClassUID"))
                sop_instance = clean_uid(ds.get("SOPInstanceUID"))
            except Exception as exc:  # pydicom raises many types on a damaged header
                raise Part10Error(f"unreadable data set header: {exc}") from exc
    sop_class = sop_class or values.get(_META_SOP_CLASS, "")
    sop_instance = sop_instance or values.get(_META_SOP_INSTANCE, "")
    if not sop_class:
        raise Part10Error("no SOP Class UID")
    if not sop_instance:
        raise Part10Error("no SOP Instance UID")
    return Part10Header(ts, sop_class, sop_instance, offset, meta is not None, values)


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


# ------------------------------------------------------------------------ structure check
