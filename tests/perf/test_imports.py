"""Import guards for ``dicomdesk echo`` start-up (issue 6: a whole ``dicomdesk echo`` process
under 0.5x the wall time of ``python -m pynetdicom echoscu``).

Most of a Python DICOM tool's start-up is importing pydicom (and numpy through
``pydicom.config``), ~250 ms here. A C-ECHO has no data set (PS3.7 9.3.5), so the echo
path — cli → commands/echo → operations/verification → ClientAE + verification_scu →
DUL — must import neither. Each check runs in a fresh interpreter, since this test
process has long imported pydicom.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.peers import dcmtk_env

REPO = Path(__file__).resolve().parents[2]

HEAVY = ("pydicom", "numpy")

CHECK_NOTHING_HEAVY = textwrap.dedent(f"""
    heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})
    assert not heavy, 'imported: ' + ', '.join(heavy[:10])
""")


def run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter with the repository on sys.path."""
    env = dict(dcmtk_env(), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=60)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_echo_command_path_imports_neither_pydicom_nor_numpy():
    assert_ok(run_fresh("import sys\n"
                        "import dicomdesk.operations.verification, dicomdesk.commands.echo, dicomdesk.cli\n"
                        "from dicomdesk.cli import _command_parser\n"
                        "_command_parser('echo')\n" + CHECK_NOTHING_HEAVY))


def test_network_stack_modules_import_without_pydicom():
    assert_ok(run_fresh(textwrap.dedent("""
        import sys
        from dicomdesk.net import (applicationentity, asceprovider, commandset, dimsedecoder,
                                   dimsemessages, dulprovider, statuses, uids)
        from dicomdesk.net.sopclass import (VERIFICATION_SOP_CLASS, SUCCESS, verification_scp,
                                            verification_scu)
        import dicomdesk.net.sopclass as sopclass
        assert sopclass.VERIFICATION_SOP_CLASS == uids.VERIFICATION_SOP_CLASS
        assert 'storage_scp' in dir(sopclass) and 'STORAGE_SOP_CLASSES' in sopclass.__all__
    """) + CHECK_NOTHING_HEAVY))


def test_messages_encode_and_decode_without_pydicom():
    # Build, encode, reassemble and read a C-ECHO exchange: the command set codec alone.
    assert_ok(run_fresh(textwrap.dedent("""
        import sys
        from dicomdesk.net import dimsemessages as dm
        from dicomdesk.net.dimsedecoder import DIMSEDecoder

        class Context:
            id, sop_class, supported_ts = 1, '1.2.840.10008.1.1', '1.2.840.10008.1.2'

        rsp = dm.CEchoRSPMessage()
        rsp.message_id_being_responded_to = 7
        rsp.sop_class_uid = '1.2.840.10008.1.1'
        rsp.status = 0
        decoder = DIMSEDecoder({1: Context()}, (), None)
        done = []
        for p_data in rsp.encode(1, 16):  # several fragments
            done += decoder.process(p_data)
        [(got, pc_id)] = done
        assert type(got) is dm.CEchoRSPMessage and pc_id == 1
        assert got.status.is_success and got.message_id_being_responded_to == 7
        assert got.sop_class_uid == '1.2.840.10008.1.1'
    """) + CHECK_NOTHING_HEAVY))


def test_storage_sop_classes_are_built_on_first_use_without_pydicom():
    # From the copy of pydicom's tables (net/pydicom_tables: it matches the installed pydicom,
    # test_the_copy_of_pydicoms_uid_tables_is_what_the_installed_pydicom_gives).
    assert_ok(run_fresh(textwrap.dedent("""
        import sys
        from dicomdesk.net import uids
        assert 'STORAGE_SOP_CLASSES' not in vars(uids)
        classes = uids.STORAGE_SOP_CLASSES
        assert uids.CT_IMAGE_STORAGE in classes and len(classes) > 100
        assert uids.STORAGE_SOP_CLASSES is classes  # computed once
    """) + CHECK_NOTHING_HEAVY))


