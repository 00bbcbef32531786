"""The outbox relay against the RetailCRM contract server, over real HTTP on loopback.

Rows are written as the daemon writes them (`repo.store_outcome`, ``call`` rows as `Store`
does) in a real database; the relay runs on a virtual clock (its sleep moves time on), the
adapter retries without waiting. What is checked is what reached the test CRM.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from crm_bridge.http import RetryPolicy
from crm_bridge.retailcrm import RetailCrmAdapter, RetailCrmSettings
from dialer.bus import BusMessage, EventBus
from dialer.crm_messages import DEFAULT_STATUSES
from dialer.outbox_admin import dead_letters, requeue
from dialer.relay import OutboxRelay, RelayPolicy
from dialer.storage import repo
from dialer.storage.db import Database
from dialer.storage.models import OutboxEntry
from tests.crm_servers.retailcrm import RetailCrmState, create_app
from tests.crm_servers.serve import LoopbackServer

# PostgreSQL runs the tests where it behaves differently (constraints, row locks); the
# rest run on SQLite only, to keep the suite quick.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
POLICY = RelayPolicy(
    poll_s=5.0, stats_interval_s=30.0, backoff_initial_s=10.0, backoff_max_s=120.0, auth_retry_s=60
)
_channels = itertools.count()


class VirtualClock:
    """The relay's clock: sleeping moves time on at once. `until` is checked after every
    sleep and sets `done` when it holds."""

    def __init__(self) -> None:
        self.t = T0.timestamp()
        self.until: Callable[[], bool] = lambda: False
        self.done = asyncio.Event()
        self.on_sleep: Callable[[float], Awaitable[None]] | None = None

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        if self.on_sleep is not None:
            await self.on_sleep(self.t)
        if self.until():
            self.done.set()
        await asyncio.sleep(0)


@pytest.fixture
def state() -> RetailCrmState:
    return RetailCrmState()


@pytest.fixture
async def server(state: RetailCrmState) -> AsyncIterator[LoopbackServer]:
    running = LoopbackServer(create_app(state))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def crm(server: LoopbackServer) -> AsyncIterator[RetailCrmAdapter]:
    async def no_wait(_: float) -> None:
        await asyncio.sleep(0)

    retry = RetryPolicy(attempts=2, backoff_initial_s=0.01, backoff_max_s=0.01)
    settings = RetailCrmSettings(url=server.url, api_key="test-key", site="shop1", retry=retry)
    async with RetailCrmAdapter(settings, sleep=no_wait) as adapter:
        yield adapter


def at(clock: VirtualClock) -> datetime:
    return datetime.fromtimestamp(clock.now(), UTC)


async def order_with_calls(
    db: Database,
    state: RetailCrmState,
    clock: VirtualClock,
    *,
    outcomes: tuple[str, ...] = ("confirmed",),
    calls: int = 1,
) -> int:
    """An order known to the CRM, with `calls` finished calls and `outcomes` stored in turn,
    as the daemon stores them; returns the CRM's id of the order."""
    crm_id = state.add_order("89121234567", created_at=T0)
    now = at(clock)
    async with db.session() as s:
        order = await repo.add_order(
            s,
            crm="retailcrm",
            external_id=str(crm_id),
            phone_e164="+79121234567",
            campaign_id="confirm",
            timezone="Europe/Moscow",
            created_at=now,
            now=now,
        )
        for _ in range(calls):
            channel = f"chan-{next(_channels):06d}"
            await repo.add_outbox(
                s,
                kind="call",
                order_id=order.id,
                now=now,
                payload={
                    "order_id": order.id,
                    "crm": "retailcrm",
                    "external_id": str(crm_id),
                    "channel_id": channel,
                    "phone": "+79121234567",
                    "outcome": "connected",
                    "operator_id": "1001",
                    "started_at": now.isoformat(),
                    "duration_s": 95,
                    "waiting_s": 1,
                    "recorded": True,
                },
            )
        for outcome in outcomes:
            callback = now + timedelta(hours=1) if outcome == "callback" else None
            await repo.store_outcome(
                s,
                order_id=order.id,
                outcome=outcome,
                now=now,
                operator_id="1001",
                reason="too expensive" if outcome == "rejected" else None,
                callback_at=callback,
            )
    return crm_id


def relay(
    db: Database, crm: RetailCrmAdapter, clock: VirtualClock, bus: EventBus | None = None, **kw: Any
) -> OutboxRelay:
    return OutboxRelay(
        db,
        crm,
        clock.now,
        clock.sleep,
        publish=bus.publish if bus is not None else None,
        policy=kw.pop("policy", POLICY),
        record_url=lambda channel: f"https://obzvon.example/recordings/{channel}",
        **kw,
    )


async def run_until(r: OutboxRelay, clock: VirtualClock, until: Callable[[], bool]) -> None:
    clock.until, clock.done = until, asyncio.Event()
    task = asyncio.create_task(r.run())
    try:
        async with asyncio.timeout(20):
            await clock.done.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def rows(db: Database) -> list[OutboxEntry]:
    async with db.session() as s:
        return list(await s.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))


