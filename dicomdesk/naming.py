"""UIDs as names a person reads (PS3.6 Annex A): the one UID-to-display-name helper.

pydicom's UID dictionary knows every SOP class and transfer syntax of PS3.6; a UID it does not
know (a private SOP class, an instance UID) is shown as itself. The lookup is
``net.uids.sop_class_name`` (the copy of pydicom's tables first, so a SOP class is named without
importing pydicom); this module adds what people need on top: "" for "", a short form, and any
string accepted. Kept apart from ``net/uids.py`` because it serves people, not the protocol.
"""

from __future__ import annotations

import functools

__all__ = ["uid_name"]


@functools.lru_cache(maxsize=1024)
def uid_name(uid: str, short: bool = False) -> str:
    """The UID's name (``"CT Image Storage"``), or the UID itself when it has none; ``""`` for
    ``""``. ``short`` drops the " Storage" every storage SOP class name ends with, for narrow
    columns (``"CT Image"``)."""
    if not uid:
        return ""
    from dicomdesk.net.uids import sop_class_name

    try:
        name = sop_class_name(uid)
    except Exception:  # not a UID pydicom can parse: show what was given
        return uid
    if short and name != uid:
        name = name.replace(" Storage", "")
    return name