@pytest.mark.interop
def test_dicomdesk_echo_against_dcmtk_storescp_never_imports_pydicom(dcmtk_storescp):
    result = run_fresh(textwrap.dedent(f"""
        import sys
        from dicomdesk.cli import main
        rc = main(['echo', '--aec', 'STORESCP', '127.0.0.1', '{dcmtk_storescp.port}'])
        assert rc == 0, rc
    """) + CHECK_NOTHING_HEAVY)
    assert_ok(result)
    assert "Success" in result.stdout


def test_dicomdesk_echo_to_a_closed_port_imports_nothing_heavy():
    # The failure path (connection refused → a sentence) must not pull pydicom in either.
    code = textwrap.dedent("""
        import socket, sys
        s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
        from dicomdesk.cli import main
        assert main(['echo', '--timeout', '5', '127.0.0.1', str(port)]) == 1
    """) + CHECK_NOTHING_HEAVY
    result = run_fresh(code)
    assert_ok(result)
    assert "failed" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ whole commands (issue 13)
# What each command may not load at start-up: the window (PySide6), the archive and its
# SQLite index, the settings (no address book is named), and, for echo and send, pydicom and
# numpy (a C-ECHO has no data set; a plain Part-10 file is sent as it is, its header read with
# struct) and TLS (none asked for; pydicom loads ssl itself, through urllib, for find).
NOT_FOR_ANY_COMMAND = ("PySide6", "sqlite3", "_sqlite3", "dicomdesk.archive", "dicomdesk.ui",
                       "dicomdesk.config", "platformdirs")
NOT_FOR_SEND = NOT_FOR_ANY_COMMAND + HEAVY + ("ssl",)


def check_not_imported(names: tuple[str, ...]) -> str:
    return textwrap.dedent(f"""
        loaded = sorted(m for m in sys.modules
                        if any(m == n or m.startswith(n + '.') for n in {names!r}))
        assert not loaded, 'imported: ' + ', '.join(loaded[:10])
    """)


