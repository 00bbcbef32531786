"""Operators' outcomes: stored with their order update and their CRM message, all or nothing.

Like `repo`, the function never commits and takes the time as `now`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.storage.db import savepoint
from dialer.storage.errors import DispositionExists, NotFound
from dialer.storage.models import Disposition, Order, OrderStatus, OutboxEntry, Outcome

# The order status each operator outcome leads to.
STATUS_AFTER = {
    Outcome.CONFIRMED: OrderStatus.CONFIRMED,
    Outcome.UPSELL: OrderStatus.CONFIRMED,
    Outcome.REJECTED: OrderStatus.REJECTED,
    Outcome.CALLBACK: OrderStatus.CALLBACK,
    Outcome.INVALID: OrderStatus.INVALID,
    Outcome.DUPLICATE: OrderStatus.DUPLICATE,
}


async def store_outcome(
    session: AsyncSession,
    *,
    order_id: int,
    outcome: Outcome | str,
    now: datetime,
    channel_id: str | None = None,
    operator_id: str | None = None,
    reason: str | None = None,
    upsell_items: Sequence[Any] = (),
    upsell_amount: Decimal = Decimal(0),
    callback_at: datetime | None = None,
    callback_mine: bool = False,
) -> tuple[Disposition, OutboxEntry]:
    """Store an operator's outcome, update the order and queue the CRM update, all or nothing.

    The order's status follows `STATUS_AFTER`; a callback sets `callback_at` as the next
    attempt, reserved for `operator_id` when `callback_mine`. The outbox row has kind
    ``"outcome"`` and a payload with order_id, crm, external_id, outcome, reason,
    upsell_items, upsell_amount (decimal string), callback_at (ISO 8601 or null),
    operator_id, channel_id, disposition_id and at. Raises `DispositionExists` if this call
    already has an outcome, `ValueError` for an unknown outcome or a callback without a time,
    `NotFound`.
    """
    outcome = Outcome(outcome)
    if outcome is Outcome.CALLBACK and callback_at is None:
        raise ValueError("a callback outcome needs callback_at")
    order = await session.get(Order, order_id)
    if order is None:
        raise NotFound(f"no order #{order_id}")
    try:
        async with savepoint(session):
            disposition = Disposition(
                channel_id=channel_id,
                order_id=order_id,
                operator_id=operator_id,
                outcome=outcome,
                reason=reason,
                upsell_items=list(upsell_items),
                upsell_amount=upsell_amount,
                callback_at=callback_at,
                callback_mine=callback_mine,
                created_at=now,
            )
            session.add(disposition)
            await session.flush()
            order.status = STATUS_AFTER[outcome]
            order.last_outcome = outcome
            order.next_attempt_at = callback_at if outcome is Outcome.CALLBACK else None
            if outcome is Outcome.CALLBACK:
                order.callback_at = callback_at
                order.callback_operator_id = operator_id if callback_mine else None
            entry = OutboxEntry(
                order_id=order_id,
                kind="outcome",
                payload=_outcome_payload(order, disposition),
                created_at=now,
                next_try_at=now,
            )
            session.add(entry)
            await session.flush()
    except IntegrityError:
        if channel_id is not None:
            query = select(Disposition.id).where(Disposition.channel_id == channel_id)
            if (await session.scalars(query)).first() is not None:
                raise DispositionExists(f"call {channel_id} already has an outcome") from None
        raise
    return disposition, entry


def _outcome_payload(order: Order, disposition: Disposition) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "crm": order.crm,
        "external_id": order.external_id,
        "outcome": disposition.outcome,
        "reason": disposition.reason,
        "upsell_items": disposition.upsell_items,
        "upsell_amount": str(disposition.upsell_amount),
        "callback_at": disposition.callback_at.isoformat() if disposition.callback_at else None,
        "operator_id": disposition.operator_id,
        "channel_id": disposition.channel_id,
        "disposition_id": disposition.id,
        "at": disposition.created_at.isoformat(),
    }
