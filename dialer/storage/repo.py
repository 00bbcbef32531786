"""The queries the daemon runs: orders, call attempts and outcomes.

Every function takes an `AsyncSession` and never commits: the caller's transaction
(`Database.session()`) decides what is kept. A function that can be refused by a constraint
does its writes inside a SAVEPOINT, so a refusal (`LiveAttemptExists`, `OrderExists`,
`DispositionExists`) writes nothing and leaves the caller's transaction usable. Times are
passed in (`now`), never read from the clock here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.storage.db import savepoint
from dialer.storage.errors import (
    ChannelIdInUse,
    LiveAttemptExists,
    NotFound,
    OrderClosed,
    OrderExists,
)
from dialer.storage.models import (
    DIALABLE_STATUSES,
    FINAL_STATUSES,
    CallAttempt,
    Order,
    OrderStatus,
)

# The outbox and outcome queries live in modules of their own; they are re-exported here as part
# of what the daemon runs.
from dialer.storage.outbox import add_outbox, mark_delivered, mark_failed, pending_outbox
from dialer.storage.outcomes import STATUS_AFTER, store_outcome

__all__ = [
    "STATUS_AFTER",
    "add_order",
    "add_outbox",
    "defer_order",
    "due_orders",
    "find_order",
    "finish_attempt",
    "live_attempts",
    "mark_delivered",
    "mark_failed",
    "pending_outbox",
    "start_attempt",
    "store_outcome",
    "update_attempt",
]


async def add_order(
    session: AsyncSession,
    *,
    crm: str,
    external_id: str,
    phone_e164: str,
    campaign_id: str,
    timezone: str,
    created_at: datetime,
    now: datetime,
    customer_name: str = "",
    address: str = "",
    region: str | None = None,
    category: str | None = None,
    items: Sequence[Any] = (),
    amount: Decimal = Decimal(0),
    currency: str = "RUB",
    status: OrderStatus = OrderStatus.NEW,
    duplicate: bool = False,
    invalid: bool = False,
    fraud: bool = False,
    prepayment: bool = False,
    duplicate_of: int | None = None,
    flag_reason: str | None = None,
    next_attempt_at: datetime | None = None,
) -> Order:
    """Store a new order taken in at `now`; `OrderExists` if this CRM's order is stored."""
    order = Order(
        crm=crm,
        external_id=external_id,
        phone_e164=phone_e164,
        campaign_id=campaign_id,
        timezone=timezone,
        created_at=created_at,
        stored_at=now,
        customer_name=customer_name,
        address=address,
        region=region,
        category=category,
        items=list(items),
        amount=amount,
        currency=currency,
        status=status,
        duplicate=duplicate,
        invalid=invalid,
        fraud=fraud,
        prepayment=prepayment,
        duplicate_of=duplicate_of,
        flag_reason=flag_reason,
        next_attempt_at=next_attempt_at,
    )
    try:
        async with savepoint(session):
            session.add(order)
            await session.flush()
    except IntegrityError:
        existing = await find_order(session, crm=crm, external_id=external_id)
        if existing is None:
            raise
        raise OrderExists(crm=crm, external_id=external_id, order_id=existing.id) from None
    return order


async def find_order(session: AsyncSession, *, crm: str, external_id: str) -> Order | None:
    """The order this CRM knows as `external_id`, if stored."""
    query = select(Order).where(Order.crm == crm, Order.external_id == external_id)
    return (await session.scalars(query)).one_or_none()


async def due_orders(
    session: AsyncSession,
    campaign_id: str,
    now: datetime,
    limit: int,
    *,
    include_locked_out: bool = False,
) -> list[Order]:
    """Up to `limit` orders of the campaign that may be dialled at `now`, best first.

    Never-called orders come first, oldest order first; then due retries and callbacks, the
    longest overdue first. Orders with a live call attempt are skipped, and so are orders
    whose abandoned-call lockout has not expired unless `include_locked_out`. The calling
    window and daily attempt limits are the caller's to apply (`defer_order`).

    On PostgreSQL the rows stay locked (``FOR UPDATE SKIP LOCKED``) until the transaction
    ends, so dialer processes sharing the database take different orders; start the
    attempts in the same transaction.
    """
    live = (
        select(CallAttempt.channel_id)
        .where(CallAttempt.order_id == Order.id, CallAttempt.ended_at.is_(None))
        .exists()
    )
    fresh = Order.status == OrderStatus.NEW
    query = (
        select(Order)
        .where(
            Order.campaign_id == campaign_id,
            Order.status.in_(DIALABLE_STATUSES),
            or_(Order.next_attempt_at.is_(None), Order.next_attempt_at <= now),
            ~live,
        )
        .order_by(
            case((fresh, 0), else_=1),
            case(
                (fresh, Order.created_at),
                else_=func.coalesce(Order.next_attempt_at, Order.created_at),
            ),
            Order.id,
        )
        .limit(limit)
    )
    if not include_locked_out:
        query = query.where(
            or_(Order.abandoned_lockout_until.is_(None), Order.abandoned_lockout_until <= now)
        )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Order)
    return list((await session.scalars(query)).all())


async def defer_order(session: AsyncSession, order_id: int, *, until: datetime) -> None:
    """Keep the order out of `due_orders` until `until` (outside its calling window, or its
    attempts for the day used up); its status does not change."""
    order = await _order(session, order_id)
    order.next_attempt_at = until
    await session.flush()


