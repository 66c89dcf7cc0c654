"""The one place where the window turns failures into sentences for a user (ARCHITECTURE "Errors").

``operations`` already returns ``error`` as a sentence for network and peer failures; this module
words a final DIMSE status by the status's own description (``net.statuses.Status``, reached as a
value: the window never imports the network stack), adds the one status that deserves its own
explanation (Move Destination unknown, PS3.4 C.4.2.1.5) and a last-resort wording for an
unexpected exception, so that no traceback reaches a user.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

__all__ = ["describe_exception", "move_not_delivered", "retrieve_outcome", "retrieve_summary",
           "status_sentence"]

_log = logging.getLogger(__name__)

#: C-MOVE "Refused: Move Destination unknown" (PS3.4 C.4.2.1.5, Table C.4-2).
MOVE_DESTINATION_UNKNOWN = 0xA801


def status_sentence(status: int | None, destination_aet: str = "") -> str:
    """Words for a final C-MOVE / C-GET / C-FIND status (PS3.4 C.4.x, PS3.7 Annex C).

    The meaning of a code is the status's own ``description`` (``net.statuses.Status``, which
    knows the service-specific codes of PS3.4); only Move Destination unknown gets a sentence
    of its own here, because the user can fix it and the sentence says how."""
    if status is None:
        return "The peer gave no final status."
    code = int(status)
    if code == MOVE_DESTINATION_UNKNOWN:
        who = f"our AE title {destination_aet!r}" if destination_aet else "our AE title"
        return (
            f"The peer does not know {who} as a move destination: add it (with this computer's "
            "address and the local server's port) to the peer's list of known AEs."
        )
    if code == 0x0000:
        return "Success."
    if code == 0xFE00:
        return "Cancelled."
    description = getattr(status, "description", "")
    if description:
        return f"The peer answered: {description} (status 0x{code:04X})."
    return f"Status 0x{code:04X}."


def retrieve_outcome(result: object, destination_aet: str = "") -> str:
    """Summary line of a RetrieveResult: counts, then the error or the status in words."""
    completed = getattr(result, "completed", 0) or 0
    failed = getattr(result, "failed", 0) or 0
    warning = getattr(result, "warning", 0) or 0
    counts = f"{completed} completed, {failed} failed, {warning} warning"
    status = getattr(result, "status", None)
    if status is not None and int(status) == MOVE_DESTINATION_UNKNOWN:
        return f"{status_sentence(status, destination_aet)} ({counts})"
    error = getattr(result, "error", None)
    if error:
        return f"{error} ({counts})"
    if status is not None and int(status) not in (0x0000,):
        return f"{status_sentence(status, destination_aet)} ({counts})"
    return f"Done: {counts}."


def _retrieve_done(result: object) -> bool:
    """No error and a Success final status (or none): what ``retrieve_outcome`` calls "Done"."""
    status = getattr(result, "status", None)
    return not getattr(result, "error", None) and (status is None or int(status) == 0x0000)


def retrieve_summary(results: list[Any], import_failed: list[Any], peer_name: str,
                     destination_aet: str, local_port: int | None,
                     method: str) -> tuple[str, str]:
    """(sentence, kind) for a whole retrieve (one RetrieveResult per item; ``import_failed``:
    (path, reason) of C-GET files the archive refused; ``method`` move, move_to or get).
    ``kind`` is a StatusLabel kind: "ok" only when every sub-operation of every item succeeded."""
    cancelled = any(getattr(r, "status", None) is not None and int(r.status) == 0xFE00
                    for r in results)
    undelivered = [move_not_delivered(r, peer_name, destination_aet, local_port,
                                      back=method == "move")
                   for r in results] if method in ("move", "move_to") else []
    undelivered = [u for u in undelivered if u]
    if not results:
        message, kind = "Retrieve cancelled.", "info"
    elif undelivered:
        message, kind = undelivered[0], "error"
    elif cancelled:
        completed = sum(int(getattr(r, "completed", 0) or 0) for r in results)
        failed = sum(int(getattr(r, "failed", 0) or 0) for r in results)
        warning = sum(int(getattr(r, "warning", 0) or 0) for r in results)
        message = (f"Cancelled (C-CANCEL): {completed} completed, {failed} failed, "
                   f"{warning} warning.")
        kind = "info"
    elif len(results) == 1:
        message = retrieve_outcome(results[0], destination_aet)
        kind = "ok" if _retrieve_done(results[0]) and not results[0].failed else "error"
    else:
        completed = sum(int(getattr(r, "completed", 0) or 0) for r in results)
        message = f"{completed} completed in {len(results)} retrieves. " + " ".join(
            retrieve_outcome(r, destination_aet) for r in results if not _retrieve_done(r))
        kind = "ok" if all(_retrieve_done(r) and not r.failed for r in results) else "error"
    if import_failed:
        message = (f"{message.strip()} {len(import_failed)} file(s) could not be put in the "
                   f"local archive: {import_failed[0][1]}")
        kind = "error"
    return message.strip(), kind


def move_not_delivered(result: object, peer_name: str, destination_aet: str,
                       local_port: int | None, back: bool = True) -> str | None:
    """Words for a C-MOVE whose images never came back (PS3.4 C.4.2.3.1: the SCP could not
    open its association to the destination), or None when that is not what happened.

    A bare "0xC000 Unable to process" does not say that the peer tried to reach us back and
    failed; this does, with the address it tried when its Error Comment names it."""
    status = getattr(result, "status", None)
    completed = int(getattr(result, "completed", 0) or 0)
    failed = int(getattr(result, "failed", 0) or 0)
    if status is None or completed:
        return None
    code = int(status)
    if code in (0x0000, 0xFE00, MOVE_DESTINATION_UNKNOWN) or (code == 0xB000 and not failed):
        return None
    if not failed and not (0xA700 <= code <= 0xA7FF or 0xC000 <= code <= 0xCFFF):
        return None
    who = destination_aet or "our AE title"
    sentence = (f"{peer_name} could not send the images {'back ' if back else ''}to {who} "
                f"(status 0x{code:04X}, {failed} failed).")
    comment = getattr(result, "error_comment", None)
    if comment:
        sentence += f" It said: \"{comment}\"."
    if local_port and back:
        sentence += (f" Check the address and port {peer_name} has for {who}: the local "
                     f"server listens on port {local_port} of this computer.")
    return sentence


def describe_exception(exc: BaseException) -> str:
    """A sentence for an exception that escaped an operation (a bug or a local OS error)."""
    _log.debug("turning exception into a sentence", exc_info=exc)
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRINUSE:
            return "The port is already used by another program."
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"Permission denied: {exc.strerror or exc}."
        if exc.errno == errno.ENOENT:
            return f"File or folder not found: {exc.filename or exc}."
        return f"System error: {exc.strerror or exc}."
    if isinstance(exc, ImportError):
        return "This function is not available in this build of dicomdesk yet."
    text = str(exc).strip()
    return f"Unexpected error: {text}" if text else f"Unexpected error ({type(exc).__name__})."
