"""The address book editor refuses invalid fields at the field and persists to the TOML file."""

from __future__ import annotations

import tomllib

from PySide6.QtCore import Qt

from dicomdesk import config


def _fill(qtbot, panel, name="pacs", aet="PACS", host="127.0.0.1", port="104"):
    panel.new_node()
    for edit, text in ((panel.name_edit, name), (panel.aet_edit, aet),
                       (panel.host_edit, host), (panel.port_edit, port)):
        edit.clear()
        qtbot.keyClicks(edit, text)


def test_ae_title_longer_than_16_characters_is_refused_at_the_field(window, qtbot):
    panel = window.nodes_panel
    panel.new_node()
    qtbot.keyClicks(panel.aet_edit, "ABCDEFGHIJKLMNOPQRS")
    assert panel.aet_edit.text() == "ABCDEFGHIJKLMNOP"
    assert "at most 16 characters" in panel.message.text()


def test_backslash_in_ae_title_is_refused_with_a_reason(window, qtbot):
    panel = window.nodes_panel
    panel.new_node()
    qtbot.keyClicks(panel.aet_edit, "PA\\")
    assert panel.aet_edit.text() == "PA"
    assert "backslash" in panel.message.text()


def test_empty_ae_title_blocks_save_with_a_message(window, qtbot, nodes_path):
    panel = window.nodes_panel
    _fill(qtbot, panel, aet="")
    assert not panel.save_button.isEnabled()
    assert panel.save() is False
    assert "must not be empty" in panel.message.text()
    assert not nodes_path.exists()


def test_port_refuses_letters_and_values_above_65535(window, qtbot):
    panel = window.nodes_panel
    panel.new_node()
    panel.port_edit.clear()
    qtbot.keyClicks(panel.port_edit, "1x04")
    assert panel.port_edit.text() == "104"
    panel.port_edit.clear()
    qtbot.keyClicks(panel.port_edit, "655359")
    assert panel.port_edit.text() == "65535"
    assert "at most 65535" in panel.message.text()


def test_port_zero_is_not_accepted(window, qtbot):
    panel = window.nodes_panel
    _fill(qtbot, panel, port="0")
    assert not panel.port_edit.hasAcceptableInput()
    assert panel.save() is False
    assert "at least 1" in panel.message.text()


def test_saved_node_is_written_to_toml_and_read_back(window, qtbot, nodes_path):
    panel = window.nodes_panel
    _fill(qtbot, panel, name="archive", aet="ARCHIVE", host="10.0.0.5", port="11112")
    panel.retrieve_combo.setCurrentIndex(panel.retrieve_combo.findData("get"))
    assert panel.save() is True
    document = tomllib.loads(nodes_path.read_text())
    assert document["node"][0]["aet"] == "ARCHIVE"
    assert config.load_nodes(nodes_path) == [
        config.Node("archive", "ARCHIVE", "10.0.0.5", 11112, retrieve="get")]
    # other panels follow the address book
    assert window.send_panel.node_picker.currentData() == "archive"
    assert window.echo_panel.row_of("archive") == 0


def test_edit_duplicate_and_delete_rewrite_the_file(window, qtbot, nodes_path):
    panel = window.nodes_panel
    _fill(qtbot, panel, name="a", aet="AAA")
    assert panel.save()
    panel.duplicate()
    assert [n.name for n in config.load_nodes(nodes_path)] == ["a", "a (2)"]
    panel.aet_edit.clear()
    qtbot.keyClicks(panel.aet_edit, "BBB")
    assert panel.save()
    assert [(n.name, n.aet) for n in config.load_nodes(nodes_path)] == [("a", "AAA"),
                                                                        ("a (2)", "BBB")]
    panel.delete(confirm=False)
    assert [n.name for n in config.load_nodes(nodes_path)] == ["a"]
    assert panel.list.count() == 1


def test_duplicate_name_is_refused(window, qtbot):
    panel = window.nodes_panel
    _fill(qtbot, panel, name="same", aet="ONE")
    assert panel.save()
    _fill(qtbot, panel, name="same", aet="TWO")
    assert panel.save() is False
    assert "already exists" in panel.message.text()


def test_address_book_is_loaded_when_the_window_opens(make_window, nodes_path):
    config.save_nodes(nodes_path, [config.Node("x", "XAE", "localhost", 4242)])
    window = make_window()
    item = window.nodes_panel.list.item(0)
    assert item.data(Qt.ItemDataRole.UserRole) == "x"
    assert window.nodes_panel.aet_edit.text() == "XAE"
