"""New orders into the dialer: intake rules, storage, and the engine, in that order.

`IntakeService.accept()` is the one way an order gets in, whether a CRM poll (`run_pull`) or
a shop's webhook brought it. It runs `crm_bridge.intake.order.intake` with the shop's rules
(the duplicate check against orders already stored), stores the order with every decision
made about it, and only then hands a dialable order to the engine. What a caller may rely on:

- **Idempotent on (crm, external_id).** An order already stored is neither stored nor handed
  to the engine again; the answer names the stored order (`StoredOrder.created` is False).
- **Never dialled:** an order whose number cannot be called is stored as ``invalid``, and a
  duplicate of an order that is still open or confirmed as ``duplicate``; both get an outbox
  ``outcome`` row in the same transaction, so the CRM learns at once. A duplicate of an order
  that ended otherwise (rejected, unreached...) is a new wish: it is flagged and called.
- **Flags travel with the order:** a fraud-base hit sets ``fraud`` and ``prepayment``; a phone
  region that disagrees with the delivery region delays the call to the verification time
  (`NormalisedOrder.verify_at`); `flag_reason` says all of it in words an operator reads.
- **Cursor after storage.** `run_pull` saves the CRM's cursor only once every order of the
  batch is stored: a crash in between re-reads the batch, and idempotence absorbs it.

The cursor is kept in a small JSON file (`dialer.crm_cursor.CursorFile`), not in the database:
no table has a clean place for it; the file is replaced atomically after the orders commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.adapter import CrmAdapter
from crm_bridge.errors import CrmAuthError, CrmError
from crm_bridge.intake.duplicates import RecentOrder
from crm_bridge.intake.order import AcceptedOrder, IntakeRules, NormalisedOrder, Rejected, intake
from crm_bridge.intake.phone import ValidPhone, normalise_phone
from crm_bridge.masking import mask_phone
from dialer.crm_cursor import CursorStore
from dialer.engine import events as ev
from dialer.storage import repo
from dialer.storage.db import Database
from dialer.storage.errors import OrderExists
from dialer.storage.models import Order, OrderStatus
from dialer.store import lead_of

log = logging.getLogger(__name__)

Submit = Callable[[ev.Event], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]

# Statuses of a first order that make a later one from the same phone a true duplicate: the
# first is still to be (or being) called, or the customer has already confirmed it.
_HOLDS_DUPLICATES = frozenset(
    {
        OrderStatus.NEW,
        OrderStatus.SCHEDULED,
        OrderStatus.CALLING,
        OrderStatus.CALLBACK,
        OrderStatus.CONFIRMED,
    }
)
CURRENCIES: Mapping[str, str] = {"RU": "RUB", "KZ": "KZT", "BY": "BYN", "UA": "UAH"}
# Earlier orders of one phone compared for duplicates; the rule's window bounds them anyway.
RECENT_LIMIT = 100
# How long the pull loop waits after a failure, at least, and after refused credentials.
ERROR_PAUSE_S = 30.0
AUTH_PAUSE_S = 300.0
_COUNTERS: tuple[str, ...] = ("stored", "already_stored", "rejected", "invalid", "duplicates")
_COUNTERS += ("fraud", "verification", "submitted", "pulls", "pull_errors")


@dataclass(frozen=True, slots=True)
class StoredOrder(AcceptedOrder):
    """An accepted order as stored: `order_id` is obzvon's id, `status` its status.

    `created` is False when the order was already stored (nothing was written then);
    `submitted` is True when it was handed to the engine to be called.
    """

    order_id: int
    status: str
    created: bool
    submitted: bool


@dataclass(frozen=True, slots=True)
class IntakeStatistics:
    stored: int
    already_stored: int
    rejected: int
    invalid: int
    duplicates: int
    fraud: int
    verification: int
    submitted: int
    pulls: int
    pull_errors: int
    last_pull_at: float | None
    last_error: str | None


class IntakeService:
    """Takes new orders in for campaign `campaign_id` (see the module docstring).

    `submit` feeds an event to the engine (`Daemon.submit`); `now` and `sleep` are the
    daemon's clock, used only by `run_pull`.
    """

    def __init__(
        self,
        *,
        db: Database,
        rules: IntakeRules,
        campaign_id: str,
        submit: Submit,
        now: Callable[[], float],
        sleep: Sleep,
    ) -> None:
        self._db = db
        self._rules = rules
        self._campaign_id = campaign_id
        self._submit = submit
        self._now = now
        self._sleep = sleep
        # The duplicate check reads earlier orders and then writes this one: two orders from
        # one phone taken in at once must not both miss each other.
        self._lock = asyncio.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._last_pull_at: float | None = None
        self._last_error: str | None = None

    def statistics(self) -> IntakeStatistics:
        return IntakeStatistics(
            **self._counts, last_pull_at=self._last_pull_at, last_error=self._last_error
        )

    async def accept(
        self, raw: Mapping[str, Any] | object, *, crm: str, now: datetime
    ) -> StoredOrder | Rejected:
        """Take in one raw order from `crm` at `now`. `Rejected` names every bad field and
        stores nothing; otherwise the order is stored (or was already) and, if dialable, in
        the engine when this returns. Database errors propagate; nothing is then stored."""
        if isinstance(raw, Mapping):
            raw = {**raw, "crm": crm}  # the source decides the namespace, not the body
        async with self._lock:
            async with self._db.session() as session:
                recent = await self._recent(session, raw)
                decision = intake(raw, rules=self._rules, now=now, recent=recent)
                if isinstance(decision, Rejected):
                    self._counts["rejected"] += 1
                    return decision
                stored = await self._store(session, decision.order, now)
        if isinstance(stored, StoredOrder):
            return stored
        order = stored
        submitted = False
        if order.status == OrderStatus.NEW:
            try:
                await self._submit(ev.OrderArrived(lead=lead_of(order), now=now.timestamp()))
                submitted = True
                self._counts["submitted"] += 1
            except Exception:
                # Stored is what matters: the engine picks pending orders up at start-up.
                log.exception("order #%d stored but not handed to the engine", order.id)
        self._log(decision.order, order)
        return StoredOrder(
            decision.order,
            order_id=order.id,
            status=order.status,
            created=True,
            submitted=submitted,
        )

    async def _recent(self, session: AsyncSession, raw: object) -> list[RecentOrder]:
        phone = raw.get("phone") if isinstance(raw, Mapping) else None
        if not isinstance(phone, str):
            return []
        parsed = normalise_phone(phone, default_region=self._rules.default_region)
        if not isinstance(parsed, ValidPhone):
            return []
        rows = await session.scalars(
            select(Order)
            .where(Order.phone_e164 == parsed.e164)
            .order_by(Order.created_at.desc())
            .limit(RECENT_LIMIT)
        )
        return [
            RecentOrder(
                order_id=str(o.id),
                e164=o.phone_e164,
                created_at=o.created_at,
                skus=frozenset(str(i.get("sku")) for i in o.items if isinstance(i, dict)),
                categories=frozenset(
                    str(i["category"]) for i in o.items if isinstance(i, dict) and i.get("category")
                ),
            )
            for o in rows
        ]

    async def _store(
        self,
        session: AsyncSession,
        n: NormalisedOrder,
        now: datetime,
    ) -> StoredOrder | Order:
        first_id = int(n.duplicate_of) if n.duplicate_of is not None else None
        first = await session.get(Order, first_id) if first_id is not None else None
        first_status = first.status if first is not None else None
        if n.phone is None:
            status = OrderStatus.INVALID
        elif first_status in _HOLDS_DUPLICATES:
            status = OrderStatus.DUPLICATE
        else:
            status = OrderStatus.NEW
        country = n.delivery_country or (n.phone.region if n.phone is not None else None)
        try:
            order = await repo.add_order(
                session,
                crm=n.crm,
                external_id=n.external_id,
                phone_e164=n.phone.e164 if n.phone is not None else "",
                campaign_id=self._campaign_id,
                timezone=n.timezone.tz,
                created_at=n.created_at,
                now=now,
                customer_name=n.customer_name,
                address=", ".join(p for p in (n.delivery_city, n.delivery_address) if p),
                region=_region_key(n, self._rules),
                category=next((i.category[:64] for i in n.items if i.category), None),
                items=[_item(i) for i in n.items],
                amount=n.total if n.total is not None else _sum(n),
                currency=CURRENCIES.get(country or "", "RUB"),
                status=status,
                duplicate=n.duplicate_of is not None,
                invalid=n.phone is None,
                fraud=n.prepayment_only,
                prepayment=n.prepayment_only,
                duplicate_of=first_id,
                flag_reason="; ".join(n.flag_reasons) or None,
                next_attempt_at=n.verify_at if status == OrderStatus.NEW else None,
            )
        except OrderExists as exc:
            self._counts["already_stored"] += 1
            existing = await session.get(Order, exc.order_id)
            return StoredOrder(
                n,
                order_id=exc.order_id,
                status=existing.status if existing is not None else "",
                created=False,
                submitted=False,
            )
        if status != OrderStatus.NEW:
            if n.phone is None:
                reason = n.phone_invalid
            else:  # the CRM knows the first order by its own id
                assert first is not None
                reason = f"duplicate of order {first.external_id} (obzvon #{first.id})"
            await repo.add_outbox(
                session,
                kind="outcome",
                order_id=order.id,
                now=now,
                payload={
                    "order_id": order.id,
                    "crm": order.crm,
                    "external_id": order.external_id,
                    "outcome": str(status),
                    "reason": reason,
                    "duplicate_of": first_id,
                    "at": now.isoformat(),
                },
            )
        return order

    def _log(self, n: NormalisedOrder, order: Order) -> None:
        self._counts["stored"] += 1
        self._counts["invalid"] += int(order.status == OrderStatus.INVALID)
        self._counts["duplicates"] += int(order.duplicate)
        self._counts["fraud"] += int(order.fraud)
        self._counts["verification"] += int(n.region_mismatch)
        phone = mask_phone(order.phone_e164) if order.phone_e164 else "no number"
        log.info(
            "order %s/%s stored as #%d (%s, %s)%s",
            order.crm,
            order.external_id,
            order.id,
            order.status,
            phone,
            f": {order.flag_reason}" if order.flag_reason else "",
        )

    # -- the CRM poll ---------------------------------------------------------------------

    async def pull_once(self, adapter: CrmAdapter, cursors: CursorStore) -> bool:
        """Pull one batch, store every order, then save the cursor; True if the CRM has more.

        An order intake refuses is not stored; the CRM gets a manager comment saying why
        (outbox ``outcome`` ``not-taken``), its status untouched. Errors propagate, and the
        cursor is then not saved.
        """
        cursor = cursors.load()
        batch = await adapter.pull_orders(cursor)
        at = datetime.fromtimestamp(self._now(), UTC)
        for crm_order in batch.orders:
            result = await self.accept(crm_order.data, crm=adapter.name, now=at)
            if isinstance(result, Rejected):
                await self._not_taken(adapter.name, crm_order.external_id, result, at)
        if batch.cursor != cursor:
            cursors.save(batch.cursor)
        self._counts["pulls"] += 1
        self._last_pull_at = self._now()
        return batch.more

    async def _not_taken(
        self, crm: str, external_id: str, rejected: Rejected, at: datetime
    ) -> None:
        reason = "; ".join(f"{f or 'order'}: {r}" for f, r in rejected.errors)
        log.warning("order %s/%s not taken in: %s", crm, external_id, reason)
        async with self._db.session() as session:
            await repo.add_outbox(
                session,
                kind="outcome",
                now=at,
                payload={
                    "order_id": None,
                    "crm": crm,
                    "external_id": external_id,
                    "outcome": "not-taken",
                    "reason": reason,
                    "at": at.isoformat(),
                },
            )

    async def run_pull(self, adapter: CrmAdapter, cursors: CursorStore, interval_s: float) -> None:
        """Poll `adapter` every `interval_s` (at once again while it has more) until cancelled.

        No error ends the loop: a CRM that is down or refuses the key, a database that is
        away, a bug in one order are logged and the poll tried again after a pause.
        """
        while True:
            pause = interval_s
            try:
                if await self.pull_once(adapter, cursors):
                    continue
            except asyncio.CancelledError:
                raise
            except CrmAuthError as exc:
                pause = max(interval_s, AUTH_PAUSE_S)
                self._failed(f"{adapter.name} refused the credentials: {exc}", alarm=True)
            except CrmError as exc:
                pause = max(interval_s, ERROR_PAUSE_S)
                self._failed(f"{adapter.name}: {exc}", alarm=False)
            except Exception as exc:
                pause = max(interval_s, ERROR_PAUSE_S)
                log.exception("pulling orders from %s failed", adapter.name)
                self._failed(f"{type(exc).__name__}: {exc}", alarm=None)
            await self._sleep(pause)

    def _failed(self, message: str, *, alarm: bool | None) -> None:
        self._counts["pull_errors"] += 1
        self._last_error = message
        if alarm:
            log.error("ALARM: %s; no new orders until it is fixed", message)
        elif alarm is not None:
            log.warning("pulling orders failed: %s; trying again later", message)


def _region_key(n: NormalisedOrder, rules: IntakeRules) -> str | None:
    # The delivery region when it names exactly one, else the phone's, else nothing.
    if n.region_check is not None:
        for keys in (n.region_check.delivery_regions, n.region_check.phone_regions):
            if len(keys) == 1:
                return next(iter(keys))[:16]
    found = rules.regions.resolve(n.delivery_region)
    return next(iter(found)).key[:16] if len(found) == 1 else None


def _item(i: Any) -> dict[str, Any]:
    price = i.price
    return {
        "sku": i.sku,
        "name": i.name,
        "category": i.category,
        "qty": i.quantity,
        "price": int(price) if price == price.to_integral_value() else float(price),
    }


def _sum(n: NormalisedOrder) -> Decimal:
    return sum((i.price * i.quantity for i in n.items), Decimal(0))
