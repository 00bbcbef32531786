"""Who is calling: an inbound caller recognised by number, before the engine queues them.

`CallerDirectory.identify` looks the caller up in obzvon's own orders first (the latest open
order wins, else the latest one), then, for a number the database does not know, asks the CRM
with a short timeout (an adapter that can look a phone up has `lookup_phone`). The result is
the engine's `InboundCall`: the order, its category, region and time zone, and the tags the
line's priorities match:

- ``known``: the caller has an order with us;
- ``open-order``: one still to be confirmed;
- ``in-delivery``: one placed in the last `delivery_days` days and confirmed (on its way).

A lookup that fails or times out leaves the caller unknown: they still queue, with priority 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import select

from crm_bridge.intake.phone import ValidPhone, normalise_phone
from crm_bridge.masking import mask_phone
from dialer.engine.events import InboundCall
from dialer.storage.db import Database
from dialer.storage.models import DIALABLE_STATUSES, Order, OrderStatus

log = logging.getLogger(__name__)

OPEN_STATUSES = frozenset({*DIALABLE_STATUSES, OrderStatus.CALLING})
DELIVERED_STATUSES = frozenset({OrderStatus.CONFIRMED})
RECENT_ORDERS = 20
DEFAULT_TIMEZONE = "Europe/Moscow"  # a caller with no order: the shops' home zone


@runtime_checkable
class PhoneLookup(Protocol):
    """A CRM that can find a customer's latest order by phone (None: not known)."""

    async def lookup_phone(self, phone_e164: str) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class LineRules:
    """What identification needs of a line: its id and how far back "in delivery" goes."""

    line_id: str
    delivery_days: int = 14
    crm_timeout_s: float = 1.5
    default_timezone: str = DEFAULT_TIMEZONE


class CallerDirectory:
    """Recognises callers by number; see the module docstring."""

    def __init__(
        self,
        db: Database,
        *,
        crm: PhoneLookup | None = None,
        now: Callable[[], float],
    ) -> None:
        self._db = db
        self._crm = crm
        self._now = now

    async def identify(self, call_id: str, raw_caller: str, line: LineRules) -> InboundCall:
        """The engine's event for this caller on `line`, with what is known about them."""
        now = self._now()
        parsed = normalise_phone(raw_caller)
        phone = parsed.e164 if isinstance(parsed, ValidPhone) else (raw_caller or "unknown")
        base: dict[str, Any] = {
            "call_id": call_id,
            "line_id": line.line_id,
            "caller": phone,
            "timezone": line.default_timezone,
            "now": now,
        }
        if not isinstance(parsed, ValidPhone):
            return InboundCall(**base)  # a withheld or foreign-format number: nothing to find
        found = await self._from_database(phone, line, now)
        if found is None and self._crm is not None:
            found = await self._from_crm(phone, line)
        if found is None:
            log.info("inbound caller %s is not known", mask_phone(phone))
            return InboundCall(**base)
        return InboundCall(**base | found)

    async def _from_database(
        self, phone: str, line: LineRules, now: float
    ) -> dict[str, Any] | None:
        async with self._db.reading() as session:
            rows = list(
                await session.scalars(
                    select(Order)
                    .where(Order.phone_e164 == phone)
                    .order_by(Order.stored_at.desc())
                    .limit(RECENT_ORDERS)
                )
            )
        if not rows:
            return None
        since = datetime.fromtimestamp(now, UTC) - timedelta(days=line.delivery_days)
        tags = {"known"}
        open_orders = [o for o in rows if o.status in OPEN_STATUSES]
        if open_orders:
            tags.add("open-order")
        if any(o.status in DELIVERED_STATUSES and o.stored_at >= since for o in rows):
            tags.add("in-delivery")
        order = open_orders[0] if open_orders else rows[0]
        return {
            "order_id": str(order.id),
            "category": order.category,
            "region": order.region,
            "amount": float(order.amount),
            "timezone": order.timezone,
            "tags": frozenset(tags),
        }

    async def _from_crm(self, phone: str, line: LineRules) -> dict[str, Any] | None:
        assert self._crm is not None
        try:
            async with asyncio.timeout(line.crm_timeout_s):
                found = await self._crm.lookup_phone(phone)
        except TimeoutError:
            log.warning("CRM lookup of %s timed out", mask_phone(phone))
            return None
        except Exception as exc:  # the caller must queue whatever the CRM does
            log.warning("CRM lookup of %s failed: %s", mask_phone(phone), exc)
            return None
        if not found:
            return None
        out: dict[str, Any] = {"tags": frozenset({"known", *found.get("tags", ())})}
        for key in ("category", "region", "timezone"):
            if isinstance(found.get(key), str) and found[key]:
                out[key] = found[key]
        if isinstance(found.get("amount"), int | float):
            out["amount"] = float(found["amount"])
        return out
