"""CRMs: order intake rules, adapters, and the errors they raise. See docs/crm.md.

crm_bridge never imports dialer/, pbx/ or acd/; the daemon composes it.
"""

from crm_bridge.adapter import (
    CallDirection,
    CallRecord,
    CallResult,
    CrmAdapter,
    CrmOrder,
    OrderBatch,
    OrderUpdate,
    UploadResult,
)
from crm_bridge.errors import (
    CrmAuthError,
    CrmBridgeError,
    CrmError,
    CrmInDoubt,
    CrmProtocolError,
    CrmRejected,
    CrmUnavailable,
    DataFileError,
)

__all__ = [
    "CallDirection",
    "CallRecord",
    "CallResult",
    "CrmAdapter",
    "CrmAuthError",
    "CrmBridgeError",
    "CrmError",
    "CrmInDoubt",
    "CrmOrder",
    "CrmProtocolError",
    "CrmRejected",
    "CrmUnavailable",
    "DataFileError",
    "OrderBatch",
    "OrderUpdate",
    "UploadResult",
]
