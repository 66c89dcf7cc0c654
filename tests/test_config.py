"""The address book and local AE settings: parsing, validation messages, atomic saving."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomdesk.config import (
    ConfigError,
    Node,
    ServerSettings,
    TLSSettings,
    default_config_dir,
    default_data_dir,
    default_nodes_path,
    default_storage_dir,
    find_node,
    load_nodes,
    load_server_settings,
    resolve_peer,
    save_nodes,
    validate_ae_title,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- AE titles


@pytest.mark.parametrize(
    ("value", "expected"),
    [("PACS", "PACS"), ("  PACS ", "PACS"), ("A" * 16, "A" * 16), ("MY AE-1_x.", "MY AE-1_x.")],
)
def test_validate_ae_title_accepts_and_strips_non_significant_spaces(value, expected):
    assert validate_ae_title(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        ("    ", "must not be all spaces"),
        ("A" * 17, "is longer than 16 characters"),
        ("BAD\\AE", "must not contain a backslash"),
        ("BAD\tAE", "must not contain control characters"),
        ("BAD\x1bAE", "must not contain control characters"),
        ("ÄE", "default character repertoire"),
        (104, "must be text"),
    ],
)
def test_validate_ae_title_refuses_with_a_reason(value, message):
    with pytest.raises(ConfigError, match=message):
        validate_ae_title(value)


# ----------------------------------------------------------------------------- Node values


def test_node_refuses_out_of_range_port_and_unknown_retrieve_method():
    with pytest.raises(ConfigError, match="port 70000 is out of range 1-65535"):
        Node("pacs", "PACS", "localhost", 70000)
    with pytest.raises(ConfigError, match="port 0 is out of range 1-65535"):
        Node("pacs", "PACS", "localhost", 0)
    with pytest.raises(ConfigError, match="retrieve 'fetch' must be 'move' or 'get'"):
        Node("pacs", "PACS", "localhost", 104, retrieve="fetch")


def test_node_refuses_password_without_username_and_tls_key_without_cert():
    with pytest.raises(ConfigError, match="password is given without username"):
        Node("pacs", "PACS", "localhost", 104, password="x")
    with pytest.raises(ConfigError, match="tls.key is given without tls.cert"):
        TLSSettings(key=Path("k.pem"))


def test_node_is_frozen():
    node = Node("pacs", "PACS", "localhost", 104)
    with pytest.raises(AttributeError):
        node.port = 11112  # type: ignore[misc]


# ----------------------------------------------------------------------------- load_nodes


def test_load_nodes_of_a_missing_file_is_an_empty_address_book(tmp_path):
    assert load_nodes(tmp_path / "nodes.toml") == []


def test_load_nodes_reads_all_fields_and_defaults_name_to_ae_title(tmp_path):
    path = write(
        tmp_path / "nodes.toml",
        """
[[node]]
aet = "ORTHANC"
host = "127.0.0.1"
port = 4242

