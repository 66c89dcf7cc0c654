"""Send panel: a dropped folder fills the queue from a worker; sending to storescp stores all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom.data
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from dicomdesk import config


@pytest.fixture
def drop_folder(tmp_path: Path) -> Path:
    """Two DICOM files and one text file in a folder."""
    folder = tmp_path / "to send"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(pydicom.data.get_testdata_file(name), folder / name)
    (folder / "notes.txt").write_text("not a DICOM file\n")
    return folder


def _drop(widget, paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    center = widget.rect().center()  # QDragEnterEvent takes a QPoint, QDropEvent a QPointF
    pos = QPointF(center)
    enter = QDragEnterEvent(center, Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)


def _drop_and_wait(window, qtbot, paths):
    panel = window.send_panel
    with qtbot.waitSignal(panel.scan_finished, timeout=20_000):
        _drop(panel, paths)
    return panel


def test_drop_of_a_folder_queues_dicom_files_and_lists_the_rest_as_skipped(window, qtbot,
                                                                            drop_folder):
    panel = _drop_and_wait(window, qtbot, [drop_folder])
    rows = {Path(r.path).name: r for r in panel.model.rows()}
    assert set(rows) == {"CT_small.dcm", "MR_small.dcm", "notes.txt"}
    assert rows["CT_small.dcm"].state == "queued"
    assert rows["CT_small.dcm"].sop_class == "CT Image Storage"
    assert rows["MR_small.dcm"].state == "queued"
    assert rows["notes.txt"].state == "skipped"
    assert rows["notes.txt"].message
    assert "2 DICOM file(s) queued" in panel.summary.text()
    assert "1 skipped" in panel.summary.text()


def test_dropping_the_same_folder_twice_does_not_duplicate_rows(window, qtbot, drop_folder):
    panel = _drop_and_wait(window, qtbot, [drop_folder])
    panel = _drop_and_wait(window, qtbot, [drop_folder])
    assert panel.model.rowCount() == 3


def test_send_to_storescp_stores_every_dicom_file(window, qtbot, drop_folder, dcmtk_storescp):
    window.book.replace_all([config.Node("scp", "STORESCP", "127.0.0.1", dcmtk_storescp.port)])
    panel = _drop_and_wait(window, qtbot, [drop_folder])
    with qtbot.waitSignal(panel.send_finished, timeout=30_000) as blocker:
        panel.send()
    result = blocker.args[0]
    assert result.stored == 2 and result.failed == 0, result
    states = {Path(r.path).name: r.state for r in panel.model.rows()}
    assert states == {"CT_small.dcm": "stored", "MR_small.dcm": "stored", "notes.txt": "skipped"}
    assert len(list(dcmtk_storescp.output_dir.iterdir())) == 2
    assert panel.progress.value() == panel.progress.maximum() == 2
    qtbot.waitUntil(lambda: window.transfers_status.text() == "No transfer under way", timeout=20_000)


def test_send_to_closed_port_marks_files_failed_and_retry_is_possible(window, qtbot,
                                                                       drop_folder):
    from peers import free_port

    window.book.replace_all([config.Node("gone", "GONE", "127.0.0.1", free_port())])
    panel = _drop_and_wait(window, qtbot, [drop_folder])
    with qtbot.waitSignal(panel.send_finished, timeout=30_000):
        panel.send()
    assert "refused" in panel.summary.text().lower()
    worker = panel.retry_failed()
    if worker is not None:  # failed rows exist: a retry starts again
        with qtbot.waitSignal(panel.send_finished, timeout=30_000):
            pass


def test_send_copy_as_command_lists_the_dropped_paths(window, qtbot, drop_folder):
    window.book.replace_all([config.Node("scp", "STORESCP", "10.0.0.1", 104)])
    panel = _drop_and_wait(window, qtbot, [drop_folder])
    assert panel.copy_command() == \
        f"dicomdesk send 10.0.0.1 104 '{drop_folder}' --aet DICOMDESK --aec STORESCP"


def test_a_peer_refusing_one_sop_class_fails_that_file_with_the_reason_and_stores_the_rest(
        window, qtbot, drop_folder, pynetdicom_scp, dcmtk_storescp):
    from pynetdicom import evt

    received: list[str] = []

    def on_store(event):
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    ct_only = pynetdicom_scp(["1.2.840.10008.5.1.4.1.1.2"], handlers=[(evt.EVT_C_STORE, on_store)],
                             ae_title="CTONLY")
    window.book.replace_all([config.Node("ct only", "CTONLY", "127.0.0.1", ct_only.port),
                             config.Node("scp", "STORESCP", "127.0.0.1", dcmtk_storescp.port)])
    panel = _drop_and_wait(window, qtbot, [drop_folder])
    panel.node_picker.select("ct only")
    with qtbot.waitSignal(panel.send_finished, timeout=30_000) as blocker:
        panel.send()
    result = blocker.args[0]
    assert (result.stored, result.failed) == (1, 1), result
    rows = {Path(r.path).name: r for r in panel.model.rows()}
    assert rows["CT_small.dcm"].state == "stored"
    assert rows["MR_small.dcm"].state == "failed"
    assert "MR Image Storage" in rows["MR_small.dcm"].message
    assert "refused" in rows["MR_small.dcm"].message
    assert len(received) == 1
    state_cell = panel.model.index(panel.model.rows().index(rows["MR_small.dcm"]), 6).data()
    assert state_cell.startswith("failed: ") and "refused" in state_cell

    # Retry failed sends only the failed file, here to a peer that accepts MR
    panel.node_picker.select("scp")
    with qtbot.waitSignal(panel.send_finished, timeout=30_000) as blocker:
        worker = panel.retry_failed()
        assert worker is not None
    retry = blocker.args[0]
    assert (retry.stored, retry.failed) == (1, 0), retry
    states = {Path(r.path).name: r.state for r in panel.model.rows()}
    assert states == {"CT_small.dcm": "stored", "MR_small.dcm": "stored", "notes.txt": "skipped"}
    assert len(list(dcmtk_storescp.output_dir.iterdir())) == 1
    assert len(received) == 1


def test_size_column_shows_a_half_megabyte_image_size_whole(window):
    """A typical CT image's size ("512.7 KiB") fits the Size column at its starting width
    (it was elided to "513.0 …" at 60 px, seen in the window under Xvfb)."""
    from dicomdesk.units import human_size

    panel = window.send_panel
    size_column = [panel.model.headerData(c, Qt.Orientation.Horizontal)
                   for c in range(panel.model.columnCount())].index("Size")
    text = human_size(525_000)
    assert text.endswith("KiB") and len(text) == len("512.7 KiB")
    needed = panel.table.fontMetrics().horizontalAdvance(text) + 12  # the cell's margins
    assert panel.table.horizontalHeader().sectionSize(size_column) >= needed
