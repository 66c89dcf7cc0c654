"""C-MOVE destinations a peer names (issue 11, item 11).

A multi-valued Move Destination (``DEST\\EVIL``) is answered 0xA801 and the association goes
on (it used to raise AttributeError and abort). A destination matches an address-book AE title
exactly — case-sensitive, trailing spaces and NUL padding ignored — never a node's name; and the
sub-association calls the node's own AE title (the destination runs with ``--strict-aet``).
"""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from dicomdesk.net import uids
from dicomdesk.net.dimsemessages import CMoveRQMessage

from serving import (
    CT_IMAGE_STORAGE,
    RawAssociation,
    ServeProcess,
    _lenient,
    archive_state,
    echo_rq,
    encode_dataset,
    make_dataset,
    store_rq,
    wait_until,
)

pytestmark = pytest.mark.interop

STUDY_MOVE = uids.STUDY_ROOT_MOVE_SOP_CLASS
INSTANCE = "1.2.826.0.1.3680043.8.498.11911"
STUDY = "1.2.3.4"
CONTEXTS = ((1, uids.VERIFICATION_SOP_CLASS), (3, CT_IMAGE_STORAGE), (5, STUDY_MOVE))


@_lenient
def _move_rq(destination: str, message_id: int) -> CMoveRQMessage:
    msg = CMoveRQMessage()
    msg.message_id = message_id
    msg.affected_sop_class_uid = STUDY_MOVE
    msg.priority = 0
    msg.move_destination = destination
    msg.data_set = b"present"
    return msg


@_lenient
def _identifier(study: str) -> bytes:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study
    return encode_dataset(ds)


def _store(port: int, instance: str, study: str, series: str = "1.2.3.4.5") -> None:
    raw = RawAssociation(port, CONTEXTS)
    raw.send_command(3, store_rq(instance))
    raw.send_data(3, encode_dataset(make_dataset(instance, study=study, series=series)), last=True)
    assert int(raw.receive_message().Status) == 0
    assert raw.release()[:1] == b"\x06"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A source server holding one object, and a strict destination called DEST."""
    root = tmp_path_factory.mktemp("move")
    with ServeProcess(root / "dest", "--strict-aet", aet="DEST") as dest:
        nodes = root / "nodes.toml"
        nodes.write_text('[[node]]\nname = "pacs-main"\naet = "DEST"\nhost = "127.0.0.1"\n'
                         f'port = {dest.port}\n')
        with ServeProcess(root / "source", "--nodes", str(nodes)) as source:
            _store(source.port, INSTANCE, STUDY)
            yield source, dest


def _move(port: int, destination: str, study: str = STUDY) -> int:
    """Final status of a C-MOVE to ``destination``; the association must still answer an echo."""
    raw = RawAssociation(port, CONTEXTS)
    assert raw.accepted
    try:
        raw.send_command(5, _move_rq(destination, 7))
        raw.send_data(5, _identifier(study), last=True)
        while True:
            rsp = raw.receive_message()
            assert rsp.CommandField == 0x8021 and rsp.MessageIDBeingRespondedTo == 7
            if int(rsp.Status) not in (0xFF00, 0xFF01):
                break
        raw.send_command(1, echo_rq(8))
        assert int(raw.receive_message().Status) == 0
        return int(rsp.Status)
    finally:
        assert raw.release()[:1] == b"\x06"


@pytest.mark.parametrize("destination", ["DEST\\EVIL", "EVIL\\DEST", "dest", "pacs-main", "DES"])
def test_a_destination_that_is_not_exactly_one_address_book_ae_title_is_unknown(pair, destination):
    # An instance of its own: the destination (shared by the module) may already hold the
    # fixture's instance, moved there by the other test (pytest-randomly runs them in any order).
    source, dest = pair
    instance, study = generate_uid(), generate_uid()
    _store(source.port, instance, study, series=generate_uid())
    assert _move(source.port, destination, study) == 0xA801
    assert instance not in archive_state(dest.storage)[0]


@pytest.mark.parametrize("destination", ["DEST", "DEST\0", " DEST  "])
def test_the_exact_ae_title_moves_and_the_sub_association_calls_the_nodes_title(pair, destination):
    source, dest = pair
    assert _move(source.port, destination) == 0x0000
    assert wait_until(lambda: INSTANCE in archive_state(dest.storage)[0], 10)
    assert "called AE title not recognised" not in dest.log()
