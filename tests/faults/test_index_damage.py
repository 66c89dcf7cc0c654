"""A damaged index never stops ``dicomdesk serve`` from starting (real process, real files).

The index is a cache of the archive's folder: when SQLite says it is not a database, or
that its pages are malformed, the server keeps it aside, starts with an empty one and fills
it from the files (the reconciliation scan), so every object on disk is findable again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))

from serving import LOCALHOST, ServeProcess, make_dataset, store_status, wait_until  # noqa: E402

from dicomdesk.operations import Peer, find  # noqa: E402

pytestmark = pytest.mark.interop

STUDY = "1.2.826.0.1.3680043.8.498.120"


def _garbage_header(index: Path) -> None:
    data = bytearray(index.read_bytes())
    data[:100] = b"X" * 100
    index.write_bytes(data)


def _damaged_pages(index: Path) -> None:
    data = bytearray(index.read_bytes())
    for page in range(4096, len(data), 4096):
        data[page + 100:page + 400] = b"\xff" * 300
    index.write_bytes(data)


def _study_found(port: int) -> bool:
    result = find(Peer(LOCALHOST, port, "DICOMDESK", timeout=10), "STUDY", {"StudyInstanceUID": STUDY})
    return result.error is None and len(result.matches) == 1


@pytest.mark.parametrize("damage", [_garbage_header, _damaged_pages], ids=["not-a-database", "malformed"])
def test_a_damaged_index_is_set_aside_and_rebuilt_from_the_files(tmp_path, damage):
    storage = tmp_path / "storage"
    with ServeProcess(storage) as server:
        for n in range(3):
            assert store_status(server.port, make_dataset(f"{STUDY}.{n}", study=STUDY)) == 0
    damage(storage / "index.sqlite3")
    with ServeProcess(storage) as server:  # raises if it does not start
        assert wait_until(lambda: _study_found(server.port), timeout=30), server.log()[-2000:]
        assert store_status(server.port, make_dataset(f"{STUDY}.9", study=STUDY)) == 0
        result = find(Peer(LOCALHOST, server.port, "DICOMDESK", timeout=10), "IMAGE",
                      {"StudyInstanceUID": STUDY, "SeriesInstanceUID": "1.2.3.4.5", "SOPInstanceUID": ""})
        assert sorted(str(m.SOPInstanceUID) for m in result.matches) == [
            f"{STUDY}.{n}" for n in (0, 1, 2, 9)]
        assert "damaged" in server.log()
    assert list(storage.glob("index.sqlite3.damaged-*")), "the damaged index was not kept"
