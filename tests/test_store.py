"""`Store.write_many`: many of the engine's writes in one transaction, each in a savepoint.

The daemon's writer hands the store everything that queued up while it was busy; a write the
database refuses must be undone alone, and what listens to outcomes (metrics, the routing's
book) must hear only of what was committed. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select

from dialer.engine import commands as cmd
from dialer.storage import repo
from dialer.storage.db import Database
from dialer.storage.errors import LiveAttemptExists
from dialer.storage.models import CallAttempt, Disposition, Order, OrderStatus, OutboxEntry
from dialer.store import StartAttempt, Store

T0 = datetime(2026, 6, 15, 9, 0, tzinfo=UTC).timestamp()


async def _orders(db: Database, n: int) -> list[str]:
    at = datetime.fromtimestamp(T0, UTC)
    async with db.session() as s:
        return [
            str(
                (
                    await repo.add_order(
                        s,
                        crm="retailcrm",
                        external_id=f"E-{i}",
                        phone_e164=f"+7916123{i:04d}",
                        campaign_id="confirm",
                        timezone="Europe/Moscow",
                        created_at=at,
                        now=at,
                    )
                ).id
            )
            for i in range(n)
        ]


def _originate(order_id: str, call_id: str) -> cmd.Originate:
    return cmd.Originate(
        call_id=call_id,
        order_id=order_id,
        campaign_id="confirm",
        phone="+79161230000",
        timeout_s=25,
        amd=False,
    )


def _ended(order_id: str, call_id: str, outcome: str = "no-answer") -> cmd.StoreAttempt:
    return cmd.StoreAttempt(
        call_id=call_id,
        order_id=order_id,
        campaign_id="confirm",
        outcome=outcome,
        queued_at=T0 + 1,
        originated_at=T0 + 1,
        answered_at=None,
        connected_at=None,
        ended_at=T0 + 30,
    )


def _confirmed(order_id: str, call_id: str) -> cmd.StoreOutcome:
    return cmd.StoreOutcome(
        order_id=order_id,
        call_id=call_id,
        campaign_id="confirm",
        outcome="confirmed",
        final=True,
        details={"operator_id": "op1", "upsell_amount": 900},
    )


async def test_a_refused_write_is_undone_alone_and_the_others_are_kept(database: Database) -> None:
    heard: list[dict[str, Any]] = []
    store = Store(database, now=lambda: T0 + 60, on_outcome=lambda **kw: heard.append(kw))
    a, b, c = await _orders(database, 3)
    results = await store.write_many(
        [
            StartAttempt(_originate(a, "call-a"), T0 + 1),
            StartAttempt(_originate(b, "call-b"), T0 + 1),
            # a second live attempt for order a: the database refuses it
            StartAttempt(_originate(a, "call-a2"), T0 + 2),
            _ended(a, "call-a"),
            StartAttempt(_originate(c, "call-c"), T0 + 3),
            _confirmed(b, "call-b"),
        ]
    )
    assert [type(r) for r in results] == [
        type(None),
        type(None),
        LiveAttemptExists,
        type(None),
        type(None),
        type(None),
    ]
    async with database.reading() as s:
        calls = sorted(await s.scalars(select(CallAttempt.channel_id)))
        orders = {str(o.id): o for o in await s.scalars(select(Order))}
        outbox = await s.scalar(select(func.count()).select_from(OutboxEntry))
        dispositions = await s.scalar(select(func.count()).select_from(Disposition))
    assert calls == ["call-a", "call-b", "call-c"]
    assert orders[a].attempts == 1  # the refused start counted nothing
    assert orders[b].status == OrderStatus.CONFIRMED
    assert orders[c].status == OrderStatus.CALLING
    assert outbox == 2 and dispositions == 1  # call a's record, order b's outcome
    assert [h["operator_id"] for h in heard] == ["op1"]
    assert heard[0]["value"] == pytest.approx(900.0)


async def test_nobody_hears_of_an_outcome_that_was_not_stored(database: Database) -> None:
    heard: list[dict[str, Any]] = []
    store = Store(database, now=lambda: T0 + 60, on_outcome=lambda **kw: heard.append(kw))
    [a] = await _orders(database, 1)
    await store.attempt_started(_originate(a, "call-a"), T0 + 1)
    broken = Store(database, now=lambda: float("nan"), on_outcome=lambda **kw: heard.append(kw))
    [error] = await broken.write_many([_confirmed(a, "call-a")])
    assert isinstance(error, ValueError)  # no time to store it at
    assert heard == []
    with pytest.raises(LiveAttemptExists):  # one write alone raises its refusal
        await store.attempt_started(_originate(a, "call-a2"), T0 + 2)
    async with database.reading() as s:
        assert await s.scalar(select(func.count()).select_from(Disposition)) == 0


async def test_a_batch_reads_its_orders_and_attempts_once_not_once_a_write(
    database: Database,
) -> None:
    # Each statement is a round trip the daemon's loop waits for: a batch must not read an
    # order again per write (the session's identity map holds objects weakly).
    store = Store(database, now=lambda: T0 + 60)
    orders = await _orders(database, 10)
    await store.write_many(
        [StartAttempt(_originate(o, f"call-{i}"), T0 + 1) for i, o in enumerate(orders)]
    )
    selects: list[str] = []

    def count(_c: object, _cur: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        results = await store.write_many(
            [_ended(o, f"call-{i}") for i, o in enumerate(orders)]
            + [_confirmed(o, f"call-{i}") for i, o in enumerate(orders)]
        )
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    assert results == [None] * 20
    assert len(selects) == 2  # the batch's orders, then its attempts


async def test_a_batch_takes_savepoints_only_when_a_write_is_refused(database: Database) -> None:
    # A savepoint is two statements per write; refusals are rare, so a batch is written
    # straight through and only written again write by write, with savepoints, when one fails.
    store = Store(database, now=lambda: T0 + 60)
    a, b = await _orders(database, 2)
    statements: list[str] = []

    def count(_c: object, _cur: object, statement: str, *_: object) -> None:
        statements.append(statement.lstrip().upper())

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        fine = await store.write_many(
            [StartAttempt(_originate(a, "call-a"), T0 + 1), _ended(a, "call-a")]
        )
        straight = [s for s in statements if "SAVEPOINT" in s]
        statements.clear()
        refused = await store.write_many(
            [
                StartAttempt(_originate(b, "call-b"), T0 + 2),
                StartAttempt(_originate(b, "call-b2"), T0 + 3),  # b is being called already
            ]
        )
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    assert fine == [None, None] and straight == []
    assert refused[0] is None and isinstance(refused[1], LiveAttemptExists)
    assert any(s.startswith("SAVEPOINT") for s in statements)
    async with database.reading() as s:
        assert sorted(await s.scalars(select(CallAttempt.channel_id))) == ["call-a", "call-b"]