def _plain_part10_file(folder: Path) -> Path:
    """A small Explicit VR Little Endian CT image with preamble and meta: the common case."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Import^Guard"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.SamplesPerPixel = 16, 1
    ds.PixelData = bytes(32)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.interop
@pytest.mark.parametrize("what", ["file", "folder"])
def test_dicomdesk_send_of_a_plain_file_loads_neither_pydicom_nor_the_archive(dcmtk_storescp, tmp_path, what):
    path = _plain_part10_file(tmp_path / "to-send")
    target = path if what == "file" else path.parent
    result = run_fresh(textwrap.dedent(f"""
        import sys
        from dicomdesk.cli import main
        rc = main(['send', '--aec', 'STORESCP', '127.0.0.1', '{dcmtk_storescp.port}', {str(target)!r}])
        assert rc == 0, rc
    """) + check_not_imported(NOT_FOR_SEND))
    assert_ok(result)
    assert "1 stored" in result.stdout
    assert len(list(dcmtk_storescp.output_dir.iterdir())) == 1


@pytest.mark.interop
def test_dicomdesk_echo_loads_no_tls_archive_or_window(dcmtk_storescp):
    result = run_fresh(textwrap.dedent(f"""
        import sys
        from dicomdesk.cli import main
        assert main(['echo', '--aec', 'STORESCP', '127.0.0.1', '{dcmtk_storescp.port}']) == 0
    """) + check_not_imported(NOT_FOR_SEND))
    assert_ok(result)


@pytest.mark.interop
def test_dicomdesk_find_loads_no_archive_sqlite_tls_or_window(tmp_path):
    from tests.peers import start_dcmqrscp

    proc = start_dcmqrscp(tmp_path / "qr")
    try:
        result = run_fresh(textwrap.dedent(f"""
            import sys
            from dicomdesk.cli import main
            rc = main(['find', '--aec', '{proc.aet}', '--level', 'STUDY', '-k', 'PatientName=*',
                       '-k', 'StudyInstanceUID', '127.0.0.1', '{proc.port}'])
            assert rc == 0, rc
            assert 'pydicom' in sys.modules  # identifiers are pydicom data sets
        """) + check_not_imported(NOT_FOR_ANY_COMMAND))
    finally:
        proc.stop()
    assert_ok(result)
    assert "0 match" in result.stderr


def test_storage_module_imports_without_pydicom_and_builds_its_tables_on_first_use():
    assert_ok(run_fresh(textwrap.dedent("""
        import sys
        from dicomdesk.net.sopclass import storage
        from dicomdesk.operations import files, sending
        assert 'pydicom' not in sys.modules
        classes = storage.storage_scu.sop_classes  # every Storage SOP class: pydicom's table
        assert 'pydicom' not in sys.modules
        assert storage.uids.CT_IMAGE_STORAGE in classes  # read from its copy (pydicom_tables)
        assert list(classes) == list(storage.uids.STORAGE_SOP_CLASSES)
        assert storage.storage_scp.sop_classes == list(storage.uids.STORAGE_SOP_CLASSES)
        assert '1.2.840.10008.1.2.4.50' in storage.STORAGE_SCP_TRANSFER_SYNTAXES
    """) + CHECK_NOTHING_HEAVY))


# ------------------------------------------------------------------ start-up cost (issue 13, round 2)
# Measured with ``python -X importtime`` and whole-process timings (bench/startup.py): each of
# these cost ``dicomdesk echo`` milliseconds before its first byte. ``dataclasses`` loads
# ``inspect``/``ast``/``dis`` and compiled every ``@dataclass``'s methods at import (now
# dicomdesk.net.records); the ``idna`` codec (with ``stringprep`` and ``unicodedata``) came with
# a ``str`` host name given to ``getaddrinfo``; ``pathlib`` (with ``urllib.parse`` and
# ``ipaddress``) with a file option's argparse ``type``. Only what the command itself imports is
# checked: ``site`` and a venv's ``.pth`` hooks run before it and are not dicomdesk's.
NOT_AT_ECHO_START = ("dataclasses", "inspect", "ast", "encodings.idna", "stringprep", "unicodedata",
                     "pathlib")
NOT_AT_SEND_START = ("dataclasses", "inspect", "ast", "encodings.idna", "stringprep", "unicodedata")


def imported_by_command(argv: list[str], names: tuple[str, ...]) -> str:
    """Code that runs ``dicomdesk ARGV`` in-process and fails if it imported any of ``names``
    (or a submodule) that was not already loaded before dicomdesk was."""
    return textwrap.dedent(f"""
        import sys
        before = set(sys.modules)
        from dicomdesk.cli import main
        rc = main({argv!r})
        assert rc == 0, rc
        loaded = sorted(m for m in set(sys.modules) - before
                        if any(m == n or m.startswith(n + '.') for n in {names!r}))
        assert not loaded, 'imported: ' + ', '.join(loaded[:10])
    """)


@pytest.mark.interop
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_dicomdesk_echo_imports_no_dataclasses_idna_or_pathlib(dcmtk_storescp, host):
    result = run_fresh(imported_by_command(
        ["echo", "--aec", "STORESCP", host, str(dcmtk_storescp.port)], NOT_AT_ECHO_START))
    assert_ok(result)
    assert "Success" in result.stdout


@pytest.mark.interop
def test_dicomdesk_send_imports_no_dataclasses_or_idna(dcmtk_storescp, tmp_path):
    path = _plain_part10_file(tmp_path / "to-send")
    result = run_fresh(imported_by_command(
        ["send", "--aec", "STORESCP", "localhost", str(dcmtk_storescp.port), str(path)], NOT_AT_SEND_START))
    assert_ok(result)
    assert "1 stored" in result.stdout


def test_network_stack_value_classes_are_built_without_dataclasses():
    # Every module an echo or a send imports, with nothing of dicomdesk loaded before.
    assert_ok(run_fresh(textwrap.dedent("""
        import sys
        from dicomdesk.net import applicationentity, asceprovider, decode_limits, fsm, pdu, userdataitems
        from dicomdesk.net.sopclass import storage
        from dicomdesk.operations import common, files, sending, verification
        import dicomdesk.cli, dicomdesk.commands.echo, dicomdesk.commands.send
        assert 'dataclasses' not in sys.modules, 'dataclasses imported'
    """)))


# ------------------------------------------------------------------ process end (issue 13)
# The console script of echo/send/find ends with os._exit once its output is flushed: the
# interpreter's teardown (freeing every module, pydicom's and numpy's included) is skipped.
# Output to a pipe is block-buffered without PYTHONUNBUFFERED: it must all arrive still.
_AS_CONSOLE_SCRIPT = textwrap.dedent("""
    import atexit, sys
    atexit.register(lambda: print('teardown ran', file=sys.stderr))
    from dicomdesk.cli import main
    sys.argv = ['dicomdesk'] + sys.argv[1:]
    sys.exit(main())
