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


# ----------------------------------------------------------------------------- TLS, identity
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A throw-away CA with a server and a client certificate (made with openssl)."""
    folder = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=dicomdesk test CA", cwd=folder)
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", cwd=folder)
    return folder


@pytest.fixture
def tls_server(pki):
    """A Verification SCP that speaks only TLS and requires a client certificate from our CA."""
    from dicomdesk.net import tls
    from dicomdesk.net.applicationentity import AE
    from dicomdesk.net.sopclass import verification_scp

    context = tls.server_context(pki / "server.pem", pki / "server.key", pki / "ca.pem")
    with AE("SECURE", 0, ssl_context=context).add_scp(verification_scp) as ae:
        yield ae


def _fill_tls(panel, cert="", key="", ca=""):
    panel.tls_group.setChecked(True)
    panel.tls_cert_edit.setText(str(cert))
    panel.tls_key_edit.setText(str(key))
    panel.tls_ca_edit.setText(str(ca))


def test_tls_files_and_user_identity_are_saved_to_the_toml_file(window, qtbot, nodes_path, pki):
    panel = window.nodes_panel
    _fill(qtbot, panel, name="secure", aet="SECURE", port="2762")
    qtbot.keyClicks(panel.username_edit, "alice")
    qtbot.keyClicks(panel.password_edit, "s3cret")
    _fill_tls(panel, pki / "client.pem", pki / "client.key", pki / "ca.pem")
    assert panel.save() is True
    table = tomllib.loads(nodes_path.read_text())["node"][0]
    assert table["username"] == "alice" and table["password"] == "s3cret"
    assert table["tls"] == {"cert": str(pki / "client.pem"), "key": str(pki / "client.key"),
                            "ca": str(pki / "ca.pem")}
    (node,) = config.load_nodes(nodes_path)
    assert node.tls == config.TLSSettings(pki / "client.pem", pki / "client.key", pki / "ca.pem")
    # reloading the form shows the saved files; unticking TLS saves a plain node
    window.nodes_panel._select("secure")
    assert panel.tls_group.isChecked() and panel.tls_ca_edit.text() == str(pki / "ca.pem")
    panel.tls_group.setChecked(False)
    assert panel.save() is True
    assert config.load_nodes(nodes_path)[0].tls is None
    assert "tls" not in tomllib.loads(nodes_path.read_text())["node"][0]


def test_tls_key_without_certificate_or_missing_file_is_refused_with_a_reason(window, qtbot,
                                                                              pki, nodes_path):
    panel = window.nodes_panel
    _fill(qtbot, panel, name="secure", aet="SECURE")
    _fill_tls(panel, key=pki / "client.key")
    assert "needs its certificate" in panel.message.text()
    assert not panel.save_button.isEnabled()
    assert panel.save() is False
    _fill_tls(panel, cert=pki / "missing.pem")
    assert "does not exist" in panel.message.text()
    assert panel.save() is False
    assert not nodes_path.exists()


def test_echo_uses_the_node_tls_files(window, qtbot, pki, tls_server):
    panel = window.nodes_panel
    _fill(qtbot, panel, name="secure", aet="SECURE", port=str(tls_server.port))
    _fill_tls(panel, pki / "client.pem", pki / "client.key", pki / "ca.pem")
    assert panel.save()
    with qtbot.waitSignal(panel.echo().signals.done, timeout=20_000):
        pass
    assert "answered the echo" in panel.message.text(), panel.message.text()
    # the Echo panel uses the same address book entry, TLS included
    echo_panel = window.echo_panel
    with qtbot.waitSignal(echo_panel.echo("secure").signals.done, timeout=20_000):
        pass
    assert echo_panel.state_text("secure") == "● OK", echo_panel.message_text("secure")


def test_echo_over_plain_tcp_to_a_tls_node_fails_with_a_sentence(window, qtbot, tls_server):
    panel = window.nodes_panel
    _fill(qtbot, panel, name="secure", aet="SECURE", port=str(tls_server.port))
    assert panel.save()
    with qtbot.waitSignal(panel.echo().signals.done, timeout=20_000):
        pass
    assert "TLS" in panel.message.text()
    assert panel.message.property("kind") == "error"
