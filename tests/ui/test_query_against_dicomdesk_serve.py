"""Query panel against a real ``dicomdesk serve`` (an in-process ``operations.LocalServer``)
filled with pydicom's test files by DCMTK storescu: search, expand, C-MOVE and C-GET into the
local archive, "present locally" marks, and C-CANCEL of a retrieve from a slow peer."""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from peers import free_port, run_dcmtk, start_pynetdicom_scp, wait_for_cancel

from dicomdesk import config, operations
from dicomdesk.archive import Archive
from dicomdesk.ui.models.results import LOCAL_ROLE

#: Uncompressed files of distinct studies (C-GET proposes the uncompressed transfer syntaxes).
PEER_FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "SC_rgb_small_odd.dcm", "reportsi.dcm")
PEER_AET = "DDSERVE"


def _header(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(pydicom.data.get_testdata_file(name), stop_before_pixels=True)


EXPECTED = {_header(n).StudyInstanceUID: str(_header(n).PatientName).replace("^", " ").strip()
            for n in PEER_FILES}


@pytest.fixture
def dicomdesk_serve(tmp_path: Path):
    """Start a LocalServer (what `dicomdesk serve` runs) knowing the given move destinations,
    and fill it with PEER_FILES through DCMTK storescu."""
    servers: list = []

    def start(known: dict[str, int] | None = None):
        settings = config.ServerSettings(aet=PEER_AET, port=0, bind="127.0.0.1",
                                         storage_dir=tmp_path / "peer-archive", durable=False)
        nodes = [config.Node(aet.lower(), aet, "127.0.0.1", port)
                 for aet, port in (known or {}).items()]
        server = operations.LocalServer(settings, nodes=nodes).start()
        servers.append(server)
        files = [pydicom.data.get_testdata_file(n) for n in PEER_FILES]
        done = run_dcmtk("storescu", "-aec", PEER_AET, "127.0.0.1", str(server.port), *files)
        assert done.returncode == 0, done.stderr
        return server

    yield start
    for server in servers:
        server.stop()


def _use_peer(window, port: int, retrieve: str = "move") -> None:
    window.book.replace_all([config.Node("serve", PEER_AET, "127.0.0.1", port,
                                         retrieve=retrieve)])


def _search(window, qtbot):
    panel = window.query_panel
    with qtbot.waitSignal(panel.local_checked, timeout=20_000):
        with qtbot.waitSignal(panel.search_finished, timeout=20_000):
            panel.search()
    return panel


def _select_all_studies(panel) -> None:
    selection = panel.tree.selectionModel()
    flags = selection.SelectionFlag.Select | selection.SelectionFlag.Rows
    for row in range(panel.proxy.rowCount()):
        selection.select(panel.proxy.index(row, 0), flags)


def _start_local_server(window, qtbot, port: int) -> None:
    window.server_panel.port_spin.setValue(port)
    with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                          check_params_cb=lambda s: s.status != "starting"):
        window.server_panel.start_server()
    assert window.server_host.is_running


def _archived_studies(storage: Path, window=None) -> dict[str, int]:
    """Instances per study, as a second reader of the index sees them once the running
    server's queued rows are written (write-behind)."""
    running = window.server_host.running_archive() if window is not None else None
    if running is not None:
        running.wait_indexed()
    with Archive(storage, read_only=True) as archive:
        counts: dict[str, int] = {}
        for _uid, (rel, _size) in archive.index.all_files().items():
            study = rel.split("/")[0]
            counts[study] = counts.get(study, 0) + 1
        return counts