""")


def _run_as_console_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in dcmtk_env().items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", _AS_CONSOLE_SCRIPT, *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=60)


@pytest.mark.interop
def test_echo_process_ends_without_teardown_and_with_all_its_output(dcmtk_storescp):
    result = _run_as_console_script("echo", "--aec", "STORESCP", "127.0.0.1", str(dcmtk_storescp.port))
    assert result.returncode == 0, result.stderr
    assert "0x0000 Success" in result.stdout and "peer implementation" in result.stdout
    assert "teardown ran" not in result.stderr


def test_failed_echo_process_keeps_its_exit_status_and_message():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    result = _run_as_console_script("echo", "--timeout", "5", "127.0.0.1", str(port))
    assert result.returncode == 1
    assert "failed" in result.stderr and "teardown ran" not in result.stderr


def test_in_process_main_returns_and_leaves_the_interpreter_running():
    # Tests and the window call main(argv): it returns the status, it never ends the process.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    result = run_fresh(textwrap.dedent(f"""
        from dicomdesk.cli import main
        assert main(['echo', '--timeout', '5', '127.0.0.1', '{port}']) == 1
        print('still running')
    """))
    assert_ok(result)
    assert "still running" in result.stdout


@pytest.mark.interop
def test_dicomdesk_find_starts_no_blas_thread_pool(tmp_path):
    # pydicom loads numpy, whose OpenBLAS starts a worker thread per core as it loads unless
    # told otherwise; find asks for none (OPENBLAS_NUM_THREADS, unless the user set it).
    from tests.peers import start_dcmqrscp

    proc = start_dcmqrscp(tmp_path / "qr")
    env = {k: v for k, v in dcmtk_env().items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO)
    code = textwrap.dedent(f"""
        import os, sys
        from dicomdesk.cli import main
        rc = main(['find', '--aec', '{proc.aet}', '--level', 'STUDY', '-k', 'PatientName=*',
                   '127.0.0.1', '{proc.port}'])
        assert rc == 0, rc
        assert 'numpy' in sys.modules
        threads = os.listdir('/proc/self/task')
        assert len(threads) == 1, f'{{len(threads)}} OS threads after find'
    """)
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=env, cwd=REPO, timeout=60)
    finally:
        proc.stop()
    assert_ok(result)


@pytest.mark.interop
def test_dicomdesk_find_imports_no_dataclasses_or_idna(tmp_path):
    # pydicom itself needs neither (it loads inspect, with numpy); our query path and its
    # results no longer load them.
    from tests.peers import start_dcmqrscp

    proc = start_dcmqrscp(tmp_path / "qr")
    try:
        result = run_fresh(imported_by_command(
            ["find", "--aec", proc.aet, "--level", "STUDY", "-k", "PatientName=*", "localhost",
             str(proc.port)], ("dataclasses", "encodings.idna")))
    finally:
        proc.stop()
    assert_ok(result)


def test_echo_command_path_does_not_load_the_part10_reader():
    """``net.part10`` (~1 ms to import) is loaded by what reads or writes files, not by echo."""
    assert_ok(run_fresh("import sys\n"
                        "import dicomdesk.operations.verification, dicomdesk.commands.echo, dicomdesk.cli\n"
                        "from dicomdesk.cli import _command_parser\n"
                        "_command_parser('echo')\n"
                        "assert 'dicomdesk.net.part10' not in sys.modules, 'part10 imported'\n"))


# ------------------------------------------------------------------ `dicomdesk serve` start (issue 14)
# exec -> first C-ECHO answered: pydicom (with numpy) was ~250 ms of the ~350 ms a server took
# to start with an empty archive. The server's start path and a C-ECHO need none of it; the
# first object, query or retrieve loads it.
def test_serve_answers_its_first_echo_without_pydicom_then_loads_it_for_a_store(tmp_path):
    storage = tmp_path / "archive"
    incoming = _plain_part10_file(tmp_path / "in")
    result = run_fresh(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from dicomdesk import config
        from dicomdesk.commands import serve
        from dicomdesk.operations.server import LocalServer
        from dicomdesk.operations import Peer
        from dicomdesk.operations.verification import echo

        settings = config.ServerSettings(aet="GUARD", port=0, storage_dir=Path({str(storage)!r}),
                                         durable=False)
        server = LocalServer(settings, nodes=[])
        server.start()
        try:
            assert echo(Peer("127.0.0.1", server.port, called_aet="GUARD", timeout=30)).ok
    """) + textwrap.indent(CHECK_NOTHING_HEAVY, "    ") + textwrap.dedent(f"""
            from dicomdesk.operations.sending import send
            sent = send(Peer("127.0.0.1", server.port, called_aet="GUARD", timeout=30),
                        [Path({str(incoming)!r})])
            assert sent.stored == 1, sent
            assert 'pydicom' in sys.modules
        finally:
            server.stop()
    """))
    assert_ok(result)
    assert len(list(storage.rglob("*.dcm"))) == 1


