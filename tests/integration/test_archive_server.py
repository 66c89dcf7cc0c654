"""The local server as a small PACS (issue 4), against real peers: DCMTK and pynetdicom.

One server (in-process ``LocalServer`` over a tmp archive) is filled by DCMTK ``storescu`` with
generated studies, then queried and retrieved by ``findscu``/``getscu``/``movescu`` and by
pynetdicom.  The expected matches are written out by hand per query (PS3.4 C.2.2.2 kinds).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomdesk import config
from dicomdesk.archive.store import is_path_safe_uid
from dicomdesk.operations.commitment import commit
from dicomdesk.operations.common import Peer
from dicomdesk.operations.server import LocalServer
from peers import LOCALHOST, free_port, run_dcmtk, start_storescp, write_worklist_file

pytestmark = pytest.mark.interop

SERVER_AET = "DICOMDESK"
CT_SOURCE, MR_SOURCE = "CT_small.dcm", "MR_small.dcm"

# Symbolic names → generated UIDs (one run).
UID = {name: generate_uid() for name in
       ["S1", "S2", "S3", "S4", "SE1", "SE2", "SE3", "SE4", "SE5"] + [f"I{i}" for i in range(1, 8)]}
NAME_OF = {uid: name for name, uid in UID.items()}

PATIENTS = {  # id: (name, birth date, sex)
    "PID-A": ("Doe^John", "19700101", "M"),
    "PID-B": ("Smith^Ann", "19851224", "F"),
    "PID-C": ("DOE^JANE", "19900505", "F"),
}
STUDIES = {  # study: (patient, date, time, accession, description)
    "S1": ("PID-A", "20200315", "101500", "ACC001", "CT HEAD"),
    "S2": ("PID-A", "20210610", "083000", "ACC002", "MR KNEE"),
    "S3": ("PID-B", "20220101", "120000", "ACC003", "CT CHEST"),
    "S4": ("PID-C", "20191231", "235959", "XCC004", "MR BRAIN"),
}
SERIES = {  # series: (study, modality, number, description, instances)
    "SE1": ("S1", "CT", 1, "AXIAL", ["I1", "I2"]),
    "SE2": ("S1", "CT", 2, "CORONAL", ["I3"]),
    "SE3": ("S2", "MR", 1, "T1", ["I4", "I5"]),
    "SE4": ("S3", "CT", 1, "AXIAL", ["I6"]),
    "SE5": ("S4", "MR", 1, "T2", ["I7"]),
}


def write_instances(directory: Path) -> dict[str, Path]:
    """The 7 instances of the table above as Part-10 files, by symbolic instance name."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for series, (study, modality, number, description, instances) in SERIES.items():
        patient, date, time, accession, study_description = STUDIES[study]
        name, birth, sex = PATIENTS[patient]
        for position, instance in enumerate(instances, start=1):
            ds = pydicom.dcmread(get_testdata_file(CT_SOURCE if modality == "CT" else MR_SOURCE))
            ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = name, patient, birth, sex
            ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = UID[study], date, time
            ds.AccessionNumber, ds.StudyDescription, ds.StudyID = accession, study_description, study
            ds.ReferringPhysicianName = "House^Gregory"
            ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber = UID[series], modality, number
            ds.SeriesDescription = description
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID[instance]
            ds.InstanceNumber = position
            path = directory / f"{instance}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths[instance] = path
    return paths


