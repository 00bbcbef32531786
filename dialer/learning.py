"""Learned routing in the daemon: outcomes feed the performance book; the book is stored.

`Learning` sits between the store and `acd.performance.PerformanceBook`: each operator outcome
that says something about the operator (confirmed, with or without upsell, or rejected) is
recorded against the order's category and campaign; what changed in the book is written to
the `operator_performance` table every `save_every_s` and when the daemon stops, and the
table is read back at start-up, so what the ACD learned survives restarts. Callbacks, invalid
numbers and duplicates say nothing about who took the call and are not recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from acd.performance import PerformanceBook, PerformanceRow
from dialer.storage.db import Database
from dialer.storage.models import OperatorPerformance

log = logging.getLogger(__name__)

SUCCESS = frozenset({"confirmed", "upsell"})
FAILURE = frozenset({"rejected"})


class Learning:
    def __init__(
        self,
        *,
        book: PerformanceBook,
        db: Database,
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        save_every_s: float = 60.0,
    ) -> None:
        self.book, self._db, self._now, self._sleep = book, db, now, sleep
        self._every = save_every_s
        self.recorded = 0
        # what changed since the last save, by operator and category (the first save: all)
        self._dirty: set[tuple[str, str]] = set()
        self._saved_once = False

    def outcome(
        self, *, operator_id: str | None, category: str | None, campaign_id: str,
        outcome: str, value: float,
    ) -> None:  # fmt: skip
        """Record one stored operator outcome (called by the store after it commits)."""
        if not operator_id or not category or outcome not in SUCCESS | FAILURE:
            return
        self.book.record(operator_id, category, campaign_id, outcome in SUCCESS, value, self._now())
        self._dirty.add((operator_id, category))
        self.recorded += 1

    async def load(self) -> int:
        """Replace the book by what is stored; returns the rows read."""
        async with self._db.session() as session:
            rows = [
                PerformanceRow(
                    operator_id=r.operator_id,
                    category=r.category,
                    campaign_id=r.campaign_id,
                    successes=r.successes,
                    trials=r.trials,
                    value=r.value,
                    updated_at=r.updated_at.timestamp(),
                )
                for r in await session.scalars(select(OperatorPerformance))
            ]
        self.book.restore(rows)
        return len(rows)

    async def save(self) -> int:
        """Write the cells recorded since the last save (all of them the first time), each
        row inserted or updated in place; returns the rows written. One short transaction: the
        daemon's writer must not wait behind a rewrite of the whole table."""
        dirty, self._dirty = self._dirty, set()
        rows = [
            r
            for r in self.book.snapshot()
            if not self._saved_once or (r.operator_id, r.category) in dirty
        ]
        if not rows:
            return 0
        values = [
            {
                "operator_id": r.operator_id,
                "category": r.category,
                "campaign_id": r.campaign_id,
                "successes": r.successes,
                "trials": r.trials,
                "value": r.value,
                "updated_at": datetime.fromtimestamp(r.updated_at, UTC),
            }
            for r in rows
        ]
        insert = pg_insert if self._db.dialect == "postgresql" else sqlite_insert
        statement = insert(OperatorPerformance)
        upsert = statement.on_conflict_do_update(
            index_elements=["operator_id", "category", "campaign_id"],
            set_={k: statement.excluded[k] for k in ("successes", "trials", "value", "updated_at")},
        )
        try:
            async with self._db.session() as session:
                await session.execute(upsert, values)
        except BaseException:
            self._dirty |= dirty  # written next time
            raise
        self._saved_once = True
        return len(rows)

    async def run(self) -> None:
        """Save every `save_every_s` until cancelled, and once more on the way out."""
        try:
            while True:
                await self._sleep(self._every)
                await self._save_logged()
        finally:
            await self._save_logged()

    async def _save_logged(self) -> None:
        try:
            await self.save()
        except Exception:  # a failed save is retried next time; routing goes on
            log.exception("could not store the routing performance book")
