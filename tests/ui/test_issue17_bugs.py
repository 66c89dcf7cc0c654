"""Issue 17's bugs, each driven through real widgets against a real peer (a ``dicomdesk serve``
``LocalServer`` filled by DCMTK storescu, pynetdicom SCPs, the window's own local server)."""

from __future__ import annotations

import socket
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from PySide6.QtCore import Qt
from peers import LOCALHOST, free_port, run_dcmtk

from dicomdesk import config, operations
from dicomdesk.archive import Archive

PEER_AET = "DDSERVE"
PEER_FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")


def _header(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(pydicom.data.get_testdata_file(name), stop_before_pixels=True)


@pytest.fixture
def dicomdesk_serve(tmp_path: Path):
    """A LocalServer (what `dicomdesk serve` runs) knowing ``known`` move destinations,
    filled with ``files`` by DCMTK storescu."""
    servers: list = []

    def start(known: dict[str, int] | None = None, files=PEER_FILES):
        settings = config.ServerSettings(aet=PEER_AET, port=0, bind=LOCALHOST,
                                         storage_dir=tmp_path / f"peer-{len(servers)}",
                                         durable=False)
        nodes = [config.Node(aet.lower(), aet, LOCALHOST, port)
                 for aet, port in (known or {}).items()]
        server = operations.LocalServer(settings, nodes=nodes).start()
        servers.append(server)
        paths = [pydicom.data.get_testdata_file(n) for n in files]
        done = run_dcmtk("storescu", "-aec", PEER_AET, LOCALHOST, str(server.port), *paths)
        assert done.returncode == 0, done.stderr
        return server

    yield start
    for server in servers:
        server.stop()


def _use_peer(window, port: int, retrieve: str = "get", name: str = "serve") -> None:
    window.book.replace_all([config.Node(name, PEER_AET, LOCALHOST, port, retrieve=retrieve)])


def _search(window, qtbot):
    panel = window.query_panel
    with qtbot.waitSignal(panel.local_checked, timeout=20_000):
        with qtbot.waitSignal(panel.search_finished, timeout=20_000):
            panel.search()
    return panel


def _select_all_studies(panel) -> None:
    selection = panel.tree.selectionModel()
    flags = selection.SelectionFlag.Select | selection.SelectionFlag.Rows
    for row in range(panel.model.rowCount()):
        selection.select(panel.model.index(row, 0), flags)


def _retrieve(panel, qtbot) -> str:
    with qtbot.waitSignal(panel.local_checked, timeout=30_000):
        with qtbot.waitSignal(panel.retrieve_finished, timeout=30_000) as blocker:
            panel.retrieve()
    return blocker.args[0]


def _start_local_server(window, qtbot, port: int) -> None:
    window.server_panel.port_spin.setValue(port)
    with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                          check_params_cb=lambda s: s.status != "starting"):
        window.server_panel.start_server()
    assert window.server_host.is_running


# ------------------------------------------------------------------------------------ bug 1
def test_c_get_objects_are_indexed_with_their_size_and_source_and_can_be_committed(
        window, qtbot, dicomdesk_serve, tmp_path):
    server = dicomdesk_serve()
    _use_peer(window, server.port, retrieve="get")
    panel = _search(window, qtbot)
    _select_all_studies(panel)
    assert _retrieve(panel, qtbot) == f"{len(PEER_FILES)} completed in {len(PEER_FILES)} retrieves."
    stored = window.server_panel.stored
    assert stored.rowCount() == len(PEER_FILES)
    for row in range(stored.rowCount()):
        record = stored.record(row).event
        assert record.size == Path(record.path).stat().st_size > 0
        assert stored.index(row, 3).data() == PEER_AET  # "From"
        assert stored.index(row, 4).data() != "0 B"
    storage = tmp_path / "storage"
    with Archive(storage, read_only=True) as archive:
        rows = archive.index.all_files()
        assert len(rows) == len(PEER_FILES)
        for _uid, (rel, size) in rows.items():
            assert size == (storage / rel).stat().st_size
    # a storage commitment request for them, to the window's own server, commits every one
    port = free_port()
    _start_local_server(window, qtbot, port)
    files = [stored.record(r).event.path for r in range(stored.rowCount())]
    result = operations.commit(operations.Peer(LOCALHOST, port, "DICOMDESK", "COMMITSCU"),
                               files, timeout=20, listen_port=None)
    assert result.ok, result.error
    assert sorted(result.committed) == sorted(_header(n).SOPInstanceUID for n in PEER_FILES)


