"""Who may open an association with the local server: the access policy (pure, no I/O).

The checks an association acceptor may make before it answers an A-ASSOCIATE-RQ, each decided
from the request's fields alone and answered with the A-ASSOCIATE-RJ fields the standard
prescribes (PS3.8 9.3.4, Table 9-21):

* called AE title: when the server insists on its own title, any other one is refused with
  (1 rejected-permanent, 1 DICOM UL service-user, 7 called-AE-title-not-recognized);
* calling AE title: with an allow-list, a title not on it — or on it but tied to other addresses —
  is refused with (1, 1, 3 calling-AE-title-not-recognized);
* user identity (PS3.7 D.3.3.7): when users are configured, the request must carry a User Identity
  sub-item naming one of them (type 1, username) with the right passcode when the user has one
  (type 2, username and passcode); otherwise the association is refused with
  (1, 1, 1 no-reason-given) — the standard gives no dedicated reason for a refused identity, and a
  reason that says "wrong password" would tell an attacker which user names exist.

Passwords are never stored: a users file holds salted hashes made by ``hash_password``
(``hashlib.scrypt``, or PBKDF2-HMAC-SHA256 where OpenSSL lacks scrypt), compared in constant time.
``python -m dicomdesk.security hash NAME`` prints the line to put in the users file.

Address ties use IP addresses or networks (``AET@192.168.1.20``, ``AET@10.0.0.0/24``), never
host names: resolving a name here would be I/O and would trust DNS.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

logger = logging.getLogger(__name__)

# A-ASSOCIATE-RJ fields (PS3.8 Table 9-21).
RESULT_REJECTED_PERMANENT = 1
SOURCE_SERVICE_USER = 1
REASON_NO_REASON_GIVEN = 1
REASON_CALLING_AE_NOT_RECOGNIZED = 3
REASON_CALLED_AE_NOT_RECOGNIZED = 7

REJECT_CALLED_AE = (RESULT_REJECTED_PERMANENT, SOURCE_SERVICE_USER, REASON_CALLED_AE_NOT_RECOGNIZED)
REJECT_CALLING_AE = (RESULT_REJECTED_PERMANENT, SOURCE_SERVICE_USER, REASON_CALLING_AE_NOT_RECOGNIZED)
REJECT_USER_IDENTITY = (RESULT_REJECTED_PERMANENT, SOURCE_SERVICE_USER, REASON_NO_REASON_GIVEN)

# User Identity Type (PS3.7 Table D.3-14).
IDENTITY_USERNAME = 1
IDENTITY_USERNAME_AND_PASSCODE = 2

# scrypt cost: 16 MiB of memory per check and tens of ms (docs/internals.md, timings): slow for a
# guesser, fine for an association.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
PBKDF2_ITERATIONS = 600_000
SALT_BYTES = 16


class PolicyError(ValueError):
    """A policy setting (allow-list entry, users file, password hash) is malformed."""


# --------------------------------------------------------------------------- password hashes
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise PolicyError(f"password hash has an invalid base64 field: {exc}") from None


def hash_password(password: str, *, scheme: str = "scrypt", salt: bytes | None = None) -> str:
    """A salted hash of ``password`` to store instead of it.

    Formats: ``scrypt$N$r$p$<salt>$<hash>`` and ``pbkdf2_sha256$<iterations>$<salt>$<hash>``
    (salt and hash base64). A fresh random salt is drawn unless one is given (tests).
    """
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    secret = password.encode("utf-8")
    if scheme == "scrypt":
        digest = hashlib.scrypt(secret, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
        return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"
    if scheme == "pbkdf2_sha256":
        digest = hashlib.pbkdf2_hmac("sha256", secret, salt, PBKDF2_ITERATIONS)
        return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${_b64(salt)}${_b64(digest)}"
    raise PolicyError(f"unknown password hash scheme {scheme!r} (scrypt or pbkdf2_sha256)")


def check_password_hash(encoded: str) -> None:
    """Raise PolicyError unless ``encoded`` is a hash ``hash_password`` could have made."""
    parts = encoded.split("$")
    numbers = parts[1:4] if parts[0] == "scrypt" else parts[1:2]
    if not all(v.isdigit() for v in numbers):
        raise PolicyError("invalid password hash: its cost fields must be numbers")
    if parts[0] == "scrypt" and len(parts) == 6:
        n, r, p = (int(v) for v in numbers)
        if n < 2 or n & (n - 1) or r < 1 or p < 1 or n * r > 2 ** 20 or p > 16:
            raise PolicyError("invalid password hash: scrypt parameters out of range")
    elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
        if not 1 <= int(parts[1]) <= 10_000_000:
            raise PolicyError("invalid password hash: pbkdf2 iteration count out of range")
    else:
        raise PolicyError("invalid password hash: not a scrypt$... or pbkdf2_sha256$... hash")
    _unb64(parts[-2])
    _unb64(parts[-1])


def verify_password(password: str | bytes, encoded: str) -> bool:
    """True when ``password`` hashes to ``encoded`` (constant-time comparison)."""
    check_password_hash(encoded)
    parts = encoded.split("$")
    secret = password if isinstance(password, bytes) else password.encode("utf-8", "surrogateescape")
    salt, expected = _unb64(parts[-2]), _unb64(parts[-1])
    if parts[0] == "scrypt":
        n, r, p = (int(v) for v in parts[1:4])
        actual = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=len(expected),
                                maxmem=n * r * 128 * 2 + 1024 * 1024)
    else:
        actual = hashlib.pbkdf2_hmac("sha256", secret, salt, int(parts[1]), dklen=len(expected))
    return hmac.compare_digest(actual, expected)


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash to check when the user is unknown, so that the time taken does not reveal which
    user names exist (made once: computing it costs one scrypt)."""
    return hash_password("", salt=b"\0" * SALT_BYTES)


