"""Service SOP classes (reference chapter 5).

The services are split into one module per service class; this package re-exports the
reference's names, and — as the reference does — the SOP class UID and status constants
(``sopclass.VERIFICATION_SOP_CLASS``, ``sopclass.SUCCESS`` …).
"""

from ..statuses import *  # noqa: F401,F403 - the reference exposes statuses here
from ..uids import *  # noqa: F401,F403 - and the SOP class UIDs
from .base import (  # noqa: F401
    MessageDispatcher,
    MessageDispatcherSCP,
    MessageDispatcherSCU,
    sop_classes,
    store_in_file,
)
from .verification import verification_scp, verification_scu  # noqa: F401
from .worklist import modality_work_list_scp, modality_work_list_scu  # noqa: F401
from .commitment import StorageCommitment, storage_commitment_scu  # noqa: F401
from .storage import storage_scp, storage_scu  # noqa: F401
from .qr import qr_cancel_scu, qr_find_scp, qr_find_scu, qr_get_scp, qr_get_scu, qr_move_scp, qr_move_scu  # noqa: F401,E501
