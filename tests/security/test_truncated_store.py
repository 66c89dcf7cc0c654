"""A C-STORE whose data set ends inside an element is never acknowledged (issue 11, item 1).

The data set of a C-STORE is complete when its last fragment arrives (PS3.7 9.3.1.1, PS3.8
E.2: "last fragment" bit), but nothing in the upper layer says the *bytes* form a whole data
set: a peer (or a sender reading a file that was still being written) can mark the last
fragment of a data set cut halfway through Pixel Data. The archive walks the element headers
of what arrived (the sender's own structure check) before anything is fsynced, renamed,
indexed or answered: a cut data set gets 0xC000 with an Error Comment saying what is cut,
nothing is kept (no file, no index row, no temp file), and the association goes on — the
next, whole object on it is stored.

Real sockets against both servers users run: ``dicomdesk serve`` (a process) and the in-app
``LocalServer`` (in this process, as the window hosts it).
"""

from __future__ import annotations

import struct

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from serving import (
    CT_IMAGE_STORAGE,
    RawAssociation,
    ServeProcess,
    archive_state,
    connect,
    echo_ok,
    make_dataset,
    read_pdu,
    store_rq,
)

from dicomdesk import config
from dicomdesk.net import pdu, uids
from dicomdesk.net.dataset_encoding import encode_data_set
from dicomdesk.operations import LocalServer

pytestmark = pytest.mark.interop

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
# One context per transfer syntax the cases use (PS3.5 A.1, A.2, A.4).
PC_EXPLICIT, PC_IMPLICIT, PC_JPEG = 1, 3, 5
CONTEXTS = ((PC_EXPLICIT, uids.EXPLICIT_VR_LITTLE_ENDIAN), (PC_IMPLICIT, uids.IMPLICIT_VR_LITTLE_ENDIAN),
            (PC_JPEG, JPEG_BASELINE))


class StoreAssociation(RawAssociation):
    """A raw association proposing CT Image Storage once per transfer syntax of ``CONTEXTS``."""

    def __init__(self, port: int):
        from dicomdesk.net.negotiation import APPLICATION_CONTEXT_NAME, build_user_information

        items = [pdu.ApplicationContextItem(APPLICATION_CONTEXT_NAME)]
        for pc_id, ts in CONTEXTS:
            items.append(pdu.PresentationContextItemRQ(pc_id, pdu.AbstractSyntaxSubItem(CT_IMAGE_STORAGE),
                                                       [pdu.TransferSyntaxSubItem(ts)]))
        items.append(build_user_information(16384))
        self.sock = connect(port)
        self.sock.sendall(pdu.AAssociateRqPDU("DICOMDESK", "TRUNCATOR", items).encode())
        self.answer = read_pdu(self.sock)
        self.accepted = bool(self.answer) and self.answer[0] == 0x02

    def store(self, pc_id: int, uid: str, data: bytes, message_id: int) -> Dataset:
        """One C-STORE whose data set is ``data`` (the last fragment flagged last); its response."""
        self.send_command(pc_id, store_rq(uid, message_id=message_id))
        for start in range(0, len(data), 16000):
            self.send_data(pc_id, data[start:start + 16000], last=start + 16000 >= len(data))
        return self.receive_message()


def _header(uid: str) -> Dataset:
    return make_dataset(uid, study="1.2.826.0.1.3680043.8.498.11", series="1.2.826.0.1.3680043.8.498.11.1")


def _cut_pixel_data(uid: str) -> tuple[int, bytes]:
    """The issue's case: Pixel Data claims 524,288 bytes and 262,355 arrive."""
    data = encode_data_set(make_dataset(uid, pixels=524_288), uids.EXPLICIT_VR_LITTLE_ENDIAN)
    return PC_EXPLICIT, data[:len(data) - 524_288 + 262_355]


def _claims_2_gib(uid: str) -> tuple[int, bytes]:
    """Pixel Data's length field says 2 GiB; 100 KB follow, then the last fragment."""
    head = encode_data_set(_header(uid), uids.EXPLICIT_VR_LITTLE_ENDIAN)
    return PC_EXPLICIT, head + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 1 << 31) + b"\0" * 100_000


def _implicit_cut(uid: str) -> tuple[int, bytes]:
    data = encode_data_set(make_dataset(uid, pixels=40_000), uids.IMPLICIT_VR_LITTLE_ENDIAN)
    return PC_IMPLICIT, data[:-1000]


