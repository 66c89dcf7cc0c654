"""The access policy alone (pure): each request gets the A-ASSOCIATE-RJ fields PS3.8 Table 9-21
prescribes, passwords are kept only as salted hashes (PS3.7 D.3.3.7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dicomdesk.net.userdataitems import UserIdentityNegotiationSubItem
from dicomdesk.security import (
    AccessPolicy,
    AllowedCaller,
    PolicyError,
    User,
    check_password_hash,
    hash_password,
    load_users,
    parse_users,
    verify_password,
)

REPO = Path(__file__).resolve().parents[2]
SALT = b"0123456789abcdef"
# Made once per module: a scrypt costs ~50 ms.
ALICE_HASH = hash_password("s3cret", salt=SALT)


def identity(name, password=None, kind=None):
    return UserIdentityNegotiationSubItem(name, password or "",
                                          user_identity_type=kind or (2 if password else 1))


def test_hash_is_salted_and_never_contains_the_password():
    one, two = hash_password("s3cret"), hash_password("s3cret")
    assert one != two
    assert "s3cret" not in one
    assert one.startswith("scrypt$16384$8$1$")


@pytest.mark.parametrize("scheme", ["scrypt", "pbkdf2_sha256"])
def test_verify_password_accepts_the_right_password_only(scheme):
    encoded = hash_password("s3cret", scheme=scheme, salt=SALT)
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)
    assert not verify_password("", encoded)


@pytest.mark.parametrize("bad", ["s3cret", "scrypt$x$8$1$AAAA$AAAA", "scrypt$3$8$1$AAAA$AAAA",
                                 "scrypt$16384$8$1$!!$AAAA", "md5$abc", "pbkdf2_sha256$0$AAAA$AAAA",
                                 "scrypt$1073741824$8$1$AAAA$AAAA"])
def test_malformed_hash_is_a_policy_error(bad):
    with pytest.raises(PolicyError):
        check_password_hash(bad)


def test_allow_list_entry_parses_title_and_networks():
    entry = AllowedCaller.parse("MODALITY@10.0.0.0/24,127.0.0.1")
    assert entry.aet == "MODALITY"
    assert entry.admits("MODALITY  ", "10.0.0.7")
    assert entry.admits("MODALITY", "127.0.0.1")
    assert entry.admits("MODALITY", "::ffff:127.0.0.1")
    assert not entry.admits("MODALITY", "10.0.1.7")
    assert not entry.admits("modality", "10.0.0.7")
    assert str(entry) == "MODALITY@10.0.0.0/24,127.0.0.1/32"


@pytest.mark.parametrize("bad", ["", "@127.0.0.1", "X@", "X@pacs.example.org", "A" * 17])
def test_malformed_allow_list_entry_is_refused(bad):
    with pytest.raises(PolicyError):
        AllowedCaller.parse(bad)


def test_open_policy_admits_everyone():
    policy = AccessPolicy("DICOMDESK")
    assert policy.is_open
    decision = policy.decide("ANYONE", "WHATEVER", "10.1.2.3")
    assert decision.admitted and decision.rejection is None


def test_allow_listed_calling_ae_is_admitted():
    policy = AccessPolicy.from_settings("DICOMDESK", ["CT1", "MR1@127.0.0.1"])
    assert policy.decide("CT1", "DICOMDESK", "192.0.2.5").admitted
    assert policy.decide("MR1", "DICOMDESK", "127.0.0.1").admitted


def test_unknown_calling_ae_gets_rejected_permanent_user_calling_ae_not_recognised():
    policy = AccessPolicy.from_settings("DICOMDESK", ["CT1"])
    decision = policy.decide("INTRUDER", "DICOMDESK", "127.0.0.1")
    assert decision.rejection == (1, 1, 3)
    assert "'INTRUDER' from 127.0.0.1" in decision.sentence
    assert "not on the allow-list" in decision.sentence


def test_allow_listed_title_from_another_address_is_refused_as_not_recognised():
    policy = AccessPolicy.from_settings("DICOMDESK", ["MR1@10.0.0.2"])
    decision = policy.decide("MR1", "DICOMDESK", "127.0.0.1")
    assert decision.rejection == (1, 1, 3)
    assert "address is not allowed" in decision.sentence


def test_strict_called_ae_refuses_another_title_with_reason_7():
    policy = AccessPolicy.from_settings("DICOMDESK", require_called_aet=True)
    assert policy.decide("CT1", "DICOMDESK  ", "127.0.0.1").admitted
    decision = policy.decide("CT1", "ANY-SCP", "127.0.0.1")
    assert decision.rejection == (1, 1, 7)
    assert "'ANY-SCP'" in decision.sentence


USERS = {"alice": User("alice", ALICE_HASH), "scanner": User("scanner", None)}


def test_user_with_the_right_password_is_admitted():
    decision = AccessPolicy("DICOMDESK", users=USERS).decide("CT1", "DICOMDESK", "127.0.0.1",
                                                             identity("alice", "s3cret"))
    assert decision.admitted and decision.user == "alice"
    assert "as user 'alice'" in decision.sentence


@pytest.mark.parametrize("ident", [identity("alice", "wrong"), identity("mallory", "s3cret"),
                                   identity("alice"), None, identity("alice", "s3cret", kind=5)],
                         ids=["wrong-password", "unknown-user", "no-password", "no-identity", "jwt"])
def test_refused_identity_gets_rejected_permanent_user_no_reason_given(ident):
    decision = AccessPolicy("DICOMDESK", users=USERS).decide("CT1", "DICOMDESK", "127.0.0.1", ident)
    assert decision.rejection == (1, 1, 1)
    assert "s3cret" not in decision.sentence


def test_wrong_password_and_unknown_user_read_the_same():
    policy = AccessPolicy("DICOMDESK", users=USERS)
    a = policy.decide("CT1", "DICOMDESK", "h", identity("alice", "nope")).sentence
    b = policy.decide("CT1", "DICOMDESK", "h", identity("bob", "nope")).sentence
    assert a == b


def test_user_without_password_is_admitted_by_name():
    assert AccessPolicy("DICOMDESK", users=USERS).decide(
        "CT1", "DICOMDESK", "127.0.0.1", identity("scanner")).admitted


def test_called_ae_is_checked_before_the_allow_list_and_the_user():
    policy = AccessPolicy.from_settings("DICOMDESK", ["CT1"], require_called_aet=True)
    assert policy.decide("X", "Y", "127.0.0.1").rejection == (1, 1, 7)


def test_users_file_accepts_hash_strings_and_tables(tmp_path):
    path = tmp_path / "users.toml"
    path.write_text(f'[users]\nalice = "{ALICE_HASH}"\nscanner = ""\n\n'
                    f'[users.bob]\npassword_hash = "{ALICE_HASH}"\n')
    users = load_users(path)
    assert users["alice"].password_hash == ALICE_HASH
    assert users["scanner"].password_hash is None
    assert users["bob"].password_hash == ALICE_HASH
    assert "s3cret" not in repr(users)


@pytest.mark.parametrize("text, why", [('[users]\nalice = "s3cret"\n', "invalid password hash"),
                                       ('[users.alice]\npassword = "s3cret"\n', "never the password"),
                                       ('users = 3\n', "must be a table"),
                                       ('[users\n', "not valid TOML")])
def test_users_file_with_a_clear_password_or_bad_syntax_is_refused(tmp_path, text, why):
    path = tmp_path / "users.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=why):
        load_users(path)


def test_missing_users_file_names_the_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot read users file"):
        load_users(tmp_path / "nope.toml")


def test_hash_helper_prints_a_line_the_users_file_accepts(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dicomdesk.security", "hash", "dr.who"],
                         input="s3cret\n", capture_output=True, text=True, cwd=REPO, timeout=30,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "s3cret" not in out.stdout
    users = parse_users(__import__("tomllib").loads("[users]\n" + out.stdout))
    assert verify_password("s3cret", users["dr.who"].password_hash)
