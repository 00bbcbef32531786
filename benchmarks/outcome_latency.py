"""Outcome latency: from an outcome being stored to the CRM acknowledging it, through the relay.

    python -m benchmarks.outcome_latency [--quick] [--no-write]

Runs from a checkout: it serves the RetailCRM contract server from ``tests/crm_servers`` on
loopback (imported, not copied: the server is the CRM's contract, kept in one place), with
the CRM's own limits (10 requests/s, 40/s for telephony, 503 past them). The real
`OutboxRelay` with its default policy and the real adapter deliver from a real SQLite database
on the wall clock, while a producer stores what the daemon stores per order: the order, its
calls (one ``call`` row each) and the operator's outcome (`repo.store_outcome`), as a Poisson
stream.

The rate is the New Year spike's peak hour (``benchmarks/scenarios/newyear-spike.toml``:
1,140 orders on the day, the busiest hour's share of the hourly profile), with as many calls
per order as its answer probability and attempt limit give. At that rate a few orders arrive
per minute, so the run also plays it 10 and 100 times faster to show the headroom, and once
with the CRM down (503) for a while. Latency is measured per row by the relay itself (stored
→ acknowledged, `RelayStatistics.samples`). Target: p99 under 30 s at the peak rate.

Prints a table and rewrites the "outcome_latency" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.common import machine, write_section
from benchmarks.sim.scenario import load_scenario
from crm_bridge.retailcrm import RetailCrmAdapter, RetailCrmSettings
from dialer.demo_feed import percentile
from dialer.relay import OutboxRelay, RelayPolicy
from dialer.storage import repo
from dialer.storage.db import Database
from dialer.storage.migrate import upgrade_async

if TYPE_CHECKING:
    from tests.crm_servers.retailcrm import RetailCrmState

TARGET_P99_S = 30.0
DRAIN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Phase:
    name: str
    speedup: float
    seconds: float
    outage_s: float = 0.0  # the CRM answers 503 for this long, from a quarter of the way in


@dataclass(frozen=True)
class Result:
    phase: Phase
    orders_per_h: float
    orders: int
    outcome_lags: list[float]
    call_lags: list[float]
    sla_breaches: int
    rate_limited: int
    delivered_once: bool


def peak_rate() -> tuple[float, float]:
    """Orders an hour at the spike's peak, and calls per order."""
    s = load_scenario("newyear-spike")
    profile = s.orders.hourly_profile
    per_h = max(s.orders.per_day) * max(profile) / sum(profile)
    miss = 1.0 - s.customers.answer_prob
    attempts = (1.0 - miss**s.campaign.max_attempts) / (1.0 - miss)
    return per_h, attempts