def test_the_copy_of_pydicoms_uid_tables_is_what_the_installed_pydicom_gives():
    """``net/pydicom_tables``: a server negotiates from a copy of pydicom's tables while the
    installed pydicom's sources have the copy's hash. After a pydicom upgrade this fails:
    regenerate with ``python -m dicomdesk.net.pydicom_tables > dicomdesk/net/_pydicom_tables_data.py``."""
    from pydicom.uid import UID, AllTransferSyntaxes, UID_dictionary

    from dicomdesk.net import _pydicom_tables_data as data
    from dicomdesk.net import pydicom_tables, uids
    from dicomdesk.net.sopclass import storage_receive

    assert pydicom_tables.generate() == (REPO / "dicomdesk/net/_pydicom_tables_data.py").read_text()
    assert pydicom_tables.tables() is data
    assert list(data.STORAGE_SOP_CLASSES) == pydicom_tables.storage_classes_from_pydicom()
    assert list(data.TRANSFER_SYNTAXES) == [str(u) for u in AllTransferSyntaxes]
    assert all(uids.sop_class_name(u) == UID(u).name for u in UID_dictionary)
    assert storage_receive._all_transfer_syntaxes() == tuple(dict.fromkeys(
        [*storage_receive.CONVERTIBLE_TRANSFER_SYNTAXES, *map(str, AllTransferSyntaxes)]))


def test_another_pydicom_release_is_read_from_pydicom_itself(monkeypatch):
    from pydicom.uid import UID

    from dicomdesk.net import pydicom_tables, storage_uids, uids

    monkeypatch.setattr(pydicom_tables, "_checked", [])
    monkeypatch.setattr(pydicom_tables, "_fingerprint", lambda: "another release")
    assert pydicom_tables.tables() is None
    assert storage_uids._pydicom_storage_classes() == pydicom_tables.storage_classes_from_pydicom()
    assert uids.sop_class_name(uids.VERIFICATION_SOP_CLASS) == UID(uids.VERIFICATION_SOP_CLASS).name
