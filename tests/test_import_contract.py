"""The layer rules of ARCHITECTURE.md, checked on the source: who may import what.

* ``dicomdesk/net`` never imports Qt;
* the pure protocol modules (the sans-IO connection ``upperlayer`` among them) import no
  socket, ssl, select, threading, queue or time;
* ``dicomdesk/ui`` opens no socket and imports nothing from ``dicomdesk.net``;
* every package folder is listed in pyproject.toml, so a built wheel ships it.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dicomdesk"

PURE_MODULES = ["pdu", "userdataitems", "fsm", "upperlayer", "dimsemessages", "dimsedecoder",
                "commandset", "statuses", "uids", "exceptions", "negotiation", "dataset_encoding",
                "fragmentation", "state_table", "storage_uids", "part10", "part10_structure"]
IO_MODULES = {"socket", "ssl", "select", "selectors", "threading", "queue", "time", "socketserver"}


def _imports(path: Path) -> set[str]:
    """Top-level names of every module a file imports (absolute or relative)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _py_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("path", _py_files(PACKAGE / "net"), ids=lambda p: str(p.relative_to(ROOT)))
def test_net_never_imports_qt(path):
    assert not [n for n in _imports(path) if n.split(".")[0] in {"PySide6", "PyQt5", "PyQt6", "shiboken6"}]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_protocol_modules_do_no_io(module):
    names = _imports(PACKAGE / "net" / f"{module}.py")
    assert not {n.split(".")[0] for n in names} & IO_MODULES


@pytest.mark.parametrize("path", _py_files(PACKAGE / "ui"), ids=lambda p: str(p.relative_to(ROOT)))
def test_ui_opens_no_socket_and_does_not_reach_into_the_network_stack(path):
    names = _imports(path)
    assert not {n.split(".")[0] for n in names} & {"socket", "ssl", "socketserver", "selectors"}
    assert not [n for n in names if n.startswith(("dicomdesk.net", "..net")) or n == "..net"]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