async def run_phase(phase: Phase, *, per_h: float, calls_per_order: float, seed: int) -> Result:
    # Imported here: the contract servers live with the tests, in a checkout only.
    from tests.crm_servers.retailcrm import RetailCrmState, create_app
    from tests.crm_servers.serve import serving

    rng = random.Random(seed)
    rate_per_s = per_h * phase.speedup / 3600.0
    state = RetailCrmState()
    with tempfile.TemporaryDirectory(prefix="obzvon-bench-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await upgrade_async(url)
        async with serving(create_app(state)) as server, Database(url) as db:
            settings = RetailCrmSettings(url=server.url, api_key="test-key", site="shop1")
            async with RetailCrmAdapter(settings) as crm:
                relay = OutboxRelay(
                    db, crm, time.time, asyncio.sleep, policy=RelayPolicy(lag_samples=1_000_000)
                )
                delivering = asyncio.create_task(relay.run(), name="relay")
                rows = orders = 0
                start = time.monotonic()
                outage = (start + phase.seconds / 4, start + phase.seconds / 4 + phase.outage_s)
                while True:
                    await asyncio.sleep(rng.expovariate(rate_per_s))
                    now = time.monotonic()
                    state.down = outage[0] <= now < outage[1]
                    if now - start >= phase.seconds:
                        break
                    calls = _calls(rng, calls_per_order)
                    rows += await _store_order(db, state, rng, calls)
                    orders += 1
                # a short phase may end inside the outage
                await asyncio.sleep(max(0.0, outage[1] - time.monotonic()))
                state.down = False
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    for _ in itertools.count():
                        if relay.statistics().delivered >= rows:
                            break
                        await asyncio.sleep(0.2)
                delivering.cancel()
                await asyncio.gather(delivering, return_exceptions=True)
                stats = relay.statistics()
    changes = Counter(h["order"]["id"] for h in state.history if h.get("field") == "status")
    calls_sent = sum(1 for s in stats.samples if s.kind == "call")
    once = (
        all(n == 1 for n in changes.values())
        and len(changes) == orders
        and len(state.calls) == calls_sent == sum(state.upload_sizes)
    )
    return Result(
        phase=phase,
        orders_per_h=per_h * phase.speedup,
        orders=orders,
        outcome_lags=[s.lag_s for s in stats.samples if s.kind == "outcome"],
        call_lags=[s.lag_s for s in stats.samples if s.kind == "call"],
        sla_breaches=stats.sla_breaches,
        rate_limited=state.rate_limited,
        delivered_once=once,
    )


def _calls(rng: random.Random, mean: float) -> int:
    # whole calls around the mean: the floor and one more with the fraction's probability
    return int(mean) + (rng.random() < mean - int(mean))


async def _store_order(db: Database, state: RetailCrmState, rng: random.Random, calls: int) -> int:
    """What the daemon stores for one order, each row at the moment it is written; returns
    the number of outbox rows."""
    crm_id = state.add_order("89121234567", created_at=datetime.now(UTC))
    now = datetime.now(UTC)
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
        order_id = order.id
    for n in range(calls):
        async with db.session() as s:
            now = datetime.now(UTC)
            await repo.add_outbox(
                s,
                kind="call",
                order_id=order_id,
                now=now,
                payload={
                    "order_id": order_id,
                    "crm": "retailcrm",
                    "external_id": str(crm_id),
                    "channel_id": f"{crm_id}-{n}",
                    "phone": "+79121234567",
                    "outcome": "connected" if n == calls - 1 else "no_answer",
                    "operator_id": "1001" if n == calls - 1 else None,
                    "started_at": now.isoformat(),
                    "duration_s": 150 if n == calls - 1 else 0,
                    "waiting_s": 1,
                    "recorded": n == calls - 1,
                },
            )
    roll = rng.random()
    outcome = "confirmed" if roll < 0.65 else "rejected" if roll < 0.95 else "invalid"
    upsell = Decimal(900) if outcome == "confirmed" and rng.random() < 0.75 else Decimal(0)
    async with db.session() as s:
        await repo.store_outcome(
            s,
            order_id=order_id,
            outcome="upsell" if upsell else outcome,
            now=datetime.now(UTC),
            operator_id="1001",
            upsell_amount=upsell,
        )
    return calls + 1


def _ms(values: list[float], q: float) -> str:
    p = percentile(values, q)
    return "–" if p is None else f"{p:.2f} s"


def report(results: list[Result], *, calls_per_order: float, command: str, where: str) -> str:
    lines = [
        "## Outcome latency (`dialer/relay.py`)",
        "",
        f"`{command}` — an outcome stored (and the order's calls) → RetailCRM acknowledges "
        "it, through `OutboxRelay` (default policy: polls every 1 s) and the RetailCRM adapter, "
        "against the contract server on loopback with the CRM's limits (10 requests/s, 40/s "
        "for telephony), SQLite, wall clock.",
        "",
        f"Load: the New Year spike's peak hour, {results[0].orders_per_h:.0f} orders/h "
        f"(1,140 orders/day × the hourly profile's busiest hour), {calls_per_order:.2f} calls "
        "and one outcome per order, arriving as a Poisson stream; then 10× and 100× that, and "
        "10× with the CRM answering 503 for a while.",
        "",
        f"Machine: {where}.",
        "",
        "| phase | orders/h | orders | outcome p50 | outcome p99 | outcome max | call p50 "
        "| call p99 | SLA breaches | 503 (rate limit) | each once |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.phase.name} | {r.orders_per_h:,.0f} | {r.orders} | {_ms(r.outcome_lags, 0.5)} "
            f"| {_ms(r.outcome_lags, 0.99)} | {_ms(r.outcome_lags, 1.0)} "
            f"| {_ms(r.call_lags, 0.5)} | {_ms(r.call_lags, 0.99)} | {r.sla_breaches} "
            f"| {r.rate_limited} | {'yes' if r.delivered_once else 'NO'} |"
        )
    peak = results[0]
    p99 = percentile(peak.outcome_lags, 0.99)
    verdict = "met" if p99 is not None and p99 < TARGET_P99_S else "NOT met"
    lines += [
        "",
        f"Target p99 < {TARGET_P99_S:.0f} s at the peak rate: {verdict}. At the peak rate the "
        "latency is the relay's poll (up to 1 s) plus one request. The peak phase has few "
        "samples (a few orders a minute: its p99 is its maximum), which is why the faster "
        "phases are there: they load the relay and the CRM more than the peak ever does, so "
        "their p99 bounds the peak's, and 100× the peak is still inside the CRM's limits (no "
        "503 for the rate). While the CRM is down a row waits out the outage, the adapter's "
        "own retries (about 30 s) and the relay's backoff (5 s doubling, with jitter), so the "
        "outage row's latency is the outage's length plus up to a backoff step; every row is "
        "delivered once when the CRM is back.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outcome_latency")
    parser.add_argument("--quick", action="store_true", help="phases a third as long")
    parser.add_argument("--no-write", action="store_true", help="do not update the docs")
    args = parser.parse_args(argv)
    # the outage phase's retries are expected; the table says what happened
    logging.getLogger("dialer.relay").setLevel(logging.ERROR)
    k = 1 / 3 if args.quick else 1.0
    phases = [
        Phase("peak (1×)", 1.0, 180 * k),
        Phase("10×", 10.0, 90 * k),
        Phase("100×", 100.0, 60 * k),
        Phase("10×, CRM down 60 s", 10.0, 120 * k, outage_s=60 * k),
    ]
    per_h, calls_per_order = peak_rate()
    where = machine()
    results = [
        asyncio.run(run_phase(p, per_h=per_h, calls_per_order=calls_per_order, seed=i + 1))
        for i, p in enumerate(phases)
    ]
    command = "python -m benchmarks.outcome_latency" + (" --quick" if args.quick else "")
    text = report(results, calls_per_order=calls_per_order, command=command, where=where)
    print(text)
    if not args.no_write:
        write_section("outcome_latency", text)
    p99 = percentile(results[0].outcome_lags, 0.99)
    ok = p99 is not None and p99 < TARGET_P99_S and all(r.delivered_once for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
