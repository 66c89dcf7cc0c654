"""Fixtures shared by the whole suite: real DICOM peers (see tests/peers.py) and test files."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom.data
import pytest

from peers import (
    DcmtkProcess,
    PynetdicomSCP,
    start_dcmqrscp,
    start_pynetdicom_scp,
    start_storescp,
    start_wlmscpfs,
)
from peers import fix_pynetdicom_reactor_pause

# pynetdicom 3.0's reactor can take the response a send_*() waits for (peers.ReactorCheckpoint):
# every pynetdicom association of the session gets a pause that holds.
fix_pynetdicom_reactor_pause()

# Qt widgets in tests never need a display (scripts/test sets this too).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Tests never read or write the user's own address book, settings or archive: the platform
# folders (platformdirs follows XDG on Linux) point into a throw-away home for the session.
_TEST_HOME = Path(tempfile.mkdtemp(prefix="dicomdesk-tests-"))
for _name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
    os.environ[_name] = str(_TEST_HOME / _name.lower())
atexit.register(shutil.rmtree, _TEST_HOME, ignore_errors=True)


@pytest.fixture
def dcmtk_storescp(tmp_path: Path) -> Iterator[DcmtkProcess]:
    """A running DCMTK storescp (AE title STORESCP) accepting every storage class and
    transfer syntax; received files go to ``.output_dir`` (tmp_path/"storescp")."""
    proc = start_storescp(tmp_path)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def dcmtk_dcmqrscp(tmp_path: Path) -> Iterator[Callable[..., DcmtkProcess]]:
    """A factory: ``dcmtk_dcmqrscp(aet="DCMQRSCP", peers={"DEST": ("127.0.0.1", port)})``
    starts a dcmqrscp in tmp_path/"dcmqrscp-<n>"; every one is stopped at teardown."""
    started: list[DcmtkProcess] = []

    def start(*extra: str, aet: str = "DCMQRSCP", peers: dict[str, tuple[str, int]] | None = None):
        proc = start_dcmqrscp(tmp_path / f"dcmqrscp-{len(started)}", *extra, aet=aet, peers=peers)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
def dcmtk_wlmscpfs(tmp_path: Path) -> Iterator[DcmtkProcess]:
    """A running DCMTK worklist SCP (AE title WLMSCP) over an empty ``.worklist_dir``."""
    proc = start_wlmscpfs(tmp_path / "wlmscpfs", "-v")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def pynetdicom_scp() -> Iterator[Callable[..., PynetdicomSCP]]:
    """A factory: ``pynetdicom_scp(contexts, handlers, ae_title=..., **ae_attributes)`` starts
    a pynetdicom SCP in-thread on 127.0.0.1 (``.port``); all are shut down at teardown."""
    started: list[PynetdicomSCP] = []

    def start(*args: Any, **kwargs: Any) -> PynetdicomSCP:
        scp = start_pynetdicom_scp(*args, **kwargs)
        started.append(scp)
        return scp

    try:
        yield start
    finally:
        for scp in started:
            scp.stop()


@pytest.fixture(scope="session")
def pydicom_test_files() -> list[Path]:
    """Every file of pydicom's bundled test data, sub-folders included (176 with pydicom 3.0.2).

    get_testdata_files() also returns the sub-folder paths themselves, so only files are kept.
    """
    found = {Path(p) for p in pydicom.data.get_testdata_files()}
    root = Path(pydicom.data.__file__).parent / "test_files"
    found.update(p for p in root.rglob("*"))
    return sorted(p for p in found if p.is_file())


def _openssl(*args: str, cwd: Path) -> None:
    import subprocess

    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    """A throw-away CA with a server and a client certificate, and a "rogue" self-signed
    certificate from no known CA (made with openssl) for the DICOM TLS tests."""
    folder = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=dicomdesk test CA", cwd=folder)
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", cwd=folder)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue.key", "-out", "rogue.pem",
             "-days", "2", "-subj", "/CN=rogue", cwd=folder)
    return folder
