"""Send panel changes in flight (issue 15): "De-identify", "Edit tags…" and files sent
decompressed, driven through the real widgets against real peers (storescp, pynetdicom)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pydicom.data
import pytest
from PySide6.QtWidgets import QDialogButtonBox

from dicomdesk import config
from peers import DcmtkProcess
from test_send_panel import _drop_and_wait


def read_quietly(path):
    return pydicom.dcmread(path, force=True)

pytestmark = [pytest.mark.gui, pytest.mark.interop]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "to send"
    out.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(pydicom.data.get_testdata_file(name), out / name)
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _send(panel, qtbot):
    with qtbot.waitSignal(panel.send_finished, timeout=60_000) as blocker:
        panel.send_button.click()
    return blocker.args[0]


def test_deidentify_checkbox_sends_deidentified_copies(window, qtbot, folder, dcmtk_storescp):
    window.book.replace_all([config.Node("scp", "STORESCP", "127.0.0.1", dcmtk_storescp.port)])
    before = _digest(folder)
    panel = _drop_and_wait(window, qtbot, [folder])
    panel.deidentify_check.click()
    assert panel.deidentify_check.isChecked()
    result = _send(panel, qtbot)
    assert (result.stored, result.failed) == (2, 0), result
    originals = {str(read_quietly(p).SOPInstanceUID) for p in folder.iterdir()}
    for path in dcmtk_storescp.output_dir.iterdir():
        ds = read_quietly(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.PatientName == ""
        assert str(ds.SOPInstanceUID) not in originals
    assert _digest(folder) == before


def test_edit_tags_dialog_edits_the_selected_file_only(window, qtbot, folder, dcmtk_storescp):
    window.book.replace_all([config.Node("scp", "STORESCP", "127.0.0.1", dcmtk_storescp.port)])
    before = _digest(folder)
    panel = _drop_and_wait(window, qtbot, [folder])
    ct_row = next(i for i, r in enumerate(panel.model.rows()) if r.path.endswith("CT_small.dcm"))
    panel.table.selectRow(ct_row)
    panel.edit_tags_button.click()
    dialog = panel.edit_dialog
    qtbot.waitUntil(dialog.isVisible)
    assert "1 selected file" in dialog.scope_label.text()
    dialog.set_row(0, "PatientID", "123")
    dialog.set_row(1, "PatientName", "DOE^JOHN")
    # a value that does not fit its VR keeps the dialog open and says why
    bad = dialog.add_row("PatientAge", "45")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert dialog.isVisible()
    assert "does not fit VR AS" in dialog.error_label.text()
    dialog.set_row(bad, "PatientAge", "045Y")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert panel.edits_label.text() == "3 tag edit(s)"
    result = _send(panel, qtbot)
    assert (result.stored, result.failed) == (2, 0), result
    got = {ds.Modality: ds for ds in map(read_quietly, dcmtk_storescp.output_dir.iterdir())}
    assert got["CT"].PatientID == "123" and str(got["CT"].PatientName) == "DOE^JOHN"
    assert got["CT"].PatientAge == "045Y"
    assert got["MR"].PatientID == read_quietly(folder / "MR_small.dcm").PatientID
    assert _digest(folder) == before


def test_files_sent_decompressed_are_named_in_the_panel(window, qtbot, tmp_path):
    out = tmp_path / "plain"
    out.mkdir()
    source = tmp_path / "rle"
    source.mkdir()
    shutil.copy(pydicom.data.get_testdata_file("MR_small_RLE.dcm"), source / "MR_small_RLE.dcm")
    with DcmtkProcess("storescp", "-aet", "PLAIN", "-pm", "-od", out, log_dir=tmp_path / "logs") as scp:
        window.book.replace_all([config.Node("plain", "PLAIN", "127.0.0.1", scp.port)])
        panel = _drop_and_wait(window, qtbot, [source])
        result = _send(panel, qtbot)
        assert (result.stored, result.failed) == (1, 0), result
    (row,) = panel.model.rows()
    assert row.state == "stored"
    assert row.message == "sent decompressed from RLE Lossless"
    assert "1 sent decompressed" in panel.summary.text()
    (received,) = out.iterdir()
    assert read_quietly(received).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"


def test_copy_as_command_carries_deidentify_and_edits(window, qtbot, folder):
    from dicomdesk.transform.edits import parse_edits

    window.book.replace_all([config.Node("scp", "STORESCP", "10.0.0.1", 104)])
    panel = _drop_and_wait(window, qtbot, [folder])
    panel.deidentify_check.click()
    panel.set_edits(parse_edits(["PatientID=123", "PatientName=DOE^JOHN"]))
    assert panel.copy_command() == (
        f"dicomdesk send 10.0.0.1 104 '{folder}' --aet DICOMDESK --aec STORESCP "
        "--deidentify basic --set PatientID=123 --set 'PatientName=DOE^JOHN'")