async def start_attempt(
    session: AsyncSession,
    *,
    order_id: int,
    channel_id: str,
    now: datetime,
    ami_server: str | None = None,
    operator_id: str | None = None,
    originated_at: datetime | None = None,
) -> CallAttempt:
    """Record a call about to be placed with ChannelId `channel_id`, before the Originate
    (`originated_at`: when it is sent, if known now).

    The order becomes `CALLING` and its attempt counters go up (the daily one counts per
    customer-local day). Raises `LiveAttemptExists` if the order is already being called,
    `ChannelIdInUse`, `OrderClosed` for an order with a final status, `NotFound`; in each
    case nothing is written.
    """
    order = await _order(session, order_id)
    if order.status in FINAL_STATUSES:
        raise OrderClosed(order_id=order_id, status=order.status)
    attempt = CallAttempt(
        channel_id=channel_id,
        order_id=order_id,
        campaign_id=order.campaign_id,
        queued_at=now,
        originated_at=originated_at,
        ami_server=ami_server,
        operator_id=operator_id,
    )
    try:
        async with savepoint(session):
            session.add(attempt)
            await session.flush()
    except IntegrityError:
        live = await live_attempts(session, order_id=order_id)
        if live:
            raise LiveAttemptExists(order_id=order_id, channel_id=live[0].channel_id) from None
        if await session.get(CallAttempt, channel_id) is not None:
            raise ChannelIdInUse(f"ChannelId {channel_id} was used before") from None
        raise
    day = now.astimezone(_zone(order.timezone)).date()
    order.attempts_today = order.attempts_today + 1 if order.attempts_day == day else 1
    order.attempts_day = day
    order.attempts += 1
    order.status = OrderStatus.CALLING
    order.next_attempt_at = None
    if order.first_call_at is None:
        order.first_call_at = now
    await session.flush()
    return attempt


async def update_attempt(
    session: AsyncSession,
    channel_id: str,
    *,
    originated_at: datetime | None = None,
    answered_at: datetime | None = None,
    connected_at: datetime | None = None,
    operator_id: str | None = None,
    recording_path: str | None = None,
    ami_server: str | None = None,
) -> CallAttempt:
    """Record how a live call got on; arguments left `None` are not changed. `NotFound`."""
    attempt = await _attempt(session, channel_id)
    changes = {
        "originated_at": originated_at,
        "answered_at": answered_at,
        "connected_at": connected_at,
        "operator_id": operator_id,
        "recording_path": recording_path,
        "ami_server": ami_server,
    }
    for name, value in changes.items():
        if value is not None:
            setattr(attempt, name, value)
    await session.flush()
    return attempt


async def finish_attempt(
    session: AsyncSession,
    channel_id: str,
    *,
    ended_at: datetime,
    outcome: str,
    hangup_cause: int | None = None,
    order_status: OrderStatus | None = None,
    next_attempt_at: datetime | None = None,
    abandoned_lockout_until: datetime | None = None,
) -> CallAttempt:
    """Record the end of a call, freeing its order for the next attempt.

    If no operator outcome was stored for the order meanwhile (it is still `CALLING`), the
    order takes `order_status` (by default `SCHEDULED` when `next_attempt_at` is given,
    else `UNREACHED`), `next_attempt_at` and `outcome` as its last outcome; an outcome
    already stored is kept. Finishing an attempt that has ended changes nothing, so a hangup
    seen twice (after a reconnect) is harmless. `NotFound` for an unknown ChannelId.
    """
    attempt = await _attempt(session, channel_id)
    if attempt.ended_at is not None:
        return attempt
    attempt.ended_at = ended_at
    attempt.outcome = outcome
    attempt.hangup_cause = hangup_cause
    order = await _order(session, attempt.order_id)
    if abandoned_lockout_until is not None:
        order.abandoned_lockout_until = abandoned_lockout_until
    if order.status == OrderStatus.CALLING:
        default = OrderStatus.SCHEDULED if next_attempt_at else OrderStatus.UNREACHED
        order.status = order_status or default
        order.next_attempt_at = next_attempt_at
        order.last_outcome = outcome
    await session.flush()
    return attempt


async def live_attempts(session: AsyncSession, *, order_id: int | None = None) -> list[CallAttempt]:
    """Call attempts that have not ended (of one order, or all), oldest first: what to match
    against Asterisk's channels at start-up or after a reconnect."""
    query = select(CallAttempt).where(CallAttempt.ended_at.is_(None))
    if order_id is not None:
        query = query.where(CallAttempt.order_id == order_id)
    return list((await session.scalars(query.order_by(CallAttempt.queued_at))).all())


async def _order(session: AsyncSession, order_id: int) -> Order:
    order = await session.get(Order, order_id)
    if order is None:
        raise NotFound(f"no order #{order_id}")
    return order


async def _attempt(session: AsyncSession, channel_id: str) -> CallAttempt:
    attempt = await session.get(CallAttempt, channel_id)
    if attempt is None:
        raise NotFound(f"no call attempt {channel_id}")
    return attempt


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # Intake validates zones; a bad one must not stop calls, so count days in UTC.
        return ZoneInfo("UTC")
