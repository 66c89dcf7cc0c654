"""Query/Retrieve (PS3.4 Annex C) against real peers: DCMTK and pynetdicom, in both roles."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomdesk.archive.matching import matches as value_matches
from dicomdesk.net import uids
from dicomdesk.net.applicationentity import AE
from dicomdesk.net.sopclass import qr_find_scp, qr_get_scp, qr_move_scp, storage_scp, storage_scu
from dicomdesk.operations.common import Peer
from dicomdesk.operations.query import find, get, move
from peers import LOCALHOST, run_dcmtk, start_dcmqrscp, start_pynetdicom_scp, start_storescp

pytestmark = pytest.mark.interop

LEVEL_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
              "IMAGE": "SOPInstanceUID"}
CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"  # CT / MR Image Storage
STUDY1, STUDY2 = generate_uid(), generate_uid()
SERIES = [generate_uid() for _ in range(3)]  # two in STUDY1, one in STUDY2


# ---------------------------------------------------------------------------- test data
def make_instances(directory: Path) -> list[Path]:
    """Six files from pydicom's CT_small/MR_small: DOE^JOHN has one study of 2 series x 2 CT,
    SMITH^ANN one study with 2 MR instances."""
    directory.mkdir(parents=True, exist_ok=True)
    layout = [("CT_small.dcm", "DOE^JOHN", "QR001", STUDY1, "20200315", 2, 2),
              ("MR_small.dcm", "SMITH^ANN", "QR002", STUDY2, "20210610", 1, 2)]
    paths = []
    series_uids = iter(SERIES)
    for source, name, pid, study, date, series_count, per_series in layout:
        for _ in range(series_count):
            series = next(series_uids)
            for number in range(1, per_series + 1):
                ds = pydicom.dcmread(get_testdata_file(source))
                ds.PatientName, ds.PatientID = name, pid
                ds.StudyInstanceUID, ds.StudyDate, ds.SeriesInstanceUID = study, date, series
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                ds.InstanceNumber = number
                path = directory / f"{ds.SOPInstanceUID}.dcm"
                ds.save_as(path, enforce_file_format=True)
                paths.append(path)
    return paths


def match_instances(instances: list[Dataset], identifier: Dataset) -> list[Dataset]:
    """Answers at the identifier's level: one per distinct entity, with the requested keys."""
    level = identifier.QueryRetrieveLevel
    unique = LEVEL_KEYS[level]
    answers: dict[str, Dataset] = {}
    for inst in instances:
        ok = True
        for elem in identifier:
            if elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet") or elem.VR == "SQ":
                continue
            if elem.value in (None, "") or elem.keyword not in inst:
                continue
            if not value_matches(elem.VR, elem.value, inst[elem.tag].value):
                ok = False
                break
        if ok and inst[unique].value not in answers:
            answer = Dataset()
            for elem in identifier:
                if elem.keyword == "QueryRetrieveLevel":
                    continue
                answer.add_new(elem.tag, elem.VR, inst[elem.tag].value if elem.tag in inst else elem.value)
            answer.QueryRetrieveLevel = level
            answers[str(inst[unique].value)] = answer
    return list(answers.values())


def selected_files(paths: list[Path], identifier: Dataset) -> list[Path]:
    level = identifier.QueryRetrieveLevel
    key = LEVEL_KEYS[level]
    wanted = set(str(identifier[key].value).split("\\"))
    return [p for p in paths if str(pydicom.dcmread(p, stop_before_pixels=True)[key].value) in wanted]


