"""A CRM's orders called and reported back: the whole daemon between the RetailCRM contract
server and the Asterisk simulator.

Orders placed in the test CRM are pulled from its history by the real adapter, taken in,
called by the dialer, answered by simulated customers and disposed of by operator bots over
the HTTP API; the outcomes and the calls must then be in the test CRM, each once. One more
order comes through the signed webhook, mounted on the daemon's own HTTP app.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from dialer.app import background_jobs
from dialer.config import CampaignSettings
from dialer.config.models import CrmSettings
from dialer.http.webhook import SIGNATURE_HEADER, sign
from dialer.outbox_admin import dead_letters
from dialer.storage.models import CallAttempt, Disposition, Order, OrderStatus
from pbx.sim import NumberScript
from tests.crm_servers.retailcrm import RetailCrmState, create_app
from tests.crm_servers.serve import serving
from tests.floor import Floor, floor

pytestmark = pytest.mark.slow

SCALE = 10.0
START = datetime(2026, 6, 15, 12, 0, tzinfo=ZoneInfo("Europe/Moscow"))
ORDERS = 10
SECRET = "landing-page-secret-0123"
CAMPAIGN = CampaignSettings(
    id="confirm", name="Confirmation", pacing="progressive", wrapup_s=2, shop_name="Test shop"
)
OPEN = (OrderStatus.NEW, OrderStatus.SCHEDULED, OrderStatus.CALLING)


async def test_orders_pulled_from_the_crm_are_called_and_their_outcomes_and_calls_reach_it(
    tmp_path: Path,
) -> None:
    state = RetailCrmState()
    state.add_order("89000000999", created_at=START - timedelta(days=3))  # before the first run
    crm_ids = [
        state.add_order(f"8900{i:07d}", created_at=START - timedelta(minutes=10 - i))
        for i in range(ORDERS)
    ]
    async with serving(create_app(state)) as crm_server:
        settings = CrmSettings(
            adapter="retailcrm",
            url=crm_server.url,
            api_key=SecretStr("test-key"),
            site="shop1",
            webhook_secret=SecretStr(SECRET),
            poll_interval_s=2.0,
        )
        async with floor(
            tmp_path,
            operators=3,
            campaign=CAMPAIGN,
            scale=SCALE,
            start=START.timestamp(),
            crm=settings,
        ) as f:
            await _run(f, state, crm_ids)


async def _run(f: Floor, state: RetailCrmState, crm_ids: list[str]) -> None:
    rt = f.rt
    relay = rt.relay
    assert relay is not None
    for i in range(ORDERS + 1):
        f.sim.script_number(f"7900{i:07d}", NumberScript("answer", ring_s=1.0))
    crm_stats = rt.bus.subscribe("crm/stats")

    async def landing_page() -> None:
        body = json.dumps(
            {
                "external_id": "LP-1",
                "created_at": START.isoformat(),
                "phone": f"+7900{ORDERS:07d}",
                "items": [{"sku": "CR-1", "name": "Крем", "category": "cosmetics"}],
            }
        ).encode()
        async with httpx.AsyncClient(base_url=f.base_url) as http:
            for _ in range(100):  # the HTTP server may still be starting
                try:
                    response = await http.post(
                        "/orders", content=body, headers={SIGNATURE_HEADER: sign(SECRET, body)}
                    )
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
                    continue
                assert response.status_code == 202, response.text
                return

    metrics: list[str] = []

    async def settle() -> None:
        await landing_page()
        while True:
            await asyncio.sleep(0.5)
            async with rt.db.session() as s:
                open_orders = await s.scalars(select(Order.id).where(Order.status.in_(OPEN)))
                still_open = open_orders.first() is not None
                count = len(list(await s.scalars(select(Order.id))))
            stats = await relay.refresh()
            if count == ORDERS + 1 and not still_open and stats.backlog == 0:
                async with httpx.AsyncClient(base_url=f.base_url) as http:
                    metrics.append((await http.get("/metrics")).text)
                rt.daemon.stop()
                return

    jobs = [*background_jobs(rt), settle, *(b.run for b in f.bots(conversion=0.7))]
    async with asyncio.timeout(60):
        await rt.daemon.run(extra=jobs)
    stats = relay.statistics()
    async with rt.db.session() as s:
        orders = {o.id: o for o in await s.scalars(select(Order))}
        attempts = list(await s.scalars(select(CallAttempt)))
        dispositions = {d.order_id: d for d in await s.scalars(select(Disposition))}
    letters = await dead_letters(rt.db)

    from_crm = {o.external_id: o for o in orders.values() if o.crm == "retailcrm"}
    assert sorted(from_crm, key=int) == [str(i) for i in crm_ids]  # not the 3-day-old one
    assert all(o.attempts >= 1 for o in orders.values())
    # every call placed is in the CRM once, under its ChannelId
    calls = {a.channel_id for a in attempts if orders[a.order_id].crm == "retailcrm"}
    assert set(state.calls) == calls and sum(state.upload_sizes) == len(calls)
    assert {c["result"] for c in state.calls.values()} == {"answered"}
    # every outcome reached its order
    expected = {"confirmed": "client-confirmed", "upsell": "client-confirmed"}
    expected |= {"rejected": "cancel-other", "callback": "new"}
    for external_id, order in from_crm.items():
        outcome = dispositions[order.id].outcome
        crm_order = state.orders[int(external_id)]
        assert crm_order["status"] == expected[outcome], (external_id, outcome)
        assert crm_order["managerComment"].startswith("obzvon: ")
    assert any(d.outcome in ("confirmed", "upsell") for d in dispositions.values())
    # the landing page's order was called too; with no CRM behind it, its outcome and call are
    # set aside for an admin, saying why
    assert {letter.crm for letter in letters} == {"webhook"}
    assert all("no CRM adapter for 'webhook'" in (letter.error or "") for letter in letters)
    assert stats.sla_breaches == 0 and stats.sync_lag_s is not None
    assert not crm_stats.queue.empty()
    # supervisors see the same in Prometheus
    assert "obzvon_crm_backlog 0.0" in metrics[0]
    assert 'obzvon_crm_sync_lag_seconds{quantile="0.99"}' in metrics[0]
    assert "obzvon_crm_sla_breaches_total 0.0" in metrics[0]
