"""The far side of `benchmarks.e2e`, in a process of its own: `pbx.sim` and the desktops.

It runs apart from the daemon so that the daemon's CPU time is the daemon's alone. Two parts:

- `Probe`, the simulator's observer: it stamps, on this process's monotonic clock (the same
  clock in every process of the machine), each Originate the daemon sends, each
  ``ObzvonAnswered`` event written to the daemon and the first Redirect to the connect context
  and the first MixMonitor that follow for the same channel. Both ends of a reaction are read
  where the bytes cross the simulator's socket, so a reaction includes both TCP directions.
- `Desktops`, the operators' desktops: each logs in and goes ready over the HTTP API with its
  own token; one floor stream (a supervisor's token, as a wallboard reads it) tells them when a
  call of theirs has ended, and each posts its disposition after the wrap-up, as an operator's
  desktop that gets its events pushed does. Nothing polls.

``python -m benchmarks.e2e_load`` reads a `LoadPlan` as one JSON line on standard input and
answers ``["listening", port]``; then, one JSON array a line each way, the parent sends
``["desktops", base_url]``, ``["window", "start" | "end"]``, ``["desktops-off"]`` (answered
``["off"]`` once they have closed their connections), ``["report", start, end]`` (answered
with a `LoadReport`) and ``["quit"]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from pbx.dialplan import CONTEXT_CONNECT, USEREVENT_ANSWERED
from pbx.protocol import Frame
from pbx.sim import AsteriskSim, CallModel, OperatorScript

log = logging.getLogger(__name__)

OPERATOR_RING_S = 0.3  # softphones on auto-answer, as predictive dialling needs
HTTP_CONNECTIONS = 50
LOGIN_TRIES = 600


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What the far side simulates. Durations are simulated seconds."""

    operators: tuple[tuple[str, str], ...]  # (operator id = endpoint resource, token)
    supervisor_token: str
    time_scale: float
    seed: int
    answer_rate: float
    talk_median_s: float
    wrapup_s: float
    confirm_rate: float = 0.7


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What the far side saw. Times are `time.monotonic()` seconds."""

    originates: tuple[float, ...]
    answered: Mapping[str, float]  # call id → ObzvonAnswered written
    redirected: Mapping[str, float]  # call id → first Redirect to the connect context read
    recorded: Mapping[str, float]  # call id → first MixMonitor read
    dispositions: int
    dispositions_refused: int
    desktop_errors: int
    cpu_s: float  # this process's CPU time between the window marks
    sim_outcomes: Mapping[str, int]


class Probe:
    """The simulator's observer (see the module docstring); cheap on every other frame."""

    def __init__(self) -> None:
        self.originates: list[float] = []
        self.answered: dict[str, float] = {}
        self.redirected: dict[str, float] = {}
        self.recorded: dict[str, float] = {}
        self._call_of: dict[str, str] = {}  # customer channel → call id

    def observe(self, frame: Frame, sent: bool) -> None:
        now = time.monotonic()
        if sent:
            if frame.name == "UserEvent" and frame.get("UserEvent") == USEREVENT_ANSWERED:
                call, channel = frame.get("Call"), frame.get("Channel")
                if call and channel:
                    self._call_of[channel] = call
                    self.answered.setdefault(call, now)
            return
        action = frame.name.lower()
        if action == "originate":
            self.originates.append(now)
            return
        if action not in ("redirect", "mixmonitor"):
            return
        call = self._call_of.get(frame.get("Channel") or "")
        if call is None:
            return
        if action == "mixmonitor":
            self.recorded.setdefault(call, now)
        elif frame.get("Context") == CONTEXT_CONNECT:
            self.redirected.setdefault(call, now)