class QRTestAE(AE):
    """Our Q/R SCP over a few files (the archive-backed server comes later)."""

    def __init__(self, paths: list[Path], destinations: dict[str, dict] | None = None,
                 synthetic_matches: int = 0, **kwargs: Any):
        super().__init__("QRSCP", 0, **kwargs)
        self.paths = paths
        self.headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
        self.destinations = destinations or {}
        self.synthetic_matches = synthetic_matches
        self.add_scp(qr_find_scp).add_scp(qr_get_scp).add_scp(qr_move_scp)
        self.add_scu(storage_scu, [CT, MR])  # C-GET sub-operations (role selection)

    def on_receive_find(self, context, ds):
        if self.synthetic_matches:
            return synthetic(self.synthetic_matches)
        return ((answer, 0xFF00) for answer in match_instances(self.headers, ds))

    def on_receive_get(self, context, ds):
        files = selected_files(self.paths, ds)
        if str(ds.get("AccessionNumber", "")) == "MANY":  # a long get, for cancel tests
            files = files * 40
        return len(files), iter(files)

    def on_receive_move(self, context, ds, destination):
        files = selected_files(self.paths, ds)
        if destination == "MANY":  # a long move, for cancel tests
            files = files * 40
        remote = self.destinations.get(destination)
        return remote, len(files), iter(files)


def synthetic(count: int):
    """``count`` distinct patients; ONE Dataset object is reused on purpose: every response
    must still carry its own values."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    for i in range(count):
        ds.PatientID = f"P{i:05d}"
        ds.PatientName = f"DOE^N{i:05d}"
        yield ds, 0xFF00


class StoreCollector(AE):
    """A storage SCP (our own) that records the SOP Instance UIDs of complete objects."""

    def __init__(self, aet: str = "OURDEST"):
        super().__init__(aet, 0)
        self.add_scp(storage_scp)
        self.received: list[str] = []
        self.lock = threading.Lock()

    def on_receive_store(self, context, fp):
        ds = pydicom.dcmread(fp)
        fp.close()
        with self.lock:
            self.received.append(str(ds.SOPInstanceUID))
        return 0x0000


def assert_distinct_and_intact(found: list[Dataset], count: int) -> None:
    ids = [m.PatientID for m in found]
    assert len(ids) == count and len(set(ids)) == count
    assert all(str(m.PatientName) == f"DOE^N{m.PatientID[1:]}" for m in found)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    return make_instances(tmp_path_factory.mktemp("qr-data"))


@pytest.fixture(scope="module")
def destination():
    with StoreCollector() as dest:
        yield dest


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory, files, destination):
    root = tmp_path_factory.mktemp("dcmqrscp")
    storescp = start_storescp(root, aet="STORESCP")
    proc = start_dcmqrscp(root / "qr", peers={"STORESCP": (LOCALHOST, storescp.port),
                                              "OURDEST": (LOCALHOST, destination.port)})
    try:
        stored = run_dcmtk("storescu", "-aec", proc.aet, LOCALHOST, str(proc.port), *files)
        assert stored.returncode == 0, stored.stdout + stored.stderr
        proc.storescp = storescp
        yield proc
    finally:
        proc.stop()
        storescp.stop()


def pynetdicom_handlers(paths: list[Path], dest_port: int):
    from pynetdicom import evt

    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]

    def on_find(event):
        name = str(event.identifier.get("PatientName", ""))
        if name in ("MANY*", "SLOW*"):
            paced = threading.Event()  # never set: wait() paces the SLOW* matches
            for ds, status in synthetic(10000):
                if event.is_cancelled:
                    yield 0xFE00, None
                    return
                yield status, ds
                if name == "SLOW*":  # leave pynetdicom's reader time to see the C-CANCEL-RQ
                    paced.wait(0.005)
            return
        for answer in match_instances(headers, event.identifier):
            yield 0xFF00, answer

    def on_get(event):
        chosen = selected_files(paths, event.identifier)
        if str(event.identifier.get("AccessionNumber", "")) == "MANY":  # for cancel tests
            chosen = chosen * 40
        yield len(chosen)
        for path in chosen:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, pydicom.dcmread(path)

    def on_move(event):
        chosen = selected_files(paths, event.identifier) * (40 if event.move_destination.strip() == "MANY"
                                                            else 1)
        yield LOCALHOST, dest_port
        yield len(chosen)
        for path in chosen:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, pydicom.dcmread(path)

    return [(evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get), (evt.EVT_C_MOVE, on_move)]


@pytest.fixture(scope="module")
def pynetdicom_qr(files, destination):
    from pynetdicom.presentation import build_context

    contexts: list[Any] = [uids.PATIENT_ROOT_FIND_SOP_CLASS, uids.STUDY_ROOT_FIND_SOP_CLASS,
                           uids.STUDY_ROOT_GET_SOP_CLASS, uids.STUDY_ROOT_MOVE_SOP_CLASS,
                           uids.PATIENT_ROOT_GET_SOP_CLASS, uids.PATIENT_ROOT_MOVE_SOP_CLASS]
    for sop_class in (CT, MR):
        cx = build_context(sop_class)
        cx.scu_role, cx.scp_role = False, True
        contexts.append(cx)
    scp = start_pynetdicom_scp(contexts, pynetdicom_handlers(files, destination.port), ae_title="PYQR")
    for sop_class in (CT, MR):  # the files are Explicit VR LE, which pynetdicom sends as they are
        scp.ae.add_requested_context(sop_class, [uids.EXPLICIT_VR_LITTLE_ENDIAN])
    try:
        yield scp
    finally:
        scp.stop()


@pytest.fixture(scope="module")
def our_qr(files, destination, tmp_path_factory):
    root = tmp_path_factory.mktemp("ourqr")
    storescp = start_storescp(root, aet="STORESCP")
    remote = {"aet": "STORESCP", "address": LOCALHOST, "port": storescp.port}
    ours = {"aet": destination.ae_title, "address": LOCALHOST, "port": destination.port}
    ae = QRTestAE(files, {"STORESCP": remote, "OURDEST": ours, "MANY": ours})
    try:
        with ae:
            ae.storescp = storescp
            yield ae
    finally:
        storescp.stop()


def peer_of(scp: Any, aet: str) -> Peer:
    return Peer(LOCALHOST, scp.port, called_aet=aet, timeout=20)


def uid_of(paths: list[Path], study: str) -> set[str]:
    """SOP Instance UIDs of a study's files (the files are named after them)."""
    return {p.stem for p in paths
            if str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) == study}