# ------------------------------------------------------------------------------------ bug 8
def test_a_new_search_or_another_node_empties_the_retrieve_progress_bar(
        window, qtbot, dicomdesk_serve):
    server = dicomdesk_serve()
    window.book.replace_all([config.Node("serve", PEER_AET, LOCALHOST, server.port, retrieve="get"),
                             config.Node("other", PEER_AET, LOCALHOST, server.port, retrieve="get")])
    panel = window.query_panel
    panel.node_picker.select("serve")
    _search(window, qtbot)
    _select_all_studies(panel)
    _retrieve(panel, qtbot)
    assert panel.progress.value() == panel.progress.maximum() > 0
    _search(window, qtbot)
    assert panel.progress.value() == 0 and panel.progress.maximum() == 1
    _select_all_studies(panel)
    _retrieve(panel, qtbot)
    assert panel.progress.value() == panel.progress.maximum() > 0
    panel.node_picker.select("other")
    assert panel.progress.value() == 0 and panel.progress.maximum() == 1


# ------------------------------------------------------------------------------------ bug 2
def _two_free_ports() -> tuple[socket.socket, int]:
    """A listening socket on a port P whose neighbour P+1 is free (for "Use port P+1")."""
    for _ in range(50):
        blocker = socket.socket()
        blocker.bind((LOCALHOST, 0))
        port = blocker.getsockname()[1]
        probe = socket.socket()
        try:
            probe.bind((LOCALHOST, port + 1))
        except OSError:
            blocker.close()
            continue
        finally:
            probe.close()
        blocker.listen(1)
        return blocker, port
    raise RuntimeError("no two neighbouring free ports")


def test_a_borrowed_port_is_not_saved_and_a_failed_move_says_the_peer_could_not_reach_us(
        make_window, ui_settings, qtbot, dicomdesk_serve):
    blocker, usual = _two_free_ports()
    try:
        ui_settings.setValue("server/port", usual)
        window = make_window(autostart_server=True)
        qtbot.waitUntil(lambda: window.server_host.state.status == "port_taken", timeout=10_000)
        button = window.other_port_button
        assert not button.isHidden()
        assert button.text() == f"Use port {usual + 1}"
        with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                              check_params_cb=lambda s: s.status == "listening"):
            button.click()
        assert window.server_host.state.port == usual + 1
        assert int(ui_settings.value("server/port")) == usual
        window.save_settings()
        assert int(ui_settings.value("server/port")) == usual
    finally:
        blocker.close()
    # the PACS knows DICOMDESK at the usual port, where nothing listens now
    server = dicomdesk_serve({"DICOMDESK": usual})
    _use_peer(window, server.port, retrieve="move")
    panel = _search(window, qtbot)
    _select_all_studies(panel)
    message = _retrieve(panel, qtbot)
    assert "serve could not send the images back to DICOMDESK" in message
    assert f"{LOCALHOST}:{usual}" in message
    assert f"listens on port {usual + 1}" in message
    assert panel.outcome.text() == message


