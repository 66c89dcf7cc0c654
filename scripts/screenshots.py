"""Take the README's screenshot of each panel, with real data, so they stay current.

Usage: python scripts/screenshots.py [OUT_DIR]   (default: docs/screenshots)

What it does, all on 127.0.0.1 and in a throw-away folder (the user's settings, address book
and archive are never touched: XDG_CONFIG_HOME/XDG_DATA_HOME point into the folder):

1. starts a "PACS": an ``operations.LocalServer`` (what ``dicomdesk serve`` runs) filled with
   pydicom's test files by a real C-STORE;
2. opens the window with an address book naming that PACS and a node that is switched off,
   and its in-app local server on a free port;
3. echoes every node, searches the PACS, expands a study, retrieves two studies by C-MOVE into
   the local server, queues a folder of files (one of them not DICOM) and sends it, and
   previews a received CT image;
   asks the PACS's worklist (a folder of scheduled steps it serves) for today's steps, and a
   second archive ("VNA", holding only some of the sent files) to commit the sent files;
4. grabs each panel into OUT_DIR/<panel>.png.

Runs offscreen by default (``QT_QPA_PLATFORM=offscreen``); under Xvfb, set DISPLAY and
QT_QPA_PLATFORM=xcb to use the real platform plugin.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Window size of the screenshots (the smallest size the layout tests check).
SIZE = (1280, 800)
#: Pydicom test files put on the PACS (uncompressed, distinct studies) and queued for sending.
PACS_FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "SC_rgb_small_odd.dcm",
              "reportsi.dcm", "waveform_ecg.dcm", "examples_overlay.dcm")
SEND_FILES = ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "test-SR.dcm", "liver_1frame.dcm")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(app: object, condition: Callable[[], bool], timeout: float = 30.0,
          what: str = "") -> None:
    """Run the event loop until ``condition()`` holds (the window keeps working meanwhile)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.01)


def _settle(app: object, seconds: float = 0.2) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else REPO / "docs" / "screenshots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dicomdesk-screenshots-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
        os.environ["XDG_DATA_HOME"] = str(tmp / "data")
        return _take(out, tmp)