QUERIES = [  # (level, keys, expected values of the level's unique key)
    ("PATIENT", {"PatientName": "DOE*", "PatientID": ""}, lambda f: {"QR001"}),
    ("STUDY", {"StudyDate": "20200101-20201231", "StudyInstanceUID": "", "PatientName": ""},
     lambda f: {STUDY1}),
    ("SERIES", {"StudyInstanceUID": STUDY1, "SeriesInstanceUID": "", "Modality": ""},
     lambda f: set(SERIES[:2])),
    ("IMAGE", {"StudyInstanceUID": STUDY1, "SeriesInstanceUID": SERIES[1], "SOPInstanceUID": "",
               "InstanceNumber": ""},
     lambda f: {p.stem for p in f if pydicom.dcmread(p).SeriesInstanceUID == SERIES[1]}),
]


# ---------------------------------------------------------------------------- our SCU vs DCMTK
@pytest.mark.parametrize(("level", "keys", "expected"), QUERIES, ids=[q[0] for q in QUERIES])
def test_find_against_dcmqrscp_at_each_level(dcmqrscp, files, level, keys, expected):
    model = "patient" if level == "PATIENT" else None
    result = find(peer_of(dcmqrscp, dcmqrscp.aet), level, keys, model)
    assert result.ok, result.error
    assert {str(m[LEVEL_KEYS[level]].value) for m in result.matches} == expected(files)


def test_get_study_from_dcmqrscp_writes_every_file_complete(dcmqrscp, files, tmp_path):
    seen = []
    result = get(peer_of(dcmqrscp, dcmqrscp.aet), "STUDY", {"StudyInstanceUID": STUDY1}, tmp_path,
                 progress=seen.append)
    assert result.ok, result
    assert (result.completed, result.failed, result.warning) == (4, 0, 0)
    written = sorted(tmp_path.iterdir())
    assert {p.stem for p in written} == uid_of(files, STUDY1)
    assert all(p.suffix == ".dcm" for p in written)  # no temporary file left behind
    for path in written:
        ds = pydicom.dcmread(path)
        assert len(ds.PixelData) == ds.Rows * ds.Columns * 2
    assert seen and seen[-1].remaining == 0


