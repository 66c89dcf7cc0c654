"""The results tree model: batches of matches, lazy children on expand, numeric sorting."""

from __future__ import annotations

from pydicom import Dataset
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtTest import QAbstractItemModelTester

from dicomdesk.ui.models.results import SORT_ROLE, QueryResultsModel, match_from_dataset


def _study(uid, name, date="20240101"):
    ds = Dataset()
    ds.PatientName = name
    ds.PatientID = "ID" + uid
    ds.StudyDate = date
    ds.StudyInstanceUID = uid
    ds.NumberOfStudyRelatedInstances = "3"
    return match_from_dataset(ds, "STUDY")


def _series(study_uid, uid, number):
    ds = Dataset()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = uid
    ds.SeriesNumber = number
    ds.Modality = "CT"
    return match_from_dataset(ds, "SERIES")


def test_model_passes_qt_consistency_checks_while_rows_arrive(qapp):
    model = QueryResultsModel()
    tester = QAbstractItemModelTester(
        model, QAbstractItemModelTester.FailureReportingMode.Fatal)
    requested: list[tuple] = []
    model.children_requested.connect(lambda kind, key, match: requested.append(key))
    model.add_studies([_study("1.1", "B^X"), _study("1.2", "A^Y")])
    # children arrive later, from a worker: answer the requests outside the tester's checks
    for key in requested:
        model.add_children(key, [_series(key[0], key[0] + ".5", "5")])
        model.finish_children(key)
    model.add_studies([_study("1.3", "C^Z")])
    model.finish_children(("1.2",))
    assert model.study_count() == 3
    del tester


def test_children_are_requested_once_when_a_study_is_expanded(qapp):
    model = QueryResultsModel()
    model.add_studies([_study("1.1", "B^X"), _study("1.2", "A^Y")])
    model.add_studies([_study("1.2", "A^Y"), _study("1.3", "C^Z")])  # duplicate dropped
    assert model.study_count() == 3
    requested = []
    model.children_requested.connect(lambda kind, key, match: requested.append((kind, key)))
    first = model.index(0, 0)
    assert model.hasChildren(first) and model.canFetchMore(first)
    model.fetchMore(first)
    assert requested == [("study", ("1.1",))]
    assert not model.canFetchMore(first)
    model.add_children(("1.1",), [_series("1.1", "1.1.1", "2"), _series("1.1", "1.1.2", "10")])
    model.finish_children(("1.1",))
    assert model.rowCount(first) == 2
    assert model.index(0, 0, first).data() == "Series 2"
    assert model.parent(model.index(1, 0, first)) == first
    second = model.index(1, 0)
    model.fetchMore(second)
    model.finish_children(("1.2",))
    assert not model.hasChildren(second)


def test_proxy_sorts_series_numerically_and_dates_as_text(qapp):
    model = QueryResultsModel()
    proxy = QSortFilterProxyModel()
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    proxy.setDynamicSortFilter(True)
    proxy.sort(0, Qt.SortOrder.AscendingOrder)
    model.add_studies([_study("1.1", "B^X")])
    model.fetchMore(model.index(0, 0))
    model.add_children(("1.1",), [_series("1.1", "1.1.8", "10"), _series("1.1", "1.1.9", "9")])
    parent = proxy.index(0, 0)
    assert [proxy.index(r, 0, parent).data() for r in range(2)] == ["Series 9", "Series 10"]
    model.add_studies([_study("1.0", "A^W")])  # arrives after the sort, lands in place
    assert proxy.index(0, 0).data() == "A W"
    assert proxy.index(0, 0, QModelIndex()).siblingAtColumn(2).data() == "2024-01-01"


def test_model_sorts_itself_and_rows_arriving_later_land_in_place(qapp):
    model = QueryResultsModel()
    tester = QAbstractItemModelTester(
        model, QAbstractItemModelTester.FailureReportingMode.Fatal)
    model.add_studies([_study("1.1", "B^X", "20240102"), _study("1.2", "D^Y", "20240104")])
    model.sort(2, Qt.SortOrder.DescendingOrder)
    assert [model.index(r, 2).data() for r in range(2)] == ["2024-01-04", "2024-01-02"]
    kept = QPersistentModelIndex(model.index(1, 0))  # e.g. the selection: follows its row
    model.add_studies([_study("1.3", "A^Z", "20240103")])  # small batch: binary search
    assert [model.index(r, 2).data() for r in range(3)] == ["2024-01-04", "2024-01-03",
                                                            "2024-01-02"]
    assert kept.row() == 2 and kept.data().startswith("B X")
    batch = [_study(f"2.{i}", f"N^{i}", f"2023{1 + i % 12:02d}01") for i in range(100)]
    model.add_studies(batch)  # big batch: appended, then one re-sort
    dates = [model.index(r, 2).data() for r in range(model.rowCount())]
    assert dates == sorted(dates, reverse=True) and len(dates) == 103
    assert kept.data().startswith("B X") and model.index(kept.row(), 0).data().startswith("B X")
    model.sort(0, Qt.SortOrder.AscendingOrder)
    assert model.index(0, 0).data().startswith("A Z")
    del tester


def test_result_cells_are_read_only_selectable_and_keep_no_python_wrappers(qapp):
    import gc

    from PySide6.QtGui import QStandardItem

    def wrappers() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is QStandardItem)

    model = QueryResultsModel()
    before = wrappers()
    model.add_studies([_study(f"1.{i}", f"P^{i}") for i in range(50)])
    # the model makes its cells in C++: no Python wrapper stays alive for them
    assert wrappers() == before
    cell = model.index(3, 1)
    flags = model.flags(cell)
    assert flags & Qt.ItemFlag.ItemIsSelectable and flags & Qt.ItemFlag.ItemIsEnabled
    assert not flags & Qt.ItemFlag.ItemIsEditable
    assert cell.data(SORT_ROLE) == cell.data().lower()
    assert model.index(3, 6).data(SORT_ROLE) == 3  # the count column sorts as a number
    assert model.hasChildren(model.index(3, 0))  # an expander before the series are fetched
    assert model.rowCount(model.index(3, 0)) == 1


def test_marking_few_or_many_studies_local_marks_exactly_those_rows(qapp):
    from dicomdesk.ui.models.results import LOCAL_ROLE

    model = QueryResultsModel()
    model.add_studies([_study(f"1.{i}", f"P^{i}") for i in range(40)])
    model.sort(1, Qt.SortOrder.DescendingOrder)  # rows no longer in arrival order
    model.mark_local(["1.3"])  # one row: looked up by its key
    model.mark_local([f"1.{i}" for i in range(10, 35)])  # many rows: one pass over the tree
    marked = {model.index(r, 0).data(Qt.ItemDataRole.UserRole + 3)
              for r in range(model.rowCount()) if model.index(r, 5).data(LOCAL_ROLE)}
    assert marked == {"1.3"} | {f"1.{i}" for i in range(10, 35)}
    assert sorted(model.local_rows()) == sorted(marked)
    assert model.index(0, 0).data(Qt.ItemDataRole.ToolTipRole) in (None, "Present in the local archive")