# ---------------------------------------------------------------------------- the server
class Pacs:
    """The running server plus what the tests need to reach it."""

    def __init__(self, server: LocalServer, storescp, files: dict[str, Path], root: Path) -> None:
        self.server = server
        self.storescp = storescp
        self.files = files
        self.root = root

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    root = tmp_path_factory.mktemp("pacs")
    storescp = start_storescp(root, aet="STORESCP")
    commit_port = free_port()
    nodes = [config.Node(name="dest", aet="STORESCP", host=LOCALHOST, port=storescp.port),
             config.Node(name="committer", aet="COMMITSCU", host=LOCALHOST, port=commit_port)]
    nodes_path = root / "nodes.toml"
    config.save_nodes(nodes_path, nodes)
    worklist = root / "worklist"
    worklist.mkdir()
    settings = config.ServerSettings(aet=SERVER_AET, port=0, storage_dir=root / "archive",
                                     durable=False, worklist_dir=worklist)
    server = LocalServer(settings, nodes_path=nodes_path)
    server.start()
    try:
        files = write_instances(root / "source")
        result = run_dcmtk("storescu", "-aec", SERVER_AET, LOCALHOST, str(server.port),
                           *[files[k] for k in sorted(files)])
        assert result.returncode == 0, result.stdout + result.stderr
        pacs = Pacs(server, storescp, files, root)
        pacs.commit_port = commit_port  # type: ignore[attr-defined]
        yield pacs
    finally:
        server.stop()
        storescp.stop()


# ---------------------------------------------------------------------------- findscu
def findscu(pacs: Pacs, out: Path, model: str, level: str, keys: dict[str, str]
            ) -> tuple[list[Dataset], str]:
    """Run findscu with -X; return the response identifiers (read with pydicom) and its log."""
    out.mkdir(parents=True, exist_ok=True)
    args = ["-v", "-P" if model == "patient" else "-S", "-aec", SERVER_AET, "-X", "-od", out,
            "-k", f"QueryRetrieveLevel={level}"]
    for key, value in keys.items():
        args += ["-k", f"{key}={value}"]
    result = run_dcmtk("findscu", *args, LOCALHOST, str(pacs.port))
    responses = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    return responses, result.stdout + result.stderr


UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
          "IMAGE": "SOPInstanceUID"}

# (model, level, keys, expected unique key values — symbolic for UIDs). {S1} etc. are resolved.
FIND_CASES = [
    # PATIENT level (Patient Root only)
    ("patient", "PATIENT", {"PatientID": "PID-A", "PatientName": ""}, {"PID-A"}),
    ("patient", "PATIENT", {"PatientName": ""}, {"PID-A", "PID-B", "PID-C"}),
    ("patient", "PATIENT", {"PatientName": "doe*"}, {"PID-A", "PID-C"}),
    ("patient", "PATIENT", {"PatientName": "Smith^A?n"}, {"PID-B"}),
    ("patient", "PATIENT", {"PatientName": "doe^jane"}, {"PID-C"}),
    ("patient", "PATIENT", {"PatientBirthDate": "19800101-"}, {"PID-B", "PID-C"}),
    ("patient", "PATIENT", {"PatientBirthDate": "-19751231"}, {"PID-A"}),
    ("patient", "PATIENT", {"PatientBirthDate": "19800101-19870101"}, {"PID-B"}),
    ("patient", "PATIENT", {"PatientSex": "F", "PatientID": "PID-?"}, {"PID-B", "PID-C"}),
    # STUDY level
    ("study", "STUDY", {"StudyDate": "20200315"}, {"S1"}),
    ("study", "STUDY", {"StudyDate": "20200101-20211231"}, {"S1", "S2"}),
    ("study", "STUDY", {"StudyDate": "-20200101"}, {"S4"}),
    ("study", "STUDY", {"StudyDate": "20210101-"}, {"S2", "S3"}),
    ("study", "STUDY", {"StudyTime": "080000-110000"}, {"S1", "S2"}),
    ("study", "STUDY", {"StudyInstanceUID": "{S1}\\{S3}"}, {"S1", "S3"}),
    ("study", "STUDY", {"AccessionNumber": "ACC*"}, {"S1", "S2", "S3"}),
    ("study", "STUDY", {"AccessionNumber": "?CC00?"}, {"S1", "S2", "S3", "S4"}),
    ("study", "STUDY", {"PatientName": "DOE^JOHN"}, {"S1", "S2"}),
    ("study", "STUDY", {"StudyDescription": "*HEAD"}, {"S1"}),
    ("study", "STUDY", {"ModalitiesInStudy": "MR"}, {"S2", "S4"}),
    ("study", "STUDY", {"StudyDescription": ""}, {"S1", "S2", "S3", "S4"}),
    ("patient", "STUDY", {"PatientID": "PID-A", "StudyDate": ""}, {"S1", "S2"}),
    ("patient", "STUDY", {"PatientID": "PID-B", "StudyInstanceUID": ""}, {"S3"}),
    # SERIES level
    ("study", "SERIES", {"StudyInstanceUID": "{S1}", "Modality": ""}, {"SE1", "SE2"}),
    ("study", "SERIES", {"Modality": "CT"}, {"SE1", "SE2", "SE4"}),
    ("study", "SERIES", {"SeriesInstanceUID": "{SE1}\\{SE5}"}, {"SE1", "SE5"}),
    ("study", "SERIES", {"SeriesDescription": "CO*"}, {"SE2"}),
    ("patient", "SERIES", {"PatientID": "PID-A", "StudyInstanceUID": "{S1}", "SeriesNumber": "2"},
     {"SE2"}),
    # IMAGE level
    ("study", "IMAGE", {"StudyInstanceUID": "{S2}", "SeriesInstanceUID": "{SE3}"}, {"I4", "I5"}),
    ("study", "IMAGE", {"SOPInstanceUID": "{I1}\\{I7}"}, {"I1", "I7"}),
    ("study", "IMAGE", {"StudyInstanceUID": "{S1}", "InstanceNumber": "1"}, {"I1", "I3"}),
    ("patient", "IMAGE", {"PatientID": "PID-C", "StudyInstanceUID": "{S4}",
                          "SeriesInstanceUID": "{SE5}", "SOPInstanceUID": ""}, {"I7"}),
]


