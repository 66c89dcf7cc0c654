"""Exceptions of the network stack (hierarchy of the pynetdicom2 reference).

Two kinds of failure are kept apart:

* the peer broke the protocol (``PDUProcessingError``, ``DIMSEProcessingError``):
  these carry the A-ABORT source and reason (PS3.8 9.3.8) that the upper layer
  sends back, so the association is aborted and nothing else;
* our own code misused the API (``ValueError``/``TypeError`` as usual).

DIMSE statuses are values (``statuses.Status``), never exceptions.
"""

from __future__ import annotations

# A-ABORT source values (PS3.8 Table 9-26).
ABORT_SOURCE_SERVICE_USER = 0
ABORT_SOURCE_SERVICE_PROVIDER = 2

# A-ABORT reason/diag values when the source is the service provider.
ABORT_REASON_NOT_SPECIFIED = 0
ABORT_REASON_UNRECOGNIZED_PDU = 1
ABORT_REASON_UNEXPECTED_PDU = 2
ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER = 4
ABORT_REASON_UNEXPECTED_PDU_PARAMETER = 5
ABORT_REASON_INVALID_PDU_PARAMETER_VALUE = 6


class NetDICOMError(Exception):
    """Root of every error raised by dicomdesk.net."""


class ClassNotSupportedError(NetDICOMError):
    """The requested SOP class is not supported (or not accepted on this association)."""


class PDUProcessingError(NetDICOMError):
    """A PDU could not be decoded or is not acceptable.

    ``source`` and ``reason`` are the A-ABORT fields the upper layer answers
    with (PS3.8 9.3.8); by default "service-provider, invalid PDU parameter value".
    """

    def __init__(self, message: str = "", source: int = ABORT_SOURCE_SERVICE_PROVIDER,
                 reason: int = ABORT_REASON_INVALID_PDU_PARAMETER_VALUE):
        super().__init__(message)
        self.source = source
        self.reason = reason


class DIMSEProcessingError(NetDICOMError):
    """A DIMSE message could not be reassembled or decoded from its fragments."""

    def __init__(self, message: str = "", source: int = ABORT_SOURCE_SERVICE_PROVIDER,
                 reason: int = ABORT_REASON_UNEXPECTED_PDU_PARAMETER):
        super().__init__(message)
        self.source = source
        self.reason = reason


class AssociationError(NetDICOMError):
    """Base of the association errors; raise one of its subclasses."""


# Human-readable A-ASSOCIATE-RJ diagnostics (PS3.8 Table 9-21), keyed by (source, diag).
REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given (ACSE)",
    (2, 2): "protocol version not supported",
    (3, 0): "reserved (presentation)",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}

REJECT_RESULTS = {1: "rejected-permanent", 2: "rejected-transient"}

ABORT_SOURCES = {0: "service-user", 1: "reserved", 2: "service-provider"}
ABORT_REASONS = {
    0: "reason not specified",
    1: "unrecognised PDU",
    2: "unexpected PDU",
    3: "reserved",
    4: "unrecognised PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
}


class AssociationRejectedError(AssociationError):
    """The association was rejected (A-ASSOCIATE-RJ, PS3.8 9.3.4).

    ``result``: 1 rejected-permanent, 2 rejected-transient.
    ``source``: 1 service-user, 2 service-provider (ACSE), 3 service-provider (presentation).
    ``diagnostic``: reason, whose meaning depends on ``source`` (see REJECT_REASONS).
    Raised by an acceptor's ``on_association_request`` hook to refuse, too.
    """

    def __init__(self, result: int, source: int, diagnostic: int, *args, **kwargs):
        self.result = result
        self.source = source
        self.diagnostic = diagnostic
        super().__init__(*(args or (self.describe(),)), **kwargs)

    def describe(self) -> str:
        """A sentence a user can read."""
        reason = REJECT_REASONS.get((self.source, self.diagnostic), f"diagnostic {self.diagnostic}")
        kind = REJECT_RESULTS.get(self.result, f"result {self.result}")
        return f"association rejected ({kind}): {reason}"


class AssociationReleasedError(AssociationError):
    """The remote application entity released the association."""


class AssociationAbortedError(AssociationError):
    """The association was aborted (A-ABORT or A-P-ABORT)."""

    def __init__(self, source: int, reason_diag: int, *args, **kwargs):
        self.source = source
        self.reason_diag = reason_diag
        if not args:
            args = (f"association aborted by {ABORT_SOURCES.get(source, source)}: "
                    f"{ABORT_REASONS.get(reason_diag, reason_diag)}",)
        super().__init__(*args, **kwargs)


class DCMTimeoutError(NetDICOMError):
    """No PDU or DIMSE message arrived within the deadline."""


class OperationCancelledError(NetDICOMError):
    """Extension: the local user set the cancel event while ``Association.receive`` waited
    (a C-FIND/GET/MOVE SCU then sends C-CANCEL-RQ and reads on, PS3.7 9.3.2.3)."""


class EventHandlingError(NetDICOMError):
    """Raised by a user's AE hook to say it could not process the event.

    Service classes catch it and answer with a failure status — ``status`` when the hook
    names one (an extension: e.g. 0xA900 "identifier does not match SOP class"), else the
    service's own "unable to process" — and the message as Error Comment (0000,0902).
    Any other exception from a hook is not handled by the service.
    """

    def __init__(self, *args, status: int | None = None):
        super().__init__(*args)
        self.status = status

    def failure_status(self, default: int) -> int:
        """The status a service answers with for this error."""
        return self.status if self.status is not None else default
