"""Speed to lead: how long an order waits between being stored and its first Originate.

The whole daemon runs (engine, database, HTTP, AMI client) against `pbx.sim` over loopback at
time scale 1, so the seconds are real ones: orders arrive as a Poisson stream, operators
(simulated desktops driving the HTTP API, softphones on auto-answer) take the calls. For every
order the time from stored to first Originate is read back from the database
(`orders.first_call_at - orders.stored_at`), and split by whether an operator was to spare
when the order arrived (free, and not spoken for by a call already being dialled). Target: p95
under 5 s with an operator free.

    python -m benchmarks.speed_to_lead [--seconds 60] [--rate 1.0] [--operators 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import tempfile
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from benchmarks.common import machine, write_section
from dialer.app import Runtime, background_jobs, open_runtime
from dialer.clock import LiveClock
from dialer.config import CampaignSettings, OperatorSettings, Settings
from dialer.config.models import DatabaseSettings, HttpSettings
from dialer.demo_feed import operator_bots, percentile
from dialer.storage.models import Order
from dialer.telephony import DialSettings
from pbx.sim import AsteriskSim, CallModel, OperatorScript

IN_FLIGHT = ("queued", "dialing", "ringing", "screening", "answered-waiting")


def spare_operator(rt: Runtime) -> bool:
    """Whether an operator is free and not already spoken for by a call being dialled or an
    answered customer waiting: the case in which an order may be dialled at once."""
    stats = rt.engine.statistics(rt.clock.now()).campaigns["confirm"]
    in_flight = sum(stats.calls_by_state.get(state, 0) for state in IN_FLIGHT)
    return len(rt.board.free("confirm")) > in_flight


async def measure(*, seconds: float, rate: float, operators: int, port: int) -> dict[str, object]:
    rng = random.Random(1)
    free_at_arrival: dict[int, bool] = {}
    with tempfile.TemporaryDirectory(prefix="obzvon-bench-") as tmp:
        ops = tuple(
            OperatorSettings(id=str(3001 + i), token=secrets.token_urlsafe(12))  # type: ignore[arg-type]
            for i in range(operators)
        )
        settings = Settings(
            database=DatabaseSettings(url=f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"),
            http=HttpSettings(listen=f"127.0.0.1:{port}"),
            campaigns=(
                CampaignSettings(id="confirm", name="Confirmation", calling_window="00:00-24:00"),
            ),
            operators=ops,
        )
        model = CallModel(answer_rate=0.6, ring_median_s=4.0, patience_median_s=None)
        async with AsteriskSim(time_scale=1.0, seed=1, model=model) as sim:
            for o in ops:
                sim.add_operator(o.id, OperatorScript(ring_s=0.2, talk_s=20.0))
            dial = DialSettings(dial_template="PJSIP/{digits}@trunk", recordings_dir=tmp)
            async with open_runtime(
                settings, clock=LiveClock(), ami_port=sim.port, dial=dial
            ) as rt:
                base = f"http://127.0.0.1:{port}"
                bots = operator_bots(
                    ops,
                    base_url=base,
                    clock=rt.clock,
                    conversion=lambda _: {"cosmetics": 0.7},
                    rng=random.Random(2),
                    poll_s=0.2,
                )

                async def feed() -> None:
                    await asyncio.sleep(2.0)  # operators log in
                    loop = asyncio.get_running_loop()
                    end = loop.time() + seconds
                    n = 0
                    while loop.time() < end:
                        await asyncio.sleep(rng.expovariate(rate))
                        n += 1
                        spare = spare_operator(rt)
                        order_id = await rt.add_order(
                            crm="bench",
                            external_id=f"b-{n}",
                            phone_e164=f"+7901{rng.randrange(10**7):07d}",
                            campaign_id="confirm",
                            timezone="Europe/Moscow",
                            category="cosmetics",
                            amount=Decimal(1990),
                        )
                        free_at_arrival[order_id] = spare
                    await asyncio.sleep(3.0)
                    rt.daemon.stop()

                await rt.daemon.run(extra=[*background_jobs(rt), feed, *(b.run for b in bots)])
                async with rt.db.session() as session:
                    rows = (
                        await session.execute(
                            select(Order.id, Order.stored_at, Order.first_call_at)
                        )
                    ).all()
    with_free = [
        (f - s).total_seconds() for i, s, f in rows if f is not None and free_at_arrival.get(i)
    ]
    everyone = [(f - s).total_seconds() for _, s, f in rows if f is not None]
    return {
        "orders": len(rows),
        "called": len(everyone),
        "with_operator_free": len(with_free),
        "free": _summary(with_free),
        "all": _summary(everyone),
    }


def _summary(values: list[float]) -> dict[str, float | None]:
    return {
        q: percentile(values, p)
        for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
    }


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f} ms"


def report(result: dict[str, object], command: str) -> str:
    free, every = result["free"], result["all"]
    assert isinstance(free, dict) and isinstance(every, dict)
    rows = [
        "| orders | p50 | p95 | p99 | max | target |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| with an operator to spare at arrival ({result['with_operator_free']}) "
        f"| {_ms(free['p50'])} | {_ms(free['p95'])} | {_ms(free['p99'])} "
        f"| {_ms(free['max'])} | p95 < 5 s |",
        f"| all called ({result['called']} of {result['orders']}) | {_ms(every['p50'])} "
        f"| {_ms(every['p95'])} | {_ms(every['p99'])} | {_ms(every['max'])} | |",
    ]
    return "\n".join(
        [
            "## Speed to lead (`dialer/`)",
            "",
            f"Machine: {machine()}.",
            "",
            f"Command: `{command}`",
            "",
            "The whole daemon (engine, SQLite, HTTP API, AMI client) against `pbx.sim` over "
            "loopback at time scale 1: real seconds. Orders arrive as a Poisson stream; simulated "
            "operators drive the HTTP API, softphones on auto-answer. Time to first call = "
            "`orders.first_call_at - orders.stored_at` as stored (the attempt row is written "
            "before the Originate is sent).",
            "",
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed_to_lead")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=1.0, help="orders per second")
    parser.add_argument("--operators", type=int, default=20)
    parser.add_argument("--port", type=int, default=18091)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(
        measure(seconds=args.seconds, rate=args.rate, operators=args.operators, port=args.port)
    )
    command = (
        f"python -m benchmarks.speed_to_lead --seconds {args.seconds:g} --rate {args.rate:g} "
        f"--operators {args.operators}"
    )
    text = report(result, command)
    print(text)
    if not args.no_docs:
        write_section("speed_to_lead", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
