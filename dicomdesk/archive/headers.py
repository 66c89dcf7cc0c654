"""What the archive reads of a Part-10 file's header (PS3.10 7.1): the elements its index keeps.

Received objects, imports and recovery all go through ``read_header``: a fast ``struct`` scan of
the file's start (``scan_path``, or ``scan_bytes`` of the first bytes kept while the file was
written), a streamed inflate for deflated data sets (PS3.5 A.5, bounded), and pydicom for
anything else. ``check_whole`` refuses a received file whose data set ends inside an element.
A file that cannot be read is refused with the C-STORE status to send: 0xC000 Cannot
understand, or 0xA700 Out of Resources (PS3.4 B.2.3).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from ..net.inflate import DEFAULT_MAX_INFLATED_SIZE, InflateLimitExceeded
from ..net.part10 import (DEFLATED_TRANSFER_SYNTAXES, Part10Error, read_deflated_header,
                          read_file_meta, scan_header)
from ..net.part10_structure import check_deflated_structure, check_file_structure
from ..net.statuses import C_STORE_CANNOT_UNDERSTAND, C_STORE_OUT_OF_RESOURCES
from .errors import ArchiveRefusal
from .index import KEYS, InstanceRecord

if TYPE_CHECKING:  # pydicom loads on first use: `dicomdesk serve` answers C-ECHO without it
    from pydicom.dataset import Dataset

#: The header elements the index keeps (plus Specific Character Set, to decode them).
HEADER_TAGS = sorted({key.tag for key in KEYS.values()} | {0x00080005})
HEADER_TAG_SET = frozenset(HEADER_TAGS)


def scan_path(path: Path) -> ScannedHeader | None:
    """The fast path of ``read_header``: one read of the file's start with plain ``struct``.

    ``scan_header`` yields pydicom's own RawDataElements, so values (and character sets)
    decode exactly as ``dcmread`` would; any file whose layout is not plain returns None
    and pydicom reads it (and decides whether to refuse it).
    """
    try:
        with open(path, "rb") as fp:
            return _header_of_scan(scan_header(fp, HEADER_TAG_SET))
    except (OSError, Part10Error):
        return None


def scan_bytes(head: bytes | bytearray, whole_file: bool) -> ScannedHeader | None:
    """``scan_path`` of the first bytes of a file, kept in memory while it was written
    (``whole_file``: all of it; otherwise the scan answers only when they hold what it reads)."""
    try:
        return _header_of_scan(scan_header(head, HEADER_TAG_SET, whole_file=whole_file))
    except Part10Error:
        return None


def _header_of_scan(scan: object) -> ScannedHeader | None:
    if scan is None or not scan.elements:
        return None
    return ScannedHeader(scan.elements, scan.transfer_syntax, scan.data_offset, scan.stop_offset)


class ScannedHeader:
    """A scanned header where the archive reads a Dataset: the raw elements (``_dict``) and
    ``file_meta.get("TransferSyntaxUID")``. Plain values are read from the raw bytes
    (``InstanceRecord.from_dataset``); the pydicom Dataset (its cost per received object:
    docs/internals.md, timings) is built only when a value needs pydicom's conversion (``get``)."""

    __slots__ = ("_dict", "file_meta", "_dataset", "_values", "data_offset", "stop_offset")

    def __init__(self, elements: dict[int, object], transfer_syntax: str, data_offset: int = 0,
                 stop_offset: int | None = None) -> None:
        self._dict = elements
        self.file_meta = {"TransferSyntaxUID": transfer_syntax}
        #: Where the data set starts, and where the scan stopped (every element before it was
        #: seen whole: the structure check walks only the rest, usually Pixel Data alone).
        self.data_offset = data_offset
        self.stop_offset = stop_offset
        self._dataset: Dataset | None = None
        self._values: dict[str, object] | None = None

    def values(self) -> dict[str, object]:
        """``header_values`` of this header, read once."""
        if self._values is None:
            self._values = InstanceRecord.from_dataset(self, transfer_syntax="", file_size=0,
                                                       path="", received_at="").values
        return self._values

    def dataset(self) -> Dataset:
        if self._dataset is None:
            from pydicom.dataset import Dataset, FileMetaDataset
            from pydicom.tag import BaseTag

            ds = Dataset({BaseTag(tag): elem for tag, elem in self._dict.items()})
            meta = FileMetaDataset()
            meta.TransferSyntaxUID = self.file_meta["TransferSyntaxUID"]
            ds.file_meta = meta
            self._dataset = ds
        return self._dataset

    def get(self, key: object, default: object = None) -> object:
        return self.dataset().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.dataset()

    def __len__(self) -> int:
        return len(self._dict)


#: What the archive reads of a file's header: pydicom's Dataset, or a scan standing in for it.
Header: TypeAlias = "Dataset | ScannedHeader"