# ------------------------------------------------------------------------------------ bug 6
def test_the_server_form_explains_refused_input_clears_the_error_when_fixed_and_serves(
        window, ui_settings, qtbot, tmp_path):
    from PySide6.QtCore import Qt

    panel = window.server_panel
    window.show()
    window.show_panel("server")
    panel.aet_edit.clear()
    qtbot.keyClicks(panel.aet_edit, "A" * 22)
    assert panel.aet_edit.text() == "A" * 16
    assert panel.state_label.text() == "An AE title has at most 16 characters."
    assert panel.state_label.property("kind") == "error"
    qtbot.keyClick(panel.aet_edit, Qt.Key.Key_Backspace)  # fixed: the error goes
    assert "stopped" in panel.state_label.text()
    editor = panel.port_spin.lineEdit()
    editor.selectAll()
    qtbot.keyClicks(editor, "99999")
    assert panel.state_label.text() == "The port must be at most 65535."
    editor.selectAll()
    qtbot.keyClicks(editor, "abc")
    assert panel.state_label.text() == "The port is a number from 1 to 65535."
    port = free_port()
    editor.selectAll()
    qtbot.keyClicks(editor, str(port))
    assert panel.port_spin.value() == port
    assert "stopped" in panel.state_label.text()
    with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                          check_params_cb=lambda s: s.status == "listening"):
        panel.start_button.click()
    echo = run_dcmtk("echoscu", "-aec", "A" * 15, LOCALHOST, str(port))
    assert echo.returncode == 0, echo.stderr
    window.save_settings()
    assert ui_settings.value("server/aet") == "A" * 15
    assert int(ui_settings.value("server/port")) == port


# ------------------------------------------------------------------------------------ bug 7
def test_an_open_association_counts_its_objects_live_and_the_status_bar_says_so(window, qtbot):
    import threading

    from pydicom.uid import generate_uid
    from pynetdicom import AE

    port = free_port()
    _start_local_server(window, qtbot, port)
    ct = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    sent, release = threading.Event(), threading.Event()
    statuses: list[int] = []

    def sender() -> None:
        ae = AE(ae_title="LIVESCU")
        ae.add_requested_context(ct.SOPClassUID, ct.file_meta.TransferSyntaxUID)
        assoc = ae.associate(LOCALHOST, port, ae_title="DICOMDESK")
        try:
            for _ in range(5):
                image = pydicom.Dataset(ct)
                image.file_meta = ct.file_meta
                image.SOPInstanceUID = generate_uid()
                statuses.append(int(assoc.send_c_store(image).Status))
            sent.set()
            release.wait(30)
        finally:
            assoc.release()

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        assert sent.wait(30)
        assert statuses == [0] * 5
        log = window.server_panel.associations
        qtbot.waitUntil(lambda: log.rowCount() == 1 and log.index(0, 5).data() == "5",
                        timeout=20_000)
        assert log.index(0, 4).data() == "open"
        qtbot.waitUntil(lambda: window.transfers_status.text()
                        == "Receiving on 1 association (5 objects so far)", timeout=20_000)
    finally:
        release.set()
        thread.join(30)
    qtbot.waitUntil(lambda: log.index(0, 4).data() == "released", timeout=20_000)
    assert log.rowCount() == 1 and log.index(0, 5).data() == "5"
    qtbot.waitUntil(lambda: window.transfers_status.text() == "No transfer under way",
                    timeout=20_000)


# ------------------------------------------------------------------------------------ bug 4
SLOW_COUNT = 40
HELD_AFTER = 3  # images the slow peer sends before it waits for the C-CANCEL