def test_move_study_from_dcmqrscp_to_storescp_accounts_for_every_sub_operation(dcmqrscp, files):
    storescp = dcmqrscp.storescp
    before = set(storescp.output_dir.iterdir())
    result = move(peer_of(dcmqrscp, dcmqrscp.aet), "STORESCP", "STUDY", {"StudyInstanceUID": STUDY1})
    assert result.ok, result
    assert result.completed == 4
    assert len(set(storescp.output_dir.iterdir()) - before) == 4


def test_move_from_dcmqrscp_to_our_own_ae(dcmqrscp, files, destination):
    before = len(destination.received)
    result = move(peer_of(dcmqrscp, dcmqrscp.aet), "OURDEST", "STUDY",
                  {"PatientID": "QR002", "StudyInstanceUID": STUDY2}, model="patient")
    assert result.ok and result.completed == 2, result
    assert set(destination.received[before:]) == uid_of(files, STUDY2)


# ---------------------------------------------------------------------------- our SCU vs pynetdicom
@pytest.mark.parametrize(("level", "keys", "expected"), QUERIES, ids=[q[0] for q in QUERIES])
def test_find_against_pynetdicom_at_each_level(pynetdicom_qr, files, level, keys, expected):
    result = find(peer_of(pynetdicom_qr, "PYQR"), level, keys)
    assert result.ok, result.error
    assert {str(m[LEVEL_KEYS[level]].value) for m in result.matches} == expected(files)


def test_get_study_from_pynetdicom(pynetdicom_qr, files, tmp_path):
    result = get(peer_of(pynetdicom_qr, "PYQR"), "STUDY", {"StudyInstanceUID": STUDY2}, tmp_path)
    assert result.ok, result
    assert result.completed == 2
    assert {p.stem for p in tmp_path.iterdir()} == uid_of(files, STUDY2)


def test_move_study_from_pynetdicom_to_our_ae(pynetdicom_qr, files, destination):
    before = len(destination.received)
    result = move(peer_of(pynetdicom_qr, "PYQR"), "OURDEST", "STUDY", {"StudyInstanceUID": STUDY1})
    assert result.ok, result
    assert (result.completed, result.failed) == (4, 0)
    assert set(destination.received[before:]) == uid_of(files, STUDY1)


def test_ten_thousand_matches_from_pynetdicom_arrive_distinct_and_intact(pynetdicom_qr):
    result = find(peer_of(pynetdicom_qr, "PYQR"), "PATIENT", {"PatientName": "MANY*", "PatientID": ""})
    assert result.ok, result.error
    assert_distinct_and_intact(result.matches, 10000)


def test_cancel_of_a_find_under_way_ends_with_fe00(pynetdicom_qr):
    cancel = threading.Event()
    result = find(peer_of(pynetdicom_qr, "PYQR"), "PATIENT", {"PatientName": "SLOW*", "PatientID": ""},
                  on_match=lambda ds: cancel.set(), cancel=cancel)
    assert result.status is not None and result.status.is_cancel, result
    assert 1 <= len(result.matches) < 10000


def test_cancel_of_a_move_under_way_reports_counts(pynetdicom_qr, destination):
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append(p)
        cancel.set()

    result = move(peer_of(pynetdicom_qr, "PYQR"), "MANY", "STUDY", {"StudyInstanceUID": STUDY1},
                  progress=progress, cancel=cancel)
    assert result.status is not None and result.status.is_cancel, result
    assert seen and result.completed < 160