def _read_deflated_header(path: Path, max_inflated_size: int) -> Header | None:
    """The header of a deflated object (PS3.5 A.5), or None when the file is not deflated.

    pydicom's ``dcmread`` inflates the whole data set in memory (a 1 MB deflate bomb costs
    GBs): instead the data set is inflated as a stream, its structure walked and its size
    bounded by ``max_inflated_size`` (0xA700 beyond: nothing is kept), and the header read
    from the first inflated bytes only. A corrupt or truncated stream answers 0xC000.
    """
    try:
        with open(path, "rb") as fp:
            meta = read_file_meta(fp)
            if meta is None or meta[0].get(0x00020010, "") not in DEFLATED_TRANSFER_SYNTAXES:
                return None
            values, offset = meta
            try:
                check_deflated_structure(fp, offset, max_inflated_size)
            except InflateLimitExceeded as exc:
                raise ArchiveRefusal(C_STORE_OUT_OF_RESOURCES,
                                     f"inflates to more than {max_inflated_size} bytes") from exc
            scan = _header_of_scan(scan_header(fp, HEADER_TAG_SET,
                                               max_inflated_size=max_inflated_size))
            if scan is not None:
                return scan
            ds = read_deflated_header(fp, offset, max(HEADER_TAGS), max_inflated_size)
    except (OSError, Part10Error) as exc:
        raise ArchiveRefusal(C_STORE_CANNOT_UNDERSTAND, f"not a readable deflated object: {exc}") from exc
    from pydicom.dataset import FileMetaDataset

    meta_ds = FileMetaDataset()
    meta_ds.TransferSyntaxUID = values[0x00020010]
    ds.file_meta = meta_ds
    if len(ds) == 0:
        raise ArchiveRefusal(C_STORE_CANNOT_UNDERSTAND, "the file holds no data set")
    return ds


def read_header(path: Path, max_inflated_size: int = DEFAULT_MAX_INFLATED_SIZE) -> Header:
    """The header elements the index needs, without pixel data; raises ArchiveRefusal(0xC000)
    (0xA700 for a deflated data set inflating past ``max_inflated_size``)."""
    ds = scan_path(path)
    if ds is not None:
        return ds
    ds = _read_deflated_header(path, max_inflated_size)
    if ds is not None:
        return ds
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS, defer_size=1024)
        except InvalidDicomError:  # no preamble: a bare data set (or meta) as older tools write
            ds = dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS, defer_size=1024,
                         force=True)
            if "SOPInstanceUID" not in ds:
                raise
    except Exception as exc:  # any parse failure of a peer's bytes is "cannot understand"
        raise ArchiveRefusal(C_STORE_CANNOT_UNDERSTAND, f"not a readable DICOM file: {exc}") from exc
    if len(ds) == 0:  # a file meta header but no data set (truncated)
        raise ArchiveRefusal(C_STORE_CANNOT_UNDERSTAND, "the file holds no data set")
    return ds


def check_whole(incoming: Any, ds: Header | None) -> None:
    """Refuse (0xC000, the reason as Error Comment) a file whose data set ends inside an
    element, an item or a sequence: the sender's structure check (``check_file_structure``)
    run on what arrived, before anything is made durable or acknowledged.

    Element headers are walked and values skipped, from where the header scan stopped
    (usually Pixel Data's header): a few reads per object, whatever its size. Read through
    the temp file's own descriptor (no second open). Deflated data sets are not walked here.
    """
    fp = incoming.fp
    scanned = isinstance(ds, ScannedHeader)
    try:
        if not fp.closed:  # after a scan only a few headers are left: a small buffer
            reader = io.BufferedReader(io.FileIO(fp.fileno(), "r", closefd=False),
                                       4096 if scanned else 65536)
        else:
            reader = open(incoming.path, "rb")
        with reader:
            if scanned:
                check_file_structure(reader, transfer_syntax=ds.file_meta["TransferSyntaxUID"],
                                     data_offset=ds.data_offset, start=ds.stop_offset)
            else:
                check_file_structure(reader)
    except Part10Error as exc:
        raise ArchiveRefusal(C_STORE_CANNOT_UNDERSTAND, str(exc)) from exc
    except OSError as exc:
        raise ArchiveRefusal(C_STORE_OUT_OF_RESOURCES, f"cannot read the file back: {exc.strerror}") from exc



def uid_text(ds: Header, keyword: str) -> str:
    value = ds.get(keyword)
    return str(value).strip("\0 ") if value is not None else ""


def header_values(ds: Header) -> dict[str, object]:
    """The index's key values of a header (``InstanceRecord.values``), each read from pydicom
    once: validation, the final path, the index row and the report all use this dict (each
    pydicom access costs microseconds, and this runs once per received object)."""
    if isinstance(ds, ScannedHeader):
        return dict(ds.values())
    return InstanceRecord.from_dataset(ds, transfer_syntax="", file_size=0, path="",
                                       received_at="").values


def uid_of(values: dict[str, object], keyword: str) -> str:
    return str(values.get(keyword) or "").strip("\0 ")

