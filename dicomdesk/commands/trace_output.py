"""Protocol trace on a terminal, for ``-vv`` on any command.

The network stack logs every association's PDUs and DIMSE messages to the logger
``dicomdesk.net.trace`` at DEBUG (see ``dicomdesk/net/trace.py``). ``install`` attaches a
handler that prints them one per line with the association, layer, direction and elapsed time
(PS3.8 9.3 PDUs, PS3.7 9.3 DIMSE commands), never the data set contents: patient data stays
out of a terminal log unless ``show_data`` asks for it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

TRACE_LOGGER = "dicomdesk.net.trace"

_ARROWS = {"sent": "->", "received": "<-", "local": "--"}


def format_trace_record(record: logging.LogRecord, show_data: bool = False) -> str:
    """``[#1 A -> B @ host:port] +12.3 ms dimse  -> C-ECHO-RQ id 1 ...`` (one line, or more
    with the data set when ``show_data``)."""
    label = getattr(record, "assoc_label", "?")
    elapsed = getattr(record, "elapsed_ms", 0.0) or 0.0
    layer = getattr(record, "layer", "?")
    arrow = _ARROWS.get(getattr(record, "direction", ""), "  ")
    line = f"[{label}] +{elapsed:8.1f} ms {layer:<11} {arrow} {record.getMessage()}"
    dataset = getattr(record, "dataset", None)
    if show_data and dataset is not None:
        line += "\n" + "\n".join("    " + row for row in str(dataset).splitlines())
    return line


class TraceHandler(logging.Handler):
    """Writes trace records to a stream, formatted by ``format_trace_record``."""

    def __init__(self, stream: TextIO | None = None, show_data: bool = False) -> None:
        super().__init__(logging.DEBUG)
        self.stream = stream if stream is not None else sys.stderr
        self.show_data = show_data

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(format_trace_record(record, self.show_data) + "\n")
            self.stream.flush()
        except Exception:  # a trace line must never break the command
            self.handleError(record)


def install(stream: TextIO | None = None, show_data: bool = False) -> Any:
    """Print the protocol trace (one-shot command line processes: the logger is not shared)."""
    logger = logging.getLogger(TRACE_LOGGER)
    handler = TraceHandler(stream, show_data)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # printed once, by this handler, not again by the root handler
    return handler