# ---------------------------------------------------------------------------- our SCP vs DCMTK
def test_findscu_queries_our_scp(our_qr, files, tmp_path):
    out = run_dcmtk("findscu", "-S", "-aec", "QRSCP", "-k", "QueryRetrieveLevel=SERIES",
                    "-k", f"StudyInstanceUID={STUDY1}", "-k", "SeriesInstanceUID", "-k", "Modality",
                    "-X", "-od", tmp_path, LOCALHOST, str(our_qr.port))
    assert out.returncode == 0, out.stderr
    series = {str(pydicom.dcmread(p).SeriesInstanceUID) for p in tmp_path.glob("rsp*.dcm")}
    assert series == set(SERIES[:2])


def test_getscu_retrieves_a_study_from_our_scp(our_qr, files, tmp_path):
    out = run_dcmtk("getscu", "-S", "-aec", "QRSCP", "-k", "QueryRetrieveLevel=STUDY",
                    "-k", f"StudyInstanceUID={STUDY1}", "-od", tmp_path, LOCALHOST, str(our_qr.port))
    assert out.returncode == 0, out.stderr
    got = {str(pydicom.dcmread(p).SOPInstanceUID) for p in tmp_path.iterdir()}
    assert got == uid_of(files, STUDY1)


def test_movescu_moves_a_study_from_our_scp_to_storescp(our_qr, files):
    before = set(our_qr.storescp.output_dir.iterdir())
    out = run_dcmtk("movescu", "-S", "-aec", "QRSCP", "-aem", "STORESCP", "-k", "QueryRetrieveLevel=STUDY",
                    "-k", f"StudyInstanceUID={STUDY2}", LOCALHOST, str(our_qr.port))
    assert out.returncode == 0, out.stderr
    new = set(our_qr.storescp.output_dir.iterdir()) - before
    assert {str(pydicom.dcmread(p).SOPInstanceUID) for p in new} == uid_of(files, STUDY2)


# ---------------------------------------------------------------------------- our SCP vs our SCU
def test_our_scp_serves_our_scu_find_get_and_move(our_qr, files, destination, tmp_path):
    peer = peer_of(our_qr, "QRSCP")
    found = find(peer, "IMAGE", {"StudyInstanceUID": STUDY1, "SOPInstanceUID": ""})
    assert {str(m.SOPInstanceUID) for m in found.matches} == uid_of(files, STUDY1)
    got = get(peer, "SERIES", {"StudyInstanceUID": STUDY1, "SeriesInstanceUID": SERIES[0]}, tmp_path)
    assert got.ok and got.completed == 2, got
    before = len(destination.received)
    moved = move(peer, "OURDEST", "STUDY", {"StudyInstanceUID": STUDY2})
    assert moved.ok and moved.completed == 2, moved
    assert set(destination.received[before:]) == uid_of(files, STUDY2)


def test_move_to_unknown_destination_is_a801(our_qr):
    result = move(peer_of(our_qr, "QRSCP"), "NOWHERE", "STUDY", {"StudyInstanceUID": STUDY1})
    assert result.status == 0xA801 and not result.ok


def test_cancel_of_a_get_under_way_reports_counts(pynetdicom_qr, tmp_path):
    cancel = threading.Event()
    result = get(peer_of(pynetdicom_qr, "PYQR"), "STUDY",
                 {"StudyInstanceUID": STUDY1, "AccessionNumber": "MANY"}, tmp_path / "got",
                 progress=lambda p: cancel.set(), cancel=cancel)
    assert result.status is not None and result.status.is_cancel, result
    assert 1 <= result.completed < 160


def test_our_scp_stops_a_cancelled_get_with_counts(our_qr, tmp_path):
    cancel = threading.Event()
    result = get(peer_of(our_qr, "QRSCP"), "STUDY",
                 {"StudyInstanceUID": STUDY1, "AccessionNumber": "MANY"}, tmp_path / "got",
                 progress=lambda p: cancel.set(), cancel=cancel)
    assert result.status is not None and result.status.is_cancel, result
    assert 1 <= result.completed < 160