def dummy_hash_like(encoded: str) -> str:
    """A hash of the empty password with the scheme, cost, salt and digest length of
    ``encoded``: verifying a guess against it costs what verifying against ``encoded`` does."""
    check_password_hash(encoded)
    parts = encoded.split("$")
    return _dummy_with(parts[0], tuple(int(v) for v in parts[1:-2]), len(_unb64(parts[-2])),
                       len(_unb64(parts[-1])))


@functools.lru_cache(maxsize=64)
def _dummy_with(scheme: str, cost: tuple[int, ...], salt_length: int, digest_length: int) -> str:
    """Made once per distinct cost (one hash computation each)."""
    salt = b"\0" * salt_length
    if scheme == "scrypt":
        n, r, p = cost
        fake = hashlib.scrypt(b"", salt=salt, n=n, r=r, p=p, dklen=digest_length,
                              maxmem=n * r * 128 * 2 + 1024 * 1024)
        return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(fake)}"
    fake = hashlib.pbkdf2_hmac("sha256", b"", salt, cost[0], dklen=digest_length)
    return f"pbkdf2_sha256${cost[0]}${_b64(salt)}${_b64(fake)}"


#: Per-process key that ties an unknown user name to one configured user's hash cost.
_DECOY_KEY = os.urandom(16)


