"""How our C-FIND SCP writes its pending responses (PS3.4 C.4.1, PS3.7 9.3.2, PS3.8 9.3.5).

Each response whose command set and identifier fit the peer's Maximum Length goes as one
P-DATA-TF of two PDVs; matches the hook has in hand leave together in one gathered write; the
first match never waits for the ones after it, and no match waits while the hook may block.
Checked with real sockets against our own SCU, pynetdicom and DCMTK ``findscu``, at a peer
maximum PDU of 4096 with identifiers on both sides of the one-PDU size.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from dicomdesk import config
from dicomdesk.archive import Archive
from dicomdesk.archive.index import InstanceRecord
from dicomdesk.net import uids
from dicomdesk.net.applicationentity import AE
from dicomdesk.net.association import GATHER_MAX_BYTES
from dicomdesk.net.dataset_codec import encode_identifier
from dicomdesk.net.sopclass import qr_find_scp
from dicomdesk.operations.common import Peer
from dicomdesk.operations.query import find
from dicomdesk.operations.server import LocalServer
from peers import LOCALHOST, run_dcmtk

pytestmark = pytest.mark.interop

FIND = uids.STUDY_ROOT_FIND_SOP_CLASS
#: Identifier lengths around 4096 - 12 - the command set: some responses fit one PDU of a
#: 4096-byte peer whole, the others are split into a command PDU and data PDUs.
LONG_COMMENTS = list(range(3850, 4120, 6))


def match(i: int, comment_length: int = 0) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = f"P{i:05d}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.7777.{i}"
    if comment_length:
        ds.PatientComments = "C" * comment_length
    return ds


class FindAE(AE):
    """Our SCP; ``make`` returns the hook's result (a list, an iterator...) for each request,
    and the association of the last C-FIND is kept to read its write count."""

    def __init__(self, make) -> None:
        super().__init__("FINDSCP", 0)
        self.make = make
        self.association = None
        self.writes_before = 0
        self.add_scp(qr_find_scp, [FIND])

    def on_receive_find(self, context, ds):
        self.association = context.association
        self.writes_before = self.association.dul.writes
        return self.make()


def _peer(ae: AE) -> Peer:
    return Peer(LOCALHOST, ae.port, called_aet="FINDSCP", timeout=30)


def test_matches_in_hand_leave_in_few_writes_each_response_whole():
    count = 2000
    matches = [match(i) for i in range(count)]
    with FindAE(lambda: [(m, 0xFF00) for m in matches]) as ae:
        got: list[Dataset] = []
        result = find(_peer(ae), "STUDY", {"PatientID": "", "StudyInstanceUID": ""},
                      model="study", on_match=got.append, keep_matches=False)
        assert result.error is None and result.status is not None and result.status.is_success
        writes = ae.association.dul.writes - ae.writes_before
    assert [str(ds.PatientID) for ds in got] == [f"P{i:05d}" for i in range(count)]
    # one write for the first match, one per GATHER_MAX_BYTES of responses, one with the final
    # response; a response here is well under 400 bytes. One write per response before.
    assert writes <= 2 + count * 400 // GATHER_MAX_BYTES, writes


class _OneAtATime:
    """A hook that makes its next match only once the peer has the previous one. With
    ``claim_ready`` it says more matches are ready (and waits only for the first): only the
    SCP's rule that the first match leaves at once lets that C-FIND finish. Without it (an
    iterator that says nothing) it waits for every match: no match may be held back while
    the hook works on the next."""

    def __init__(self, received: list, arrived: threading.Event, count: int, claim_ready: bool):
        self.received, self.arrived, self.count = received, arrived, count
        self.claim_ready = claim_ready
        self.made = 0
        if claim_ready:
            self.ready = lambda: 1

    def __iter__(self):
        return self

    def __next__(self):
        if self.made == 1 or (self.made and not self.claim_ready):
            if not self.arrived.wait(30):
                raise AssertionError(f"match {self.made} was not written before the hook's next step")
            self.arrived.clear()
        if self.made == self.count:
            raise StopIteration
        self.made += 1
        return match(self.made), 0xFF00


@pytest.mark.parametrize("claim_ready", [True, False])
def test_the_first_match_is_written_before_the_hook_makes_the_next(claim_ready):
    """claim_ready: the hook says more are ready, yet the first match may not wait for them.
    Without the claim (a plain iterator) no match waits for the hook's next step at all."""
    arrived = threading.Event()
    received: list[Dataset] = []
    count = 5

    def on_match(ds: Dataset) -> None:
        received.append(ds)
        arrived.set()

    with FindAE(lambda: _OneAtATime(received, arrived, count, claim_ready)) as ae:
        result = find(_peer(ae), "STUDY", {"PatientID": ""}, model="study", on_match=on_match)
    assert result.error is None and result.status is not None and result.status.is_success, result
    assert [str(ds.PatientID) for ds in received] == [f"P{i:05d}" for i in range(1, count + 1)]


