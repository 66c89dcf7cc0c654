"""The server panel's archive browser, preview and access list, fed by DCMTK storescu.

storescu (DCMTK) → the in-app server → the archive → the patient/study/series/instance tree;
selecting an instance shows its picture (compressed ones too) and its tags; Delete and Export act
on the archive's files and index.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from peers import free_port, run_dcmtk
from PySide6.QtCore import QEvent, QModelIndex, QPersistentModelIndex, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication
from pydicom.data import get_testdata_file

from dicomdesk.archive import Archive
from dicomdesk.ui.models.archive_tree import ArchiveTreeModel

pytestmark = [pytest.mark.gui, pytest.mark.interop]

CT = "CT_small.dcm"
RLE = "MR_small_RLE.dcm"
J2K = "JPEG2000.dcm"
SENT = (CT, RLE, J2K)


def _file(name: str) -> str:
    path = get_testdata_file(name, download=False)
    assert path, f"pydicom's test file {name} is not installed"
    return path


def _start(window, qtbot, allowed: str = "") -> int:
    panel = window.server_panel
    panel.port_spin.setValue(free_port())
    panel.allowed_edit.setText(allowed)
    with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                          check_params_cb=lambda s: s.status != "starting"):
        panel.start_server()
    assert window.server_host.state.status == "listening", window.server_host.state
    return window.server_host.state.port


def _stop(window, qtbot) -> None:
    with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                          check_params_cb=lambda s: s.status == "stopped"):
        window.server_host.stop()


#: storescu proposes uncompressed transfer syntaxes unless told: -xr RLE, -xw JPEG 2000
PROPOSE = {CT: (), RLE: ("-xr",), J2K: ("-xw",)}


def _storescu(port: int, *files: str, aet: str = "STORESCU", propose: tuple[str, ...] = ()):
    return run_dcmtk("storescu", *propose, "-aet", aet, "-aec", "DICOMDESK", "127.0.0.1", str(port), *files)


@pytest.fixture
def received(window, qtbot):
    """The in-app server after storescu sent CT_small, MR_small_RLE and JPEG2000 (one
    association each, in their own transfer syntax); yields (window, storage folder)."""
    _start(window, qtbot)
    for name in SENT:
        result = _storescu(window.server_host.state.port, _file(name), propose=PROPOSE[name])
        assert result.returncode == 0, result.stdout + result.stderr
    model = window.server_panel.archive_model
    qtbot.waitUntil(lambda: model.count("instance") == len(SENT), timeout=10_000)
    yield window, window.server_panel.storage_dir()
    # closing the window (pytest-qt, before fixture teardown) stops the server


def _instance_index(window, qtbot, name: str):
    """The instance row of one of the sent files, loaded the way the user reaches it: the
    browser is lazy, instances are read when their series is opened (here: ``reveal``, what
    a double-click in the received-objects list does)."""
    import pydicom

    uid = pydicom.dcmread(_file(name), stop_before_pixels=True).SOPInstanceUID
    browser = window.server_panel.archive_browser
    browser.reveal(uid)
    qtbot.waitUntil(lambda: browser.model.find("instance", uid).isValid(), timeout=10_000)
    return browser.model.find("instance", uid)


def _select(window, qtbot, name: str):
    panel = window.server_panel
    index = _instance_index(window, qtbot, name)
    # ``reveal`` selects the instance itself and its preview may already be under way (or
    # done): let it end and clear the selection, so that selecting it here previews it anew
    # and the signal cannot come before the wait for it.
    qtbot.waitUntil(lambda: panel.preview.worker is None, timeout=10_000)
    panel.archive_view.setCurrentIndex(QModelIndex())
    qtbot.waitUntil(lambda: panel.preview.worker is None, timeout=10_000)
    with qtbot.waitSignal(panel.preview_ready, timeout=10_000) as blocker:
        panel.archive_view.setCurrentIndex(index)
    return blocker.args[0]


def test_storescu_objects_appear_in_the_tree_and_the_log_counts_them(received, qtbot):
    window, storage = received
    panel = window.server_panel
    model = panel.archive_model
    assert (model.count("patient"), model.count("study"), model.count("instance")) == (3, 3, 3)
    ct = _instance_index(window, qtbot, CT)
    series, study = ct.parent(), ct.parent().parent()
    patient = study.parent()
    assert [ArchiveTreeModel.kind(i) for i in (patient, study, series, ct)] == \
        ["patient", "study", "series", "instance"]
    assert patient.data() == "CompressedSamples CT1"
    assert Path(ArchiveTreeModel.path(ct)).is_file()
    assert Path(ArchiveTreeModel.path(ct)).is_relative_to(storage)
    qtbot.waitUntil(lambda: sum(r.event.state == "released" for r in panel.associations.records())
                    == 3, timeout=20_000)
    assert panel.associations.rowCount() == 3  # open and release are one row
    row = panel.associations.record(0)
    assert (row.event.calling_aet, row.event.called_aet, row.objects) == ("STORESCU", "DICOMDESK", 1)
    columns = [panel.associations.headerData(c, Qt.Orientation.Horizontal)
               for c in range(panel.associations.columnCount())]
    assert panel.associations.data(panel.associations.index(0, columns.index("Objects"))) == "1"
    assert "CT Image Storage" in panel.associations.data(
        panel.associations.index(0, columns.index("Accepted contexts")))


def test_objects_arriving_later_are_inserted_without_reloading(received, qtbot, tmp_path):
    import pydicom
    from pydicom.uid import generate_uid

    window, _ = received
    panel = window.server_panel
    model = panel.archive_model
    ct = _instance_index(window, qtbot, CT)
    series = QPersistentModelIndex(ct.parent())
    copies = []
    for number in (2, 3):  # two more images of CT_small's series
        ds = pydicom.dcmread(_file(CT))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = number
        copies.append(tmp_path / f"ct{number}.dcm")
        ds.save_as(copies[-1])
    result = _storescu(window.server_host.state.port, *map(str, copies))
    assert result.returncode == 0, result.stdout + result.stderr
    qtbot.waitUntil(lambda: model.count("instance") == 5, timeout=10_000)
    assert series.isValid()  # the series row was extended, not rebuilt
    assert model.rowCount(QModelIndex(series)) == 3
    assert model.count("series") == 3
    assert QModelIndex(series).siblingAtColumn(4).data() == "3 instance(s)"
    qtbot.waitUntil(lambda: panel.associations.rowCount() == 4
                    and panel.associations.record(3).event.state == "released", timeout=20_000)
    assert panel.associations.record(3).objects == 2


def test_selecting_an_instance_shows_the_picture_and_the_tags(received, qtbot):
    window, _ = received
    panel = window.server_panel
    image = _select(window, qtbot, CT)
    assert (image.width, image.height) == (128, 128) and not image.rgb
    assert not panel.preview_label.pixmap().isNull()
    assert "PatientName" in panel.tags_view.toPlainText()
    assert "CompressedSamples^CT1" in panel.tags_view.toPlainText()
    assert "PixelData" not in panel.tags_view.toPlainText()


def _drag(widget, start: QPoint, end: QPoint) -> None:
    left = Qt.MouseButton.LeftButton
    for kind, pos, buttons in ((QEvent.Type.MouseButtonPress, start, left),
                               (QEvent.Type.MouseMove, (start + end) / 2, left),
                               (QEvent.Type.MouseMove, end, left),
                               (QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)):
        point = QPointF(pos)
        event = QMouseEvent(kind, point, widget.mapToGlobal(point), left, buttons,
                            Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(widget, event)


def test_window_level_drag_re_renders_the_picture(received, qtbot):
    window, _ = received
    panel = window.server_panel
    first = _select(window, qtbot, CT)
    before = panel.preview_label.pixmap().toImage()
    with qtbot.waitSignal(panel.preview_ready, timeout=20_000) as blocker:
        _drag(panel.preview_label, QPoint(50, 50), QPoint(10, 120))  # narrower, higher level
    second = blocker.args[0]
    assert second.window < first.window and second.center > first.center
    assert second.pixels != first.pixels
    assert panel.preview_label.pixmap().toImage() != before
    assert "window" in panel.preview_caption.text()
    with qtbot.waitSignal(panel.preview_ready, timeout=20_000) as blocker:
        panel.reset_window()
    assert blocker.args[0].pixels == first.pixels


@pytest.mark.parametrize("name, size", [(RLE, (64, 64)), (J2K, (128, 512))])
def test_compressed_instances_preview(received, qtbot, name, size):
    window, _ = received
    image = _select(window, qtbot, name)
    assert (image.width, image.height) == size
    assert len(set(image.pixels)) > 10  # a picture, not a flat grey


def test_undecodable_pixel_data_says_why(window, qtbot):
    panel = window.server_panel
    # pydicom's 12-bit JPEG Extended file: no installed plugin decodes it
    panel.show_preview(_file("JPEG-lossy.dcm"))
    qtbot.waitUntil(lambda: panel.preview.worker is None, timeout=10_000)
    text = panel.preview_label.text()
    assert text.startswith("No preview: the pixel data (JPEG Extended"), text
    assert "cannot be decoded" in text
    assert "PatientName" in panel.tags_view.toPlainText()


def test_delete_removes_the_study_from_browser_index_and_disk(received, qtbot):
    window, storage = received
    panel = window.server_panel
    model = panel.archive_model
    ct = _instance_index(window, qtbot, CT)
    study_uid = model.study_of(ct)
    files = [p for p in storage.rglob("*.dcm")]
    assert len(files) == 3
    panel.archive_view.setCurrentIndex(ct.parent().parent())
    asked = []
    panel.archive_browser.confirm_delete = lambda count: asked.append(count) or True  # type: ignore[method-assign]
    with qtbot.waitSignal(panel.archive_action_done, timeout=10_000) as blocker:
        panel.delete_button.click()
    assert asked == [1]
    assert blocker.args == ["delete", "Deleted 1 study(ies), 1 instance(s)."]
    assert not model.find("study", study_uid).isValid()
    assert not model.find("patient", "1CT1").isValid()
    qtbot.waitUntil(lambda: model.count("instance") == 2, timeout=10_000)  # the index's count
    assert not (storage / study_uid).exists()
    assert len(list(storage.rglob("*.dcm"))) == 2
    _stop(window, qtbot)
    with Archive(storage) as archive:
        assert archive.count() == 2
        assert study_uid not in {row[2] for row in archive.tree()}


def _one_of_two_studies_loaded(window, qtbot, tmp_path: Path) -> QPersistentModelIndex:
    """The browser (no server) on an archive holding CT_small and a copy of it in a second
    study of the same patient, read a page of one row at a time: the patient row is shown
    with one of its two studies loaded. Returns the patient row; Delete confirms itself."""
    import pydicom
    from pydicom.uid import generate_uid

    copy = pydicom.dcmread(_file(CT))
    copy.StudyInstanceUID, copy.SeriesInstanceUID = generate_uid(), generate_uid()
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    copy.save_as(tmp_path / "second-study.dcm")
    storage = tmp_path / "archive"
    with Archive(storage, durable=False) as archive:
        archive.add_file(Path(_file(CT)))
        archive.add_file(tmp_path / "second-study.dcm")
    panel = window.server_panel
    model = panel.archive_model
    model.page = 1
    panel.storage_edit.setText(str(storage))
    panel.reload_archive()
    qtbot.waitUntil(lambda: model.rowCount() == 1 and not model.fetching(), timeout=10_000)
    patient = QPersistentModelIndex(model.index(0, 0))
    model.fetchMore(QModelIndex(patient))  # what the view does when the row is opened
    qtbot.waitUntil(lambda: model.rowCount(QModelIndex(patient)) == 1 and not model.fetching(),
                    timeout=10_000)
    assert model.has_more(QModelIndex(patient))
    panel.archive_browser.confirm_delete = lambda count: True  # type: ignore[method-assign]
    return patient


def test_deleting_a_patient_whose_studies_are_not_all_loaded_removes_its_row(window, qtbot,
                                                                              tmp_path):
    """The patient's row goes with its last study even when the browser had not read all of
    its studies (a page not read yet: on a loaded machine, the patient a reveal opened; here a
    page of one row). It used to stay, empty, because the browser could not know it was the
    last study (seen once in a CI-like run of test_delete_removes_the_study_...)."""
    patient = _one_of_two_studies_loaded(window, qtbot, tmp_path)
    panel = window.server_panel
    panel.archive_view.setCurrentIndex(QModelIndex(patient))
    with qtbot.waitSignal(panel.archive_action_done, timeout=10_000) as blocker:
        panel.delete_button.click()
    assert blocker.args == ["delete", "Deleted 2 study(ies), 2 instance(s)."]
    assert panel.archive_model.rowCount() == 0
    assert not panel.archive_model.find("patient", "1CT1").isValid()


def test_deleting_one_of_a_patients_studies_keeps_its_row_when_others_are_not_loaded(
        window, qtbot, tmp_path):
    patient = _one_of_two_studies_loaded(window, qtbot, tmp_path)
    panel = window.server_panel
    model = panel.archive_model
    panel.archive_view.setCurrentIndex(model.index(0, 0, QModelIndex(patient)))  # its study
    with qtbot.waitSignal(panel.archive_action_done, timeout=10_000) as blocker:
        panel.delete_button.click()
    assert blocker.args == ["delete", "Deleted 1 study(ies), 1 instance(s)."]
    assert model.find("patient", "1CT1").isValid()  # its other study is still in the archive
    assert model.rowCount() == 1


def test_delete_asks_first_and_does_nothing_when_declined(received, qtbot):
    window, storage = received
    panel = window.server_panel
    panel.archive_view.setCurrentIndex(_instance_index(window, qtbot, CT))
    panel.archive_browser.confirm_delete = lambda count: False  # type: ignore[method-assign]
    panel.delete_button.click()
    qtbot.wait(100)
    assert panel.archive_model.count("instance") == 3
    assert len(list(storage.rglob("*.dcm"))) == 3


def test_export_copies_the_files_of_the_selected_studies(received, qtbot, tmp_path):
    window, _ = received
    panel = window.server_panel
    model = panel.archive_model
    ct, rle = _instance_index(window, qtbot, CT), _instance_index(window, qtbot, RLE)
    selection = panel.archive_view.selectionModel()
    for index in (ct, rle):
        selection.select(index, selection.SelectionFlag.Select | selection.SelectionFlag.Rows)
    target = tmp_path / "export"
    panel.archive_browser.choose_export_folder = lambda: str(target)  # type: ignore[method-assign]
    with qtbot.waitSignal(panel.archive_action_done, timeout=10_000) as blocker:
        panel.export_button.click()
    assert blocker.args[0] == "export" and blocker.args[1].startswith("Exported 2 file(s)")
    copies = sorted(p.name for p in target.rglob("*.dcm"))
    originals = sorted(Path(ArchiveTreeModel.path(i)).name for i in (ct, rle))
    assert copies == originals
    assert model.count("instance") == 3  # export leaves the archive as it was


def test_browser_lists_an_existing_archive_when_the_server_starts(window, qtbot, tmp_path):
    storage = tmp_path / "existing"
    with Archive(storage, durable=False) as archive:
        archive.add_file(Path(_file(CT)))
    panel = window.server_panel
    panel.storage_edit.setText(str(storage))
    with qtbot.waitSignal(panel.archive_updated, timeout=10_000):
        _start(window, qtbot)
    assert panel.archive_model.count("instance") == 1
    assert panel.archive_model.rowCount() == 1  # the patient row
    _stop(window, qtbot)


def test_the_server_starting_on_the_folder_shown_keeps_what_the_user_opened(window, qtbot,
                                                                            tmp_path):
    """The browser reads the folder at once (read-only); when the server (autostarted, or
    started by hand) comes up on that folder, the browser reads through the server's archive
    without a reset: no second first page while the window loads, and the levels the user
    opened stay open. Arrivals are placed under them; after a stop it reads the folder again."""
    storage = tmp_path / "existing"
    with Archive(storage, durable=False) as archive:
        archive.add_file(Path(_file(CT)))
    panel = window.server_panel
    model, view = panel.archive_model, panel.archive_view
    window.show()
    window.show_panel("server")
    panel.tabs.setCurrentWidget(panel.archive_browser)
    qtbot.waitExposed(window)
    panel.storage_edit.setText(str(storage))
    panel.reload_archive()
    qtbot.waitUntil(lambda: model.rowCount() == 1 and model.count("instance") == 1,
                    timeout=10_000)
    patient = QPersistentModelIndex(model.index(0, 0))
    view.expand(QModelIndex(patient))
    qtbot.waitUntil(lambda: model.rowCount(QModelIndex(patient)) == 1, timeout=10_000)
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))

    port = _start(window, qtbot)
    assert resets == [] and view.isExpanded(QModelIndex(patient))
    result = _storescu(port, _file(RLE), propose=PROPOSE[RLE])
    assert result.returncode == 0, result.stdout + result.stderr
    qtbot.waitUntil(lambda: model.count("instance") == 2, timeout=10_000)
    assert resets == [] and view.isExpanded(QModelIndex(patient))

    _stop(window, qtbot)
    panel.archive_browser.reload()  # Refresh: read by the browser's own connection again
    qtbot.waitUntil(lambda: model.rowCount() == 2 and not model.fetching(), timeout=10_000)
    assert model.count("instance") == 2
    assert "Cannot read" not in panel.archive_browser.label.text()


def test_allowed_calling_aets_reject_another_calling_ae_title(window, qtbot):
    port = _start(window, qtbot, allowed="STORESCU; MODALITY@127.0.0.1")
    panel = window.server_panel
    assert not panel.allowed_edit.isEnabled()
    refused = _storescu(port, _file(CT), aet="INTRUDER")
    assert refused.returncode != 0
    qtbot.waitUntil(lambda: any(r.event.state == "rejected" for r in panel.associations.records()),
                    timeout=20_000)
    row = next(r for r in panel.associations.records() if r.event.state == "rejected")
    assert row.event.calling_aet == "INTRUDER" and row.objects == 0
    assert "calling AE title" in row.event.reason
    accepted = _storescu(port, _file(CT))  # STORESCU is on the list
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    qtbot.waitUntil(lambda: panel.archive_model.count("instance") == 1, timeout=10_000)
    assert "--allow STORESCU --allow MODALITY@127.0.0.1" in panel.copy_command()
    _stop(window, qtbot)


def test_an_invalid_allowed_entry_is_refused_at_the_field(window):
    panel = window.server_panel
    panel.allowed_edit.setText("THIS_TITLE_IS_FAR_TOO_LONG")
    panel.start_server()
    assert window.server_host.state.status == "stopped"
    assert panel.state_label.text().startswith("Allowed calling AE titles:")


def test_export_can_deidentify_the_copies(received, qtbot, tmp_path):
    import json

    import pydicom

    window, _ = received
    panel = window.server_panel
    model = panel.archive_model
    ct = _instance_index(window, qtbot, CT)
    selection = panel.archive_view.selectionModel()
    selection.select(ct, selection.SelectionFlag.Select | selection.SelectionFlag.Rows)
    target = tmp_path / "deid"
    panel.archive_browser.choose_export_folder = lambda: str(target)  # type: ignore[method-assign]
    panel.deidentify_export.click()
    with qtbot.waitSignal(panel.archive_action_done, timeout=10_000) as blocker:
        panel.export_button.click()
    assert blocker.args[1].startswith("Exported 1 file(s) de-identified"), blocker.args[1]
    (copy,) = target.rglob("*.dcm")
    ds = pydicom.dcmread(copy)
    original = pydicom.dcmread(_file(CT))
    assert ds.PatientIdentityRemoved == "YES" and ds.PatientName == ""
    mapping = json.loads((target / "deidentification-map.json").read_text())
    assert mapping["uids"][str(original.SOPInstanceUID)] == ds.SOPInstanceUID
    assert copy.name == f"{ds.SOPInstanceUID}.dcm"
    assert model.count("instance") == 3