def decoy_hash(name: str, users: Mapping[str, "User"]) -> str:
    """The hash to verify a passcode of an unknown user ``name`` against.

    It has the scheme and cost of one configured user's hash, chosen by a keyed digest of the
    name (the same name always the same cost, names spread over the users like real ones), so
    an unknown name takes as long as a known one whatever schemes the users file mixes."""
    hashes = sorted(u.password_hash for u in users.values() if u.password_hash)
    if not hashes:
        return _dummy_hash()
    pick = hmac.new(_DECOY_KEY, name.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
    return dummy_hash_like(hashes[int.from_bytes(pick[:8], "big") % len(hashes)])


# --------------------------------------------------------------------------- allow-list
@dataclass(frozen=True)
class AllowedCaller:
    """A calling AE title admitted by the allow-list, optionally only from some addresses."""

    aet: str
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowedCaller:
        """``AET`` or ``AET@ADDRESS[,ADDRESS]`` where an address is an IP or a network (CIDR)."""
        aet, _, addresses = text.partition("@")
        aet = aet.strip()
        if not aet or len(aet) > 16 or "\\" in aet or any(ord(c) < 32 for c in aet):
            raise PolicyError(f"allow-list entry {text!r}: the AE title must be 1-16 characters")
        networks = []
        for address in filter(None, (a.strip() for a in addresses.split(","))):
            try:
                networks.append(ipaddress.ip_network(address, strict=False))
            except ValueError:
                raise PolicyError(f"allow-list entry {text!r}: {address!r} is not an IP address or "
                                  "network (host names are not accepted)") from None
        if "@" in text and not networks:
            raise PolicyError(f"allow-list entry {text!r}: an address is missing after '@'")
        return cls(aet, tuple(networks))

    def admits(self, calling_aet: str, address: str) -> bool:
        """Same title (spaces are not significant, PS3.5 VR AE) and, if tied, an allowed address."""
        if calling_aet.strip() != self.aet:
            return False
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if getattr(ip, "ipv4_mapped", None) is not None:
            ip = ip.ipv4_mapped  # ::ffff:a.b.c.d from a dual-stack socket
        return any(ip.version == net.version and ip in net for net in self.networks)

    def __str__(self) -> str:
        return self.aet + ("@" + ",".join(map(str, self.networks)) if self.networks else "")


# --------------------------------------------------------------------------- users
@dataclass(frozen=True)
class User:
    """A configured user: ``password_hash`` None means the user name alone identifies (type 1)."""

    name: str
    password_hash: str | None = field(default=None, repr=False)


def parse_users(table: Mapping[str, Any]) -> dict[str, User]:
    """Users from a TOML document: ``[users]`` with ``NAME = "<hash>"`` (or ``""`` for a name
    without password) or ``[users.NAME]`` tables with ``password_hash``."""
    users_table = table.get("users", {})
    if not isinstance(users_table, Mapping):
        raise PolicyError("users file: [users] must be a table")
    users: dict[str, User] = {}
    for name, value in users_table.items():
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"password_hash"})
            if unknown:
                raise PolicyError(f"users file: user {name!r} has an unknown field {unknown[0]!r}"
                                  + (" (store a hash, never the password)" if unknown[0] == "password"
                                     else ""))
            value = value.get("password_hash", "")
        if not isinstance(value, str):
            raise PolicyError(f"users file: user {name!r} must map to a password hash string")
        if value:
            try:
                check_password_hash(value)
            except PolicyError as exc:
                raise PolicyError(f"users file: user {name!r}: {exc}") from None
        users[name] = User(name, value or None)
    return users


