"""Refused queries and retrieves carry the standard's status and a reason (Error Comment).

PS3.4 C.4.1.1.4 / C.4.2.1.4: an identifier that does not match the information model is
answered A900; the reason goes into Error Comment (0000,0902) so the user can read it.
"""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from dicomdesk import config
from dicomdesk.net import uids
from dicomdesk.operations import LocalServer

pytestmark = pytest.mark.interop


@pytest.fixture
def server(tmp_path):
    settings = config.ServerSettings(aet="ARCHIVE", port=0, storage_dir=tmp_path / "archive")
    with LocalServer(settings, nodes=[config.Node("dest", "DEST", "127.0.0.1", 104)]) as running:
        yield running


def _pynetdicom_assoc(port, *contexts):
    from pynetdicom import AE as PynetAE

    ae = PynetAE(ae_title="PYSCU")
    for uid in contexts:
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE")
    assert assoc.is_established
    return ae, assoc


def test_find_with_a_key_below_the_level_is_answered_a900_with_the_reason(server):
    ae, assoc = _pynetdicom_assoc(server.port, uids.STUDY_ROOT_FIND_SOP_CLASS)
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        query.SOPInstanceUID = "1.2.3"  # an IMAGE-level key in a STUDY-level query
        responses = list(assoc.send_c_find(query, uids.STUDY_ROOT_FIND_SOP_CLASS))
    finally:
        assoc.release()
        ae.shutdown()
    status, identifier = responses[-1]
    assert status.Status == 0xA900
    assert status.get("ErrorComment")


def test_move_at_a_level_the_study_root_model_lacks_is_answered_a900_with_the_reason(server):
    ae, assoc = _pynetdicom_assoc(server.port, uids.STUDY_ROOT_MOVE_SOP_CLASS)
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "PATIENT"  # Study Root has no PATIENT level (PS3.4 C.6.2)
        query.PatientID = "X"
        responses = list(assoc.send_c_move(query, "DEST", uids.STUDY_ROOT_MOVE_SOP_CLASS))
    finally:
        assoc.release()
        ae.shutdown()
    status, _ = responses[-1]
    assert status.Status == 0xA900
    assert status.get("ErrorComment")
