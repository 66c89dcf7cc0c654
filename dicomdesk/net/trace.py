"""Protocol trace: every association's PDUs and DIMSE messages as log records.

The records go to the logger ``dicomdesk.net.trace`` at DEBUG, so they cost one
``isEnabledFor`` check when nobody listens. A listener (the desktop app's protocol inspector, a
``-vv`` command line) attaches a ``logging.Handler`` and reads these record attributes:

* ``assoc_id`` (int, unique in the process) and ``assoc_label`` ("CALLING -> CALLED @ host:port");
* ``layer``: ``"association"`` (request, accept, reject, release, abort), ``"dimse"`` (commands
  and statuses) or ``"pdu"`` (every PDU with its length);
* ``direction``: ``"sent"``, ``"received"`` or ``"local"``;
* ``elapsed_ms``: milliseconds since the association's transport opened;
* ``dataset``: the DIMSE data set (a pydicom Dataset) when one is held in memory, else None.

The message text never contains patient data: data set contents travel only in ``dataset``,
for a listener that the user has allowed to show them. Peer-supplied strings in the text and
the label (AE titles, UIDs) are escaped by ``printable``: a record is always one line.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

from .printable import printable

TRACE = logging.getLogger("dicomdesk.net.trace")

_ids = itertools.count(1)

_PDU_NAMES = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF",
              5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}

_COMMAND_NAMES = {
    0x0001: "C-STORE-RQ", 0x8001: "C-STORE-RSP", 0x0010: "C-GET-RQ", 0x8010: "C-GET-RSP",
    0x0020: "C-FIND-RQ", 0x8020: "C-FIND-RSP", 0x0021: "C-MOVE-RQ", 0x8021: "C-MOVE-RSP",
    0x0030: "C-ECHO-RQ", 0x8030: "C-ECHO-RSP", 0x0FFF: "C-CANCEL-RQ",
    0x0100: "N-EVENT-REPORT-RQ", 0x8100: "N-EVENT-REPORT-RSP", 0x0110: "N-GET-RQ",
    0x8110: "N-GET-RSP", 0x0120: "N-SET-RQ", 0x8120: "N-SET-RSP", 0x0130: "N-ACTION-RQ",
    0x8130: "N-ACTION-RSP", 0x0140: "N-CREATE-RQ", 0x8140: "N-CREATE-RSP",
    0x0150: "N-DELETE-RQ", 0x8150: "N-DELETE-RSP",
}


def enabled() -> bool:
    """True when someone listens (checked before building any record)."""
    return TRACE.isEnabledFor(logging.DEBUG)


def new_association_id() -> int:
    """A process-unique number for one transport connection."""
    return next(_ids)


class AssociationTrace:
    """Per-connection trace context: its id, label and start time."""

    def __init__(self, peer: Any = None):
        self.assoc_id = new_association_id()
        self.started = time.monotonic()
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.label = f"#{self.assoc_id} {self.peer}"

    def name(self, calling: str, called: str) -> None:
        """Once the AE titles are known, the label says who talks to whom."""
        calling, called = printable(calling.strip()), printable(called.strip())
        self.label = f"#{self.assoc_id} {calling} -> {called} @ {self.peer}"

    def emit(self, layer: str, direction: str, text: str, dataset: Any = None) -> None:
        if not TRACE.isEnabledFor(logging.DEBUG):
            return
        TRACE.debug(printable(text), extra={
            "assoc_id": self.assoc_id, "assoc_label": self.label, "layer": layer,
            "direction": direction, "elapsed_ms": (time.monotonic() - self.started) * 1000,
            "dataset": dataset})

    def pdu(self, direction: str, pdu: Any, length: int | None = None) -> None:
        """One PDU: its type and length; association PDUs also at the association layer."""
        if not TRACE.isEnabledFor(logging.DEBUG):
            return
        pdu_type = getattr(pdu, "pdu_type", None)
        name = _PDU_NAMES.get(pdu_type, type(pdu).__name__)
        if length is None:
            try:
                length = pdu.total_length()
            except Exception:  # a trace must never break the association
                length = -1
        self.emit("pdu", direction, f"{name} ({length} bytes)")
        if pdu_type in (1, 2, 3, 5, 6, 7):
            self.emit("association", direction, describe_association_pdu(pdu))

    def dimse(self, direction: str, msg: Any, pc_id: int) -> None:
        """One DIMSE message: command, message ID, SOP class, status (no data set contents)."""
        if not TRACE.isEnabledFor(logging.DEBUG):
            return
        data = getattr(msg, "data_set", None)
        dataset = data if type(data).__name__ in ("Dataset", "FileDataset") else None
        self.emit("dimse", direction, describe_dimse(msg, pc_id), dataset)


def describe_association_pdu(pdu: Any) -> str:
    """A sentence for an A-ASSOCIATE/RELEASE/ABORT PDU."""
    pdu_type = getattr(pdu, "pdu_type", None)
    if pdu_type in (1, 2):
        contexts = getattr(pdu, "presentation_contexts", None) or []
        verb = "request" if pdu_type == 1 else "accept"
        return (f"A-ASSOCIATE {verb}: {printable(str(pdu.calling_ae_title).strip())} -> "
                f"{printable(str(pdu.called_ae_title).strip())}, {len(contexts)} presentation context(s)")
    if pdu_type == 3:
        return f"A-ASSOCIATE-RJ result {pdu.result} source {pdu.source} reason {pdu.reason_diag}"
    if pdu_type == 5:
        return "A-RELEASE request"
    if pdu_type == 6:
        return "A-RELEASE response"
    if pdu_type == 7:
        return f"A-ABORT source {pdu.source} reason {pdu.reason_diag}"
    return repr(pdu)


def describe_dimse(msg: Any, pc_id: int) -> str:
    """``C-FIND-RSP id 3 status 0xFF00 Pending … on context 1`` without patient data."""
    field = getattr(msg, "command_field", None)
    parts = [_COMMAND_NAMES.get(field, f"command 0x{field or 0:04X}")]
    for label, attr in (("id", "message_id"), ("for", "message_id_being_responded_to")):
        value = getattr(msg, attr, None)
        if value is not None:
            parts.append(f"{label} {value}")
    status = getattr(msg, "status", None)
    if status is not None:
        parts.append(f"status {status}")
    for attr in ("num_of_remaining_sub_ops", "num_of_completed_sub_ops", "num_of_failed_sub_ops",
                 "num_of_warning_sub_ops"):
        value = getattr(msg, attr, None)
        if value is not None:
            parts.append(f"{attr.split('_')[2]} {value}")
    sop_class = getattr(msg, "sop_class_uid", None)
    if sop_class:
        from pydicom.uid import UID

        parts.append(f"[{UID(str(sop_class)).name}]")
    parts.append(f"on context {pc_id}")
    return " ".join(parts)