def _resolve(value: str) -> str:
    for name, uid in UID.items():
        value = value.replace("{" + name + "}", uid)
    return value


@pytest.mark.parametrize("model,level,keys,expected", FIND_CASES,
                         ids=[f"{c[0]}-{c[1]}-{'-'.join(f'{k}={v}' for k, v in c[2].items())}"
                              for c in FIND_CASES])
def test_findscu_returns_exactly_the_matching_entities(pacs: Pacs, tmp_path: Path, model: str,
                                                       level: str, keys: dict[str, str],
                                                       expected: set[str]) -> None:
    keys = {k: _resolve(v) for k, v in keys.items()}
    responses, log = findscu(pacs, tmp_path / "rsp", model, level, keys)
    unique = UNIQUE[level]
    found = [NAME_OF.get(str(r.get(unique, "")), str(r.get(unique, ""))) for r in responses]
    assert sorted(found) == sorted(expected), log
    allowed = set(keys) | {unique, "QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"}
    for response in responses:
        assert {e.keyword for e in response} <= allowed
        assert response.QueryRetrieveLevel == level


def test_findscu_gets_the_stored_attribute_values_back(pacs: Pacs, tmp_path: Path) -> None:
    responses, log = findscu(pacs, tmp_path / "rsp", "study", "STUDY",
                             {"StudyInstanceUID": UID["S1"], "PatientName": "", "StudyDate": "",
                              "AccessionNumber": "", "NumberOfStudyRelatedInstances": "",
                              "NumberOfStudyRelatedSeries": "", "ModalitiesInStudy": ""})
    assert len(responses) == 1, log
    r = responses[0]
    assert (str(r.PatientName), r.StudyDate, r.AccessionNumber) == ("Doe^John", "20200315", "ACC001")
    assert (int(r.NumberOfStudyRelatedInstances), int(r.NumberOfStudyRelatedSeries)) == (3, 2)
    assert r.ModalitiesInStudy == "CT"


def test_findscu_key_below_the_level_is_refused(pacs: Pacs, tmp_path: Path) -> None:
    responses, log = findscu(pacs, tmp_path / "rsp", "study", "STUDY",
                             {"StudyInstanceUID": "", "SeriesDescription": "AXIAL"})
    assert responses == []
    assert "datasetdoesnotmatchsopclass" in log.lower() or "0xa900" in log.lower(), log


def test_findscu_unsupported_optional_key_is_answered_empty_with_ff01(pacs: Pacs, tmp_path: Path) -> None:
    responses, log = findscu(pacs, tmp_path / "rsp", "study", "STUDY",
                             {"StudyInstanceUID": UID["S1"], "InstitutionName": ""})
    assert len(responses) == 1
    assert "InstitutionName" in responses[0] and not responses[0].InstitutionName
    assert "0xff01" in log.lower() or "Pending: Warning" in log, log