def test_search_lists_every_stored_study_and_expanding_a_study_loads_its_series(
        window, qtbot, dicomdesk_serve):
    server = dicomdesk_serve()
    _use_peer(window, server.port)
    panel = _search(window, qtbot)
    assert panel.model.study_count() == len(PEER_FILES)
    assert panel.count_label.text() == f"{len(PEER_FILES)} studies"
    shown = {panel.proxy.index(r, 7).data(): panel.proxy.index(r, 0).data()
             for r in range(panel.proxy.rowCount())}
    assert shown == EXPECTED
    assert panel.model.local_rows() == []  # nothing retrieved yet
    window.show()
    window.show_panel("query")
    row = next(r for r in range(panel.proxy.rowCount())
               if panel.proxy.index(r, 7).data() == _header("CT_small.dcm").StudyInstanceUID)
    study = panel.proxy.index(row, 0)
    panel.tree.expand(study)
    qtbot.waitUntil(lambda: panel.proxy.rowCount(study) == 1 and not panel._children,
                    timeout=20_000)
    series = panel.proxy.index(0, 0, study)
    assert panel.proxy.index(0, 7, study).data() == _header("CT_small.dcm").SeriesInstanceUID
    assert panel.proxy.index(0, 3, study).data() == "CT"
    panel.tree.expand(series)
    qtbot.waitUntil(lambda: panel.proxy.rowCount(series) == 1 and not panel._children,
                    timeout=20_000)
    assert panel.proxy.index(0, 7, series).data() == _header("CT_small.dcm").SOPInstanceUID


def test_c_move_lands_every_instance_in_the_local_archive_with_full_progress(
        window, qtbot, dicomdesk_serve, tmp_path):
    port = free_port()
    _start_local_server(window, qtbot, port)
    server = dicomdesk_serve({"DICOMDESK": port})
    _use_peer(window, server.port, retrieve="move")
    panel = _search(window, qtbot)
    _select_all_studies(panel)
    assert panel.method_combo.currentData() == "move"
    with qtbot.waitSignal(panel.local_checked, timeout=30_000):
        with qtbot.waitSignal(panel.retrieve_finished, timeout=30_000) as blocker:
            panel.retrieve()
    assert blocker.args[0] == f"{len(PEER_FILES)} completed in {len(PEER_FILES)} retrieves."
    assert panel.progress.maximum() > 0
    assert panel.progress.value() == panel.progress.maximum()
    assert _archived_studies(tmp_path / "storage", window) == {uid: 1 for uid in EXPECTED}
    assert sorted(panel.model.local_rows()) == sorted(EXPECTED)
    assert all(panel.proxy.index(r, 0).data(LOCAL_ROLE) for r in range(panel.proxy.rowCount()))
    # the archive browser of the server panel lists what arrived
    qtbot.waitUntil(lambda: window.server_panel.stored.rowCount() == len(PEER_FILES),
                    timeout=20_000)


def test_c_get_lands_every_instance_in_the_local_archive_and_marks_the_studies(
        window, qtbot, dicomdesk_serve, tmp_path):
    server = dicomdesk_serve()
    _use_peer(window, server.port, retrieve="get")
    panel = _search(window, qtbot)
    _select_all_studies(panel)
    assert panel.method_combo.currentData() == "get"
    with qtbot.waitSignal(panel.local_checked, timeout=30_000):
        with qtbot.waitSignal(panel.retrieve_finished, timeout=30_000) as blocker:
            panel.retrieve()
    assert blocker.args[0] == f"{len(PEER_FILES)} completed in {len(PEER_FILES)} retrieves."
    assert panel.progress.value() == panel.progress.maximum() > 0
    storage = tmp_path / "storage"
    assert _archived_studies(storage, window) == {uid: 1 for uid in EXPECTED}
    assert not [p for p in (storage / "retrieved").iterdir()]  # all moved into the archive
    assert sorted(panel.model.local_rows()) == sorted(EXPECTED)
    assert window.server_panel.stored.rowCount() == len(PEER_FILES)


def test_a_later_search_marks_studies_already_in_the_local_archive(
        window, qtbot, dicomdesk_serve, tmp_path):
    server = dicomdesk_serve()
    _use_peer(window, server.port, retrieve="get")
    operations_query = __import__("dicomdesk.operations.query", fromlist=["x"])
    copy = tmp_path / "ct.dcm"
    copy.write_bytes(Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes())
    imported = operations_query.import_into_archive([copy], tmp_path / "storage")
    assert len(imported.stored) == 1 and not imported.failed
    panel = _search(window, qtbot)
    assert panel.model.local_rows() == [_header("CT_small.dcm").StudyInstanceUID]


