"""What every CRM adapter offers, and the values that cross it.

A new CRM is one new module implementing `CrmAdapter`. The caller (the daemon's CRM poller
and outbox relay) relies on these rules, whatever the CRM:

- `pull_orders(cursor)` returns the orders new since `cursor` and the next cursor. The caller
  stores the orders first and saves the cursor only after; a crash in between re-reads the
  batch instead of skipping it, so storage must be idempotent on (crm, external_id).
- `upload_calls` may be given any number of calls; the adapter batches them as the CRM needs.
  A call the CRM already has (same `external_id`) counts as delivered, so the caller may
  re-send everything after a crash. Calls the CRM refuses come back in `rejected`, one by
  one, for the dead-letter list; the rest are delivered.
- `update_order` raises `CrmRejected` if the CRM refuses the change.
- Every method raises `CrmUnavailable` once retries are exhausted (the caller tries later),
  `CrmAuthError` when the credentials are refused.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from crm_bridge.errors import CrmRejected


@dataclass(frozen=True, slots=True, kw_only=True)
class CrmOrder:
    """An order as pulled from a CRM.

    `external_id` is the CRM's own id of the order (the key for idempotent storage together
    with `crm`); `data` is the order in the raw shape `crm_bridge.intake.order.intake` reads.
    """

    crm: str
    external_id: str
    number: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderBatch:
    """New orders and the cursor to save once they are stored.

    `cursor` is opaque text: store it verbatim and pass it back. `more` is true when the CRM
    had more than fit in this batch, so the caller may pull again at once.
    """

    orders: tuple[CrmOrder, ...]
    cursor: str | None
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPage:
    """One page of a first full sync of orders."""

    orders: tuple[CrmOrder, ...]
    page: int
    total_pages: int


class CallDirection(enum.StrEnum):
    OUT = "out"
    IN = "in"


class CallResult(enum.StrEnum):
    """How a call ended, in RetailCRM's words (other adapters translate)."""

    ANSWERED = "answered"
    BUSY = "busy"
    FAILED = "failed"
    NO_ANSWER = "no answer"
    NOT_ALLOWED = "not allowed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """A finished call to report. `external_id` is the call's ChannelId: unique, and the
    CRM's key for recognising a call it already has."""

    external_id: str
    started_at: datetime
    direction: CallDirection
    phone: str
    result: CallResult
    duration_s: int = 0
    waiting_s: int = 0
    operator_code: str | None = None
    operator_id: int | None = None
    record_url: str | None = None
    order_external_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUpdate:
    """A change to an order: a new status, a comment for the manager, custom fields.

    `key` names the message this update comes from (the outbox row's id) where the sender
    knows it; an adapter whose CRM takes an idempotency key sends it.
    """

    external_id: str
    status: str | None = None
    manager_comment: str | None = None
    custom_fields: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)
    key: str | None = None


@dataclass(frozen=True, slots=True)
class RejectedCall:
    external_id: str
    error: CrmRejected


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadResult:
    """Per call: delivered now, already known to the CRM (also delivered), or refused."""

    delivered: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    rejected: tuple[RejectedCall, ...] = ()

    @property
    def done(self) -> tuple[str, ...]:
        """Every call the CRM now has: delivered or duplicate."""
        return self.delivered + self.duplicates


class CrmAdapter(Protocol):
    """A CRM, seen from obzvon. See the module docstring for the guarantees."""

    name: str

    async def pull_orders(self, cursor: str | None) -> OrderBatch: ...

    async def update_order(self, update: OrderUpdate) -> None: ...

    async def upload_calls(self, calls: Sequence[CallRecord]) -> UploadResult: ...

    async def aclose(self) -> None: ...