def load_users(path: str | Path) -> dict[str, User]:
    """Read a users TOML file (see ``parse_users``); errors name the file."""
    path = Path(path)
    try:
        with path.open("rb") as fp:
            document = tomllib.load(fp)
    except OSError as exc:
        raise PolicyError(f"cannot read users file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"users file {path} is not valid TOML: {exc}") from None
    try:
        return parse_users(document)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- decisions
@dataclass(frozen=True)
class Decision:
    """The answer to one A-ASSOCIATE-RQ: admitted, or the RJ fields; ``sentence`` is for the log
    and the server window (it never contains a password)."""

    admitted: bool
    sentence: str
    result: int = 0
    source: int = 0
    reason: int = 0
    user: str | None = None

    @property
    def rejection(self) -> tuple[int, int, int] | None:
        """(result, source, reason/diag) of the A-ASSOCIATE-RJ, or None when admitted."""
        return None if self.admitted else (self.result, self.source, self.reason)


def _refuse(fields: tuple[int, int, int], sentence: str) -> Decision:
    return Decision(False, sentence, *fields)


@dataclass(frozen=True)
class AccessPolicy:
    """Which requests the local server admits (PS3.8 7.1.1.3/7.1.1.4, PS3.7 D.3.3.7).

    ``allowed_callers`` empty: any calling AE title; ``users`` empty: no user identity needed
    (a sub-item sent anyway is ignored, as PS3.7 D.3.3.7 allows).
    """

    ae_title: str
    allowed_callers: tuple[AllowedCaller, ...] = ()
    require_called_aet: bool = False
    users: Mapping[str, User] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, ae_title: str, allowed: Iterable[str] = (), *, require_called_aet: bool = False,
                      users_file: str | Path | None = None) -> AccessPolicy:
        """The policy from plain settings values (``AET[@ADDR]`` strings, a users file path)."""
        return cls(ae_title.strip(), tuple(AllowedCaller.parse(a) for a in allowed),
                   require_called_aet, load_users(users_file) if users_file else {})

    def __post_init__(self) -> None:
        # The decoy hashes are made now, not on the first unknown user (that would cost twice).
        for user in self.users.values():
            if user.password_hash:
                dummy_hash_like(user.password_hash)

    @property
    def is_open(self) -> bool:
        """True when the policy admits every request (nothing configured)."""
        return not (self.allowed_callers or self.require_called_aet or self.users)

    def decide(self, calling_aet: str, called_aet: str, address: str, identity: Any = None) -> Decision:
        """Admit or refuse a request. ``identity`` is the request's User Identity sub-item
        (``user_identity_type``, ``primary_field``, ``secondary_field``) or None."""
        calling, called = calling_aet.strip(), called_aet.strip()
        who = f"{calling!r} from {address}"
        if self.require_called_aet and called != self.ae_title:
            return _refuse(REJECT_CALLED_AE, f"refused {who}: it called {called!r}, but this server "
                                             f"is {self.ae_title!r} (called AE title not recognised)")
        if self.allowed_callers and not any(c.admits(calling, address) for c in self.allowed_callers):
            known = any(c.aet == calling for c in self.allowed_callers)
            why = ("its address is not allowed for that AE title" if known
                   else "the calling AE title is not on the allow-list")
            return _refuse(REJECT_CALLING_AE, f"refused {who}: {why} (calling AE title not recognised)")
        user = None
        if self.users:
            user, problem = self._check_identity(identity)
            if problem:
                return _refuse(REJECT_USER_IDENTITY, f"refused {who}: {problem} (user identity "
                                                     "not accepted, no reason given)")
        return Decision(True, f"admitted {who} -> {called!r}" + (f" as user {user!r}" if user else ""),
                        user=user)

    def _check_identity(self, identity: Any) -> tuple[str | None, str | None]:
        """(user name, None) when verified, else (None, why) — PS3.7 D.3.3.7."""
        if identity is None:
            return None, "no user identity was sent, and this server requires one"
        kind = getattr(identity, "user_identity_type", None)
        if kind not in (IDENTITY_USERNAME, IDENTITY_USERNAME_AND_PASSCODE):
            return None, f"user identity type {kind} is not supported (username or username+passcode)"
        name = identity.primary_field
        if isinstance(name, bytes):
            name = name.decode("utf-8", "surrogateescape")
        user = self.users.get(name)
        passcode = identity.secondary_field if kind == IDENTITY_USERNAME_AND_PASSCODE else None
        if user is None:
            if passcode is not None:
                verify_password(passcode, decoy_hash(name, self.users))  # a known user's cost
            return None, "unknown user or wrong password"
        if user.password_hash is None:
            return name, None
        if passcode is None:
            return None, f"user {name!r} needs a password"
        if not verify_password(passcode, user.password_hash):
            return None, "unknown user or wrong password"
        return name, None


# --------------------------------------------------------------------------- helper command
def main(argv: list[str] | None = None) -> int:
    """``python -m dicomdesk.security hash NAME``: print a users-file line for NAME.

    The password is read without echo from the terminal, or as one line from stdin."""
    import argparse
    import getpass

    parser = argparse.ArgumentParser(prog="python -m dicomdesk.security",
                                     description="make users-file entries for dicomdesk serve --users")
    sub = parser.add_subparsers(dest="command", required=True)
    hash_cmd = sub.add_parser("hash", help="hash a password for a user (prints a TOML line)")
    hash_cmd.add_argument("name")
    hash_cmd.add_argument("--scheme", choices=("scrypt", "pbkdf2_sha256"), default="scrypt")
    args = parser.parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("dicomdesk: an empty password is not hashed; use  NAME = \"\"  for a user without one",
              file=sys.stderr)
        return 2
    name = args.name if re.fullmatch(r"[A-Za-z0-9_-]+", args.name) else json.dumps(args.name)
    print(f'{name} = "{hash_password(password, scheme=args.scheme)}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
