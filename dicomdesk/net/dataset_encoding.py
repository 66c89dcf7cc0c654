"""A data set's bytes in a presentation context's transfer syntax, both ways (PS3.5 7, 10).

``encode_data_set`` is what an association sends (only it knows the context's transfer
syntax); ``decode_data_set`` is what the DIMSE decoder makes of a data set it holds in
memory. Both import pydicom on their first call, not before: a C-ECHO needs neither, and
``dicomdesk echo`` never imports pydicom (tests/perf/test_imports.py).

The two directions read transfer syntaxes differently on purpose: decoding accepts whatever a
peer may send (an unknown transfer syntax is Explicit VR Little Endian, PS3.5 A.4; JPIP
Referenced Deflate is deflated too), encoding writes only what we propose ourselves.
"""

from __future__ import annotations

import io
import sys
import zlib
from typing import TYPE_CHECKING, Any

from dicomdesk.net import uids
from dicomdesk.net.decode_limits import (DEFAULT_DECODE_LIMITS, DataSetLimitExceeded, DecodeLimits,
                                         check_decode_limits)
from dicomdesk.net.inflate import InflateLimitExceeded, inflate_bytes

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


def is_dataset(obj: Any) -> bool:
    """Is ``obj`` a pydicom ``Dataset`` (one ``encode_data_set`` must turn into bytes before it
    is sent)?  Answered without importing pydicom: if pydicom was never imported, nothing
    can be one."""
    module = sys.modules.get('pydicom.dataset')
    return module is not None and isinstance(obj, module.Dataset)


_UNDEFINED_LENGTH = 0xFFFFFFFF

def transfer_syntax_encoding(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """(is_implicit_VR, is_little_endian, is_deflated) of a transfer syntax (PS3.5 10), from
    ``part10``'s table: every transfer syntax other than the ones PS3.5 names as implicit or
    big endian is Explicit VR Little Endian (PS3.5 A.4), so unknown (private) transfer
    syntaxes are read that way.
    """
    # Imported here: a C-ECHO's start-up never loads the Part-10 reader (docs/internals.md).
    from dicomdesk.net.part10 import DEFLATED_TRANSFER_SYNTAXES, encoding_of

    uid = str(transfer_syntax).strip().rstrip('\x00')
    implicit, little = encoding_of(uid)
    return implicit, little, uid in DEFLATED_TRANSFER_SYNTAXES


#: A data set held in memory may not inflate (PS3.5 A.5) to more than this either.
_MAX_INFLATED_IN_MEMORY = 64 * 1024 * 1024

#: The refusals of a data set that decoding would make too large (``data_set_over_limit``).
DECODE_REFUSALS = (DataSetLimitExceeded, InflateLimitExceeded)


#: ``dataset_codec``, imported (with pydicom) by the first data set decoded, not before: a
#: C-ECHO never needs it; looked up once, not per identifier (thousands per C-FIND).
_DATASET_CODEC: Any = None


def _load_dataset_codec() -> Any:
    global _DATASET_CODEC
    from dicomdesk.net import dataset_codec

    _DATASET_CODEC = dataset_codec
    return dataset_codec


def decode_data_set(raw: bytes, transfer_syntax: str,
                    limits: DecodeLimits | None = DEFAULT_DECODE_LIMITS,
                    max_inflated_size: int = _MAX_INFLATED_IN_MEMORY) -> Dataset:
    """Decode a data set in the given transfer syntax with pydicom.

    Before anything is built, a deflated data set is inflated up to ``max_inflated_size``
    and the bytes are checked against ``limits`` (None: unchecked): ``DataSetLimitExceeded``
    or ``InflateLimitExceeded`` (``DECODE_REFUSALS``) say the data set is refused for its
    decoded size. Raises whatever pydicom or zlib raise for a malformed data set; the decoder
    turns that into ``data_set_error``.
    """
    codec = _DATASET_CODEC or _load_dataset_codec()
    # The bounds on the decoded size come first, also before the flat fast path (a flat
    # identifier of 8-byte elements is a million elements in 8 MB).
    plain = codec.transfer_syntax_vr(transfer_syntax)
    checked = limits is None
    if not checked and plain is not None:
        if limits.could_exceed(len(raw)):
            check_decode_limits(raw, plain, True, limits)
        checked = True
    # A flat identifier of text/integer elements (every C-FIND response) is walked by the
    # narrow fast codec (pydicom's Dataset of raw elements); anything unusual goes to pydicom.
    fast = codec.decode_identifier(raw, transfer_syntax)
    if fast is not None:
        return fast
    from pydicom.dataelem import RawDataElement
    from pydicom.filereader import read_dataset

    implicit, little, deflated = transfer_syntax_encoding(transfer_syntax)
    if deflated:
        raw = inflate_bytes(raw, max_inflated_size)
    if not checked and limits.could_exceed(len(raw)):
        check_decode_limits(raw, implicit, little, limits)
    stream = io.BytesIO(raw)
    ds = read_dataset(stream, implicit, little)
    # pydicom's reader is lenient: it returns short values for a truncated data set
    # and stops silently before trailing garbage.  A receiver must know, to answer
    # "cannot understand" instead of storing a damaged object.
    elements = ds._dict
    if raw and not elements:
        raise ValueError('no data element in a non-empty data set')
    for elem in elements.values():
        if isinstance(elem, RawDataElement) and elem.length != _UNDEFINED_LENGTH \
                and elem.value is not None and len(elem.value) != elem.length:
            raise ValueError(f'element {elem.tag} is truncated')
    last = elements[max(elements)] if elements else None
    if isinstance(last, RawDataElement) and last.length != _UNDEFINED_LENGTH \
            and last.value_tell + last.length != len(raw):
        raise ValueError(f'{len(raw) - last.value_tell - last.length} bytes after the last element')
    for _ in ds:  # convert the top-level values now: an unknown VR fails here, not later
        pass
    return ds


def encode_data_set(ds: Dataset, transfer_syntax: str) -> bytes:
    """A data set's bytes in a context's transfer syntax (PS3.5 section 10 / A.5 deflate)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    implicit = transfer_syntax == uids.IMPLICIT_VR_LITTLE_ENDIAN
    little = transfer_syntax != uids.EXPLICIT_VR_BIG_ENDIAN
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_dataset(fp, ds)
    data = fp.getvalue()
    if transfer_syntax == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
    return data