def _long_matches() -> list[tuple[Dataset, int]]:
    return [(match(i, n), 0xFF00) for i, n in enumerate(LONG_COMMENTS)]


class EncodingFindAE(FindAE):
    """``FindAE`` whose hook hands each identifier over already encoded in the context's
    transfer syntax (bytes), as the archive does: the SCP writes those without a message
    per match (``qr._PendingWriter``)."""

    def on_receive_find(self, context, ds):
        syntax = str(context.supported_ts[0] if isinstance(context.supported_ts, (list, tuple))
                     else context.supported_ts)
        results = super().on_receive_find(context, ds)
        encoded = []
        for identifier, status in results:
            data = encode_identifier(identifier, syntax) if identifier is not None else None
            assert identifier is None or data is not None
            encoded.append((data, status))
        return encoded


@pytest.mark.parametrize("scp", [FindAE, EncodingFindAE])
def test_pynetdicom_at_a_4096_byte_maximum_gets_every_identifier_whole(scp):
    from pynetdicom import AE as PynetdicomAE

    with scp(_long_matches) as ours:
        scu = PynetdicomAE(ae_title="PYSCU")
        scu.maximum_pdu_size = 4096
        scu.add_requested_context(FIND)
        assoc = scu.associate(LOCALHOST, ours.port, ae_title="FINDSCP")
        try:
            assert assoc.is_established
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.PatientID = ""
            query.PatientComments = ""
            identifiers, final = [], None
            for status, identifier in assoc.send_c_find(query, FIND):
                if status.Status in (0xFF00, 0xFF01):
                    identifiers.append(identifier)
                else:
                    final = status.Status
        finally:
            assoc.release()
            scu.shutdown()
    assert final == 0x0000
    assert [len(ds.PatientComments) for ds in identifiers] == LONG_COMMENTS
    assert all(ds.PatientComments == "C" * n for ds, n in zip(identifiers, LONG_COMMENTS))


@pytest.mark.parametrize("scp", [FindAE, EncodingFindAE])
def test_findscu_at_a_4096_byte_maximum_gets_every_identifier_whole(tmp_path: Path, scp):
    with scp(_long_matches) as ours:
        result = run_dcmtk("findscu", "-v", "-S", "-aec", "FINDSCP", "-pdu", "4096", "-X",
                           "-od", tmp_path, "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=",
                           "-k", "PatientComments=", LOCALHOST, str(ours.port))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    responses = [pydicom.dcmread(p) for p in sorted(tmp_path.glob("rsp*.dcm"))]
    assert [len(ds.PatientComments) for ds in responses] == LONG_COMMENTS, log
    assert all(ds.PatientComments == "C" * n for ds, n in zip(responses, LONG_COMMENTS))


class _Relay:
    """A TCP relay between a client and ``port`` that keeps every byte the server sent."""

    def __init__(self, port: int) -> None:
        self.port, self.received = port, bytearray()
        self.listener = socket.create_server((LOCALHOST, 0))
        self.address = self.listener.getsockname()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection((LOCALHOST, self.port))
        up = threading.Thread(target=self._pipe, args=(client, server, None), daemon=True)
        up.start()
        self._pipe(server, client, self.received)
        up.join(10)
        client.close()
        server.close()
        self.listener.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, keep: bytearray | None) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if keep is not None:
                keep += data
            sink.sendall(data)