def messages(sub: Any) -> list[BusMessage]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


async def test_calls_go_in_batches_of_at_most_50_and_outcomes_reach_their_orders(
    database: Database, state: RetailCrmState, crm: RetailCrmAdapter
) -> None:
    clock = VirtualClock()
    first = await order_with_calls(database, state, clock, outcomes=("confirmed",), calls=60)
    second = await order_with_calls(database, state, clock, outcomes=("rejected",), calls=60)
    third = await order_with_calls(database, state, clock, outcomes=("callback",), calls=1)
    bus = EventBus()
    sub = bus.subscribe("crm/#")
    r = relay(database, crm, clock, bus)
    await run_until(r, clock, lambda: r.statistics().delivered == 124)

    assert state.upload_sizes and max(state.upload_sizes) <= 50
    assert sum(state.upload_sizes) == 121 and len(state.calls) == 121
    call = next(iter(state.calls.values()))
    assert call["result"] == "answered" and call["code"] == "1001" and call["duration"] == 95
    assert call["recordUrl"].startswith("https://obzvon.example/recordings/chan-")
    assert state.orders[first]["status"] == "client-confirmed"
    assert state.orders[second]["status"] == "cancel-other"
    assert "too expensive" in state.orders[second]["managerComment"]
    assert state.orders[third]["status"] == "new"  # a callback changes no status
    assert "called back" in state.orders[third]["managerComment"]
    assert all(row.delivered_at is not None and not row.dead for row in await rows(database))

    stats = await r.refresh()
    assert stats.backlog == 0 and stats.oldest_undelivered_s is None and stats.dead_letters == 0
    assert len(stats.samples) == 124 and stats.sync_lag_s is not None and stats.sla_breaches == 0
    published = [m for m in messages(sub) if m.topic == "crm/stats"]
    assert published and set(published[-1].payload) >= {
        "sync_lag_s",
        "backlog",
        "oldest_undelivered_s",
        "sla_breaches",
    }


@SQLITE_ONLY
async def test_a_refusal_is_dead_lettered_with_the_crms_message_and_can_be_sent_again(
    database: Database, state: RetailCrmState, crm: RetailCrmAdapter
) -> None:
    clock = VirtualClock()
    refused = await order_with_calls(database, state, clock, outcomes=("confirmed",), calls=0)
    fine = await order_with_calls(database, state, clock, outcomes=("rejected",), calls=0)
    statuses = {**DEFAULT_STATUSES, "confirmed": "confirmed-by-phone"}  # unknown to the CRM
    r = relay(database, crm, clock, statuses=statuses)
    await run_until(r, clock, lambda: r.statistics().delivered + r.statistics().dead_lettered == 2)

    [letter] = await dead_letters(database)
    assert letter.external_id == str(refused) and letter.kind == "outcome"
    assert (
        letter.error is not None and 'Status "confirmed-by-phone" does not exist.' in letter.error
    )
    assert letter.attempts >= 1  # more if the CRM was busy first (503 past its rate)
    assert state.orders[fine]["status"] == "cancel-other"
    assert state.orders[refused]["status"] == "new"
    assert (await r.refresh()).dead_letters == 1

    # the admin adds the status in the CRM (here: maps to one it has) and sends it again
    assert await requeue(database, [letter.id], now=at(clock)) == 1
    r = relay(database, crm, clock)
    await run_until(r, clock, lambda: r.statistics().delivered == 1)
    assert state.orders[refused]["status"] == "client-confirmed"
    assert await dead_letters(database) == []


@SQLITE_ONLY
async def test_the_crm_down_for_a_while_then_back_gets_everything_once_and_the_sla_breach_is_told(
    database: Database, state: RetailCrmState, crm: RetailCrmAdapter, server: LoopbackServer
) -> None:
    clock = VirtualClock()
    orders = [await order_with_calls(database, state, clock, calls=3) for _ in range(5)]
    bus = EventBus()
    sub = bus.subscribe("crm/#")
    slow = RelayPolicy(poll_s=5, stats_interval_s=30, backoff_initial_s=60, backoff_max_s=300)
    r = relay(database, crm, clock, bus, policy=slow)
    state.down = True  # 503 to everything at first, then no server at all
    refused_from, down_until = clock.now() + 5 * 60, clock.now() + 20 * 60  # past the SLA
    phase = "503"

    async def outage(now: float) -> None:
        nonlocal phase
        if phase == "503" and now >= refused_from:
            phase = "refused"
            await server.stop()
        elif phase == "refused" and now >= down_until:
            phase = "back"
            state.down = False
            await server.start()

    clock.on_sleep = outage
    requests_while_down: list[int] = []
    await run_until(r, clock, lambda: clock.now() >= down_until - 60)
    requests_while_down.append(state.requests)
    assert r.statistics().delivered == 0 and r.statistics().retried > 0
    assert {row.delivered_at for row in await rows(database)} == {None}
    assert not any(row.dead for row in await rows(database))

    await run_until(r, clock, lambda: r.statistics().delivered == 20)
    assert len(state.calls) == 15 and sum(state.upload_sizes) == 15  # each call once
    for crm_id in orders:
        changes = [h for h in state.history if h["order"]["id"] == crm_id and h.get("field")]
        assert [h["newValue"] for h in changes] == ["client-confirmed"]
    stats = await r.refresh()
    assert stats.backlog == 0 and stats.sla_breaches == 20 and stats.paused_until is None
    # requests were spaced by the backoff, not made at every poll
    assert requests_while_down[0] < 20
    published = messages(sub)
    breaches = [m for m in published if m.topic == "crm/sla-breach"]
    assert breaches and sum(m.payload["count"] for m in breaches) == 20
    assert breaches[0].payload["undelivered"] is True
    seen = [m.payload for m in published if m.topic == "crm/stats"]
    assert any(p["backlog"] == 20 and p["sla_breaches"] == 20 for p in seen)