@dataclass
class Desktops:
    """Every operator's desktop (see the module docstring)."""

    base_url: str
    tokens: Mapping[str, str]  # operator id → token
    supervisor_token: str
    wrapup_real_s: float
    confirm_rate: float
    rng: random.Random
    dispositions: int = 0
    refused: int = 0
    errors: int = 0
    _seen: set[str] = field(default_factory=set)

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=HTTP_CONNECTIONS)
        async with (
            httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=30) as http,
            asyncio.TaskGroup() as tg,
        ):
            async with asyncio.TaskGroup() as logins:
                for op in self.tokens:
                    logins.create_task(self._log_in(http, op))
            while True:
                try:
                    await self._follow(http, tg)
                except httpx.HTTPError as exc:
                    self.errors += 1
                    log.warning("floor stream: %s; reconnecting", exc)
                    await asyncio.sleep(0.2)

    async def _log_in(self, http: httpx.AsyncClient, op: str) -> None:
        headers = {"Authorization": f"Bearer {self.tokens[op]}"}
        for _ in range(LOGIN_TRIES):  # the daemon's HTTP server may still be starting
            try:
                await http.post("/api/operators/me/login", headers=headers)
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        await self._post(http, op, "/api/operators/me/ready")

    async def _follow(self, http: httpx.AsyncClient, tg: asyncio.TaskGroup) -> None:
        headers = {"Authorization": f"Bearer {self.supervisor_token}"}
        async with http.stream("GET", "/api/floor/stream", headers=headers, timeout=None) as r:
            kind = ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind in ("operator", "snapshot"):
                    data = json.loads(line[6:])
                    for tile in data["operators"] if kind == "snapshot" else (data,):
                        self._on_operator(http, tg, tile)

    def _on_operator(
        self, http: httpx.AsyncClient, tg: asyncio.TaskGroup, tile: Mapping[str, Any]
    ) -> None:
        op, call = str(tile.get("operator_id")), tile.get("call_id")
        if op not in self.tokens:
            return
        if tile.get("state") == "wrap-up" and call and call not in self._seen:
            self._seen.add(call)
            tg.create_task(self._dispose(http, op, call))
        elif tile.get("state") == "paused" and tile.get("pause_reason") == "no answer":
            tg.create_task(self._post(http, op, "/api/operators/me/ready"))

    async def _dispose(self, http: httpx.AsyncClient, op: str, call: str) -> None:
        await asyncio.sleep(self.wrapup_real_s)
        body: dict[str, Any]
        if self.rng.random() < self.confirm_rate:
            body = {"outcome": "confirmed"}
            if self.rng.random() < 0.75:  # 3 of 4 confirmed orders leave with an upsell
                price = round(self.rng.uniform(400, 1400), -1)
                body["upsell_items"] = [{"sku": "UP-1", "name": "upsell", "price": price}]
        else:
            body = {"outcome": "rejected", "reason": "changed mind"}
        if await self._post(http, op, f"/api/calls/{call}/disposition", body):
            self.dispositions += 1

    async def _post(
        self, http: httpx.AsyncClient, op: str, path: str, body: Mapping[str, Any] | None = None
    ) -> bool:
        headers = {"Authorization": f"Bearer {self.tokens[op]}"}
        try:
            response = await http.post(path, headers=headers, json=body)
        except httpx.HTTPError as exc:
            self.errors += 1
            log.warning("operator %s: POST %s failed: %s", op, path, exc)
            return False
        if response.status_code >= 400:
            # e.g. a disposition after the wrap-up ran out: the engine moved on without it
            self.refused += 1
            return False
        return True


def main() -> None:
    """The far side's process: serve until told to quit (or standard input closes)."""
    logging.basicConfig(level=logging.WARNING)
    plan = json.loads(sys.stdin.readline())
    plan["operators"] = tuple(tuple(o) for o in plan["operators"])
    asyncio.run(_serve(LoadPlan(**plan)))


def _say(*message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve(plan: LoadPlan) -> None:
    probe = Probe()
    model = CallModel(
        answer_rate=plan.answer_rate,
        patience_median_s=20.0,
        machine_rate=0.0,
        notsure_rate=0.0,
        operator_talk_median_s=plan.talk_median_s,
    )
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    marks: dict[str, float] = {}
    async with (
        AsteriskSim(
            time_scale=plan.time_scale, seed=plan.seed, model=model, observer=probe.observe
        ) as sim,
        asyncio.TaskGroup() as tg,
    ):
        for op, _ in plan.operators:
            sim.add_operator(op, OperatorScript(ring_s=OPERATOR_RING_S))
        _say("listening", sim.port)
        desktops: Desktops | None = None
        jobs: list[asyncio.Task[None]] = []
        while line := await commands.readline():
            match json.loads(line):
                case ["desktops", str(base_url)]:
                    desktops = Desktops(
                        base_url=base_url,
                        tokens=dict(plan.operators),
                        supervisor_token=plan.supervisor_token,
                        wrapup_real_s=plan.wrapup_s / plan.time_scale,
                        confirm_rate=plan.confirm_rate,
                        rng=random.Random(plan.seed),
                    )
                    jobs.append(tg.create_task(desktops.run(), name="desktops"))
                case ["window", str(mark)]:
                    marks[mark] = time.process_time()
                case ["desktops-off"]:
                    for job in jobs:
                        job.cancel()
                    await asyncio.gather(*jobs, return_exceptions=True)
                    _say("off")
                case ["report", float(start), float(end)]:
                    _say(asdict(_report(probe, desktops, sim, marks, start, end)))
                case ["quit"]:
                    break
        for job in jobs:
            job.cancel()


def _report(
    probe: Probe,
    desktops: Desktops | None,
    sim: AsteriskSim,
    marks: Mapping[str, float],
    start: float,
    end: float,
) -> LoadReport:
    # every call answered up to the end, with whatever followed it: a reaction to an event
    # near the end of the window is late at most by its own latency
    return LoadReport(
        originates=tuple(t for t in probe.originates if start <= t < end),
        answered={c: t for c, t in probe.answered.items() if start <= t < end},
        redirected=dict(probe.redirected),
        recorded=dict(probe.recorded),
        dispositions=desktops.dispositions if desktops else 0,
        dispositions_refused=desktops.refused if desktops else 0,
        desktop_errors=desktops.errors if desktops else 0,
        cpu_s=marks.get("end", 0.0) - marks.get("start", 0.0),
        sim_outcomes=dict(sim.statistics().outcomes),
    )


__all__ = ["LoadPlan", "LoadReport", "Probe"]

if __name__ == "__main__":
    main()
