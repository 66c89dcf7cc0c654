"""Regression guards (no timings) for what the archive does per received object (issue 13).

* Free space is measured once per ``FREE_SPACE_CHECK_BYTES`` received (or a quarter of the
  room the last measurement found), not once per object: ``statvfs`` calls are counted.
  Near a full disk the budget shrinks to every object (``tests/faults/test_disk_full.py``).
* The temp-file pool's helper thread is woken once per 16 objects taken, not per object.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from dicomdesk.archive import Archive
from dicomdesk.archive import admission as admission_module
from dicomdesk.archive import incoming as incoming_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_store import SERIES, part10_bytes, receive  # noqa: E402


@pytest.fixture
def archive(tmp_path: Path):
    with Archive(tmp_path / "archive", durable=False) as arc:
        yield arc


def test_free_space_is_measured_once_per_budget_not_once_per_object(archive, monkeypatch):
    calls = []
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda path: calls.append(path) or real(path))
    for i in range(40):
        receive(archive, part10_bytes(f"{SERIES}.{i + 1}"), fragment=4096)
    assert archive.count() == 40
    assert len(calls) == 1  # the first commit measures; 40 small objects fit the budget


def test_free_space_is_measured_again_once_the_budget_is_received(archive, monkeypatch):
    data = [part10_bytes(f"{SERIES}.{i + 11}") for i in range(12)]
    size = len(data[0])
    assert {len(d) for d in data} == {size}
    monkeypatch.setattr(admission_module, "FREE_SPACE_CHECK_BYTES", 2 * size)
    calls = []
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda path: calls.append(path) or real(path))
    for d in data:
        receive(archive, d, fragment=4096)
    assert len(calls) == 6  # objects 1, 3, 5, 7, 9, 11: each time two objects' bytes came


def test_the_temp_file_helper_wakes_once_per_sixteen_objects(archive):
    incoming = [archive.open_incoming() for _ in range(96)]
    pool = archive.incoming._pool
    assert pool is not None and pool._usable
    for item in incoming:
        archive.discard_incoming(item)
    assert pool.wakeups <= 96 // incoming_module._TempFilePool.LOW + 1