def test_our_scp_stops_a_cancelled_move_with_counts(our_qr):
    cancel = threading.Event()
    result = move(peer_of(our_qr, "QRSCP"), "MANY", "STUDY", {"StudyInstanceUID": STUDY1},
                  progress=lambda p: cancel.set(), cancel=cancel)
    assert result.status is not None and result.status.is_cancel, result
    assert 1 <= result.completed < 160


def test_ten_thousand_matches_from_our_scp_arrive_distinct_and_intact(files):
    with QRTestAE(files, synthetic_matches=10000) as ae:
        result = find(peer_of(ae, "QRSCP"), "PATIENT", {"PatientID": "", "PatientName": ""})
    assert result.ok, result.error
    assert_distinct_and_intact(result.matches, 10000)


# ---------------------------------------------------------------------------- our SCP vs pynetdicom
def _pynetdicom_assoc(port: int, *contexts: Any):
    from pynetdicom import AE as PynetdicomAE

    ae = PynetdicomAE(ae_title="PYSCU")
    for cx in contexts:
        ae.add_requested_context(cx)
    return ae, ae.associate(LOCALHOST, port, ae_title="QRSCP")


def test_pynetdicom_scu_finds_and_moves_through_our_scp(our_qr, files, destination):
    ae, assoc = _pynetdicom_assoc(our_qr.port, uids.STUDY_ROOT_FIND_SOP_CLASS, uids.STUDY_ROOT_MOVE_SOP_CLASS)
    try:
        assert assoc.is_established
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        query.PatientName = "SMITH*"
        found = [ds for status, ds in assoc.send_c_find(query, uids.STUDY_ROOT_FIND_SOP_CLASS)
                 if status and status.Status == 0xFF00]
        assert [str(ds.StudyInstanceUID) for ds in found] == [STUDY2]
        before = len(destination.received)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = STUDY2
        responses = list(assoc.send_c_move(query, "OURDEST", uids.STUDY_ROOT_MOVE_SOP_CLASS))
        assert responses[-1][0].Status == 0x0000
        assert responses[-1][0].NumberOfCompletedSuboperations == 2
        assert set(destination.received[before:]) == uid_of(files, STUDY2)
    finally:
        assoc.release()
        ae.shutdown()


def test_pynetdicom_scu_gets_from_our_scp(our_qr, files):
    from pynetdicom import AE as PynetdicomAE
    from pynetdicom import evt
    from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

    received = []

    def on_store(event):
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = PynetdicomAE(ae_title="PYSCU")
    ae.add_requested_context(uids.STUDY_ROOT_GET_SOP_CLASS)
    roles = []
    for sop_class in (CT, MR):
        ae.add_requested_context(sop_class)
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid, role.scu_role, role.scp_role = sop_class, False, True
        roles.append(role)
    assoc = ae.associate(LOCALHOST, our_qr.port, ae_title="QRSCP", ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = STUDY1
        responses = list(assoc.send_c_get(query, uids.STUDY_ROOT_GET_SOP_CLASS))
        assert responses[-1][0].Status == 0x0000
        assert set(received) == uid_of(files, STUDY1)
    finally:
        assoc.release()
        ae.shutdown()


def test_pynetdicom_scu_cancels_a_find_on_our_scp(files):
    with QRTestAE(files, synthetic_matches=10000) as ours:
        ae, assoc = _pynetdicom_assoc(ours.port, uids.PATIENT_ROOT_FIND_SOP_CLASS)
        try:
            query = Dataset()
            query.QueryRetrieveLevel = "PATIENT"
            query.PatientID = ""
            statuses = []
            for status, _ in assoc.send_c_find(query, uids.PATIENT_ROOT_FIND_SOP_CLASS, msg_id=7):
                statuses.append(status.Status)
                if len(statuses) == 1:
                    assoc.send_c_cancel(7, query_model=uids.PATIENT_ROOT_FIND_SOP_CLASS)
            assert statuses[-1] == 0xFE00
            assert len(statuses) < 10000
        finally:
            assoc.release()
            ae.shutdown()