@SQLITE_ONLY
async def test_an_answer_lost_after_the_crm_took_the_call_is_not_a_second_call(
    database: Database, state: RetailCrmState, crm: RetailCrmAdapter
) -> None:
    clock = VirtualClock()
    await order_with_calls(database, state, clock, outcomes=(), calls=10)
    state.lose_answers = 5  # the upload is processed, its answer lost, more than retries cover
    r = relay(database, crm, clock)
    await run_until(r, clock, lambda: r.statistics().delivered == 10)

    assert sum(state.upload_sizes) > 10  # sent again after each lost answer
    assert len(state.calls) == 10 and r.statistics().retried >= 10


@SQLITE_ONLY
async def test_refused_credentials_stop_delivery_keep_every_row_and_raise_an_alarm(
    database: Database,
    state: RetailCrmState,
    crm: RetailCrmAdapter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    crm_id = await order_with_calls(database, state, clock, calls=2)
    state.api_key = "rotated-key"
    r = relay(database, crm, clock)
    with caplog.at_level(logging.ERROR, logger="dialer.relay"):
        await run_until(r, clock, lambda: clock.now() > T0.timestamp() + 150)

    assert r.statistics().auth_failed and r.statistics().delivered == 0
    assert [row.dead or row.attempts for row in await rows(database)] == [0, 0, 0]
    assert sum("ALARM" in m for m in caplog.messages) == 1  # once, not per message
    assert 2 <= state.requests <= 4  # a probe every auth_retry_s, not a storm

    state.api_key = "test-key"  # the admin re-enables the key
    await run_until(r, clock, lambda: r.statistics().delivered == 3)
    assert not r.statistics().auth_failed
    assert state.orders[crm_id]["status"] == "client-confirmed"


async def test_a_later_outcome_of_an_order_waits_for_an_earlier_one_retried_later(
    database: Database, state: RetailCrmState, crm: RetailCrmAdapter
) -> None:
    clock = VirtualClock()
    crm_id = await order_with_calls(database, state, clock, outcomes=("rejected",), calls=0)
    async with database.session() as s:
        [first] = await s.scalars(select(OutboxEntry))
        # the first outcome failed once and waits for its retry in ten minutes
        await repo.mark_failed(
            s, first.id, error="503", now=at(clock), retry_at=at(clock) + timedelta(minutes=10)
        )
        order_id = first.order_id
        assert order_id is not None
        await repo.store_outcome(s, order_id=order_id, outcome="confirmed", now=at(clock))
    r = relay(database, crm, clock)
    assert await r.deliver_once() == 0  # the later one does not overtake
    assert state.orders[crm_id]["status"] == "new"

    await run_until(r, clock, lambda: r.statistics().delivered == 2)
    changes = [h["newValue"] for h in state.history if h.get("field") == "status"]
    assert changes == ["cancel-other", "client-confirmed"]


@SQLITE_ONLY
async def test_messages_for_a_crm_without_an_adapter_are_dead_lettered_saying_so(
    database: Database, state: RetailCrmState, crm: RetailCrmAdapter
) -> None:
    clock = VirtualClock()
    async with database.session() as s:
        await repo.add_outbox(
            s,
            kind="outcome",
            now=at(clock),
            payload={"crm": "webhook", "external_id": "L-1", "outcome": "confirmed"},
        )
        await repo.add_outbox(s, kind="call", now=at(clock), payload={"crm": "retailcrm"})
    r = relay(database, crm, clock)
    assert await r.deliver_once() == 2

    letters = {letter.crm: letter.error or "" for letter in await dead_letters(database)}
    assert "no CRM adapter for 'webhook'" in letters["webhook"]
    assert "malformed call: no channel_id" in letters["retailcrm"]
    assert state.requests == 0
