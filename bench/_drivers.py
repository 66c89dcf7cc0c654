"""Bench drivers, one process each: ``python bench/_drivers.py NAME ARGS...``.

Clients time their own work (association to release, file headers read included) and print
one JSON line; servers serve until SIGINT. dicomdesk and pynetdicom are driven through their
public APIs, the way an application would use them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

FIND_SOP_CLASS = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Q/R FIND (PS3.4 C.6.2)


def _files(list_file: str) -> list[str]:
    return Path(list_file).read_text().split("\n")[:-1]


def _emit(**values) -> None:
    print(json.dumps(values), flush=True)


def _match(i: int):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = f"Bench^Patient{i:05d}"
    ds.PatientID = f"P{i:05d}"
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = f"A{i:05d}"
    ds.StudyID = str(i)
    ds.StudyDescription = "Bench study"
    ds.ModalitiesInStudy = "CT"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.7777.{i}"
    ds.NumberOfStudyRelatedInstances = "1"
    return ds


def _wait_sigint() -> None:
    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(3600):
        pass


# ----------------------------------------------------------------------------- dicomdesk
def dd_store_scu(host: str, port: str, list_file: str, max_pdu: str = "65536") -> None:
    from dicomdesk.operations import Peer, send

    files = _files(list_file)
    start = time.perf_counter()
    result = send(Peer(host, int(port), called_aet="ANY-SCP", timeout=120), files,
                  max_pdu_length=int(max_pdu))
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"send failed: {result.error} {result.failed}")
    _emit(elapsed=elapsed, stored=result.stored)


def dd_echo_loop(host: str, port: str, count: str) -> None:
    from dicomdesk.net.applicationentity import ClientAE
    from dicomdesk.net.sopclass import verification_scu

    ae = ClientAE("BENCH").add_scu(verification_scu)
    remote = {"aet": "ANY-SCP", "address": host, "port": int(port), "timeout": 30}
    sop = verification_scu.sop_classes[0]
    for _ in range(5):  # warm-up
        with ae.request_association(remote) as assoc:
            assoc.get_scu(sop)(assoc.next_message_id())
    times = []
    for _ in range(int(count)):
        t0 = time.perf_counter()
        with ae.request_association(remote) as assoc:
            assoc.get_scu(sop)(assoc.next_message_id())
        times.append(time.perf_counter() - t0)
    _emit(mean=sum(times) / len(times), times=sorted(times)[len(times) // 2])


def dd_find_scu(host: str, port: str) -> None:
    from dicomdesk.operations import Peer, find

    start = time.perf_counter()
    result = find(Peer(host, int(port), called_aet="ANY-SCP", timeout=120), "STUDY",
                  {"PatientName": "*", "StudyInstanceUID": "", "PatientID": "", "StudyDate": "",
                   "AccessionNumber": "", "StudyDescription": "", "ModalitiesInStudy": ""})
    elapsed = time.perf_counter() - start
    if result.error:
        raise SystemExit(f"find failed: {result.error}")
    _emit(elapsed=elapsed, matches=len(result.matches))


def dd_find_scp(port: str, count: str) -> None:
    """A dicomdesk AE whose C-FIND hook yields ``count`` prebuilt matches (the stack alone)."""
    from dicomdesk.net.applicationentity import AE
    from dicomdesk.net.sopclass import qr_find_scp, verification_scp

    matches = [_match(i) for i in range(int(count))]

    class FindAE(AE):
        def on_receive_find(self, context, ds):
            return [(m, 0xFF00) for m in matches]  # all in hand: written in few writes

    ae = FindAE("ANY-SCP", int(port), max_pdu_length=262144)
    ae.add_scp(verification_scp).add_scp(qr_find_scp, [FIND_SOP_CLASS])
    with ae:
        _wait_sigint()


# ----------------------------------------------------------------------------- pynetdicom
def _quiet_pynetdicom() -> None:
    import logging

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def pn_store_scu(host: str, port: str, list_file: str, max_pdu: str = "16382") -> None:
    _quiet_pynetdicom()
    from pydicom import dcmread
    from pynetdicom import AE

    files = _files(list_file)
    start = time.perf_counter()
    classes = {}
    for f in files:  # what the app must know to propose contexts (headers only)
        meta = dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        classes.setdefault(str(meta.file_meta.MediaStorageSOPClassUID),
                           str(meta.file_meta.TransferSyntaxUID))
    ae = AE(ae_title="PYNETDICOM")
    ae.maximum_pdu_size = int(max_pdu)
    for sop, ts in classes.items():
        ae.add_requested_context(sop, ts)
    assoc = ae.associate(host, int(port), ae_title="ANY-SCP")
    if not assoc.is_established:
        raise SystemExit("association failed")
    stored = 0
    for f in files:
        status = assoc.send_c_store(f)
        stored += bool(status) and status.Status == 0
    assoc.release()
    elapsed = time.perf_counter() - start
    _emit(elapsed=elapsed, stored=stored)


def pn_store_scp(port: str, folder: str, max_pdu: str = "16382") -> None:
    """pynetdicom's storage SCP, writing each object as received (its docs' fast way)."""
    _quiet_pynetdicom()
    from pynetdicom import AE, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import Verification

    out = Path(folder)

    def handle_store(event):
        with open(out / event.request.AffectedSOPInstanceUID, "wb") as fp:
            fp.write(event.encoded_dataset())
        return 0x0000

    ae = AE(ae_title="ANY-SCP")
    ae.maximum_pdu_size = int(max_pdu)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", int(port)), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    try:
        _wait_sigint()
    finally:
        server.shutdown()


def pn_echo_loop(host: str, port: str, count: str) -> None:
    _quiet_pynetdicom()
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(Verification)
    times = []
    for i in range(int(count) + 2):
        t0 = time.perf_counter()
        assoc = ae.associate(host, int(port), ae_title="ANY-SCP")
        assoc.send_c_echo()
        assoc.release()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    _emit(mean=sum(times) / len(times))


def pn_find_scu(host: str, port: str) -> None:
    _quiet_pynetdicom()
    from pydicom.dataset import Dataset
    from pynetdicom import AE

    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(FIND_SOP_CLASS)
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in ("PatientName", "StudyInstanceUID", "PatientID", "StudyDate", "AccessionNumber",
                    "StudyDescription", "ModalitiesInStudy"):
        setattr(ds, keyword, "*" if keyword == "PatientName" else "")
    start = time.perf_counter()
    assoc = ae.associate(host, int(port), ae_title="ANY-SCP")
    matches = 0
    for status, identifier in assoc.send_c_find(ds, FIND_SOP_CLASS):
        if status and status.Status in (0xFF00, 0xFF01):
            matches += identifier is not None
    assoc.release()
    _emit(elapsed=time.perf_counter() - start, matches=matches)


def pn_find_scp(port: str, count: str) -> None:
    _quiet_pynetdicom()
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Verification

    matches = [_match(i) for i in range(int(count))]

    def handle_find(event):
        for m in matches:
            yield 0xFF00, m

    ae = AE(ae_title="ANY-SCP")
    ae.add_supported_context(FIND_SOP_CLASS)
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", int(port)), block=False,
                             evt_handlers=[(evt.EVT_C_FIND, handle_find)])
    try:
        _wait_sigint()
    finally:
        server.shutdown()


# ----------------------------------------------------------------------------- archive
def fill_archive(folder: str, count: str) -> None:
    """An archive index with ``count`` one-instance studies (tiny files, non-durable)."""
    import tempfile

    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from dicomdesk.archive import Archive

    start = time.perf_counter()
    with Archive(Path(folder), durable=False) as archive, tempfile.TemporaryDirectory() as tmp:
        for i in range(int(count)):
            ds = _match(i)
            del ds.QueryRetrieveLevel, ds.NumberOfStudyRelatedInstances, ds.ModalitiesInStudy
            ds.Modality = "CT"
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
            ds.SOPInstanceUID = generate_uid()
            ds.SeriesInstanceUID = generate_uid()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            path = Path(tmp) / "one.dcm"
            ds.save_as(path, enforce_file_format=True)
            archive.add_file(path, copy=False)
    _emit(elapsed=time.perf_counter() - start)


DRIVERS = {name: fn for name, fn in globals().items() if callable(fn) and name[:3] in ("dd_", "pn_")}
DRIVERS["fill_archive"] = fill_archive

if __name__ == "__main__":
    DRIVERS[sys.argv[1]](*sys.argv[2:])
