"""Inbound calls end to end: the daemon against `pbx.sim` over AMI on a real TCP socket.

Callers dial the shop's delivery line. The daemon recognises them by number (their orders in
the database), routes each to an operator qualified for their order's category, an operator
escalates one customer to a supervisor over the HTTP API, and a caller who gives up while
everyone is busy is recorded as abandoned-inbound.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from dialer.config import CampaignSettings, OperatorSettings, Settings
from dialer.config.models import DatabaseSettings, HttpSettings, InboundSettings
from dialer.storage.models import CallTransfer, InboundCall, Order
from tests.floor import Floor, floor, play

SCALE = 5.0
# 03:00 in Moscow: the confirmation campaign's window is closed, so nobody is dialled out and
# the callers' orders wait in the hopper, open, as they would between attempts.
START = datetime(2026, 11, 23, 3, 0, tzinfo=ZoneInfo("Europe/Moscow")).timestamp()
SHOP_NUMBER = "74950001122"


def settings(tmp_path: Path) -> Settings:
    def op(i: str, lines: tuple[str, ...], **kw: object) -> OperatorSettings:
        return OperatorSettings(
            id=i,
            endpoint=f"PJSIP/{i}",
            campaigns=lines,
            token=secrets.token_urlsafe(12),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )

    return Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'in.db'}"),
        http=HttpSettings(listen="127.0.0.1:1"),  # replaced by floor()
        campaigns=(
            CampaignSettings(id="confirm", pacing="progressive", wrapup_s=60),
            CampaignSettings(
                id="delivery",
                line="delivery",
                wrapup_s=60,
                inbound=InboundSettings(numbers=(SHOP_NUMBER,), callback_offer_after_s=0),
            ),
        ),
        operators=(
            op("2001", ("confirm", "delivery"), categories_only=("cosmetics",)),
            op("2002", ("delivery",), categories_only=("gadgets",)),
            op("2003", ("confirm", "delivery"), role="supervisor"),
        ),
    )


async def eventually(check: Callable[[], object], *, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            if await check() if asyncio.iscoroutinefunction(check) else check():  # type: ignore[misc]
                return
        except AssertionError:
            pass
        if loop.time() > deadline:
            raise AssertionError(f"not within {within} s: {check}")
        await asyncio.sleep(0.05)


class Desk:
    """One operator's desktop over the real HTTP API."""

    def __init__(self, f: Floor, operator_id: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=f.base_url,
            headers={"Authorization": f"Bearer {f.token(operator_id)}"},
            timeout=5,
        )

    async def ready(self) -> None:
        (await self.http.post("/api/operators/me/login")).raise_for_status()
        (await self.http.post("/api/operators/me/ready")).raise_for_status()

    async def call(self) -> dict[str, object] | None:
        response = await self.http.get("/api/operators/me/call")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def inbound_floor(tmp_path: Path) -> AbstractAsyncContextManager[Floor]:
    """The delivery line's floor against a new simulator, at 03:00 in Moscow."""
    return floor(
        tmp_path,
        operators=0,
        campaign=CampaignSettings(id="unused"),
        scale=SCALE,
        start=START,
        talk_s=600.0,  # operators stay on the line until the test is done with them
        settings=settings(tmp_path),
    )


