"""The capacity planner: operators needed by hour of day, by simulation, with Erlang C and A.

By simulation: the scenario's busiest day is run twice in a row (the second day starts with
the first one's night backlog, as a real morning does) with N operators working round the
clock, under the scenario's pacer held to the abandon target given. An hour needs N operators
when, with N, the orders stored in that hour (in the campaign's time zone, inside their calling
window) are first called within the TTFC target at the 95th percentile on the second day. N is
searched by doubling and then bisection per hour, every run cached, so a plan costs a dozen or
so simulated days.

Beside it, two textbook figures for the same hour, from the measured traffic:

- **Erlang C**: orders as jobs in an M/M/N queue. λ = the orders released in the hour (stored
  inside their window, or at its opening for those stored at night), S = operator seconds per
  order measured in the simulation; the least N with P(wait > target) ≤ 5 %.
- **Erlang A**: answered customers as an M/M/N+M queue. λ = the live answers of the hour in
  the simulation, S = the mean hold (pick-up, talk, wrap-up), patience with the scenario's mean;
  the least N whose share of customers abandoning is within the abandon target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np

from benchmarks.sim.harness import Simulation
from benchmarks.sim.metrics import RunResult, nearest_rank
from benchmarks.sim.policies import campaign_rules
from benchmarks.sim.scenario import Scenario, load_scenario
from benchmarks.sim.tables import Table, markdown
from benchmarks.sim.world import World
from dialer.engine.scheduling import next_window_start

__all__ = [
    "Plan",
    "erlang_a_abandon",
    "erlang_a_servers",
    "erlang_c_servers",
    "erlang_c_wait_over",
    "plan_capacity",
    "plan_table",
]

MAX_OPERATORS: Final = 1000
SERVICE_LEVEL: Final = 0.95

Progress = Callable[[str, float, float], None]


def _erlang_b(servers: int, load: float) -> float:
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c_wait_over(servers: int, rate: float, service_s: float, wait_s: float) -> float:
    """P(wait > `wait_s`) in an M/M/`servers` queue (1.0 when it is overloaded)."""
    load = rate * service_s
    if servers <= load:
        return 1.0
    b = _erlang_b(servers, load)
    c = servers * b / (servers - load * (1.0 - b))
    return float(c * math.exp(-(servers - load) * wait_s / service_s))


def erlang_a_abandon(servers: int, rate: float, service_s: float, patience_s: float) -> float:
    """The share of arrivals who abandon in an M/M/`servers`+M queue (exponential patience)."""
    if rate <= 0:
        return 0.0
    mu, theta = 1.0 / service_s, 1.0 / patience_s
    # Enough queue states for the tail to vanish, bounded for very patient customers.
    top = servers + min(100_000, 200 + int(20 * rate / theta))
    k = np.arange(top + 1)
    death = np.minimum(k, servers) * mu + np.maximum(k - servers, 0) * theta
    log_p = np.concatenate([[0.0], np.cumsum(np.log(rate) - np.log(death[1:]))])
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    queued = float(np.dot(np.maximum(k - servers, 0), p))
    return theta * queued / rate


def erlang_c_servers(rate: float, service_s: float, wait_s: float) -> int | None:
    """The least servers with P(wait > `wait_s`) within 1 - SERVICE_LEVEL (0 with no traffic)."""
    if rate <= 0:
        return 0
    for n in range(1, MAX_OPERATORS + 1):
        if erlang_c_wait_over(n, rate, service_s, wait_s) <= 1.0 - SERVICE_LEVEL:
            return n
    return None


def erlang_a_servers(rate: float, service_s: float, patience_s: float, target: float) -> int | None:
    """The least servers whose abandoning share is within `target` (0 with no traffic)."""
    if rate <= 0:
        return 0
    for n in range(1, MAX_OPERATORS + 1):
        if erlang_a_abandon(n, rate, service_s, patience_s) <= target:
            return n
    return None


@dataclass(frozen=True, slots=True)
class HourPlan:
    hour: int
    released: int
    live_answers: int
    p95_at_max_s: float | None
    simulated: int | None
    erlang_c: int | None
    erlang_a: int | None


@dataclass(frozen=True, slots=True)
class Plan:
    scenario: str
    target_ttfc_s: float
    abandon_target: float
    zone: str
    hours: tuple[HourPlan, ...]
    runs: dict[int, float | None]  # operators -> the worst hour's p95 TTFC

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "target_ttfc_s": self.target_ttfc_s,
            "abandon_target": self.abandon_target,
            "timezone": self.zone,
            "hours": [
                {
                    "hour": h.hour,
                    "orders_released": h.released,
                    "live_answers": h.live_answers,
                    "operators_simulated": h.simulated,
                    "operators_erlang_c": h.erlang_c,
                    "operators_erlang_a": h.erlang_a,
                }
                for h in self.hours
            ],
        }


class _Runs:
    """Simulations of the busiest day twice over, by operator count, cached."""

    def __init__(self, scenario: Scenario, pacing: str, progress: Progress | None) -> None:
        self.scenario = scenario
        self.pacing = pacing
        self.zone = ZoneInfo(scenario.campaign.timezone)
        self.world = World(scenario)
        second = scenario.start + timedelta(days=1)
        self.day_two = datetime.combine(second, time(0), tzinfo=self.zone).timestamp()
        self._progress = progress
        self._cache: dict[int, RunResult] = {}

    def run(self, operators: int) -> RunResult:
        if operators not in self._cache:
            world = World(self.scenario.with_changes(**{"operators.count": operators}))
            label = f"{operators} operators"
            report = None
            if self._progress is not None:
                progress = self._progress
                report = lambda done, total: progress(label, done, total)  # noqa: E731
            sim = Simulation(world, pacing=self.pacing, progress=report)
            self._cache[operators] = sim.run()
        return self._cache[operators]

    def hour_of(self, at: float) -> int:
        return datetime.fromtimestamp(at, self.zone).hour

    def p95_by_hour(self, operators: int) -> dict[int, float | None]:
        result = self.run(operators)
        by_hour: dict[int, list[float]] = {}
        for stored, wait in zip(result.ttfc_stored_at, result.ttfc_samples, strict=True):
            if stored >= self.day_two:
                by_hour.setdefault(self.hour_of(stored), []).append(wait)
        return {h: nearest_rank(v, SERVICE_LEVEL) for h, v in by_hour.items()}

    def hours_ok(self, operators: int, target_s: float) -> dict[int, bool]:
        return {h: p is not None and p < target_s for h, p in self.p95_by_hour(operators).items()}

    @property
    def tried(self) -> dict[int, RunResult]:
        return dict(sorted(self._cache.items()))


def plan_capacity(
    scenario: Scenario,
    *,
    target_ttfc_s: float = 60.0,
    abandon_target: float = 0.03,
    pacing: str | None = None,
    progress: Progress | None = None,
) -> Plan:
    """Operators needed by hour of day for `scenario` (see the module docstring), under
    `pacing` (default: the scenario's)."""
    peak = max(scenario.orders.per_day)
    busy = scenario.with_changes(
        days=2,
        **{
            "orders.per_day": [peak, peak],
            "operators.shifts": ["00:00-24:00"],
            "campaign.abandon_target": abandon_target,
        },
    )
    runs = _Runs(busy, pacing or scenario.campaign.pacing, progress)
    hi = 1
    while not all(runs.hours_ok(hi, target_ttfc_s).values()) and hi < MAX_OPERATORS:
        hi = min(MAX_OPERATORS, hi * 2)
    needed: dict[int, int | None] = {}
    for hour, ok in runs.hours_ok(hi, target_ttfc_s).items():
        if not ok:
            needed[hour] = None
            continue
        lo, top = 0, hi  # lo fails (or is 0), top passes
        while top - lo > 1:
            mid = (lo + top) // 2
            if runs.hours_ok(mid, target_ttfc_s).get(hour, True):
                top = mid
            else:
                lo = mid
        needed[hour] = top
    reference = runs.run(hi)
    hours = _hours(runs, reference, needed, target_ttfc_s, abandon_target)
    return Plan(
        scenario=scenario.name,
        target_ttfc_s=target_ttfc_s,
        abandon_target=abandon_target,
        zone=scenario.campaign.timezone,
        hours=hours,
        runs={n: _worst(runs.p95_by_hour(n)) for n in runs.tried},
    )


def _worst(p95: dict[int, float | None]) -> float | None:
    return max((p for p in p95.values() if p is not None), default=None)


def _hours(
    runs: _Runs,
    reference: RunResult,
    needed: dict[int, int | None],
    target_s: float,
    abandon_target: float,
) -> tuple[HourPlan, ...]:
    scenario = runs.scenario
    rules = campaign_rules(scenario)
    released = dict.fromkeys(range(24), 0)
    for order in runs.world.orders:
        if order.created_at < runs.day_two:
            continue
        opens = next_window_start(order.created_at, order.timezone, rules.calling_window)
        released[runs.hour_of(opens)] += 1
    answers = dict.fromkeys(range(24), 0)
    day_answers = [a for a in reference.answer_times if a >= runs.day_two]
    for at in day_answers:
        answers[runs.hour_of(at)] += 1
    orders_day = sum(released.values()) or 1
    per_order_s = reference.busy_s / (2 * orders_day)
    ops = scenario.operators
    hold_s = ops.answer_delay_s.mean + ops.talk_time_s.mean + ops.wrapup_s
    patience_s = scenario.customers.patience_s.mean
    p95 = runs.p95_by_hour(max(runs.tried))
    out: list[HourPlan] = []
    for hour in range(24):
        c = erlang_c_servers(released[hour] / 3600.0, per_order_s, target_s)
        a = erlang_a_servers(answers[hour] / 3600.0, hold_s, patience_s, abandon_target)
        out.append(
            HourPlan(
                hour=hour,
                released=released[hour],
                live_answers=answers[hour],
                p95_at_max_s=p95.get(hour),
                simulated=needed.get(hour, 0),
                erlang_c=c,
                erlang_a=a,
            )
        )
    return tuple(out)


def plan_table(plan: Plan) -> Table:
    header = [
        f"hour ({plan.zone})",
        "orders released",
        "live answers",
        f"operators: simulation (p95 TTFC < {plan.target_ttfc_s:g} s)",
        "Erlang C",
        f"Erlang A (abandon ≤ {100 * plan.abandon_target:g} %)",
    ]
    rows = [
        [
            f"{h.hour:02d}:00",
            str(h.released),
            str(h.live_answers),
            "—" if h.simulated is None else str(h.simulated),
            "—" if h.erlang_c is None else str(h.erlang_c),
            "—" if h.erlang_a is None else str(h.erlang_a),
        ]
        for h in plan.hours
    ]
    return header, rows


def plan_section(machine: str, scenario_name: str = "steady-500") -> str:
    """The capacity-plan section of docs/benchmarks.md."""
    plan = plan_capacity(load_scenario(scenario_name))
    runs = ", ".join(
        f"{n}: {'—' if p is None else f'{p:.0f} s'}" for n, p in sorted(plan.runs.items())
    )
    return "\n".join(
        [
            "## Capacity plan (`obzvon plan`)",
            "",
            f"Machine: {machine}.",
            "",
            f"Command: `obzvon plan --scenario {scenario_name} --target-ttfc 60 --abandon 0.03`"
            " (also `python -m benchmarks.report --only plan`). How the three columns are"
            " computed: `benchmarks/sim/planner.py`. Worst hour's p95 TTFC by operators"
            f" simulated: {runs}.",
            "",
            markdown(plan_table(plan)),
        ]
    )