def _take(out: Path, tmp: Path) -> int:
    import pydicom.data
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtWidgets import QApplication

    from dicomdesk import config, operations
    from dicomdesk.ui.assets import load_icon, load_style
    from dicomdesk.ui.main_window import PANELS, MainWindow

    app = QApplication(["dicomdesk"])
    app.setApplicationDisplayName("dicomdesk")
    app.setWindowIcon(load_icon("dicomdesk"))
    app.setStyleSheet(load_style())

    desk_port = _free_port()
    worklist_dir = tmp / "worklist"
    _write_worklist(worklist_dir)
    pacs = operations.LocalServer(
        config.ServerSettings(aet="PACS", port=0, storage_dir=tmp / "pacs", durable=False,
                              worklist_dir=worklist_dir),
        nodes=[config.Node("dicomdesk", "DICOMDESK", "127.0.0.1", desk_port)]).start()
    # a second archive that reports storage commitment on the requesting association
    vna = operations.LocalServer(
        config.ServerSettings(aet="VNA", port=0, storage_dir=tmp / "vna", durable=False)).start()
    try:
        stored = operations.send(operations.Peer("127.0.0.1", pacs.port, "PACS", "LOADER"),
                                 [pydicom.data.get_testdata_file(n) for n in PACS_FILES])
        if stored.stored != len(PACS_FILES):
            raise RuntimeError(f"filling the PACS failed: {stored.error or stored}")

        nodes = tmp / "nodes.toml"
        config.save_nodes(nodes, [
            config.Node("pacs", "PACS", "127.0.0.1", pacs.port, "Main archive (pydicom data)"),
            config.Node("ct-scanner", "CT01", "127.0.0.1", _free_port(), "Switched off",
                        retrieve="get"),
            config.Node("vna", "VNA", "127.0.0.1", vna.port, "Long-term archive"),
        ])
        settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
        settings.setValue("server/storage_dir", str(tmp / "storage"))
        settings.setValue("server/port", desk_port)
        window = MainWindow(settings=settings, nodes_path=nodes, autostart_server=True)
        window.resize(*SIZE)
        window.show()
        _wait(app, lambda: window.server_host.is_running, what="the local server")

        # Echo: one green, one red, details of the green one
        echo = window.echo_panel
        echo.echo_all()
        _wait(app, lambda: not echo._workers, what="the echoes")
        echo.select("pacs")
        echo.details_button.setChecked(True)

        # Query: search, expand the CT study, retrieve two studies by C-MOVE
        query = window.query_panel
        window.show_panel("query")
        query.search()
        _wait(app, lambda: query._search is None, what="the search")
        query.tree.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        _settle(app)
        selection = query.tree.selectionModel()
        flags = selection.SelectionFlag.Select | selection.SelectionFlag.Rows
        for row in range(query.proxy.rowCount()):
            if query.proxy.index(row, 0).data().startswith("CompressedSamples"):
                selection.select(query.proxy.index(row, 0), flags)
        query.retrieve()
        _wait(app, lambda: query._retrieve is None, what="the C-MOVE")
        _wait(app, lambda: len(query.model.local_rows()) >= 2, what="the local marks")
        ct_row = next(r for r in range(query.proxy.rowCount())
                      if query.proxy.index(r, 0).data() == "CompressedSamples CT1")
        query.tree.expand(query.proxy.index(ct_row, 0))
        _wait(app, lambda: not query._children, what="the series")
        for column in range(query.proxy.columnCount() - 1):
            query.tree.resizeColumnToContents(column)

        # Send: a folder with DICOM files and a note, sent to the PACS
        folder = tmp / "to send"
        folder.mkdir()
        for name in SEND_FILES:
            shutil.copy(pydicom.data.get_testdata_file(name), folder / name)
        (folder / "referral letter.txt").write_text("not a DICOM file\n")
        send = window.send_panel
        window.show_panel("send")
        send.add_paths([str(folder)])
        _wait(app, lambda: not send._scans, what="reading the folder")
        send.node_picker.select("pacs")
        send.send()
        _wait(app, lambda: send._send is None, what="the send")

        # Local server: the objects received by the C-MOVE, the CT previewed
        server = window.server_panel
        window.show_panel("server")
        _wait(app, lambda: server.stored.rowCount() >= 2, what="the received objects")
        ct = next(r for r in range(server.stored.rowCount())
                  if server.stored.index(r, 2).data() == "CT Image Storage")
        server.stored_view.selectRow(ct)
        _wait(app, lambda: server.preview_label.pixmap() is not None
              and not server.preview_label.pixmap().isNull(), what="the preview")

        # Worklist: today's scheduled steps on the PACS
        worklist = window.worklist_panel
        window.show_panel("worklist")
        worklist.node_picker.select("pacs")
        worklist.station_edit.setText("")
        worklist.date_combo.setCurrentText("Today")
        worklist.search()
        _wait(app, lambda: worklist._search is None, what="the worklist")

        # Commitment: the sent files, asked of the VNA, which holds only some of them
        operations.send(operations.Peer("127.0.0.1", vna.port, "VNA", "LOADER"),
                        [folder / name for name in SEND_FILES[:3]])
        send.node_picker.select("vna")
        send.request_commitment()
        commitment = window.commitment_panel
        commitment.request()
        _wait(app, lambda: commitment._worker is None, what="the commitment")
        commitment.table.resizeColumnToContents(0)

        window.nodes_panel._select("pacs")

        for row, (key, _title, _icon) in enumerate(PANELS):
            window.show_panel_row(row)
            _settle(app, 0.3)
            path = out / f"{key}.png"
            window.grab().save(str(path), "PNG")
            print(f"{path} ({path.stat().st_size // 1024} KB)")
        # Send: the "Edit tags…" dialog (patient reconciliation), for the selected file
        window.show_panel("send")
        send.table.selectRow(0)
        dialog = send.edit_tags()
        dialog.set_row(0, "PatientID", "123")
        dialog.set_row(1, "PatientName", "DOE^JOHN")
        dialog.add_row("StudyDescription", "CT CHEST (corrected)")
        _settle(app, 0.3)
        path = out / "edit_tags.png"
        dialog.grab().save(str(path), "PNG")
        print(f"{path} ({path.stat().st_size // 1024} KB)")
        dialog.reject()
        window.confirm_close = lambda count: True  # type: ignore[method-assign]
        window.close()
        _wait(app, lambda: not window.isVisible(), what="the window to close")
        window.tracker.wait(10_000)
    finally:
        pacs.stop()
        vna.stop()
    return 0


def _write_worklist(folder: Path) -> None:
    """Three steps scheduled today (PS3.4 K.6 attributes) as ``*.wl`` files the PACS serves."""
    import datetime as dt

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    today = dt.date.today().strftime("%Y%m%d")
    steps = (("Doe^Jane", "P1001", "CT", "CT01", "083000", "CT chest without contrast"),
             ("Roe^Rick", "P1002", "MR", "MR01", "091500", "MR brain"),
             ("Poe^Pat", "P1003", "CT", "CT01", "104500", "CT abdomen and pelvis"))
    for n, (name, pid, modality, station, time_, what) in enumerate(steps):
        ds = Dataset()
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = name, pid, "19700101", "O"
        ds.AccessionNumber = f"A{2024000 + n}"
        ds.RequestedProcedureID = f"RP{n + 1}"
        ds.RequestedProcedureDescription = what
        ds.StudyInstanceUID = generate_uid()
        sps = Dataset()
        sps.Modality, sps.ScheduledStationAETitle = modality, station
        sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepStartTime = today, time_
        sps.ScheduledProcedureStepID = f"SPS{n + 1}"
        sps.ScheduledProcedureStepDescription = what
        ds.ScheduledProcedureStepSequence = Sequence([sps])
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.31"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"step{n + 1}.wl", enforce_file_format=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
