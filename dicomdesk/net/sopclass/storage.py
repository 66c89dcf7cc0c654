"""Storage service class (PS3.4 Annex B; C-STORE, PS3.7 9.1.1) in both roles.

The reference's ``sopclass.storage_scu`` and ``sopclass.storage_scp`` and what a storage SCU
does around them, re-exported from the modules that do one job each:

* ``..part10``: reading a file's header (``read_part10_header``, ``scan_header``) and the
  transfer-syntax table; ``..part10_structure``: the structure check (a truncated file);
* ``storage_plan``: which presentation contexts to propose (``plan_contexts``) and which
  accepted one a file goes on (``choose_context``);
* ``storage_convert``: re-encoding an uncompressed file in another uncompressed syntax;
* ``storage_send``: ``storage_scu`` and its steps (``prepare_store``, ``send_prepared``,
  ``receive_store_status``), streaming a file from disk;
* ``storage_receive``: ``storage_scp`` and ``STORAGE_SCP_TRANSFER_SYNTAXES``.
"""

from __future__ import annotations

from typing import Any

from .. import uids  # noqa: F401 - ``storage.uids`` as before
from ..part10 import (CONVERTIBLE_TRANSFER_SYNTAXES, MEDIA_STORAGE_DIRECTORY, Part10Error,  # noqa: F401
                      Part10Header, RawValue, pydicom_warnings_logged, read_deflated_header,
                      read_file_meta, read_part10_header, scan_header)
from ..part10_structure import (check_deflated_structure, check_file_structure,  # noqa: F401
                                check_structure, check_structure_of)
from .storage_convert import converted_dataset  # noqa: F401
from .storage_plan import (FALLBACK_TRANSFER_SYNTAXES, MAX_CONTEXTS, AssociationPlan,  # noqa: F401
                           choose_context, contexts_for_class, plan_contexts, plan_for,
                           proposed_transfer_syntaxes)
from .storage_receive import storage_scp  # noqa: F401
from .storage_send import (MAX_CONVERTED_INFLATED_SIZE, PreparedStore, StorageNotSent,  # noqa: F401
                           prepare_store, receive_any_store_status, receive_store_status,
                           send_prepared, storage_scu)


def __getattr__(name: str) -> Any:
    """``STORAGE_SCP_TRANSFER_SYNTAXES``, built on first access (see ``storage_receive``)."""
    if name == "STORAGE_SCP_TRANSFER_SYNTAXES":
        from . import storage_receive

        value = globals()[name] = storage_receive.STORAGE_SCP_TRANSFER_SYNTAXES
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

