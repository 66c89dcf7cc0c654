"""The index's key values of a stored object's data set (``InstanceRecord.from_dataset``).

By tag, not keyword: the same values as ``ds.get(keyword)`` without pydicom's keyword lookup
per attribute (this runs once per stored object). A raw element whose bytes are plain ASCII
is read directly (``_plain_value``); anything else is pydicom's conversion.

Apart from ``schema.py`` (``InstanceRecord``) because it needs pydicom, which ``dicomdesk serve`` loads only once
an object arrives (its first C-ECHO is answered without it, issue 14).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydicom import config as pydicom_config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from .matching import value_text

_CHARSET_TAG = 0x00080005
#: Character sets in which a printable-ASCII byte string decodes to itself (PS3.5 6.1).
_PLAIN_CHARSETS = frozenset({b"", b"ISO_IR 6", b"ISO_IR 100", b"ISO_IR 192"})
#: Printable ASCII without backslash (a single value), not starting with a space.
_PLAIN_TEXT = re.compile(rb"[!-\[\]-~][ -\[\]-~]*\Z")
#: Per VR, values that pydicom's reading validation accepts (a subset of what it accepts:
#: anything else goes to pydicom, which then warns as it always did).
_PLAIN_BY_VR = {
    "UI": re.compile(rb"(?=.{1,64}\Z)(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\Z"),
    "IS": re.compile(rb"[+-]?[0-9]{1,9}\Z"),
    "CS": re.compile(rb"[A-Z0-9 _]{1,16}\Z"),
    "SH": re.compile(rb".{1,16}\Z"),
    "LO": re.compile(rb".{1,64}\Z"),
    "PN": re.compile(rb"(?=.{1,64}\Z)[^=^]*(\^[^=^]*){0,4}\Z"),
    "DA": re.compile(rb"[0-9]{8}\Z"),
    "TM": re.compile(rb"[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?\Z"),
}
_TEXT_VRS = frozenset(_PLAIN_BY_VR)


def key_values(ds: Dataset, keys: Iterable[tuple[str, int, str]]) -> dict[str, object]:
    """``{keyword: text}`` of ``keys`` ((keyword, tag, VR) each) in ``ds``; "" when absent."""
    values: dict[str, object] = {}
    elements = ds._dict
    plain = _has_plain_charset(elements.get(_CHARSET_TAG))
    for kw, tag, vr in keys:
        elem = elements.get(tag)
        if elem is None:
            values[kw] = ""
            continue
        text = _plain_value(elem, vr) if plain else None
        if text is None:
            elem = ds.get(tag)
            text = value_text(elem.value if elem is not None else None)
        values[kw] = text
    return values


def _has_plain_charset(elem: object) -> bool:
    """No Specific Character Set, or one where ASCII bytes are ASCII text (raw, unconverted)."""
    if elem is None:
        return True
    if type(elem) is not RawDataElement or not isinstance(elem.value, bytes):
        return False
    return elem.value.rstrip(b" \0") in _PLAIN_CHARSETS


def _plain_value(elem: object, vr: str) -> str | None:
    """``value_text`` of a raw text element whose value is one plain ASCII string, without
    pydicom (equal to pydicom's conversion: trailing spaces/NULs removed; checked against
    pydicom in tests/perf/test_fast_headers.py); None when pydicom must convert it."""
    if type(elem) is not RawDataElement or vr not in _TEXT_VRS or elem.VR not in (None, vr):
        return None
    raw = elem.value
    if not isinstance(raw, bytes) or len(raw) != elem.length:
        return None
    raw = raw.rstrip(b" \0")
    if not raw:
        return ""
    if not _PLAIN_TEXT.match(raw):
        return None
    if not _PLAIN_BY_VR[vr].match(raw):
        return None
    if vr in ("DA", "TM") and pydicom_config.datetime_conversion:
        return None
    return raw.decode("ascii")
