"""DICOM TLS (PS3.15 B.1 "Basic TLS Secure Transport Connection Profile"): SSL contexts.

Only TLS 1.2 and 1.3 are offered. A client verifies the server's certificate when a CA is
given (on by default then); a server asks for client certificates when it has a CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(ca: str | Path | None = None, cert: str | Path | None = None,
                   key: str | Path | None = None, *, verify: bool = True,
                   check_hostname: bool = False) -> ssl.SSLContext:
    """Context for an association we request. Without ``ca`` the peer is not verified
    (encryption only), as DICOM nodes rarely have certificates for their host names."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = bool(check_hostname and ca and verify)
    if ca and verify:
        context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    if cert:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def server_context(cert: str | Path, key: str | Path | None = None, ca: str | Path | None = None, *,
                   verify: bool = True) -> ssl.SSLContext:
    """Context for the listening AE; with ``ca`` every client must present a certificate
    signed by it (mutual authentication, PS3.15 B.1)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key) if key else None)
    if ca and verify:
        context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def describe_tls_error(exc: BaseException) -> str:
    """A sentence for a failed handshake, naming the usual cause."""
    text = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the peer's certificate was not accepted ({exc.verify_message or text})"
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "UNEXPECTED_EOF" in text \
            or isinstance(exc, (ConnectionResetError, EOFError)):
        return "TLS handshake failed: the peer does not seem to speak TLS on this port"
    return f"TLS handshake failed: {text}"
