"""The one exception tree of crm_bridge.

Whose fault it was decides what the caller does:

- `CrmRejected`: the CRM understood the request and refused it (a validation error, an unknown
  order). Sending it again will not help; the caller puts the item on a dead-letter list.
- `CrmAuthError`: the CRM refused the credentials. Nothing will get through until the
  configuration is fixed; the caller alarms instead of dead-lettering every item.
- `CrmUnavailable`: the CRM could not be reached or kept answering "busy" (5xx, 429, network
  errors) after every retry. The item is still good; the caller tries again later.
- `CrmInDoubt` (a `CrmUnavailable`): a request the CRM may have processed lost its answer
  (a timeout, a reset connection, a 5xx). Raised only for requests the CRM would not
  recognise if sent again; the adapter checks what the CRM has before sending them again.
- `CrmProtocolError`: the CRM answered something that is not its documented format.
- `DataFileError`: a fraud base or numbering-plan file could not be read.

httpx, phonenumbers and numpy errors never leave this package: they are translated here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Error detail as the CRM sends it: RetailCRM answers a mapping of field → message, some
# endpoints a plain list of messages.
ErrorDetail = Mapping[str, str] | Sequence[str]


class CrmBridgeError(Exception):
    """Base of every error raised by crm_bridge."""


class CrmError(CrmBridgeError):
    """An exchange with a CRM failed. `crm` names the adapter ("retailcrm", ...)."""

    def __init__(self, message: str, *, crm: str) -> None:
        super().__init__(message)
        self.message = message
        self.crm = crm


class CrmRejected(CrmError):
    """The CRM refused the request; retrying the same request cannot succeed.

    `message` is the CRM's own message (RetailCRM's ``errorMsg``), `errors` its detail
    (RetailCRM's ``errors``) and `status` the HTTP status it came with.
    """

    def __init__(
        self,
        message: str,
        errors: ErrorDetail | None = None,
        *,
        crm: str,
        status: int | None = None,
    ) -> None:
        super().__init__(message, crm=crm)
        self.errors: ErrorDetail = errors if errors is not None else {}
        self.status = status

    def __str__(self) -> str:
        if not self.errors:
            return self.message
        if isinstance(self.errors, Mapping):
            detail = "; ".join(f"{k}: {v}" for k, v in self.errors.items())
        else:
            detail = "; ".join(str(e) for e in self.errors)
        return f"{self.message} ({detail})"


class CrmAuthError(CrmError):
    """The CRM refused the API key or token (HTTP 401/403)."""


class CrmUnavailable(CrmError):
    """The CRM stayed unreachable or overloaded through every retry; try again later."""


class CrmInDoubt(CrmUnavailable):
    """A request may have been processed but its answer was lost; sending it again blindly
    could do it twice."""


class CrmProtocolError(CrmError):
    """The CRM's answer did not have the documented shape."""


class DataFileError(CrmBridgeError):
    """A data file (fraud base, numbering plan) is missing or malformed; says where."""
