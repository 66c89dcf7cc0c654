"""Values shared by every operation: who we talk to, and errors turned into sentences."""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

from ..net.exceptions import (
    AssociationAbortedError,
    AssociationRejectedError,
    AssociationReleasedError,
    ClassNotSupportedError,
    DCMTimeoutError,
    NetDICOMError,
)
from ..net.records import FrozenRecord


class Peer(FrozenRecord):
    """A remote application entity and how we present ourselves to it."""

    _fields = ("host", "port", "called_aet", "calling_aet", "timeout", "username", "password", "tls")

    def __init__(self, host: str, port: int, called_aet: str = "ANY-SCP", calling_aet: str = "DICOMDESK",
                 timeout: float = 30.0, username: str | None = None, password: str | None = None,
                 tls: Any = None) -> None:  # tls: config.TLSSettings (cert, key, ca) or None: plain TCP
        self._assign(host, port, called_aet, calling_aet, timeout, username, password, tls)

    def remote_ae(self) -> dict[str, Any]:
        """The reference's remote AE dictionary for ``request_association``."""
        remote: dict[str, Any] = {"aet": self.called_aet, "address": self.host, "port": self.port,
                                  "timeout": self.timeout}
        if self.username:
            remote["username"] = self.username
            remote["password"] = self.password or ""
        if self.tls is not None:
            from ..net.tls import client_context

            remote["ssl_context"] = client_context(self.tls.ca, self.tls.cert, self.tls.key)
        return remote

    def describe(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}"


def describe_error(exc: BaseException, peer: Peer | None = None) -> str:
    """One sentence a user understands, for any failure talking to a peer."""
    where = f" {peer.describe()}" if peer else ""
    if isinstance(exc, AssociationRejectedError):
        return f"{where.strip() or 'peer'}: {exc.describe()}"
    if isinstance(exc, AssociationAbortedError):
        return f"{where.strip() or 'peer'}: {exc}"
    if isinstance(exc, AssociationReleasedError):
        return f"{where.strip() or 'peer'}: the peer released the association early"
    if isinstance(exc, DCMTimeoutError):
        return f"{where.strip() or 'peer'}: timed out ({exc})"
    if isinstance(exc, ClassNotSupportedError):
        return f"{where.strip() or 'peer'}: {exc}"
    # ssl is looked up, not imported: no TLS error without TLS, and a plain echo need not load it.
    ssl = sys.modules.get("ssl")
    if (ssl is not None and isinstance(exc, ssl.SSLError)) or (peer is not None and peer.tls is not None
                                          and isinstance(exc, (ConnectionResetError, EOFError))):
        from ..net.tls import describe_tls_error

        return f"{where.strip() or 'peer'}: {describe_tls_error(exc)}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by{where} (is a DICOM server listening there?)"
    if isinstance(exc, socket.timeout) or isinstance(exc, TimeoutError):
        return f"no answer from{where}: connection timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host{where}: {exc.strerror or exc}"
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"{where.strip() or 'peer'} is unreachable: {exc.strerror}"
        return f"network error with{where}: {exc.strerror or exc}"
    if isinstance(exc, NetDICOMError):
        return f"{where.strip() or 'peer'}: {exc}"
    return f"unexpected error with{where}: {exc}"
