"""The whole dialer against the Asterisk simulator over real TCP AMI.

200 orders, 10 operators driving the HTTP API, a scripted mix of busy / no answer / answer /
answering machine / customer hang-up while waiting / congestion, several time zones and one
whose calling window is closed. When the floor settles, every order has ended or has a next
attempt that honours its retry plan and window; no order had two live attempts; the abandon
rate is within target; every outcome is stored with its attempt.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from dialer.app import background_jobs
from dialer.config import CampaignSettings
from dialer.storage.models import CallAttempt, Disposition, Order, OrderStatus
from pbx.sim import NumberScript
from tests.floor import floor

SCALE = 10.0
MSK = ZoneInfo("Europe/Moscow")
START = datetime(2026, 6, 15, 15, 0, tzinfo=MSK).timestamp()  # 22:00 in Vladivostok: closed
OPEN_ZONES = ("Europe/Moscow", "Asia/Yekaterinburg", "Asia/Novosibirsk")
CLOSED_ZONE = "Asia/Vladivostok"
RETRY = {"busy": 300, "no_answer": 900, "congestion": 120, "machine": 3600, "failed": 600}
PLAN = {k: (v,) for k, v in RETRY.items()}
FINAL = {"confirmed", "rejected", "invalid", "duplicate", "unreached"}

pytestmark = pytest.mark.slow


def script(i: int) -> NumberScript:
    match i % 10:
        case 5:
            return NumberScript("busy", ring_s=1.0)
        case 6:
            return NumberScript("no_answer")
        case 7:
            return NumberScript("answer", ring_s=2.0, amd="MACHINE")
        case 8:
            return NumberScript("answer", ring_s=2.0, amd="HUMAN", hangup_while_waiting_s=0.05)
        case 9:
            return NumberScript("congestion", ring_s=0.5)
        case _:
            return NumberScript("answer", ring_s=2.0, amd="HUMAN")


async def test_two_hundred_orders_end_or_are_rescheduled_by_their_plan(tmp_path: Path) -> None:
    rng = random.Random(7)
    campaign = CampaignSettings(
        id="confirm",
        name="Confirmation",
        pacing="predictive",
        amd=True,
        wrapup_s=5,
        ring_timeout_s=12,
        retry=PLAN,  # type: ignore[arg-type]
        shop_name="Test shop",
    )
    async with floor(tmp_path, operators=10, campaign=campaign, scale=SCALE, start=START) as f:
        rt, clock = f.rt, f.rt.clock
        closed: set[int] = set()

        async def feed() -> None:
            for i in range(200):
                zone = CLOSED_ZONE if i % 20 == 0 else OPEN_ZONES[i % 3]
                digits = f"7900{i:07d}"
                f.sim.script_number(digits, script(i))
                order_id = await f.order(i, digits=digits, zone=zone)
                if zone == CLOSED_ZONE:
                    closed.add(order_id)
                await asyncio.sleep(rng.uniform(0, 0.02))

        metrics: list[str] = []

        async def settle() -> None:
            await feed()
            while True:
                await asyncio.sleep(0.5)
                stats = rt.engine.statistics(clock.now())
                c = stats.campaigns["confirm"]
                if stats.open_calls == 0 and c.leads_due == 0:
                    async with httpx.AsyncClient(base_url=f.base_url) as http:
                        metrics.append((await http.get("/metrics")).text)
                    # quiet: drain as SIGTERM does; a retry that comes due meanwhile finishes
                    rt.daemon.drain()
                    return

        jobs = [*background_jobs(rt), settle, *(b.run for b in f.bots())]
        async with asyncio.timeout(150):
            await rt.daemon.run(extra=jobs)
        stats = rt.engine.statistics(clock.now()).campaigns["confirm"]

        async with rt.db.session() as session:
            orders = list(await session.scalars(select(Order)))
            attempts = list(await session.scalars(select(CallAttempt)))
            dispositions = list(await session.scalars(select(Disposition)))

    assert len(orders) == 200
    by_order: dict[int, list[CallAttempt]] = {}
    for a in attempts:
        by_order.setdefault(a.order_id, []).append(a)

    # nothing is left half-done: every attempt ended, every order ended or has a next attempt
    unended = [
        (a.channel_id, a.order_id, a.queued_at, a.originated_at, a.outcome)
        for a in attempts
        if a.ended_at is None
    ]
    assert unended == []
    for o in orders:
        if o.id in closed:
            assert o.attempts == 0 and o.id not in by_order, "called outside the window"
            continue
        assert o.status != OrderStatus.CALLING
        if o.status not in FINAL:
            assert o.next_attempt_at is not None, (o.id, o.status)
            last = max(by_order[o.id], key=lambda a: a.queued_at)
            delay = RETRY.get(last.outcome or "", 0)
            if o.status == OrderStatus.SCHEDULED and last.outcome in RETRY:
                assert o.next_attempt_at.timestamp() >= last.ended_at.timestamp() + delay - 1
        # each attempt placed inside the customer's calling window
        for a in by_order.get(o.id, []):
            local = a.queued_at.astimezone(ZoneInfo(o.timezone))
            assert 9 <= local.hour < 21, (o.timezone, local)
        assert o.attempts == len(by_order.get(o.id, []))

    # one live attempt per order at any moment: attempts of an order never overlap
    for rows in by_order.values():
        rows.sort(key=lambda a: a.queued_at)
        for earlier, later in itertools.pairwise(rows):
            assert earlier.ended_at is not None and earlier.ended_at <= later.queued_at

    # the scripted mix shows up
    outcomes = {a.outcome for a in attempts}
    assert {"busy", "no_answer", "machine", "congestion", "connected"} <= outcomes

    # every operator outcome is stored with its attempt, connected to that operator
    channel = {a.channel_id: a for a in attempts}
    assert len(dispositions) >= 60
    for d in dispositions:
        a = channel[d.channel_id]  # type: ignore[index]
        assert a.connected_at is not None and a.operator_id == d.operator_id

    # what supervisors see in Prometheus agrees with the database
    text = metrics[0]
    busy = sum(1 for a in attempts if a.outcome == "busy")
    assert f'obzvon_attempts_total{{campaign="confirm",outcome="busy"}} {busy:.1f}' in text
    called = sum(1 for o in orders if o.attempts > 0)
    assert f'obzvon_order_to_first_call_seconds_count{{campaign="confirm"}} {called:.1f}' in text
    assert 'obzvon_operator_state{operator="2001",state="ready"} 1.0' in text
    assert stats.live_answers > 0
    assert stats.abandons / stats.live_answers <= campaign.abandon_target
