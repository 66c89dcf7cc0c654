"""The protocol trace (net/trace.py): every association's PDUs and DIMSE messages, no patient data in the text."""

from __future__ import annotations

import logging

import pytest
from pydicom.dataset import Dataset

from dicomdesk.net import uids
from dicomdesk.net.applicationentity import AE, ClientAE
from dicomdesk.net.sopclass import qr_find_scp, qr_find_scu, verification_scp

pytestmark = pytest.mark.interop


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def recorder():
    logger = logging.getLogger("dicomdesk.net.trace")
    handler = Recorder()
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class FindServer(AE):
    def on_receive_find(self, context, ds):
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.PatientName = "SECRET^PATIENT"
        match.StudyInstanceUID = "1.2.3"
        yield match, 0xFF00


def test_trace_has_association_dimse_and_pdu_layers_and_no_patient_data_in_text(recorder):
    with FindServer("SRV", 0).add_scp(verification_scp).add_scp(qr_find_scp) as server:
        client = ClientAE("CLIENT").add_scu(qr_find_scu)
        with client.request_association({"aet": "SRV", "address": "127.0.0.1",
                                         "port": server.port}) as assoc:
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.PatientName = ""
            query.StudyInstanceUID = ""
            scu = assoc.get_scu(uids.STUDY_ROOT_FIND_SOP_CLASS)
            results = list(scu(query, assoc.next_message_id()))
    assert str(results[0][0].PatientName) == "SECRET^PATIENT"
    layers = {(r.layer, r.direction) for r in recorder.records}
    assert {("association", "sent"), ("association", "received"), ("dimse", "sent"),
            ("dimse", "received"), ("pdu", "sent"), ("pdu", "received")} <= layers
    texts = [r.getMessage() for r in recorder.records]
    assert any("A-ASSOCIATE request: CLIENT -> SRV" in t for t in texts)
    assert any(t.startswith("C-FIND-RSP") and "0xFF00" in t for t in texts)
    assert any("A-RELEASE response" in t for t in texts)
    assert not any("SECRET" in t for t in texts), "patient data leaked into the trace text"
    with_data = [r for r in recorder.records if r.dataset is not None and "PatientName" in r.dataset]
    assert any(str(r.dataset.PatientName) == "SECRET^PATIENT" for r in with_data)
    assert all(r.assoc_label.startswith("#") for r in recorder.records)
    assert len({r.assoc_id for r in recorder.records}) == 2  # requester and acceptor side


def test_no_record_is_built_when_nobody_listens(monkeypatch):
    from dicomdesk.net import trace

    calls = []
    monkeypatch.setattr(trace.AssociationTrace, "emit", lambda self, *a, **k: calls.append(a))
    assert not trace.enabled()
    with AE("SRV", 0).add_scp(verification_scp) as server:
        from dicomdesk.operations import Peer, echo

        assert echo(Peer("127.0.0.1", server.port, "SRV")).ok
    assert calls == []
