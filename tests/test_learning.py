"""What learned routing learns in the daemon is recorded from outcomes and survives restarts."""

from __future__ import annotations

import asyncio

import pytest

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


async def test_each_save_writes_what_changed_and_the_table_stays_whole(database: Database) -> None:
    clock = [NOW]

    async def sleep(_: float) -> None:
        await asyncio.sleep(0)

    first = Learning(book=PerformanceBook(), db=database, now=lambda: clock[0], sleep=sleep)
    for op in ("1001", "1002", "1003"):
        first.outcome(
            operator_id=op, category="cosmetics", campaign_id="confirm",
            outcome="confirmed", value=1000.0,
        )  # fmt: skip
    written = await first.save()
    assert written == 6  # three operators, each over all campaigns and in "confirm"
    clock[0] = NOW + 60
    first.outcome(
        operator_id="1002", category="cosmetics", campaign_id="confirm",
        outcome="rejected", value=0.0,
    )  # fmt: skip
    assert await first.save() == 2  # only operator 1002's cells changed
    again = Learning(book=PerformanceBook(), db=database, now=lambda: clock[0], sleep=sleep)
    assert await again.load() == 6
    for op, trials in (("1001", 1), ("1002", 2), ("1003", 1)):  # decayed over a minute
        assert again.book.estimate(op, "cosmetics", NOW + 60).trials == pytest.approx(trials, 1e-3)
