"""``-vv`` protocol trace on a terminal: one line per record, no patient data unless asked."""

from __future__ import annotations

import io
import logging

from dicomdesk.commands.trace_output import TRACE_LOGGER, format_trace_record, install


def _record(dataset=None) -> logging.LogRecord:
    record = logging.LogRecord(TRACE_LOGGER, logging.DEBUG, __file__, 1, "C-FIND-RSP id 1", (), None)
    record.__dict__.update(assoc_id=3, assoc_label="#3 A -> B @ h:1", layer="dimse",
                           direction="received", elapsed_ms=12.25, dataset=dataset)
    return record


def test_format_shows_label_time_layer_direction_and_hides_the_data_set():
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PatientName = "HIDDEN^NAME"
    line = format_trace_record(_record(ds))
    assert line == "[#3 A -> B @ h:1] +    12.2 ms dimse       <- C-FIND-RSP id 1"
    assert "HIDDEN^NAME" in format_trace_record(_record(ds), show_data=True)


def test_install_prints_the_trace_of_a_real_echo(pynetdicom_scp):
    from dicomdesk.operations.common import Peer
    from dicomdesk.operations.verification import echo

    scp = pynetdicom_scp()
    logger = logging.getLogger(TRACE_LOGGER)
    level, propagate = logger.level, logger.propagate
    out = io.StringIO()
    handler = install(out)
    try:
        assert echo(Peer("127.0.0.1", scp.port, scp.aet, timeout=10)).ok
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    text = out.getvalue()
    assert "-> C-ECHO-RQ" in text and "<- C-ECHO-RSP" in text