# ----------------------------------------------------------------------- cancel (slow peer)
SLOW_COUNT = 40
HELD_AFTER = 3  # images the slow peer sends before it waits for the C-CANCEL




def _slow_get_peer():
    """A pynetdicom Q/R SCP answering one study whose C-GET announces SLOW_COUNT CT images,
    sends HELD_AFTER of them, then holds the rest until a C-CANCEL arrives and stops with FE00
    (PS3.4 C.4.3.3.1). Holding, not pacing: with images paced at 50 ms, a busy machine let the
    peer finish all of them before the test's cancel reached it."""
    from pynetdicom import evt
    from pynetdicom.presentation import PresentationContext
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

    ct = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    stopped = threading.Event()
    stopped.endings = []  # "released" / "aborted", one per association

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
                stopped.set()
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
    scp = start_pynetdicom_scp(
        ["1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.2.3", storage],
        handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get),
                  (evt.EVT_RELEASED, lambda event: stopped.endings.append("released")),
                  (evt.EVT_ABORTED, lambda event: stopped.endings.append("aborted"))],
        ae_title="SLOWQR")
    return scp, stopped


def test_cancel_stops_a_c_get_midway_with_status_fe00(window, qtbot, tmp_path):
    scp, stopped = _slow_get_peer()
    try:
        window.book.replace_all([config.Node("slow", "SLOWQR", "127.0.0.1", scp.port,
                                             retrieve="get")])
        panel = _search(window, qtbot)
        _select_all_studies(panel)
        worker = panel.retrieve()
        assert worker is not None and panel.cancel_retrieve_button.isEnabled()
        qtbot.waitUntil(lambda: panel.progress.value() >= 2, timeout=20_000)
        assert panel.progress.maximum() == SLOW_COUNT
        with qtbot.waitSignal(panel.retrieve_finished, timeout=20_000) as blocker:
            panel.cancel_retrieve()
        assert blocker.args[0].startswith("Cancelled (C-CANCEL)")
        result = panel.last_retrieve_run.results[0]
        assert int(result.status) == 0xFE00
        assert 2 <= result.completed < SLOW_COUNT
        assert stopped.is_set()
        archived = sum(_archived_studies(tmp_path / "storage", window).values())
        assert archived == result.completed < SLOW_COUNT
        assert not panel.cancel_retrieve_button.isEnabled()
    finally:
        scp.stop()


def test_closing_the_window_during_a_retrieve_asks_then_cancels_and_releases(make_window, qtbot):
    scp, stopped = _slow_get_peer()
    try:
        window = make_window()
        window.book.replace_all([config.Node("slow", "SLOWQR", "127.0.0.1", scp.port,
                                             retrieve="get")])
        window.show()
        asked: list[int] = []
        answers = iter([False, True])

        def confirm(count: int) -> bool:
            asked.append(count)
            return next(answers)

        window.confirm_close = confirm
        panel = _search(window, qtbot)
        _select_all_studies(panel)
        panel.retrieve()
        qtbot.waitUntil(lambda: panel.progress.value() >= 1, timeout=20_000)
        window.close()  # "No": nothing changes
        assert asked == [1] and window.isVisible() and not stopped.is_set()
        window.close()  # "Yes": cancel, wait for the peer's final response, then close
        assert asked == [1, 1]
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=20_000)
        assert stopped.is_set()  # the C-CANCEL reached the peer
        qtbot.waitUntil(lambda: len(stopped.endings) == 2, timeout=20_000)  # find + get
        assert stopped.endings == ["released", "released"]
        assert panel.last_retrieve_run.results[0].completed < SLOW_COUNT
    finally:
        scp.stop()