def _slow_get_peer():
    """A pynetdicom Q/R SCP: one study whose C-GET announces SLOW_COUNT CT images, sends
    HELD_AFTER of them, holds the rest until a C-CANCEL comes and stops with FE00 (PS3.4
    C.4.3.3.1); pacing them instead let a busy machine finish before the cancel arrived."""

    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
    from pynetdicom import evt
    from pynetdicom.presentation import PresentationContext

    from peers import start_pynetdicom_scp, wait_for_cancel

    ct = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))

    def on_find(event):
        match = pydicom.Dataset()
        match.QueryRetrieveLevel = "STUDY"
        for keyword in ("PatientName", "PatientID", "StudyDate", "StudyInstanceUID"):
            setattr(match, keyword, getattr(ct, keyword))
        yield 0xFF00, match

    def on_get(event):
        yield SLOW_COUNT
        for sent in range(SLOW_COUNT):
            if wait_for_cancel(event) if sent >= HELD_AFTER else event.is_cancelled:
                yield 0xFE00, None
                return
            image = pydicom.Dataset(ct)
            image.file_meta = ct.file_meta
            image.SOPInstanceUID = generate_uid()
            yield 0xFF00, image

    storage = PresentationContext()
    storage.abstract_syntax = ct.SOPClassUID
    storage.transfer_syntax = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    storage.scu_role, storage.scp_role = False, True
    return start_pynetdicom_scp(
        ["1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.2.3", storage],
        handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get)], ae_title="SLOWQR"), ct


def test_a_cancelled_retrieve_marks_its_study_partial_with_counts_not_present(window, qtbot):
    from dicomdesk.ui.models.results import LOCAL_ROLE, PRESENCE_ROLE

    scp, ct = _slow_get_peer()
    try:
        window.book.replace_all([config.Node("slow", "SLOWQR", LOCALHOST, scp.port,
                                             retrieve="get")])
        panel = _search(window, qtbot)
        assert panel.model.presence(ct.StudyInstanceUID) == "absent"
        _select_all_studies(panel)
        panel.retrieve()
        qtbot.waitUntil(lambda: panel.progress.value() >= 2, timeout=20_000)
        with qtbot.waitSignal(panel.local_checked, timeout=20_000):
            with qtbot.waitSignal(panel.retrieve_finished, timeout=20_000):
                panel.cancel_retrieve()
        held = panel.last_retrieve_run.results[0].completed
        assert 2 <= held < SLOW_COUNT
        uid = ct.StudyInstanceUID
        assert panel.model.presence(uid) == "partial"
        assert panel.model.local_rows() == []
        first = panel.model.index(0, 0)
        assert not first.data(LOCAL_ROLE)
        assert first.data(PRESENCE_ROLE) == "partial"
        assert first.data(Qt.ItemDataRole.ToolTipRole) == \
            f"Partly in the local archive: {held} of {SLOW_COUNT} images"
        # a new search keeps telling the partial study apart
        _search(window, qtbot)
        assert panel.model.presence(uid) == "partial"
        assert panel.model.index(0, 0).data(PRESENCE_ROLE) == "partial"
    finally:
        scp.stop()


def test_a_whole_retrieve_marks_its_studies_complete(window, qtbot, dicomdesk_serve):
    from dicomdesk.ui.models.results import PRESENCE_ROLE

    server = dicomdesk_serve()
    _use_peer(window, server.port, retrieve="get")
    panel = _search(window, qtbot)
    _select_all_studies(panel)
    _retrieve(panel, qtbot)
    uids = panel.model.study_uids()
    assert [panel.model.presence(u) for u in uids] == ["complete"] * len(PEER_FILES)
    assert all(panel.model.index(r, 0).data(PRESENCE_ROLE) == "complete"
               for r in range(panel.model.rowCount()))