# ---------------------------------------------------------------------------- getscu / movescu
def _without_meta(path: Path) -> Dataset:
    """The data set to compare: each side writes its own meta header, and DCMTK leaves out
    trailing padding (FFFC,FFFC) and group lengths (gggg,0000) when it sends."""
    return _comparable(pydicom.dcmread(path))


def _comparable(ds: Dataset) -> Dataset:
    ds.file_meta = None
    for tag in [t for t in ds.keys() if t == 0xFFFCFFFC or t.element == 0]:
        del ds[tag]
    return ds


def _received(directory: Path) -> dict[str, Path]:
    found = {}
    for path in directory.iterdir():
        if path.is_file():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            found[NAME_OF.get(str(ds.SOPInstanceUID), str(ds.SOPInstanceUID))] = path
    return found


@pytest.mark.parametrize("level,keys,expected", [
    ("STUDY", {"StudyInstanceUID": "{S1}"}, {"I1", "I2", "I3"}),
    ("SERIES", {"StudyInstanceUID": "{S2}", "SeriesInstanceUID": "{SE3}"}, {"I4", "I5"}),
    ("IMAGE", {"StudyInstanceUID": "{S4}", "SeriesInstanceUID": "{SE5}", "SOPInstanceUID": "{I7}"},
     {"I7"}),
])
def test_getscu_retrieves_study_series_and_image_intact(pacs: Pacs, tmp_path: Path, level: str,
                                                        keys: dict[str, str], expected: set[str]) -> None:
    out = tmp_path / "get"
    out.mkdir()
    args = ["-S", "-aec", SERVER_AET, "-od", out, "-k", f"QueryRetrieveLevel={level}"]
    for key, value in keys.items():
        args += ["-k", f"{key}={_resolve(value)}"]
    result = run_dcmtk("getscu", *args, LOCALHOST, str(pacs.port))
    received = _received(out)
    assert set(received) == expected, result.stdout + result.stderr
    for name, path in received.items():
        assert _without_meta(path) == _without_meta(pacs.files[name])


def test_movescu_moves_a_study_to_an_address_book_node(pacs: Pacs, tmp_path: Path) -> None:
    before = set(pacs.storescp.output_dir.iterdir())
    result = run_dcmtk("movescu", "-S", "-aec", SERVER_AET, "-aem", "STORESCP",
                       "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={UID['S2']}",
                       LOCALHOST, str(pacs.port))
    assert result.returncode == 0, result.stdout + result.stderr
    new = set(pacs.storescp.output_dir.iterdir()) - before
    uids = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in new}
    assert uids == {UID["I4"], UID["I5"]}
    for path in new:
        name = NAME_OF[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)]
        assert _without_meta(path) == _without_meta(pacs.files[name])


def test_movescu_to_an_unknown_destination_gets_a801(pacs: Pacs) -> None:
    result = run_dcmtk("movescu", "-v", "-S", "-aec", SERVER_AET, "-aem", "NOBODY",
                       "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={UID['S1']}",
                       LOCALHOST, str(pacs.port))
    log = (result.stdout + result.stderr).lower()
    assert "movedestinationunknown" in log or "a801" in log, log


