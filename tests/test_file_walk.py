"""The folder walk of ``scan_paths``: every file once, however it is reached (files.py _walk
resolves each folder once and only links by name)."""

from __future__ import annotations

import os

from dicomdesk.operations.files import scan_paths


def test_a_file_reached_twice_through_links_is_listed_once(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.dcm").write_bytes(b"not dicom a")
    (data / "sub" / "b.dcm").write_bytes(b"not dicom b")
    os.symlink(data / "a.dcm", data / "link-to-a.dcm")       # a file link in the walked folder
    os.symlink(data / "sub", tmp_path / "sub-link")            # a folder link given as a path
    for details in (True, False):
        infos = scan_paths([data, tmp_path / "sub-link", data / "a.dcm"], details=details)
        paths = sorted(str(i.path.relative_to(data.resolve())) for i in infos)
        assert paths == ["a.dcm", "sub/b.dcm"]
        assert all(not i.is_dicom and i.reason == "not a DICOM file" for i in infos)
