"""Query panel against DCMTK dcmqrscp: results tree, C-GET retrieve, C-MOVE and A801."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pydicom.data
import pytest
from PySide6.QtCore import Qt
from peers import free_port, run_dcmtk

from dicomdesk import config

FILES = ("CT_small.dcm", "MR_small.dcm")


def _load(qrscp) -> None:
    for name in FILES:
        done = run_dcmtk("storescu", "-aec", qrscp.aet, "127.0.0.1", str(qrscp.port),
                         pydicom.data.get_testdata_file(name))
        assert done.returncode == 0, done.stderr


@pytest.fixture
def loaded_qrscp(dcmtk_dcmqrscp):
    def start(peers=None):
        qrscp = dcmtk_dcmqrscp(peers=peers)
        _load(qrscp)
        return qrscp

    return start


def _search(window, qtbot):
    panel = window.query_panel
    with qtbot.waitSignal(panel.search_finished, timeout=20_000):
        panel.search()
    return panel


def _start_server(window, qtbot, port):
    window.server_panel.port_spin.setValue(port)
    with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                          check_params_cb=lambda s: s.status != "starting"):
        window.server_panel.start_server()
    assert window.server_host.is_running


def test_search_fills_the_tree_and_expanding_a_study_lists_its_series(window, qtbot,
                                                                      loaded_qrscp):
    qrscp = loaded_qrscp()
    window.book.replace_all([config.Node("qr", qrscp.aet, "127.0.0.1", qrscp.port)])
    panel = _search(window, qtbot)
    assert panel.model.study_count() == 2
    assert panel.count_label.text() == "2 studies"
    names = {panel.proxy.index(r, 0).data() for r in range(panel.proxy.rowCount())}
    assert names == {"CompressedSamples CT1", "CompressedSamples MR1"}
    window.show()  # a hidden QTreeView defers expanding (and so fetchMore) to its next layout
    window.show_panel("query")
    study = panel.proxy.index(0, 0)
    panel.tree.expand(study)
    qtbot.waitUntil(lambda: panel.proxy.rowCount(study) == 1 and not panel._children,
                    timeout=20_000)
    assert panel.proxy.index(0, 0, study).data().startswith("Series")


def test_sorting_by_patient_name(window, qtbot, loaded_qrscp):
    qrscp = loaded_qrscp()
    window.book.replace_all([config.Node("qr", qrscp.aet, "127.0.0.1", qrscp.port)])
    panel = _search(window, qtbot)
    panel.tree.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    first = panel.proxy.index(0, 0).data()
    assert first == "CompressedSamples CT1"


def test_c_get_retrieve_of_a_study_reports_completed(window, qtbot, loaded_qrscp, tmp_path):
    qrscp = loaded_qrscp()
    window.book.replace_all([config.Node("qr", qrscp.aet, "127.0.0.1", qrscp.port,
                                         retrieve="get")])
    panel = _search(window, qtbot)
    panel.tree.selectionModel().select(
        panel.proxy.index(0, 0),
        panel.tree.selectionModel().SelectionFlag.Select
        | panel.tree.selectionModel().SelectionFlag.Rows)
    assert panel.method_combo.currentData() == "get"
    with qtbot.waitSignal(panel.retrieve_finished, timeout=30_000) as blocker:
        panel.retrieve()
    assert blocker.args[0] == "Done: 1 completed, 0 failed, 0 warning."
    stored = [p for p in Path(window.ctx.storage_dir()).rglob("*") if p.is_file()]
    assert stored


def test_c_move_to_a_peer_that_does_not_know_us_says_so(window, qtbot, loaded_qrscp):
    qrscp = loaded_qrscp(peers={})
    window.book.replace_all([config.Node("qr", qrscp.aet, "127.0.0.1", qrscp.port)])
    _start_server(window, qtbot, free_port())
    panel = _search(window, qtbot)
    panel.tree.selectionModel().select(
        panel.proxy.index(0, 0),
        panel.tree.selectionModel().SelectionFlag.Select
        | panel.tree.selectionModel().SelectionFlag.Rows)
    with qtbot.waitSignal(panel.retrieve_finished, timeout=30_000) as blocker:
        panel.retrieve()
    assert "does not know our AE title 'DICOMDESK'" in blocker.args[0]


def test_c_move_to_the_local_server_lists_received_objects(window, qtbot, loaded_qrscp):
    port = free_port()
    qrscp = loaded_qrscp(peers={"DICOMDESK": ("127.0.0.1", port)})
    window.book.replace_all([config.Node("qr", qrscp.aet, "127.0.0.1", qrscp.port)])
    _start_server(window, qtbot, port)
    panel = _search(window, qtbot)
    panel.tree.selectionModel().select(
        panel.proxy.index(0, 0),
        panel.tree.selectionModel().SelectionFlag.Select
        | panel.tree.selectionModel().SelectionFlag.Rows)
    with qtbot.waitSignal(panel.retrieve_finished, timeout=30_000) as blocker:
        panel.retrieve()
    assert blocker.args[0] == "Done: 1 completed, 0 failed, 0 warning."
    server = window.server_panel
    qtbot.waitUntil(lambda: server.stored.rowCount() == 1, timeout=20_000)
    server.stored_view.selectRow(0)
    with qtbot.waitSignal(server.preview_ready, timeout=10_000) as preview:
        pass
    assert preview.args[0].width > 0


def test_retrieve_copy_as_command_uses_the_selection(window, qtbot, loaded_qrscp):
    qrscp = loaded_qrscp()
    window.book.replace_all([config.Node("qr", qrscp.aet, "127.0.0.1", qrscp.port)])
    panel = _search(window, qtbot)
    panel.tree.selectionModel().select(
        panel.proxy.index(0, 0),
        panel.tree.selectionModel().SelectionFlag.Select
        | panel.tree.selectionModel().SelectionFlag.Rows)
    text = panel.copy_retrieve_command()
    assert text.startswith(f"dicomdesk move 127.0.0.1 {qrscp.port} --aet DICOMDESK --aec "
                           f"{qrscp.aet} --dest DICOMDESK --level STUDY --model study "
                           "-k StudyInstanceUID=")


def test_a_burst_of_matches_goes_in_by_short_passes_and_the_search_ends_after_the_last(
        window, qtbot):
    import time

    from pydicom import Dataset

    from dicomdesk.net.statuses import Status
    from dicomdesk.operations.query import FindResult
    from dicomdesk.ui.models.results import match_from_dataset

    panel = window.query_panel
    matches = []
    for i in range(3000):
        ds = Dataset()
        ds.PatientName = f"BURST^{i:05d}"
        ds.StudyInstanceUID = f"1.2.3.{i + 1}"
        matches.append(match_from_dataset(ds, "STUDY"))
    passes: list[float] = []
    insert = panel.model.add_studies

    def timed(batch, sort=True):
        start = time.perf_counter()
        insert(batch, sort)
        passes.append(time.perf_counter() - start)

    panel.model.add_studies = timed  # type: ignore[method-assign]
    ended: list[object] = []
    panel.search_finished.connect(ended.append)
    panel._on_studies(matches)
    panel._on_search_finished(FindResult(Status(0x0000), [], None))  # the worker ended first
    assert not ended  # rows are still queued: the search is not over yet
    qtbot.waitUntil(lambda: bool(ended), timeout=20_000)
    assert panel.model.study_count() == 3000
    assert panel.count_label.text() == "3000 studies"
    assert len(passes) > 1 and max(passes) < 0.25  # STUDY_SLICE rows per call, not all at once