# ---------------------------------------------------------------------------- pynetdicom
def test_pynetdicom_find_get_and_move_from_the_archive(pacs: Pacs, tmp_path: Path) -> None:
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import (CTImageStorage, MRImageStorage,
                                      PatientRootQueryRetrieveInformationModelFind,
                                      StudyRootQueryRetrieveInformationModelGet,
                                      StudyRootQueryRetrieveInformationModelMove)

    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(MRImageStorage)
    received: list[Dataset] = []

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append(ds)
        return 0x0000

    roles = [build_role(CTImageStorage, scp_role=True), build_role(MRImageStorage, scp_role=True)]
    assoc = ae.associate(LOCALHOST, pacs.port, ae_title=SERVER_AET, ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientID = "PID-A"
        query.StudyInstanceUID = ""
        query.StudyDate = ""
        answers = [(status.Status, ident) for status, ident in
                   assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind)]
        matches = {str(i.StudyInstanceUID) for s, i in answers if s in (0xFF00, 0xFF01)}
        assert matches == {UID["S1"], UID["S2"]}
        assert answers[-1][0] == 0x0000

        get = Dataset()
        get.QueryRetrieveLevel = "SERIES"
        get.StudyInstanceUID = UID["S1"]
        get.SeriesInstanceUID = UID["SE1"]
        statuses = [s.Status for s, _ in assoc.send_c_get(get, StudyRootQueryRetrieveInformationModelGet)]
        assert statuses[-1] == 0x0000
        assert {str(d.SOPInstanceUID) for d in received} == {UID["I1"], UID["I2"]}
        for ds in received:
            assert _comparable(ds) == _without_meta(pacs.files[NAME_OF[str(ds.SOPInstanceUID)]])

        before = set(pacs.storescp.output_dir.iterdir())
        move = Dataset()
        move.QueryRetrieveLevel = "STUDY"
        move.StudyInstanceUID = UID["S3"]
        responses = list(assoc.send_c_move(move, "STORESCP", StudyRootQueryRetrieveInformationModelMove))
        assert responses[-1][0].Status == 0x0000
        assert responses[-1][0].NumberOfCompletedSuboperations == 1
        new = set(pacs.storescp.output_dir.iterdir()) - before
        assert [str(pydicom.dcmread(p).SOPInstanceUID) for p in new] == [UID["I6"]]

        unknown = list(assoc.send_c_move(move, "NOBODY", StudyRootQueryRetrieveInformationModelMove))
        assert unknown[-1][0].Status == 0xA801
    finally:
        assoc.release()
        ae.shutdown()