[[node]]
name = "pacs"
aet = "PACS"
host = "pacs.example.org"
port = 104
description = "Main archive"
retrieve = "get"
username = "alice"
password = "secret"
[node.tls]
ca = "ca.pem"
cert = "/etc/me.pem"
key = "me.key"
""",
    )
    orthanc, pacs = load_nodes(path)
    assert orthanc == Node("ORTHANC", "ORTHANC", "127.0.0.1", 4242)
    assert pacs == Node(
        "pacs",
        "PACS",
        "pacs.example.org",
        104,
        description="Main archive",
        tls=TLSSettings(cert=Path("/etc/me.pem"), key=tmp_path / "me.key", ca=tmp_path / "ca.pem"),
        username="alice",
        password="secret",
        retrieve="get",
    )


def test_load_nodes_names_file_node_and_field_for_an_out_of_range_port(tmp_path):
    path = write(
        tmp_path / "nodes.toml",
        '[[node]]\naet = "A"\nhost = "h"\nport = 1\n\n'
        '[[node]]\nname = "pacs"\naet = "PACS"\nhost = "h"\nport = 70000\n',
    )
    with pytest.raises(ConfigError) as info:
        load_nodes(path)
    assert str(info.value) == f"{path}: node 2 ('pacs'): port 70000 is out of range 1-65535"
    assert info.value.field == "port"
    assert info.value.path == path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('aet = "PACS"\nport = 104', "node 1 ('PACS'): host is required"),
        ('aet = "PACS"\nhost = "h"', "node 1 ('PACS'): port is required"),
        ('host = "h"\nport = 104', "node 1: aet is required"),
        ('aet = "PACS"\nhost = "h"\nport = "104"', "port must be a whole number, got '104'"),
        ('aet = "PACS"\nhost = "h"\nport = 104\nprot = 1', "unknown field 'prot'"),
        ('aet = "A\\\\B"\nhost = "h"\nport = 104', "must not contain a backslash"),
        ('aet = "PACS"\nhost = "h"\nport = 104\nretrieve = "x"', "retrieve 'x' must be"),
        ('aet = "PACS"\nhost = ""\nport = 104', "host must not be empty"),
        ('aet = "PACS"\nhost = "h"\nport = 104\ntls = 1', "tls must be a table"),
        (
            'aet = "PACS"\nhost = "h"\nport = 104\n[node.tls]\npem = "x"',
            "unknown field 'tls.pem'",
        ),
    ],
)
def test_load_nodes_refuses_bad_fields_with_the_node_and_field(tmp_path, body, message):
    path = write(tmp_path / "nodes.toml", f"[[node]]\n{body}\n")
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_nodes(path)
    assert str(info.value).startswith(f"{path}: node 1")


def test_load_nodes_reports_the_line_of_a_toml_syntax_error(tmp_path):
    path = write(tmp_path / "nodes.toml", '[[node]]\naet = "PACS"\nhost = h\nport = 104\n')
    with pytest.raises(ConfigError, match=r"line 3, column \d+: invalid TOML") as info:
        load_nodes(path)
    assert str(info.value).startswith(str(path))
    assert info.value.line == 3


def test_load_nodes_refuses_duplicate_names_ignoring_case(tmp_path):
    path = write(
        tmp_path / "nodes.toml",
        '[[node]]\nname = "pacs"\naet = "A"\nhost = "h"\nport = 1\n'
        '[[node]]\nname = "PACS"\naet = "B"\nhost = "h"\nport = 2\n',
    )
    with pytest.raises(ConfigError, match="node 2 \\('PACS'\\): name 'PACS' is already used by node 1"):
        load_nodes(path)


def test_load_nodes_refuses_node_that_is_not_an_array_of_tables(tmp_path):
    path = write(tmp_path / "nodes.toml", 'node = "pacs"\n')
    with pytest.raises(ConfigError, match=r"'node' must be an array of tables"):
        load_nodes(path)


def test_load_nodes_refuses_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "nodes.toml"
    path.write_bytes(b'[[node]]\naet = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_nodes(path)


# ----------------------------------------------------------------------------- save_nodes


def test_save_then_load_round_trips_every_field(tmp_path):
    folder = tmp_path / "conf"
    nodes = [
        Node("orthanc", "ORTHANC", "127.0.0.1", 4242),
        Node(
            "pacs",
            "PACS",
            "pacs.example.org",
            104,
            description="Main archive",
            tls=TLSSettings(cert=folder / "me.pem", key=folder / "me.key", ca=Path("/ca.pem")),
            username="alice",
            password="",
            retrieve="get",
        ),
    ]
    path = folder / "nodes.toml"
    save_nodes(path, nodes)
    assert load_nodes(path) == nodes
    assert 'cert = "me.pem"' in path.read_text()  # paths inside the folder stay relative


def test_save_nodes_refuses_duplicate_names_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "nodes.toml"
    save_nodes(path, [Node("pacs", "PACS", "h", 104)])
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="node name 'Pacs' is used twice"):
        save_nodes(path, [Node("pacs", "A", "h", 1), Node("Pacs", "B", "h", 2)])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["nodes.toml"]


def test_save_nodes_leaves_no_temp_file_and_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "nodes.toml"
    save_nodes(path, [Node("pacs", "PACS", "h", 104)])
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="not a Node"):
        save_nodes(path, [Node("a", "A", "h", 1), "not a node"])  # type: ignore[list-item]
    # A rename onto a directory fails after the temp file was written: it must be removed.
    target = tmp_path / "folder.toml"
    target.mkdir()
    with pytest.raises(OSError):
        save_nodes(target, [Node("a", "A", "h", 1)])
    assert sorted(os.listdir(tmp_path)) == ["folder.toml", "nodes.toml"]
    assert path.read_bytes() == before


def test_save_nodes_replaces_the_file_in_one_rename(tmp_path):
    path = tmp_path / "nodes.toml"
    save_nodes(path, [Node("a", "A", "h", 1)])
    inode = path.stat().st_ino
    save_nodes(path, [Node("b", "B", "h", 2)])
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert [n.name for n in load_nodes(path)] == ["b"]


ae_titles = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\"),
    min_size=1,
    max_size=16,
).map(lambda s: s.strip(" ")).filter(bool)
free_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF), max_size=20)
nodes_strategy = st.builds(
    Node,
    name=ae_titles,
    aet=ae_titles,
    host=st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
    port=st.integers(1, 65535),
    description=free_text,
    retrieve=st.sampled_from(["move", "get"]),
)


@settings(max_examples=50, deadline=None)
@given(nodes=st.lists(nodes_strategy, max_size=4, unique_by=lambda n: n.name.casefold()))
def test_any_valid_address_book_round_trips(tmp_path_factory, nodes):
    path = tmp_path_factory.mktemp("book") / "nodes.toml"
    save_nodes(path, nodes)
    assert load_nodes(path) == nodes


# ----------------------------------------------------------------------------- lookup


def test_find_node_prefers_exact_name_then_ignores_case():
    nodes = [Node("pacs", "A", "h", 1), Node("PACS2", "B", "h", 2)]
    assert find_node(nodes, "pacs").aet == "A"
    assert find_node(nodes, "pacs2").aet == "B"
    assert find_node(nodes, "nope") is None


def test_resolve_peer_takes_host_and_port_or_a_node_name():
    nodes = [Node("pacs", "PACS", "pacs.example.org", 104)]
    assert resolve_peer("10.0.0.1", "11112", nodes) == ("10.0.0.1", 11112, None)
    assert resolve_peer("pacs", None, nodes) == ("pacs.example.org", 104, "PACS")
    with pytest.raises(ConfigError, match="'pax' is not a known node .*one of: pacs"):
        resolve_peer("pax", None, nodes)
    with pytest.raises(ConfigError, match="port 99999 is out of range"):
        resolve_peer("host", "99999", nodes)
    with pytest.raises(ConfigError, match="port must be a whole number, got 'http'"):
        resolve_peer("host", "http", nodes)


# ----------------------------------------------------------------------------- folders and server


def test_default_folders_follow_the_xdg_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_config_dir() == tmp_path / "cfg" / "dicomdesk"
    assert default_nodes_path() == tmp_path / "cfg" / "dicomdesk" / "nodes.toml"
    assert default_data_dir() == tmp_path / "data" / "dicomdesk"
    assert default_storage_dir() == tmp_path / "data" / "dicomdesk" / "archive"


def test_server_settings_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    s = ServerSettings()
    assert (s.aet, s.port, s.bind, s.storage_dir) == (
        "DICOMDESK",
        11112,
        "127.0.0.1",
        tmp_path / "dicomdesk" / "archive",
    )
    assert (s.max_associations, s.max_pdu_length, s.durable) == (32, 1048576, True)
    assert (s.acse_timeout, s.dimse_timeout, s.network_timeout) == (30.0, 60.0, 60.0)
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aet": "X" * 17}, "longer than 16"),
        ({"port": 65536}, "port 65536 is out of range 0-65535"),
        ({"max_associations": 0}, "max_associations 0 is out of range"),
        ({"max_pdu_length": 100}, "must be 0 \\(no limit\\) or at least 1024"),
        ({"acse_timeout": 0}, "acse_timeout 0 must be a positive number"),
        ({"dimse_timeout": "1"}, "dimse_timeout must be a number of seconds"),
        ({"durable": 1}, "durable must be true or false"),
    ],
)
def test_server_settings_refuse_bad_values(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ServerSettings(storage_dir=tmp_path, **kwargs)


def test_server_settings_accept_port_zero_so_the_os_picks_one(tmp_path):
    assert ServerSettings(port=0, storage_dir=tmp_path).port == 0


def test_load_server_settings_reads_the_server_table(tmp_path):
    path = write(
        tmp_path / "settings.toml",
        '[server]\naet = "ME"\nport = 4000\nstorage_dir = "store"\ndurable = false\n',
    )
    s = load_server_settings(path)
    assert (s.aet, s.port, s.storage_dir, s.durable) == ("ME", 4000, tmp_path / "store", False)
    assert load_server_settings(tmp_path / "missing.toml").aet == "DICOMDESK"
    write(path, '[server]\nport = -1\n')
    with pytest.raises(ConfigError, match=f"{path}: server: port -1 is out of range"):
        load_server_settings(path)