async def test_inbound_callers_are_recognised_routed_escalated_and_abandoned(
    tmp_path: Path,
) -> None:
    async with inbound_floor(tmp_path) as f:

        async def scenario() -> None:
            gadgets = await f.rt.add_order(
                crm="test",
                external_id="g-1",
                phone_e164="+79001110001",
                campaign_id="confirm",
                timezone="Europe/Moscow",
                category="gadgets",
                amount=Decimal(4990),
            )
            cosmetics = await f.rt.add_order(
                crm="test",
                external_id="c-1",
                phone_e164="+79001110002",
                campaign_id="confirm",
                timezone="Europe/Moscow",
                category="cosmetics",
                amount=Decimal(1990),
            )
            desks = {op: Desk(f, op) for op in ("2001", "2002", "2003")}
            for desk in desks.values():
                await desk.ready()

            # 1. a customer with a gadgets order: recognised, routed to the gadgets operator
            first = f.sim.call_in("79001110001", SHOP_NUMBER)

            async def gadgets_card() -> bool:
                card = await desks["2002"].call()
                assert card is not None and card["call_id"] == first
                assert card["order_id"] == str(gadgets) and card["inbound"] is True
                assert card["category"] == "gadgets"
                return True

            await eventually(gadgets_card)
            await eventually(lambda: f.rt.board.get("2002").state.value == "talking")

            # 2. a cosmetics customer: to the cosmetics operator, not the supervisor (kept free)
            second = f.sim.call_in("+79001110002", SHOP_NUMBER, talk_s=40.0)

            async def cosmetics_card() -> bool:
                card = await desks["2001"].call()
                assert card is not None and card["call_id"] == second
                assert card["order_id"] == str(cosmetics)
                return True

            await eventually(cosmetics_card)
            await eventually(lambda: f.rt.board.get("2001").state.value == "talking")

            # 3. the cosmetics operator escalates to a supervisor over the HTTP API
            response = await desks["2001"].http.post(
                f"/api/calls/{second}/transfer",
                json={"supervisor": True, "reason": "qualification insufficient"},
            )
            assert response.status_code == 202, response.text
            await eventually(lambda: f.rt.board.get("2003").state.value == "talking")
            assert f.rt.board.get("2001").state.value == "wrap-up"

            async def transfer_stored() -> bool:
                async with f.rt.db.session() as s:
                    rows = list(await s.scalars(select(CallTransfer)))
                assert len(rows) == 1
                row = rows[0]
                assert (row.channel_id, row.from_operator_id, row.to_operator_id) == (
                    second,
                    "2001",
                    "2003",
                )
                assert row.target == "supervisor" and row.reason == "qualification insufficient"
                assert row.order_id == cosmetics
                return True

            await eventually(transfer_stored)
            card = await desks["2003"].call()
            assert card is not None and card["order_id"] == str(cosmetics)

            # 4. everyone is busy; an unknown caller gives up after 3 s of music on hold
            third = f.sim.call_in("79009999999", SHOP_NUMBER, patience_s=3.0)

            async def abandoned() -> bool:
                async with f.rt.db.session() as s:
                    row = await s.get(InboundCall, third)
                assert row is not None and row.outcome == "abandoned"
                assert row.order_id is None and row.operator_id is None
                return True

            await eventually(abandoned)
            queue = f.rt.engine.statistics(f.rt.clock.now()).queues["delivery"]
            assert (queue.offered, queue.answered, queue.abandoned, queue.waiting) == (
                3,
                2,
                1,
                0,
            )
            assert queue.service_level is not None and queue.asa_s is not None
            # and the same figures on /metrics, as Prometheus reads them
            metrics = (await desks["2003"].http.get("/metrics")).text
            assert 'obzvon_queue_abandoned_total{line="delivery"} 1.0' in metrics
            assert 'obzvon_queue_answered_total{line="delivery"} 2.0' in metrics
            assert 'obzvon_queue_waiting{line="delivery"} 0.0' in metrics
            assert 'obzvon_queue_service_level_threshold_seconds{line="delivery"} 20.0' in metrics

            # 5. the customer hangs up; the supervisor confirms the order: the outcome is theirs
            await eventually(lambda: f.rt.board.get("2003").state.value == "wrap-up", within=15)
            response = await desks["2003"].http.post(
                f"/api/calls/{second}/disposition", json={"outcome": "confirmed"}
            )
            assert response.status_code == 202, response.text

            async def confirmed() -> bool:
                async with f.rt.db.session() as s:
                    order = await s.get(Order, cosmetics)
                    row = await s.get(InboundCall, second)
                assert order is not None and order.status == "confirmed"
                assert row is not None and row.disposition == "confirmed"
                assert row.operator_id == "2003" and row.outcome == "connected"
                return True

            await eventually(confirmed)
            for desk in desks.values():
                await desk.http.aclose()

        await play(f, scenario)
