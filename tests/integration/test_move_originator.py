"""C-MOVE sub-operations name the C-MOVE they serve (PS3.4 C.4.2.2, PS3.7 9.3.1.1).

`dicomdesk serve` (a real process) holds a study; a C-MOVE asks it to send the study to a
pynetdicom Storage SCP from the address book. Each C-STORE-RQ that SCP receives must carry
Move Originator Application Entity Title (the AE title of the C-MOVE's requester) and Move
Originator Message ID (the C-MOVE-RQ's Message ID).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomdesk import config
from dicomdesk.net import uids
from dicomdesk.net.applicationentity import ClientAE
from dicomdesk.net.sopclass import qr_move_scu, storage_scu
from tests.peers import LOCALHOST, free_port, run_dcmtk, start_pynetdicom_scp, wait_for_port

REPO = Path(__file__).resolve().parents[2]
SERVER_AET = "MOVESCP"


def _write_instances(folder: Path, study: str, count: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for number in range(count):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = uids.CT_IMAGE_STORAGE
        ds.SOPInstanceUID = generate_uid()
        ds.PatientName, ds.PatientID = "Move^Test", "MOVE1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, study + ".1"
        ds.Modality, ds.InstanceNumber = "CT", number + 1
        path = folder / f"{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.mark.interop
def test_move_sub_operations_carry_the_move_originator_to_a_pynetdicom_scp(tmp_path: Path) -> None:
    from pynetdicom import evt

    seen: list[tuple[str, int | None]] = []
    done = threading.Event()

    def on_store(event):
        request = event.request
        seen.append((str(request.MoveOriginatorApplicationEntityTitle or "").strip(),
                     request.MoveOriginatorMessageID))
        if len(seen) == 2:
            done.set()
        return 0x0000

    with start_pynetdicom_scp([uids.CT_IMAGE_STORAGE], [(evt.EVT_C_STORE, on_store)],
                              ae_title="PYSTORE") as destination:
        nodes = tmp_path / "nodes.toml"
        config.save_nodes(nodes, [config.Node(name="pystore", aet="PYSTORE", host=LOCALHOST,
                                              port=destination.port)])
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with open(tmp_path / "serve.log", "w") as log:
            serve = subprocess.Popen(
                [sys.executable, "-m", "dicomdesk", "serve", "--aet", SERVER_AET, "--port", str(port),
                 "--storage", str(tmp_path / "archive"), "--nodes", str(nodes), "--no-durable"],
                stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                wait_for_port(port, timeout=30, alive=lambda: serve.poll() is None)
                study = generate_uid(prefix=None)  # 2.25.<uuid>: room for ".1" below 64
                files = _write_instances(tmp_path / "study", study, 2)
                stored = run_dcmtk("storescu", "-aec", SERVER_AET, LOCALHOST, str(port),
                                   *map(str, files))
                assert stored.returncode == 0, stored.stdout + stored.stderr

                mover = ClientAE("MOVER").add_scu(qr_move_scu)
                identifier = Dataset()
                identifier.QueryRetrieveLevel = "STUDY"
                identifier.StudyInstanceUID = study
                remote = {"aet": SERVER_AET, "address": LOCALHOST, "port": port}
                with mover.request_association(remote) as assoc:
                    service = assoc.get_scu(uids.STUDY_ROOT_MOVE_SOP_CLASS)
                    final = list(service(identifier, "PYSTORE", 42))
                assert done.wait(10), (tmp_path / "serve.log").read_text()
            finally:
                serve.terminate()
                serve.wait(timeout=20)
    assert seen == [("MOVER", 42), ("MOVER", 42)]
    assert final and final[-1][0].is_success, final


def test_storage_scu_sends_the_move_originator_it_is_given() -> None:
    """Unit level: ``storage_scu(..., move_originator=(aet, id))`` fills both fields."""
    from dicomdesk.net.sopclass.storage import prepare_store

    class Context:
        id, sop_class, supported_ts = 1, uids.CT_IMAGE_STORAGE, ExplicitVRLittleEndian

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = uids.CT_IMAGE_STORAGE, generate_uid()
    with prepare_store(Context(), ds, 3, move_originator=("ORIGIN", 17)) as prepared:
        assert prepared.rq.move_originator_aet == "ORIGIN"
        assert prepared.rq.move_originator_message_id == 17
    with prepare_store(Context(), ds, 4) as plain:
        assert plain.rq.move_originator_aet == ""  # never set: empty, and not sent
    assert storage_scu.sop_classes is not None
