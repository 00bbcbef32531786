"""The outbox as an admin sees it: the backlog, the dead letters, and sending them again.

A dead letter is a message the CRM refused (its own message is kept in `error`) or one no
configured adapter can deliver. Nothing is deleted: once the cause is fixed (a status missing
in the CRM, an adapter configured), `requeue` hands the messages back to the relay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from dialer.storage.db import Database
from dialer.storage.models import OutboxEntry

_PENDING = OutboxEntry.delivered_at.is_(None) & OutboxEntry.dead.is_(False)
_DEAD = OutboxEntry.delivered_at.is_(None) & OutboxEntry.dead.is_(True)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """One message given up on. `error` starts with the time of the last attempt."""

    id: int
    order_id: int | None
    kind: str
    crm: str | None
    external_id: str | None
    error: str | None
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Backlog:
    """Messages not yet delivered (`count`, the oldest stored at `oldest`), dead letters, and
    the undelivered ones stored before the cutoff asked for: (id, kind, stored at)."""

    count: int
    oldest: datetime | None
    dead: int
    overdue: tuple[tuple[int, str, datetime], ...]


async def dead_letters(db: Database, *, limit: int = 100) -> list[DeadLetter]:
    """The newest `limit` dead letters, newest first."""
    async with db.reading() as s:
        rows = await s.scalars(select(OutboxEntry).where(_DEAD).order_by(OutboxEntry.id.desc()))
        return [
            DeadLetter(
                id=e.id,
                order_id=e.order_id,
                kind=e.kind,
                crm=_str(e.payload.get("crm")),
                external_id=_str(e.payload.get("external_id")),
                error=e.last_error,
                attempts=e.attempts,
                created_at=e.created_at,
            )
            for e in rows.fetchmany(limit)
        ]


async def requeue(db: Database, ids: Iterable[int], *, now: datetime) -> int:
    """Send these dead letters again from `now`; returns how many were dead letters."""
    wanted = list(ids)
    if not wanted:
        return 0
    async with db.session() as s:
        result = await s.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id.in_(wanted), _DEAD)
            .values(dead=False, next_try_at=now)
        )
        return int(getattr(result, "rowcount", 0))


async def backlog(db: Database, *, overdue_before: datetime, overdue_limit: int) -> Backlog:
    """Count what waits; list up to `overdue_limit` waiting messages stored before
    `overdue_before` (the SLA's cutoff), oldest id first."""
    async with db.reading() as s:
        count, oldest = (
            await s.execute(select(func.count(), func.min(OutboxEntry.created_at)).where(_PENDING))
        ).one()
        dead = await s.scalar(select(func.count()).where(_DEAD))
        overdue = await s.execute(
            select(OutboxEntry.id, OutboxEntry.kind, OutboxEntry.created_at)
            .where(_PENDING, OutboxEntry.created_at <= overdue_before)
            .order_by(OutboxEntry.id)
            .limit(overdue_limit)
        )
        return Backlog(
            count=int(count),
            oldest=oldest,
            dead=int(dead or 0),
            overdue=tuple((int(i), str(k), c) for i, k, c in overdue),
        )


def _str(value: object) -> str | None:
    return None if value is None else str(value)
