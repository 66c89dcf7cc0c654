"""Peer-supplied text made safe for a log line (issue 11, item 10).

AE titles, UIDs, Error Comments and every other string a peer sends may hold line feeds,
terminal escapes or NUL: written raw, ``X\\n12:00:00 OK`` forges a log line and ``ESC[2J``
clears the operator's terminal. ``printable`` escapes every character that is not printable
(control characters, line and paragraph separators, format characters such as bidi overrides)
as ``\\xNN``/``\\uNNNN``; ordinary text, backslashes included (DICOM's value separator), passes
unchanged and, in the common case, uncopied. ``PrintableLogFilter`` applies it to whole log
records, for the handlers the command line installs; the protocol trace applies it where it
builds its labels and lines (``net.trace``).
"""

from __future__ import annotations

import logging
from typing import Any


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: Any) -> str:
    """``value`` as text with every non-printable character escaped (bytes read as Latin-1)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("latin-1")
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


class PrintableLogFilter(logging.Filter):
    """A handler filter that escapes the formatted message of every record it passes: one
    record stays one line, whatever strings a peer put into its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = printable(message)
        if safe is not message:
            record.msg, record.args = safe, None
        return True
