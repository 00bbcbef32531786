"""What learned routing learns in the daemon is recorded from outcomes and survives restarts."""

from __future__ import annotations

import asyncio

from acd.performance import PerformanceBook
from dialer.learning import Learning
from dialer.storage.db import Database

NOW = 1_780_000_000.0


def _learning(database: Database, book: PerformanceBook) -> Learning:
    async def sleep(_: float) -> None:
        await asyncio.sleep(0)

    return Learning(book=book, db=database, now=lambda: NOW, sleep=sleep)


async def test_outcomes_are_learned_stored_and_read_back_after_a_restart(
    database: Database,
) -> None:
    first = _learning(database, PerformanceBook())
    for i in range(20):
        first.outcome(
            operator_id="1001", category="cosmetics", campaign_id="confirm",
            outcome="confirmed" if i % 4 else "rejected", value=2500.0,
        )  # fmt: skip
    # callbacks, invalid numbers and duplicates say nothing about the operator
    for outcome in ("callback", "invalid", "duplicate"):
        first.outcome(
            operator_id="1001", category="cosmetics", campaign_id="confirm",
            outcome=outcome, value=0.0,
        )  # fmt: skip
    assert first.recorded == 20
    before = first.book.estimate("1001", "cosmetics", NOW)
    assert await first.save() > 0

    again = _learning(database, PerformanceBook())
    assert await again.load() > 0
    after = again.book.estimate("1001", "cosmetics", NOW)
    assert after.mean == before.mean and after.trials == before.trials
    assert after.trials == 20 and after.successes == 15
