"""Import guards for ``dicomdesk echo`` start-up (issue 6: a whole ``dicomdesk echo`` process
under 0.5x the wall time of ``python -m pynetdicom echoscu``).

Most of a Python DICOM tool's start-up is importing pydicom (and numpy through
``pydicom.config``), ~250 ms here. A C-ECHO has no data set (PS3.7 9.3.5), so the echo
path — cli → commands/echo → operations/verification → ClientAE + verification_scu →
DUL — must import neither. Each check runs in a fresh interpreter, since this test
process has long imported pydicom.
"""

from __future__ import annotations

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


def test_storage_sop_classes_still_load_pydicom_on_demand():
    assert_ok(run_fresh(textwrap.dedent("""
        import sys
        from dicomdesk.net import uids
        assert 'pydicom' not in sys.modules
        classes = uids.STORAGE_SOP_CLASSES
        assert 'pydicom' in sys.modules and uids.CT_IMAGE_STORAGE in classes
        assert uids.STORAGE_SOP_CLASSES is classes  # computed once
    """)))


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
