"""End to end: the whole daemon against `pbx.sim` over loopback, at a high time scale.

The daemon is the one `obzvon run` builds (`dialer.app.open_runtime`: engine, database, HTTP
API, AMI client, wallboard stream, metrics) on a scaled clock, with a SQLite file (or a fresh
schema in the PostgreSQL database given). The simulator and the operators' desktops run in a
second process (`benchmarks.e2e_load`), so the CPU time measured here is the daemon's alone.
Orders arrive as a Poisson stream at `rate` a second, each stored and handed to the engine as
it arrives (`Runtime.add_order`, as the intake does after its rules); the campaign is paced as
`pacing` says (predictive, the default); the floor is sized so that the operators can take the
calls `rate` attempts a second bring (`E2eParams.talk_median_s`). After a warm-up, over
`seconds` of wall time:

- attempts per second: Originates the simulator received;
- CPU seconds per 1,000 attempts: `time.process_time()` of this process (all of the daemon's
  threads) over the same window;
- reaction: from the simulator writing ``ObzvonAnswered`` for a customer to it reading the
  Redirect that puts that customer through to an operator, both stamped by the simulator, for
  every call the engine put through in the very step that handled its answer. A customer who
  had to wait for an operator is put through by a later event; those are counted apart.

The figures are in `benchmarks.e2e_report`. ``obzvon bench e2e`` runs this; ``python -m
benchmarks.e2e`` runs it three times and writes the ``e2e`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import logging
import math
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import make_url

from benchmarks.e2e_load import OPERATOR_RING_S, LoadPlan, LoadReport
from benchmarks.e2e_report import COUNTERS, summary
from dialer.app import Runtime, background_jobs, open_runtime
from dialer.clock import ScaledClock
from dialer.config import Settings
from dialer.demo_feed import CATEGORIES
from dialer.engine import commands as cmd
from dialer.engine.engine import DialerEngine
from dialer.engine.session import CallState
from dialer.telephony import DialSettings

log = logging.getLogger(__name__)

CAMPAIGN: Final = "confirm"
TALK_SIGMA: Final = 0.5  # `CallModel.operator_talk_sigma`'s default
FEED_IN_FLIGHT: Final = 10  # orders being stored at once, at most (a CRM sends a few at a time)

ProgressFn = Callable[[str, float, float], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class E2eParams:
    """One run. `rate` is attempts per second of wall time the floor is sized for, `seconds`
    and `warmup_s` are wall time; `wrapup_s` (the desktops' time before a disposition) and
    talk are simulated seconds; `occupancy` is the share of the floor's time the sizing keeps
    busy. `database` is a PostgreSQL URL, or None for a SQLite file."""

    operators: int = 500
    rate: float = 50.0
    seconds: float = 60.0
    warmup_s: float = 20.0
    time_scale: float = 10.0
    answer_rate: float = 0.6
    wrapup_s: float = 10.0
    occupancy: float = 0.85
    seed: int = 1
    pacing: str = "predictive"
    database: str | None = None

    def talk_median_s(self) -> float:
        """The operators' median talk (simulated seconds) that makes the floor take `rate`:
        each operator is busy `occupancy` of the time with calls of `rate x answer_rate` a
        second shared among them."""
        handle_real = self.occupancy * self.operators / (self.rate * self.answer_rate)
        talk_mean = handle_real * self.time_scale - self.wrapup_s - OPERATOR_RING_S
        if talk_mean <= 0:
            raise ValueError(
                f"{self.operators} operators can take {self.rate:g} attempts/s only with calls "
                f"shorter than their wrap-up: add operators, or lower the rate or raise the time "
                f"scale ({self.time_scale:g})"
            )
        return talk_mean / math.exp(TALK_SIGMA**2 / 2)


def measure(
    params: E2eParams, *, progress: ProgressFn | None = None, profile: Path | None = None
) -> dict[str, Any]:
    """One run: the far side in a second process, the daemon here; the figures as
    `benchmarks.e2e_report.summary()` gives them. `profile`: write the daemon's cProfile
    statistics over the measured window there."""
    plan = LoadPlan(
        operators=tuple(
            (str(3001 + i), secrets.token_urlsafe(12)) for i in range(params.operators)
        ),
        supervisor_token=secrets.token_urlsafe(12),
        time_scale=params.time_scale,
        seed=params.seed,
        answer_rate=params.answer_rate,
        talk_median_s=params.talk_median_s(),
        wrapup_s=params.wrapup_s,
    )
    far = _FarSide(plan)
    try:
        _, ami_port = far.recv()
        run = _DaemonRun(params=params, plan=plan, far=far, progress=progress, profile=profile)
        asyncio.run(run.run(ami_port))
        far.send("report", run.window["start"], run.window["end"])
        report = LoadReport(**far.recv()[0])
    finally:
        far.close()
    return summary(params, run.window, report, run.prompt.calls)


class _FarSide:
    """The simulator's and desktops' process (`benchmarks.e2e_load`): one JSON line each way."""

    def __init__(self, plan: LoadPlan) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.e2e_load"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._write(asdict(plan))

    def send(self, *message: object) -> None:
        self._write(message)

    def _write(self, data: object) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(data) + "\n")
        self._proc.stdin.flush()

    def recv(self) -> Any:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the simulator's process ended (exit code {self._proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self.send("quit")
                self._proc.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()


class _Prompt:
    """The calls the engine put through in the step that handled their answer, seen through
    the daemon's `on_command` hook: the session's first step to connecting carries its
    answer's time."""

    def __init__(self) -> None:
        self.engine: DialerEngine | None = None
        self.calls: set[str] = set()

    def on_command(self, command: object) -> None:
        if not isinstance(command, cmd.ConnectToOperator) or self.engine is None:
            return
        session = self.engine.call(command.call_id)
        if session is None or session.answered_at is None:
            return
        first = next((s for s in session.history if s.state is CallState.CONNECTING), None)
        if first is not None and first.at == session.answered_at:
            self.calls.add(command.call_id)


@dataclass
class _DaemonRun:
    """The daemon's side of one run; `window` holds what was measured in it."""

    params: E2eParams
    plan: LoadPlan
    far: _FarSide
    progress: ProgressFn | None
    profile: Path | None
    prompt: _Prompt = field(default_factory=_Prompt)
    window: dict[str, Any] = field(default_factory=dict)
    arrived: int = 0
    refused: int = 0
    feeding: bool = True

    async def run(self, ami_port: int) -> None:
        with tempfile.TemporaryDirectory(prefix="obzvon-e2e-") as tmp:
            async with _database(self.params.database, Path(tmp)) as url:
                settings = self._settings(url, listen=f"127.0.0.1:{_free_port()}")
                dial = DialSettings(dial_template="PJSIP/{digits}@trunk", recordings_dir=tmp)
                async with open_runtime(
                    settings,
                    clock=ScaledClock(scale=self.params.time_scale),
                    ami_port=ami_port,
                    dial=dial,
                    on_command=self.prompt.on_command,
                ) as rt:
                    self.prompt.engine = rt.engine

                    stopped: list[float] = []

                    async def control() -> None:
                        try:
                            await self._control(rt)
                        finally:
                            stopped.append(time.monotonic())
                            rt.daemon.stop()

                    jobs = [*background_jobs(rt), control, lambda: self._feed(rt)]
                    try:
                        await rt.daemon.run(extra=jobs)
                    except* TimeoutError:
                        # the daemon could not store what its engine decided within its flush
                        # timeout: the database is behind; reported as such
                        self.window["flush_timed_out"] = True
                    self.window["flush_s"] = time.monotonic() - stopped[0]
                    rt.http.should_exit = True

    def _settings(self, db_url: str, *, listen: str) -> Settings:
        """What an admin's config file would say (read the way the file is read)."""
        operators = [{"id": op, "token": token} for op, token in self.plan.operators]
        supervisor = {"id": "supervisor", "role": "supervisor", "token": self.plan.supervisor_token}
        return Settings.model_validate(
            {
                "database": {"url": db_url},
                "http": {"listen": listen, "recording_url_secret": secrets.token_urlsafe(16)},
                "campaigns": [
                    {
                        "id": CAMPAIGN,
                        "name": "Confirmation",
                        "calling_window": "00:00-24:00",
                        "pacing": self.params.pacing,
                    }
                ],
                "operators": [*operators, supervisor],
            }
        )

    async def _control(self, rt: Runtime) -> None:
        """Start the desktops (they wait for the HTTP server), warm up, measure the window."""
        self.far.send("desktops", f"http://{rt.settings.http.listen}")
        await self._wait(self.params.warmup_s, "warm-up")
        profiler = cProfile.Profile() if self.profile is not None else None
        before = _counters(rt)
        not_dialled0 = rt.daemon.statistics().not_dialled
        start, cpu0 = time.monotonic(), time.process_time()
        arrived0, refused0 = self.arrived, self.refused
        self.far.send("window", "start")
        if profiler is not None:
            profiler.enable()
        await self._wait(self.params.seconds, "measuring")
        if profiler is not None:
            profiler.disable()
        end, cpu1 = time.monotonic(), time.process_time()
        self.feeding = False
        self.far.send("window", "end")
        after = _counters(rt)
        # the floor stream ends from the desktops' side, as a closed browser ends it
        self.far.send("desktops-off")
        await asyncio.to_thread(self.far.recv)
        if profiler is not None and self.profile is not None:
            profiler.dump_stats(str(self.profile))
        stats = rt.engine.statistics(rt.clock.now()).campaigns[CAMPAIGN]
        daemon = rt.daemon.statistics()
        self.window.update(
            start=start,
            end=end,
            cpu_s=cpu1 - cpu0,
            orders=self.arrived - arrived0,
            orders_refused=self.refused - refused0,
            engine={k: after[k] - before[k] for k in COUNTERS},
            leads_due_at_end=stats.leads_due,
            inbox_at_end=daemon.inbox,
            ami_errors=daemon.ami_errors,
            not_dialled=daemon.not_dialled - not_dialled0,
        )

    async def _wait(self, seconds: float, label: str) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while (done := loop.time() - t0) < seconds:
            if self.progress is not None:
                self.progress(label, done, seconds)
            await asyncio.sleep(min(0.25, seconds - done))
        if self.progress is not None:
            self.progress(label, seconds, seconds)

    async def _feed(self, rt: Runtime) -> None:
        """Orders as a Poisson stream until the window ends, each stored as it arrives (as
        webhooks come: a slow store does not hold back the next order), at most
        `FEED_IN_FLIGHT` at once."""
        rng = random.Random(self.params.seed)
        categories, weights = list(CATEGORIES), list(CATEGORIES.values())
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(FEED_IN_FLIGHT)

        async def store(n: int, phone: str, category: str) -> None:
            try:
                await rt.add_order(
                    crm="bench",
                    external_id=f"e2e-{n}",
                    phone_e164=phone,
                    campaign_id=CAMPAIGN,
                    timezone="Europe/Moscow",
                    category=category,
                    amount=Decimal(1990),
                )
            except Exception as exc:  # counted and reported; the shop keeps sending
                self.refused += 1
                if self.refused == 1:
                    log.error("an order was not stored: %s", exc)
            finally:
                slots.release()

        due = loop.time()
        async with asyncio.TaskGroup() as tg:
            while self.feeding:
                due += rng.expovariate(self.params.rate)
                if (delay := due - loop.time()) > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                self.arrived += 1
                phone = f"+7901{rng.randrange(10**7):07d}"
                category = rng.choices(categories, weights)[0]
                tg.create_task(store(self.arrived, phone, category))


@asynccontextmanager
async def _database(url: str | None, tmp: Path) -> AsyncIterator[str]:
    """A SQLite file in `tmp`, or a new schema in the PostgreSQL database `url`, dropped after."""
    if url is None:
        yield f"sqlite+aiosqlite:///{tmp / 'e2e.db'}"
        return
    import asyncpg

    parsed = make_url(url)
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"e2e_{secrets.token_hex(8)}"
    admin = await asyncpg.connect(dsn, timeout=10)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        with_schema = parsed.update_query_dict({"search_path": schema})
        yield with_schema.render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def _counters(rt: Runtime) -> dict[str, int]:
    c = rt.engine.statistics(rt.clock.now()).campaigns[CAMPAIGN]
    return {k: int(getattr(c, k)) for k in COUNTERS}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.e2e [options]`` (what ``make bench`` runs): ``obzvon bench e2e
    --runs 3 --docs [options]``, options given later winning."""
    from benchmarks.bench_cli import bench

    args = sys.argv[1:] if argv is None else argv
    bench.main(["e2e", "--runs", "3", "--docs", *args], prog_name="python -m benchmarks.e2e")


if __name__ == "__main__":
    main()
