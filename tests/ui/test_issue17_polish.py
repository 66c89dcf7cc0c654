"""Issue 17's panel polish, through real widgets against real peers: modalities and number
order in the results tree, remembered column widths and splitter, the Send panel at 1024x700
and its drop zone, frame stepping in the preview, "Copy as command" confirmed."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pydicom.data
import pytest
from peers import LOCALHOST, free_port, run_dcmtk
from pydicom.uid import generate_uid
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent
from PySide6.QtWidgets import QApplication

from dicomdesk import config, operations


@pytest.fixture
def three_series_study(tmp_path: Path):
    """A `dicomdesk serve` LocalServer holding one CT study of three series numbered 10, 2, 1
    (sent in that order by DCMTK storescu)."""
    ct = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    files = []
    for number in (10, 2, 1):
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
        ds.SeriesInstanceUID = generate_uid()
        ds.SeriesNumber = number
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = tmp_path / f"series{number}.dcm"
        ds.save_as(path)
        files.append(path)
    settings = config.ServerSettings(aet="PACS", port=0, bind=LOCALHOST,
                                     storage_dir=tmp_path / "pacs", durable=False)
    server = operations.LocalServer(settings, nodes=[]).start()
    done = run_dcmtk("storescu", "-aec", "PACS", LOCALHOST, str(server.port), *files)
    assert done.returncode == 0, done.stderr
    yield server, ct.StudyInstanceUID
    server.stop()


def test_study_rows_show_modalities_and_series_keep_number_order(window, qtbot,
                                                                 three_series_study):
    server, study_uid = three_series_study
    window.book.replace_all([config.Node("pacs", "PACS", LOCALHOST, server.port)])
    panel = window.query_panel
    with qtbot.waitSignal(panel.search_finished, timeout=20_000):
        panel.search()
    model = panel.model
    assert model.headerData(6, Qt.Orientation.Horizontal) == "Series / Images"
    study = model.index(0, 0)
    assert model.index(0, 3).data() == "CT"  # Modalities in Study, asked without a filter
    assert model.index(0, 6).data() == "3/3"
    window.show()
    window.show_panel("query")
    panel.tree.expand(study)
    qtbot.waitUntil(lambda: model.rowCount(study) == 3 and not panel._children, timeout=20_000)

    def series_order() -> list[str]:
        return [model.index(r, 0, model.index(0, 0)).data() for r in range(3)]

    assert series_order() == ["Series 1", "Series 2", "Series 10"]  # studies: date, descending
    panel.tree.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    assert series_order() == ["Series 1", "Series 2", "Series 10"]
    panel.tree.sortByColumn(4, Qt.SortOrder.DescendingOrder)
    assert series_order() == ["Series 1", "Series 2", "Series 10"]
    # the first column fits its content
    assert panel.tree.columnWidth(0) >= panel.tree.sizeHintForColumn(0)
    text = panel.copy_find_command()
    assert text.startswith("dicomdesk find")
    assert window.statusBar().currentMessage() == f"Copied to the clipboard: {text[:87]}…" \
        or window.statusBar().currentMessage() == f"Copied to the clipboard: {text}"


def test_column_widths_and_the_server_splitter_are_remembered(make_window, qtbot):
    first = make_window()
    first.resize(1200, 800)
    first.show()
    first.query_panel.tree.header().resizeSection(1, 173)
    first.send_panel.table.horizontalHeader().resizeSection(2, 91)
    first.show_panel("server")
    first.server_panel.splitter.setSizes([400, 600])
    sizes = first.server_panel.splitter.sizes()
    first.close()
    second = make_window()
    second.resize(1200, 800)
    second.show()
    second.show_panel("server")
    assert second.query_panel.tree.header().sectionSize(1) == 173
    assert second.send_panel.table.horizontalHeader().sectionSize(2) == 91
    assert second.server_panel.splitter.sizes() == sizes


def test_send_panel_shows_the_state_column_at_1024x700_and_lights_the_drop_zone(window, qtbot,
                                                                                 tmp_path):
    window.resize(1024, 700)
    window.show()
    window.show_panel("send")
    qtbot.waitExposed(window)
    panel = window.send_panel
    header = panel.table.horizontalHeader()
    state_left = header.sectionViewportPosition(6)
    assert 0 <= state_left and state_left + 60 <= panel.table.viewport().width()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path))])
    enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(panel, enter)
    assert panel.drop_hint.property("dragOver") is True
    assert panel.drop_hint.text() == "Release to queue these files and folders."
    QApplication.sendEvent(panel, QDragLeaveEvent())
    assert panel.drop_hint.property("dragOver") is False
    assert panel.start_folder() == str(Path.home())
    panel._last_folder = str(tmp_path)
    assert panel.start_folder() == str(tmp_path)


def test_the_preview_steps_through_the_frames_of_a_multi_frame_object(window, qtbot):
    port = free_port()
    window.server_panel.port_spin.setValue(port)
    with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                          check_params_cb=lambda s: s.status == "listening"):
        window.server_panel.start_server()
    done = run_dcmtk("storescu", "-aec", "DICOMDESK", LOCALHOST, str(port),
                     pydicom.data.get_testdata_file("rtdose.dcm"))
    assert done.returncode == 0, done.stderr
    panel = window.server_panel
    window.show()
    window.show_panel("server")
    qtbot.waitUntil(lambda: panel.stored.rowCount() == 1, timeout=10_000)
    with qtbot.waitSignal(panel.preview_ready, timeout=20_000) as first:
        panel.stored_view.selectRow(0)
    assert not panel.frame_slider.isHidden()
    assert panel.frame_slider.maximum() == 15 and panel.frame_slider.value() == 1
    assert "frame 1 of 15" in first.args[0].caption
    with qtbot.waitSignal(panel.preview_ready, timeout=20_000) as second:
        panel.frame_slider.setValue(8)
    assert "frame 8 of 15" in second.args[0].caption
    assert first.args[0].pixels != second.args[0].pixels
    assert panel.tags_view.toPlainText()  # the tags stay
    assert panel.preview_tabs.width() >= 360
