"""The outbox: messages for the CRM, kept until delivered.

A message is written in the same transaction as the change it reports (`repo.store_outcome`
writes its own), so nothing reaches the CRM that is not stored and nothing stored is lost. The
relay takes pending messages, delivers them and marks each delivered or failed. Like `repo`,
these functions never commit and take the time as `now`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.storage.errors import NotFound
from dialer.storage.models import OutboxEntry

# The longest error text kept per message; a CRM can answer with a whole HTML page.
MAX_ERROR_CHARS = 2000


LOCAL_CRM: Final = "obzvon"
"""The `crm` of orders obzvon made itself, which no CRM knows."""


async def add_outbox(
    session: AsyncSession,
    *,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    order_id: int | None = None,
) -> OutboxEntry | None:
    """Queue a message of `kind` (e.g. ``"recording"``), to be sent from `now` on.

    Orders obzvon made itself (`LOCAL_CRM`: the callback an inbound caller without an order
    asked for) have no CRM to tell: nothing is queued for them, and None is returned.
    """
    if payload.get("crm") == LOCAL_CRM:
        return None
    entry = OutboxEntry(
        order_id=order_id, kind=kind, payload=payload, created_at=now, next_try_at=now
    )
    session.add(entry)
    await session.flush()
    return entry


async def pending_outbox(
    session: AsyncSession, *, now: datetime, limit: int, lease_s: float | None = None
) -> list[OutboxEntry]:
    """Up to `limit` messages due at `now`, neither delivered nor given up, oldest due first.

    With `lease_s` the messages are also taken: none of them is returned again before
    `now + lease_s` unless marked failed with an earlier retry, so two relays (or a relay
    that crashed mid-delivery and restarted) do not send at once. On PostgreSQL the rows are
    read with ``FOR UPDATE SKIP LOCKED``, so concurrent relays take different messages.
    """
    query = (
        select(OutboxEntry)
        .where(
            OutboxEntry.delivered_at.is_(None),
            OutboxEntry.dead.is_(False),
            OutboxEntry.next_try_at <= now,
        )
        .order_by(OutboxEntry.next_try_at, OutboxEntry.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    entries = list((await session.scalars(query)).all())
    if lease_s is not None:
        for entry in entries:
            entry.next_try_at = now + timedelta(seconds=lease_s)
        await session.flush()
    return entries


async def mark_delivered(session: AsyncSession, ids: Iterable[int], *, now: datetime) -> int:
    """Mark messages delivered at `now`; returns how many were not marked already."""
    wanted = list(ids)
    if not wanted:
        return 0
    result = await session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.id.in_(wanted), OutboxEntry.delivered_at.is_(None))
        .values(delivered_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0))


async def mark_failed(
    session: AsyncSession,
    entry_id: int,
    *,
    error: str,
    now: datetime,
    retry_at: datetime | None,
) -> OutboxEntry:
    """Record a failed delivery; try again at `retry_at`, or give up (`dead`) when it is
    `None`. `NotFound` for an unknown id."""
    entry = await session.get(OutboxEntry, entry_id)
    if entry is None:
        raise NotFound(f"no outbox message #{entry_id}")
    entry.attempts += 1
    entry.last_error = f"{now.isoformat()} {error}"[:MAX_ERROR_CHARS]
    if retry_at is None:
        entry.dead = True
    else:
        entry.next_try_at = retry_at
    await session.flush()
    return entry