def _sequence_not_closed(uid: str) -> tuple[int, bytes]:
    """An undefined-length sequence whose item ends on an element boundary, but neither the
    item nor the sequence is ever delimited (every element present is whole: a lenient
    reader takes the shorter data set for the real one)."""
    ds = _header(uid)
    item = Dataset()
    item.CodeValue = "T-D1100"
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = "Head"
    item.is_undefined_length_sequence_item = True
    ds.AnatomicRegionSequence = Sequence([item])
    ds["AnatomicRegionSequence"].is_undefined_length = True
    data = encode_data_set(ds, uids.EXPLICIT_VR_LITTLE_ENDIAN)
    delimiters = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    assert delimiters in data, "pydicom wrote the sequence with a defined length"
    return PC_EXPLICIT, data[:data.index(delimiters)]


def _encapsulated_item_cut(uid: str) -> tuple[int, bytes]:
    """Encapsulated Pixel Data (PS3.5 A.4): an empty offset table, then a fragment item that
    claims 6,000 bytes of which 2,500 arrive."""
    head = encode_data_set(_header(uid), uids.EXPLICIT_VR_LITTLE_ENDIAN)
    pixel = struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF)
    pixel += struct.pack("<HHL", 0xFFFE, 0xE000, 0)
    pixel += struct.pack("<HHL", 0xFFFE, 0xE000, 6000) + b"\xff\xd8" + b"\x55" * 2498
    return PC_JPEG, head + pixel


def _encapsulated_not_delimited(uid: str) -> tuple[int, bytes]:
    """Every fragment whole, but the Sequence Delimitation Item never comes."""
    head = encode_data_set(_header(uid), uids.EXPLICIT_VR_LITTLE_ENDIAN)
    pixel = struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF)
    pixel += struct.pack("<HHL", 0xFFFE, 0xE000, 0)
    pixel += struct.pack("<HHL", 0xFFFE, 0xE000, 1000) + b"\x55" * 1000
    return PC_JPEG, head + pixel


def _cut_in_an_element_header(uid: str) -> tuple[int, bytes]:
    """The data set ends 6 bytes into the header of Pixel Data (tag and VR only)."""
    head = encode_data_set(_header(uid), uids.EXPLICIT_VR_LITTLE_ENDIAN)
    return PC_EXPLICIT, head + struct.pack("<HH2s", 0x7FE0, 0x0010, b"OB")


CASES = [_cut_pixel_data, _claims_2_gib, _implicit_cut, _sequence_not_closed, _encapsulated_item_cut,
         _encapsulated_not_delimited, _cut_in_an_element_header]


@pytest.fixture(params=["serve", "in-app"], scope="module")
def server(request, tmp_path_factory):
    """(port, storage folder) of ``dicomdesk serve`` or of the in-app LocalServer."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "serve":
        with ServeProcess(root / "storage") as proc:
            echo_ok(proc.port)
            yield proc.port, proc.storage
    else:
        settings = config.ServerSettings(port=0, storage_dir=root / "storage", network_timeout=10.0)
        with LocalServer(settings, nodes=[]) as local:
            echo_ok(local.port)
            yield local.port, root / "storage"


@pytest.mark.parametrize("make", CASES, ids=[c.__name__.lstrip("_") for c in CASES])
def test_a_truncated_data_set_is_refused_nothing_is_kept_and_the_association_goes_on(server, make):
    port, storage = server
    case = make.__name__.lstrip("_").replace("_", "")
    cut_uid = f"1.2.826.0.1.3680043.8.498.11.{len(case)}.{sum(map(ord, case))}.1"
    whole_uid = cut_uid[:-1] + "2"
    pc_id, data = make(cut_uid)
    raw = StoreAssociation(port)
    try:
        assert raw.accepted
        rsp = raw.store(pc_id, cut_uid, data, message_id=1)
        status = int(rsp.Status)
        assert status in (0xA900, 0xC000), f"0x{status:04X}: a cut data set was acknowledged"
        comment = str(rsp.get("ErrorComment", ""))
        assert any(word in comment for word in ("truncated", "not closed", "cut")), comment
        # The same association goes on: the whole object, sent next, is stored.
        whole = encode_data_set(make_dataset(whole_uid, pixels=2000), uids.EXPLICIT_VR_LITTLE_ENDIAN)
        assert int(raw.store(PC_EXPLICIT, whole_uid, whole, message_id=2).Status) == 0x0000
        assert raw.release()[:1] == b"\x06"  # A-RELEASE-RP
    finally:
        raw.close()
    files, rows, temp = archive_state(storage)
    assert cut_uid not in files and cut_uid not in rows, "the cut object was kept"
    assert whole_uid in files and whole_uid in rows
    assert not temp, temp
    assert not [p for p in storage.rglob(f"{cut_uid}*")], "something of the cut object is on disk"
