"""Service SOP classes (reference chapter 5).

The services are split into one module per service class; this package re-exports the
reference's names, and — as the reference does — the SOP class UID and status constants
(``sopclass.VERIFICATION_SOP_CLASS``, ``sopclass.SUCCESS`` …).

The services are exported lazily (PEP 562): ``from dicomdesk.net.sopclass import
verification_scu`` imports the verification module only, so ``dicomdesk echo`` never loads
the services that need pydicom (worklist, commitment, storage, Q/R). The constants are
plain values of ``statuses`` and ``uids`` and are imported eagerly; ``STORAGE_SOP_CLASSES``
stays lazy as it is in ``uids``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .. import statuses as _statuses
from .. import uids as _uids
from ..statuses import *  # noqa: F401,F403 - the reference exposes statuses here
from ..uids import *  # noqa: F401,F403 - and the SOP class UIDs

#: Exported name → submodule of this package that defines it.
_EXPORTS = {
    "MessageDispatcher": "base", "MessageDispatcherSCP": "base", "MessageDispatcherSCU": "base",
    "sop_classes": "base", "store_in_file": "base",
    "verification_scp": "verification", "verification_scu": "verification",
    "modality_work_list_scp": "worklist", "modality_work_list_scu": "worklist",
    "StorageCommitment": "commitment", "storage_commitment_scu": "commitment",
    "storage_scp": "storage", "storage_scu": "storage",
    "qr_cancel_scu": "qr", "qr_find_scp": "qr", "qr_find_scu": "qr", "qr_get_scp": "retrieve",
    "qr_get_scu": "retrieve", "qr_move_scp": "retrieve", "qr_move_scu": "retrieve",
    "FIND_SOP_CLASSES": "qr", "GET_SOP_CLASSES": "qr", "MOVE_SOP_CLASSES": "qr",
}

#: Modules of ``dicomdesk.net`` that the reference's ``sopclass`` imports and so exposes
#: as attributes (``sopclass.dimsemessages.CStoreRQMessage`` works there, so it works here).
_NET_MODULES = ("statuses", "dimsemessages", "exceptions")


#: The service modules, importable as attributes (``sopclass.storage``) as before.
_SUBMODULES = ("base", "verification", "worklist", "commitment", "storage", "qr", "retrieve")


def _public(module: Any) -> list[str]:
    """The constants (upper-case names) and the functions/classes a module defines."""
    return [n for n in dir(module) if not n.startswith("_") and (
        n.isupper() or getattr(getattr(module, n), "__module__", None) == module.__name__)]


__all__ = sorted(set(_EXPORTS) | set(_public(_statuses)) | set(_public(_uids)))


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    elif name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    elif name in _NET_MODULES:
        return importlib.import_module(f"dicomdesk.net.{name}")
    elif name in getattr(_uids, "_LAZY_NAMES", ()):
        value = getattr(_uids, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES) | set(_NET_MODULES))
