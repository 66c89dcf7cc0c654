"""User names cannot be told apart by how long a refusal takes (issue 11, item 8).

A wrong passcode for a known user costs one verification of that user's hash; a passcode for an
unknown user must cost the same, whatever scheme and cost the users file uses — so the server
verifies it against a decoy hash of the same scheme and cost. Measured on a real ``dicomdesk
serve``: the fastest of a few refusals of each kind, interleaved (load spikes only add time).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time

import pytest

from dicomdesk.net import userdataitems
from dicomdesk.security import hash_password

from serving import ServeProcess, associate_rq, connect, read_pdu

pytestmark = pytest.mark.interop


def _scrypt_hash_of_double_cost(password: str) -> str:
    """A valid scrypt hash with N=2**15 (twice the default cost): an admin may raise it."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 15, r=8, p=1, dklen=32,
                            maxmem=2 ** 15 * 8 * 256 + 2 ** 20)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${2 ** 15}$8$1${b64(salt)}${b64(digest)}"


def _refusal_seconds(port: int, user: str) -> float:
    identity = userdataitems.UserIdentityNegotiationSubItem(user, "wrong guess", user_identity_type=2)
    with connect(port, timeout=30) as sock:
        started = time.perf_counter()
        sock.sendall(associate_rq(identity=identity))
        answer = read_pdu(sock)
        elapsed = time.perf_counter() - started
    assert answer[:1] == b"\x03", answer[:10]
    return elapsed


@pytest.mark.parametrize("make_hash", [
    pytest.param(lambda pw: hash_password(pw, scheme="pbkdf2_sha256"), id="pbkdf2_sha256"),
    pytest.param(_scrypt_hash_of_double_cost, id="scrypt-N-2**15"),
])
def test_an_unknown_user_costs_as_much_as_a_known_one(tmp_path, make_hash):
    users = tmp_path / "users.toml"
    users.write_text(f'[users]\nalice = "{make_hash("s3cret")}"\n')
    with ServeProcess(tmp_path / "storage", "--users", str(users)) as proc:
        _refusal_seconds(proc.port, "alice")  # warm-up: imports, threads
        known, unknown = [], []
        for _ in range(4):
            known.append(_refusal_seconds(proc.port, "alice"))
            unknown.append(_refusal_seconds(proc.port, "mallory"))
    # Before the fix a pbkdf2 user took ~4x an unknown one (163 vs 41 ms).
    assert min(unknown) >= 0.6 * min(known), (known, unknown)