# ---------------------------------------------------------------------------- commitment, MWL
def test_storage_commitment_is_answered_from_the_archive(pacs: Pacs, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dicomdesk.net.sopclass.commitment")
    missing = tmp_path / "missing.dcm"
    ds = pydicom.dcmread(pacs.files["I1"])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(missing, enforce_file_format=True)
    files = [pacs.files["I1"], pacs.files["I6"], missing]
    # COMMITSCU is in the address book: the report comes on a new association to its port.
    peer = Peer(LOCALHOST, pacs.port, called_aet=SERVER_AET, calling_aet="COMMITSCU", timeout=20)
    result = commit(peer, files, timeout=20, listen_port=pacs.commit_port)  # type: ignore[attr-defined]
    assert sorted(result.committed) == sorted([UID["I1"], UID["I6"]]), result.error
    assert result.failed == [(str(ds.SOPInstanceUID), 0x0112)]
    assert any("reported to COMMITSCU" in r.getMessage() for r in caplog.records)
    # A requester missing from the address book gets the report on the same association.
    peer = Peer(LOCALHOST, pacs.port, called_aet=SERVER_AET, calling_aet="STRANGER", timeout=20)
    result = commit(peer, files[:2], timeout=20, listen_port=None)
    assert sorted(result.committed) == sorted([UID["I1"], UID["I6"]]) and result.ok, result.error
    assert any("reported on the same association" in r.getMessage() for r in caplog.records)


def test_findscu_worklist_is_answered_from_the_worklist_folder(pacs: Pacs, tmp_path: Path) -> None:
    folder = pacs.server.settings.worklist_dir
    for name, (patient, aet, date) in {"a": ("Doe^John", "CT1", "20240102"),
                                       "b": ("Roe^Rick", "MR1", "20240103")}.items():
        item = Dataset()
        item.PatientName, item.PatientID = patient, f"WL-{name}"
        item.AccessionNumber, item.StudyInstanceUID = f"WLACC{name}", generate_uid()
        item.RequestedProcedureID, item.RequestedProcedureDescription = "RP1", "exam"
        step = Dataset()
        step.Modality, step.ScheduledStationAETitle = aet[:2], aet
        step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = date, "080000"
        step.ScheduledProcedureStepID, step.ScheduledProcedureStepDescription = "SPS1", "step"
        step.ScheduledPerformingPhysicianName = ""
        item.ScheduledProcedureStepSequence = [step]
        write_worklist_file(folder, item, name)
    query = tmp_path / "query.dcm"
    q = Dataset()
    q.PatientName = ""
    q.PatientID = ""
    step = Dataset()
    step.ScheduledStationAETitle = "CT1"
    step.ScheduledProcedureStepStartDate = "20240101-20240131"
    step.Modality = ""
    q.ScheduledProcedureStepSequence = [step]
    q.save_as(query, implicit_vr=True, little_endian=True)
    out = tmp_path / "wl"
    out.mkdir()
    result = run_dcmtk("findscu", "-W", "-aec", SERVER_AET, "-X", "-od", out, LOCALHOST,
                       str(pacs.port), query)
    responses = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    assert [str(r.PatientName) for r in responses] == ["Doe^John"], result.stdout + result.stderr
    assert responses[0].ScheduledProcedureStepSequence[0].Modality == "CT"


# ---------------------------------------------------------------------------- pydicom test files
@pytest.mark.slow
def test_storescu_fills_the_archive_with_the_pydicom_test_files(tmp_path: Path,
                                                                 pydicom_test_files: list[Path]) -> None:
    """Every pydicom test file with a usable Part-10 header storescu sends is indexed, and an
    IMAGE query with the list of their UIDs finds each (UID list matching at scale)."""
    sendable: dict[str, Path] = {}
    for path in pydicom_test_files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            meta_uid = str(ds.file_meta.MediaStorageSOPInstanceUID)
            uids = [str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)]
            ts = str(ds.file_meta.TransferSyntaxUID)
        except Exception:
            continue
        if meta_uid == uids[0] and all(is_path_safe_uid(u) for u in uids) and ts:
            sendable.setdefault(uids[0], path)  # one file per SOP Instance UID
    settings = config.ServerSettings(aet=SERVER_AET, port=0, storage_dir=tmp_path / "archive",
                                     durable=False)
    with LocalServer(settings) as server:
        result = run_dcmtk("storescu", "-nh", "-R", "-aec", SERVER_AET, LOCALHOST,
                           str(server.port), *sendable.values(), timeout=120)
        log = result.stdout + result.stderr
        archive = server.ae.archive
        indexed = set(archive.index.all_files())
        # storescu refuses a few files itself (e.g. no context for an odd transfer syntax):
        # everything it did send is there, and that is the large majority.
        assert indexed <= set(sendable)
        assert len(indexed) >= 0.8 * len(sendable), log
        out = tmp_path / "rsp"
        out.mkdir()
        listed = sorted(indexed)
        find = run_dcmtk("findscu", "-S", "-aec", SERVER_AET, "-X", "-od", out,
                         "-k", "QueryRetrieveLevel=IMAGE", "-k", "SOPInstanceUID=" + "\\".join(listed),
                         LOCALHOST, str(server.port))
        found = {str(pydicom.dcmread(p).SOPInstanceUID) for p in out.glob("rsp*.dcm")}
        assert found == indexed, find.stdout + find.stderr
        for uid in list(indexed)[:20]:  # stored files are byte-identical data sets
            stored = archive.root / archive.index.instance(uid)["path"]
            assert _without_meta(stored) == _without_meta(sendable[uid])


def test_index_command_rebuilds_the_index_from_a_folder(pacs: Pacs, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    folder = tmp_path / "loose"
    folder.mkdir()
    for name, path in pacs.files.items():
        (folder / f"file-{name}").write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("not DICOM")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    run = subprocess.run([sys.executable, "-m", "dicomdesk", "index", str(folder)],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "7 instances indexed" in run.stdout
    assert "3 patients, 4 studies, 5 series, 7 instances" in run.stdout
    target = tmp_path / "imported"
    run = subprocess.run([sys.executable, "-m", "dicomdesk", "index", str(folder), "--storage",
                          str(target)], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "7 instances imported" in run.stdout
    assert len(list(target.rglob("*.dcm"))) == 7
    assert (folder / "file-I1").exists()  # import copies
