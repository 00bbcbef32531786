"""/metrics of a whole daemon whose calls go to the Asterisk simulator over real TCP AMI.

Two operator bots on the HTTP API, four orders: two customers answer and talk, one line is
busy, one rings out. While a call is connected the scrape shows it in its state and on its
operator; once the floor is quiet the counters agree with the database, every operator's talk
and wrap-up are timed, and no label carries a phone number, an order id or a call id.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import select

from dialer.app import background_jobs
from dialer.config import CampaignSettings
from dialer.metrics import OperatorTimes
from dialer.storage.models import CallAttempt, Disposition, Order
from pbx.sim import NumberScript
from tests.floor import floor
from tests.test_metrics import Samples, samples, value

pytestmark = pytest.mark.slow

SCALE = 10.0
START = datetime(2026, 6, 15, 12, 0, tzinfo=ZoneInfo("Europe/Moscow")).timestamp()
CAMPAIGN = CampaignSettings(
    id="confirm", name="Confirmation", pacing="progressive", wrapup_s=2, ring_timeout_s=10,
    shop_name="Test shop",
)  # fmt: skip
CONFIRMED = ("confirmed", "upsell")
SCRIPTS = {
    "79000000001": NumberScript("answer", ring_s=1.0),
    "79000000002": NumberScript("busy", ring_s=0.5),
    "79000000003": NumberScript("answer", ring_s=1.0),
    "79000000004": NumberScript("no_answer"),
}


async def test_metrics_follow_calls_placed_through_the_simulator(tmp_path: Path) -> None:
    times_registry = CollectorRegistry(auto_describe=False)
    async with floor(
        tmp_path, operators=2, campaign=CAMPAIGN, scale=SCALE, start=START, talk_s=20.0
    ) as f:
        rt = f.rt
        times = OperatorTimes(times_registry, now=rt.clock.now)
        for digits, script in SCRIPTS.items():
            f.sim.script_number(digits, script)
        during: list[Samples] = []
        after: list[str] = []

        async def scrape(http: httpx.AsyncClient) -> str:
            return (await http.get("/metrics")).text

        async def watch() -> None:
            async with httpx.AsyncClient(base_url=f.base_url) as http:
                for i, digits in enumerate(SCRIPTS):
                    await f.order(i, digits=digits)
                while not during:  # a scrape while a customer talks to an operator
                    await asyncio.sleep(0.05)
                    found = samples(await scrape(http))
                    if value(found, "obzvon_calls", campaign="confirm", state="connected") >= 1:
                        during.append(found)
                while True:
                    await asyncio.sleep(0.2)
                    stats = rt.engine.statistics(rt.clock.now())
                    async with rt.db.session() as s:
                        disposed = len(list(await s.scalars(select(Disposition.id))))
                    quiet = stats.open_calls == 0 and stats.campaigns["confirm"].leads_due == 0
                    if quiet and disposed == 2:
                        after.append(await scrape(http))
                        rt.daemon.stop()
                        return

        jobs = [*background_jobs(rt), watch, lambda: times.run(rt.bus)]
        jobs += [b.run for b in f.bots(conversion=1.0)]
        async with asyncio.timeout(60):
            await rt.daemon.run(extra=jobs)
        async with rt.db.session() as s:
            orders = list(await s.scalars(select(Order)))
            attempts = list(await s.scalars(select(CallAttempt)))

    # while a call is connected: the campaign, the floor and the operator on it say so
    [now] = during
    talking = [
        dict(labels)["operator"]
        for (name, labels), v in now.items()
        if name == "obzvon_operator_state" and dict(labels)["state"] == "talking" and v == 1
    ]
    assert talking and value(now, "obzvon_operators", state="talking") == len(talking)
    assert value(now, "obzvon_occupancy") > 0

    # once quiet: the counters agree with what was stored
    done = samples(after[0])
    campaign = {"campaign": "confirm"}
    outcomes = {a.outcome for a in attempts}
    assert outcomes == {"connected", "busy", "no_answer"}
    for outcome in outcomes:
        stored = sum(1 for a in attempts if a.outcome == outcome)
        assert value(done, "obzvon_attempts_total", outcome=outcome, **campaign) == stored
    assert value(done, "obzvon_originated_total", **campaign) == len(attempts) == 4
    assert value(done, "obzvon_live_answers_total", **campaign) == 2
    assert value(done, "obzvon_abandons_total", **campaign) == 0
    assert value(done, "obzvon_abandon_rate", window="1h", **campaign) == 0
    assert value(done, "obzvon_order_to_first_call_seconds_count", **campaign) == 4
    assert value(done, "obzvon_calls", state="connected", **campaign) == 0
    assert value(done, "obzvon_orders_waiting", due="all", **campaign) == 2  # busy, no answer
    handled = [v for (n, _), v in done.items() if n == "obzvon_operator_calls_handled_total"]
    assert sum(handled) == 2
    outcomes_by_operator = {
        k: v for (n, k), v in done.items() if n == "obzvon_operator_outcomes_total"
    }
    confirmed = [v for k, v in outcomes_by_operator.items() if dict(k)["outcome"] in CONFIRMED]
    assert sum(confirmed) == 2
    assert value(done, "obzvon_ami_connected") == 1
    assert value(done, "obzvon_ami_events_total") > 0

    # talk and wrap-up per operator, from their state changes (20 s talks on a 10x clock)
    timed = samples(generate_latest(times_registry).decode())
    talks = {
        dict(k)["operator"]: v for (n, k), v in timed.items() if n.endswith("talk_seconds_sum")
    }
    counts = [v for (n, _), v in timed.items() if n == "obzvon_operator_talk_seconds_count"]
    wrapups = [v for (n, _), v in timed.items() if n == "obzvon_operator_wrapup_seconds_count"]
    assert sum(counts) == 2 and sum(wrapups) == 2
    assert all(15 <= total / n <= 30 for total, n in zip(talks.values(), counts, strict=True))

    # no label names a customer, an order or a call
    values = {v for _, labels in done for k, v in labels if k not in ("le", "quantile")}
    forbidden = {o.phone_e164 for o in orders} | {o.phone_e164[1:] for o in orders}
    forbidden |= {str(o.id) for o in orders} | {a.channel_id for a in attempts}
    assert not values & forbidden
    assert not [v for v in values if re.fullmatch(r"\+?\d{10,}", v)]
