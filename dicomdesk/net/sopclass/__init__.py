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
