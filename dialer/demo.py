"""`obzvon demo`: the whole loop on embedded defaults, with time sped up.

SQLite in a temporary directory, `pbx.sim` on loopback, a simulated shop feeding orders along
the New Year spike's curve, simulated operators (different skills) driving the real HTTP API,
and a live terminal view. ``--for SECONDS --json`` runs headless and prints one JSON summary as
the last line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select

from dialer.app import Runtime, background_jobs, open_runtime
from dialer.clock import ScaledClock
from dialer.config import OperatorSettings, Settings
from dialer.config.models import DatabaseSettings, HttpSettings
from dialer.demo_feed import CATEGORIES, OrderFeed, operator_bots, percentile, true_conversion
from dialer.storage.models import Disposition, Order
from dialer.telephony import DialSettings
from pbx.sim import AsteriskSim, CallModel, OperatorScript

log = logging.getLogger(__name__)

HOME = ZoneInfo("Europe/Moscow")


def demo_start(day_hour: int = 10) -> float:
    """Simulated time starts today at `day_hour` in Moscow, inside the calling window."""
    today = datetime.now(HOME).replace(hour=day_hour, minute=0, second=0, microsecond=0)
    return today.timestamp()


def demo_settings(workdir: Path, *, operators: int, http: str, rng: random.Random) -> Settings:
    cats = list(CATEGORIES)
    ops = tuple(
        OperatorSettings(
            id=str(1001 + i),
            name=f"Operator {1001 + i}",
            endpoint=f"PJSIP/{1001 + i}",
            token=secrets.token_urlsafe(16),  # type: ignore[arg-type]
            skills={c: rng.randint(3, 10) for c in cats},
        )
        for i in range(operators)
    )
    supervisor = OperatorSettings(
        id="supervisor",
        name="Supervisor",
        endpoint="PJSIP/supervisor",
        role="supervisor",
        token=secrets.token_urlsafe(16),  # type: ignore[arg-type]
    )
    return Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{workdir / 'demo.db'}"),
        http=HttpSettings(listen=http),
        operators=(*ops, supervisor),
    )


async def _feed(rt: Runtime, feed: OrderFeed) -> None:
    clock = rt.clock
    campaign = rt.settings.campaigns[0].id
    while True:
        hour = datetime.fromtimestamp(clock.now(), HOME).hour
        await clock.sleep(feed.next_gap_s(hour))
        o = feed.make()
        await rt.add_order(
            crm="demo",
            external_id=o.external_id,
            phone_e164=o.phone,
            campaign_id=campaign,
            timezone=o.timezone,
            customer_name=o.customer_name,
            region=o.region,
            category=o.category,
            items=list(o.items),
            amount=Decimal(str(o.amount)),
        )


async def summary(rt: Runtime, *, sim: AsteriskSim) -> dict[str, Any]:
    stats = rt.engine.statistics(rt.clock.now())
    c = next(iter(stats.campaigns.values()))
    async with rt.db.reading() as session:
        orders = await session.scalar(select(func.count()).select_from(Order)) or 0
        confirmed = (
            await session.scalar(
                select(func.count())
                .select_from(Disposition)
                .where(Disposition.outcome.in_(("confirmed", "upsell")))
            )
            or 0
        )
        rows = await session.execute(
            select(Order.stored_at, Order.first_call_at).where(Order.first_call_at.is_not(None))
        )
        ttfc = [(f - s).total_seconds() for s, f in rows]
    rate = c.abandons / c.live_answers if c.live_answers else 0.0
    return {
        "orders": orders,
        "calls_placed": c.originated,
        "live_answers": c.live_answers,
        "abandons": c.abandons,
        "abandon_rate": round(rate, 4),
        "confirmed": confirmed,
        "ttfc_p50_s": _round(percentile(ttfc, 0.5)),
        "ttfc_p95_s": _round(percentile(ttfc, 0.95)),
        "operators": sum(o.role == "operator" for o in rt.settings.operators),
        "dial_level": round(c.dial_level, 2),
        "simulated_minutes": round((rt.clock.now() - demo_start()) / 60, 1),
        "sim_calls": sim.statistics().calls_originated,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def view(rt: Runtime) -> Group:
    now = rt.clock.now()
    stats = rt.engine.statistics(now)
    board = rt.board.statistics(now)
    ops = Table(title="Operators", expand=True)
    for col in ("id", "state", "for", "calls", "occupancy"):
        ops.add_column(col)
    for v in rt.board.all():
        ops.add_row(
            v.id,
            str(v.state),
            f"{now - v.since:5.0f}s",
            str(board.calls_handled.get(v.id, 0)),
            f"{board.occupancy.get(v.id, 0.0):.0%}",
        )
    camp = Table(title="Campaigns", expand=True)
    for col in (
        "campaign",
        "pacer",
        "dial level",
        "calls",
        "answers",
        "abandon 1h",
        "waiting",
        "ttfc p50/p90",
    ):
        camp.add_column(col)
    for cid, c in stats.campaigns.items():
        live = sum(n for s, n in c.calls_by_state.items() if s not in ("done",))
        t = c.time_to_first_call
        ab = "–" if c.abandon_rate_1h is None else f"{c.abandon_rate_1h:.1%}"
        camp.add_row(
            cid,
            c.pacer.mode,
            f"{c.dial_level:.2f}",
            str(live),
            str(c.live_answers),
            ab,
            str(c.leads_due),
            f"{t.p50_s or 0:.1f}/{t.p90_s or 0:.1f}s",
        )
    clock = datetime.fromtimestamp(now, HOME).strftime("%H:%M:%S MSK")
    return Group(f"[bold]obzvon demo[/bold] — simulated time {clock}", camp, ops)


async def run_demo(
    *,
    seconds: float | None,
    as_json: bool,
    http: str,
    scale: float,
    operators: int,
    per_day: float,
    seed: int,
) -> dict[str, Any]:
    rng = random.Random(seed)
    console = Console(stderr=as_json)
    with tempfile.TemporaryDirectory(prefix="obzvon-demo-") as tmp:
        settings = demo_settings(Path(tmp), operators=operators, http=http, rng=rng)
        clock = ScaledClock(scale=scale, start=demo_start())
        model = CallModel(
            answer_rate=0.6, patience_median_s=20.0, machine_rate=0.0, notsure_rate=0.0
        )
        async with AsteriskSim(time_scale=scale, seed=seed, model=model) as sim:
            for o in settings.operators:
                # softphones on auto-answer, as predictive dialing needs; talk about 2.5 minutes
                sim.add_operator(o.endpoint.partition("/")[2], OperatorScript(ring_s=0.3))
            dial = DialSettings(dial_template="PJSIP/{digits}@trunk", recordings_dir=tmp)
            async with open_runtime(
                settings, clock=clock, ami_port=sim.port, dial=dial, tick_s=0.5
            ) as rt:
                base = f"http://{settings.http.listen}"
                sup = settings.operator("supervisor").token
                board_url = f"{base}/#token={sup.get_secret_value() if sup else ''}"
                if not as_json:
                    console.print(f"wallboard: {board_url}   metrics: {base}/metrics")
                bots = operator_bots(
                    settings.operators,
                    base_url=base,
                    clock=clock,
                    conversion=lambda _: true_conversion(rng, list(CATEGORIES)),
                    rng=rng,
                )
                feed = OrderFeed(per_day=per_day, seed=seed)
                jobs: list[Callable[[], Awaitable[None]]] = [*background_jobs(rt)]
                jobs.append(lambda: _feed(rt, feed))
                jobs.extend(b.run for b in bots)
                jobs.append(lambda: _stop_after(rt, seconds))
                if not as_json:
                    jobs.append(lambda: _live(rt, console))
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGINT, rt.daemon.stop)
                loop.add_signal_handler(signal.SIGTERM, rt.daemon.stop)
                await rt.daemon.run(extra=jobs)
                return await summary(rt, sim=sim)


async def _stop_after(rt: Runtime, seconds: float | None) -> None:
    if seconds is None:
        await asyncio.Event().wait()
    await asyncio.sleep(seconds or 0)
    rt.daemon.stop()


async def _live(rt: Runtime, console: Console) -> None:
    with Live(view(rt), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            await asyncio.sleep(0.5)
            live.update(view(rt))


def main(
    *,
    seconds: float | None,
    as_json: bool,
    http: str,
    scale: float,
    operators: int,
    per_day: float,
    seed: int,
) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = asyncio.run(
        run_demo(
            seconds=seconds,
            as_json=as_json,
            http=http,
            scale=scale,
            operators=operators,
            per_day=per_day,
            seed=seed,
        )
    )
    if as_json:
        print(json.dumps(result))
    else:
        Console().print_json(json.dumps(result))
