"""Comparisons of policies on one scenario: pacing, and routing with confidence intervals.

Every policy runs on the same `World` (the same orders, operators and call fates), so the
differences between them are the policies' own. Routing is compared over several seeds, paired
by seed, and its lift in confirmed revenue over longest-idle is given with a 95 % interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from benchmarks.sim.harness import Simulation
from benchmarks.sim.metrics import RunResult
from benchmarks.sim.policies import (
    LEARNED,
    PACING_NAMES,
    ROUTING_NAMES,
    performance_routing_available,
)
from benchmarks.sim.scenario import Scenario
from benchmarks.sim.world import World

__all__ = [
    "Lift",
    "PacingComparison",
    "RoutingComparison",
    "compare_pacing",
    "compare_routing",
    "routing_policies",
]

BASELINE: Final = "longest-idle"
DEFAULT_HISTORY_DAYS: Final = 14.0
# Two-sided 95 % Student t quantiles by degrees of freedom (the normal's beyond 30).
_T95: Final = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
}

Progress = Callable[[str, float, float], None]


def t95(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (conservative between)."""
    if df >= 31:
        return 1.96
    return _T95[min(k for k in _T95 if k >= df)] if df >= 1 else math.inf


@dataclass(frozen=True, slots=True)
class PacingComparison:
    scenario: Scenario
    results: dict[str, RunResult]

    def to_json(self) -> dict[str, Any]:
        """{"scenario": name, "policies": {name: figures}}, the `--json` line."""
        return {
            "scenario": self.scenario.name,
            "policies": {name: r.figures() for name, r in self.results.items()},
        }


def compare_pacing(
    scenario: Scenario,
    policies: Sequence[str] = PACING_NAMES,
    *,
    seed: int | None = None,
    routing: str | None = None,
    progress: Progress | None = None,
) -> PacingComparison:
    """Run each pacing policy on the scenario's world; routing is the scenario's."""
    for name in policies:
        if name not in PACING_NAMES:
            raise ValueError(f"unknown pacing {name!r}; valid: {', '.join(PACING_NAMES)}")
    world = World(scenario, seed)
    results: dict[str, RunResult] = {}
    for name in policies:
        report = None if progress is None else _named(progress, name)
        sim = Simulation(
            world,
            pacing=name,
            routing=routing or scenario.campaign.routing,
            progress=report,
        )
        results[name] = sim.run()
    return PacingComparison(scenario=scenario, results=results)


def _named(progress: Progress, name: str) -> Callable[[float, float], None]:
    return lambda done, total: progress(name, done, total)


@dataclass(frozen=True, slots=True)
class Lift:
    """Confirmed revenue over the baseline's, paired by seed: mean and 95 % interval."""

    mean: float
    low: float
    high: float
    share: float | None  # mean lift / the oracle's mean lift
    fair_share: float | None  # mean lift / the fair oracle's mean lift

    @classmethod
    def of(cls, diffs: Sequence[float], oracle_mean: float | None, fair_mean: float | None) -> Lift:
        mean = statistics.fmean(diffs)
        half = (
            t95(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
            if len(diffs) > 1
            else math.inf
        )
        share = mean / oracle_mean if oracle_mean else None
        fair = mean / fair_mean if fair_mean else None
        return cls(mean=mean, low=mean - half, high=mean + half, share=share, fair_share=fair)


@dataclass(frozen=True, slots=True)
class RoutingComparison:
    scenario: Scenario
    seeds: tuple[int, ...]
    pacing: str
    history_days: float
    results: dict[str, list[RunResult]]
    lifts: dict[str, Lift]

    def mean_figures(self, name: str) -> dict[str, Any]:
        """The mean of each numeric figure of `name` over the seeds."""
        runs = [r.figures() for r in self.results[name]]
        out: dict[str, Any] = {}
        for key in runs[0]:
            values = [run[key] for run in runs if run[key] is not None]
            out[key] = round(statistics.fmean(values), 4) if values else None
        return out

    def to_json(self) -> dict[str, Any]:
        policies: dict[str, Any] = {}
        for name in self.results:
            figures = self.mean_figures(name)
            lift = self.lifts.get(name)
            if lift is not None:
                figures["revenue_lift"] = round(lift.mean, 2)
                figures["revenue_lift_ci95"] = [round(lift.low, 2), round(lift.high, 2)]
                figures["lift_share_of_oracle"] = (
                    None if lift.share is None else round(lift.share, 3)
                )
                figures["lift_share_of_fair_oracle"] = (
                    None if lift.fair_share is None else round(lift.fair_share, 3)
                )
            policies[name] = figures
        return {
            "scenario": self.scenario.name,
            "seeds": list(self.seeds),
            "pacing": self.pacing,
            "history_days": self.history_days,
            "policies": policies,
        }


def routing_policies() -> tuple[str, ...]:
    """The routing policies to compare: all of `ROUTING_NAMES` whose code is present."""
    return tuple(n for n in ROUTING_NAMES if n != "performance" or performance_routing_available())


def compare_routing(
    scenario: Scenario,
    policies: Sequence[str] | None = None,
    *,
    replications: int = 5,
    pacing: str | None = None,
    history_days: float = DEFAULT_HISTORY_DAYS,
    progress: Progress | None = None,
) -> RoutingComparison:
    """Run each routing policy on `replications` worlds (seeds scenario.seed, +1, ...).

    A learning policy starts with `history_days` of the operators' past outcomes in its book.
    """
    names = list(policies or routing_policies())
    for name in names:
        if name not in ROUTING_NAMES:
            raise ValueError(f"unknown routing {name!r}; valid: {', '.join(ROUTING_NAMES)}")
        if name in LEARNED and not performance_routing_available():
            raise ValueError("performance routing (acd.routing_learned) is not present")
    if BASELINE not in names:
        names.insert(0, BASELINE)
    pacing = pacing or scenario.campaign.pacing
    seeds = tuple(scenario.seed + i for i in range(replications))
    results: dict[str, list[RunResult]] = {name: [] for name in names}
    for seed in seeds:
        world = World(scenario, seed)
        for name in names:
            label = f"{name} (seed {seed})"
            report = None if progress is None else _named(progress, label)
            sim = Simulation(
                world, pacing=pacing, routing=name, history_days=history_days, progress=report
            )
            results[name].append(sim.run())

    def diffs(name: str) -> list[float]:
        return [
            r.confirmed_revenue - b.confirmed_revenue
            for r, b in zip(results[name], results[BASELINE], strict=True)
        ]

    def mean_lift(name: str) -> float | None:
        return statistics.fmean(diffs(name)) if name in results else None

    oracle, fair = mean_lift("oracle"), mean_lift("oracle-fair")
    lifts = {name: Lift.of(diffs(name), oracle, fair) for name in names if name != BASELINE}
    return RoutingComparison(
        scenario=scenario,
        seeds=seeds,
        pacing=pacing,
        history_days=history_days,
        results=results,
        lifts=lifts,
    )