def _wire_of_find(scp: type, make) -> bytes:
    """Every byte our SCP sent during one C-FIND of our SCU (association to release)."""
    with scp(make) as ae:
        relay = _Relay(ae.port)
        peer = Peer(LOCALHOST, relay.address[1], called_aet="FINDSCP", timeout=30)
        result = find(peer, "STUDY", {"PatientID": "", "StudyInstanceUID": ""}, model="study",
                      keep_matches=False)
        assert result.error is None and result.status is not None and result.status.is_success
        relay.thread.join(10)
    return bytes(relay.received)


def test_encoded_identifiers_go_out_as_the_same_bytes_as_their_messages():
    """``qr._PendingWriter`` lays out the PDUs of pending responses itself: the wire must
    not tell it from the message path (one P-DATA-TF of two PDVs per match; the statuses
    FF00 and FF01; a response too long for one PDU at the peer's maximum goes as a message)."""
    long = match(700)
    long.add_new(0x0040A160, "UT", "C" * 70000)  # Text Value: more than our SCU's 64 KiB PDU

    def make():
        return [(match(i), 0xFF00 if i % 3 else 0xFF01) for i in range(700)] + \
               [(long, 0xFF00), (match(701), 0xFF00)]

    messages = _wire_of_find(FindAE, make)
    written = _wire_of_find(EncodingFindAE, make)
    assert len(messages) > 700 * 100
    assert written == messages


def _study(i: int) -> InstanceRecord:
    study = f"1.2.826.0.1.3680043.9.7778.{i}"
    values = {"PatientName": f"Doe^P{i // 10}", "PatientID": f"P{i // 10:05d}",
              "StudyInstanceUID": study, "StudyDate": "20240101", "SeriesInstanceUID": f"{study}.1",
              "Modality": "CT", "SeriesNumber": "1", "SOPInstanceUID": f"{study}.1.1",
              "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "InstanceNumber": "1"}
    return InstanceRecord(values=values, transfer_syntax=uids.EXPLICIT_VR_LITTLE_ENDIAN,
                          file_size=100, path=f"{study}/1/1.dcm",
                          received_at="2024-01-01T00:00:00+00:00")


@pytest.fixture(scope="module")
def archive_server(tmp_path_factory: pytest.TempPathFactory):
    """``dicomdesk serve``'s server over an index of 3,000 studies (gathered matches: its
    iterator says how many rows of the last SQLite fetch it holds)."""
    root = tmp_path_factory.mktemp("find-archive")
    with Archive(root / "archive", durable=False) as archive:
        archive.index.upsert_many(_study(i) for i in range(3000))
    server = LocalServer(config.ServerSettings(aet="ARCHIVE", port=0, storage_dir=root / "archive",
                                               durable=False), nodes=[])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _archive_find(server: LocalServer, **kwargs):
    return find(Peer(LOCALHOST, server.port, called_aet="ARCHIVE", timeout=30), "STUDY",
                {"StudyInstanceUID": "", "PatientID": ""}, model="study", **kwargs)


def test_the_archive_answers_every_study_once_in_order(archive_server):
    got: list[str] = []
    result = _archive_find(archive_server, on_match=lambda ds: got.append(str(ds.StudyInstanceUID)),
                           keep_matches=False)
    assert result.error is None and result.status is not None and result.status.is_success
    assert sorted(got) == sorted(f"1.2.826.0.1.3680043.9.7778.{i}" for i in range(3000))
    assert len(set(got)) == 3000


def test_a_cancel_stops_the_archive_matches_within_one_batch(archive_server):
    """C-CANCEL-RQ is looked for after every write: at most one batch of gathered matches
    (one SQLite fetch, 256 rows, or GATHER_MAX_BYTES) follows it (PS3.4 C.4.1.3.1)."""
    cancel = threading.Event()
    got: list[Dataset] = []

    def on_match(ds: Dataset) -> None:
        got.append(ds)
        cancel.set()

    result = _archive_find(archive_server, on_match=on_match, cancel=cancel)
    assert result.status is not None and result.status.is_cancel, result
    assert 1 <= len(got) < 3000, len(got)