# ------------------------------------------------------------------------------- bugs 5 and 9
def _drop(widget, paths) -> None:
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    center = widget.rect().center()
    enter = QDragEnterEvent(center, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(widget, QDropEvent(QPointF(center), Qt.DropAction.CopyAction, mime,
                                              Qt.MouseButton.LeftButton,
                                              Qt.KeyboardModifier.NoModifier))


def _drop_and_wait(panel, qtbot, paths) -> None:
    with qtbot.waitSignal(panel.scan_finished, timeout=20_000):
        _drop(panel, paths)


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """3 DICOM files, 4 files that are not DICOM at all and one DICOMDIR (whose referenced
    files are not there)."""
    import shutil

    folder = tmp_path / "study"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        shutil.copy(pydicom.data.get_testdata_file(name), folder / name)
    for n in range(4):
        (folder / f"notes{n}.txt").write_text("not DICOM\n")
    dicomdir = Path(pydicom.data.get_testdata_file("DICOMDIR"))
    shutil.copy(dicomdir, folder / "DICOMDIR")
    return folder


def test_send_panel_counts_are_true_names_the_dicomdir_and_a_dropped_again_folder_resends(
        window, qtbot, mixed_folder, dcmtk_storescp):
    window.book.replace_all([config.Node("scp", "STORESCP", LOCALHOST, dcmtk_storescp.port)])
    panel = window.send_panel
    _drop_and_wait(panel, qtbot, [mixed_folder])
    summary = panel.summary.text()
    assert summary.startswith("3 DICOM file(s) queued")
    assert "4 skipped (not DICOM)" in summary
    assert "not sent: DICOMDIR (DICOMDIR: a media directory, not an instance" in summary
    rows = {Path(r.path).name: r for r in panel.model.rows()}
    assert rows["DICOMDIR"].state == "skipped"
    assert panel.model.index(list(rows).index("DICOMDIR"), 6).data().startswith(
        "skipped: DICOMDIR: a media directory, not an instance")
    with qtbot.waitSignal(panel.send_finished, timeout=30_000):
        panel.send()
    assert panel.summary.text().startswith(
        "Stored 3, failed 0, skipped 5 (4 not DICOM; not sent: DICOMDIR (DICOMDIR: a media")
    # the same folder dropped again: queued again (true count), and Send sends it again
    _drop_and_wait(panel, qtbot, [mixed_folder])
    assert panel.summary.text().startswith("3 DICOM file(s) queued")
    assert "3 of them again" in panel.summary.text()
    with qtbot.waitSignal(panel.send_finished, timeout=30_000) as blocker:
        panel.send()
    assert blocker.args[0].stored == 3
    assert panel.summary.text().startswith("Stored 3, failed 0, skipped 5")
    assert len(list(dcmtk_storescp.output_dir.iterdir())) >= 3  # storescp keeps one per UID


def test_dicomdesk_send_names_a_dicomdir_instead_of_counting_it_as_not_dicom(
        mixed_folder, dcmtk_storescp):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "dicomdesk", "send", "--aec", "STORESCP",
                          LOCALHOST, str(dcmtk_storescp.port), str(mixed_folder)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (f"not sent: {mixed_folder / 'DICOMDIR'}: DICOMDIR: a media directory, not an instance"
            in run.stdout)
    assert "3 stored, 0 failed, 4 skipped (not DICOM), 1 not sent (named above)" in run.stdout


# ------------------------------------------------------------------------------------ bug 3
def test_a_palette_color_image_received_by_the_local_server_previews_in_colour(window, qtbot):
    import numpy as np

    port = free_port()
    _start_local_server(window, qtbot, port)
    palette = pydicom.data.get_testdata_file("examples_palette.dcm")
    done = run_dcmtk("storescu", "-aec", "DICOMDESK", LOCALHOST, str(port), palette)
    assert done.returncode == 0, done.stderr
    panel = window.server_panel
    qtbot.waitUntil(lambda: panel.stored.rowCount() == 1, timeout=10_000)
    with qtbot.waitSignal(panel.preview_ready, timeout=20_000) as blocker:
        panel.stored_view.selectRow(0)
    image = blocker.args[0]
    assert image.rgb
    pixels = np.frombuffer(image.pixels, np.uint8).reshape(image.height, image.width, 3)
    # grey indices would have R == G == B everywhere; the palette gives colours
    assert (pixels[..., 0] != pixels[..., 1]).any() or (pixels[..., 1] != pixels[..., 2]).any()
    expected = pydicom.pixels.apply_color_lut(pydicom.dcmread(palette).pixel_array,
                                              pydicom.dcmread(palette))
    step = -(-max(expected.shape[:2]) // 512)
    assert np.array_equal(pixels, (expected[::step, ::step] >> 8).astype(np.uint8))
    assert "palette colour" in panel.preview_caption.text()
