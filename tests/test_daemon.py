"""The daemon around the engine: draining, recovery after a stop mid-call, the operator API."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from dialer.app import background_jobs
from dialer.config import CampaignSettings
from dialer.engine import commands as cmd
from dialer.engine import events as ev
from dialer.storage.models import CallAttempt, Order, OrderStatus
from pbx.sim import NumberScript, OperatorScript
from tests.floor import floor

SCALE = 10.0
START = datetime(2026, 6, 15, 12, 0, tzinfo=ZoneInfo("Europe/Moscow")).timestamp()
CAMPAIGN = CampaignSettings(id="confirm", name="Confirmation", pacing="progressive", wrapup_s=5)

pytestmark = pytest.mark.slow


async def _until(condition: Callable[[], bool]) -> None:
    """Poll `condition` (engine state has no event to wait on from outside) for up to 20 s."""
    async with asyncio.timeout(20):
        for _ in itertools.count():
            if condition():
                return
            await asyncio.sleep(0.05)


async def test_drain_places_no_new_call_and_stops_when_live_calls_are_over(tmp_path: Path) -> None:
    placed_after_drain: list[str] = []
    async with floor(tmp_path, operators=2, campaign=CAMPAIGN, scale=SCALE, start=START) as f:
        rt = f.rt
        draining = False

        def watch(command: object) -> None:
            if draining and isinstance(command, cmd.Originate):
                placed_after_drain.append(command.call_id)

        rt.daemon._on_command = watch
        for i in range(6):
            f.sim.script_number(f"7911{i:07d}", NumberScript("answer", ring_s=1.0))

        async def scenario() -> None:
            nonlocal draining
            for i in range(6):
                await f.order(i, digits=f"7911{i:07d}")
            # wait until both operators talk, then drain as SIGTERM would
            await _until(lambda: rt.engine.statistics(rt.clock.now()).live_calls >= 2)
            draining = True
            rt.daemon.drain()

        jobs = [*background_jobs(rt), scenario, *(b.run for b in f.bots())]
        async with asyncio.timeout(60):
            await rt.daemon.run(extra=jobs)  # returns by itself once drained
        stats = rt.engine.statistics(rt.clock.now())
        async with rt.db.session() as session:
            attempts = list(await session.scalars(select(CallAttempt)))

    assert placed_after_drain == []
    assert stats.draining and stats.live_calls == 0
    # the calls that were live at the drain finished and were stored
    assert len(attempts) >= 2 and all(a.ended_at is not None for a in attempts)


async def test_restart_mid_call_closes_the_lost_attempts_and_dials_nobody_twice(
    tmp_path: Path,
) -> None:
    # customers answer and wait; the operators never pick up, so calls stay live
    async with floor(tmp_path, operators=1, campaign=CAMPAIGN, scale=SCALE, start=START) as f:
        f.sim.add_operator("2001", OperatorScript(answer=False))
        f.sim.script_number("79220000001", NumberScript("answer", ring_s=0.5))
        rt = f.rt

        async def scenario() -> None:
            await f.order(1, digits="79220000001")
            async with httpx.AsyncClient(base_url=f.base_url) as http:
                auth = {"Authorization": f"Bearer {f.token('2001')}"}
                for path in ("login", "ready"):
                    for _ in range(100):
                        r = await http.post(f"/api/operators/me/{path}", headers=auth)
                        if r.status_code == 200:
                            break
                        await asyncio.sleep(0.05)
            await _until(lambda: rt.engine.statistics(rt.clock.now()).live_calls >= 1)
            await asyncio.sleep(0.3)
            rt.daemon.stop()  # as if the process died: the call is still up in Asterisk

        async with asyncio.timeout(30):
            await rt.daemon.run(extra=[*background_jobs(rt), scenario])
        sim, settings = f.sim, f.settings
        assert sim.statistics().live_channels >= 1

        # a new daemon on the same database and the same Asterisk
        async with floor(
            tmp_path,
            operators=1,
            campaign=CAMPAIGN,
            scale=SCALE,
            start=START,
            sim=sim,
            settings=settings,
        ) as again:
            async with again.rt.db.session() as session:
                attempts = list(await session.scalars(select(CallAttempt)))
                order = (await session.scalars(select(Order))).one()

    assert len(attempts) == 1
    assert attempts[0].ended_at is not None and attempts[0].outcome == "lost"
    assert order.status == OrderStatus.SCHEDULED and order.next_attempt_at is not None


async def test_operator_api_names_the_field_and_refuses_strangers(tmp_path: Path) -> None:
    async with floor(tmp_path, operators=2, campaign=CAMPAIGN, scale=SCALE, start=START) as f:
        rt = f.rt
        results: dict[str, httpx.Response] = {}

        async def scenario() -> None:
            async with httpx.AsyncClient(base_url=f.base_url) as http:
                for _ in range(100):
                    try:
                        await http.get("/healthz")
                        break
                    except httpx.HTTPError:
                        await asyncio.sleep(0.05)
                me = {"Authorization": f"Bearer {f.token('2001')}"}
                results["no token"] = await http.get("/api/operators/me")
                results["bad token"] = await http.get(
                    "/api/operators/me", headers={"Authorization": "Bearer nope"}
                )
                results["login"] = await http.post("/api/operators/me/login", headers=me)
                results["login twice"] = await http.post("/api/operators/me/login", headers=me)
                results["callback without time"] = await http.post(
                    "/api/calls/x/disposition", headers=me, json={"outcome": "callback"}
                )
                results["unknown outcome"] = await http.post(
                    "/api/calls/x/disposition", headers=me, json={"outcome": "maybe"}
                )
                results["someone else's call"] = await http.post(
                    "/api/calls/not-mine/disposition", headers=me, json={"outcome": "confirmed"}
                )
                results["huge body"] = await http.post(
                    "/api/calls/x/disposition",
                    headers={**me, "Content-Type": "application/json"},
                    content=b'{"outcome": "' + b"x" * 200_000 + b'"}',
                )
            rt.daemon.stop()

        async with asyncio.timeout(30):
            await rt.daemon.run(extra=[*background_jobs(rt), scenario])

    assert results["no token"].status_code == 401
    assert results["bad token"].status_code == 401
    assert results["login"].status_code == 200 and results["login"].json()["state"] == "paused"
    assert results["login twice"].status_code == 409
    r = results["callback without time"]
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "callback_at"
    r = results["unknown outcome"]
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "outcome"
    assert results["someone else's call"].status_code == 403
    assert results["huge body"].status_code == 413


async def test_an_unregistered_softphone_found_by_device_state_list_is_never_offered_a_call(
    tmp_path: Path,
) -> None:
    async with floor(tmp_path, operators=2, campaign=CAMPAIGN, scale=SCALE, start=START) as f:
        rt = f.rt
        # operator 2002's softphone goes away while the link is quiet: no DeviceStateChange
        f.sim.add_operator("2002", OperatorScript(registered=False))
        for event in await rt.daemon.refresh_devices():
            rt.engine.handle(event)
        views = {v.id: v for v in rt.board.all()}
    assert views["2002"].registered is False
    assert views["2001"].registered is True


async def test_orders_that_queue_up_together_reach_the_engine_as_one_arrival(
    tmp_path: Path,
) -> None:
    # Orders stored in one writer's batch reach the engine's inbox together: one dialling
    # decision for them all, and each is still dialled, stored and timed as its own.
    handled: list[ev.Event] = []
    async with floor(tmp_path, operators=2, campaign=CAMPAIGN, scale=SCALE, start=START) as f:
        rt = f.rt
        handle = rt.engine.handle

        def spy(event: ev.Event) -> list[cmd.Command]:
            handled.append(event)
            return handle(event)

        rt.engine.handle = spy  # type: ignore[method-assign]
        for i in range(6):
            f.sim.script_number(f"7912{i:07d}", NumberScript("busy", ring_s=0.5))

        async def scenario() -> None:
            await asyncio.gather(*(f.order(i, digits=f"7912{i:07d}") for i in range(6)))
            await _until(
                lambda: rt.engine.statistics(rt.clock.now()).campaigns["confirm"].originated >= 6
            )
            rt.daemon.stop()

        async with asyncio.timeout(30):
            await rt.daemon.run(extra=[*background_jobs(rt), scenario, *(b.run for b in f.bots())])
        async with rt.db.session() as session:
            attempts = list(await session.scalars(select(CallAttempt)))

    together = [e for e in handled if isinstance(e, ev.OrdersArrived)]
    assert together and max(len(e.arrivals) for e in together) >= 2
    alone = sum(isinstance(e, ev.OrderArrived) for e in handled)
    assert alone + sum(len(e.arrivals) for e in together) == 6
    assert len({a.order_id for a in attempts}) == 6
