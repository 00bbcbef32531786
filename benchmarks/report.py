"""Regenerate the simulator's sections of docs/benchmarks.md and their plots in docs/img/.

Run from the repository root (`make bench` runs it)::

    python -m benchmarks.report                    # everything, a few minutes
    python -m benchmarks.report --only pacing      # one section: speed, pacing, routing, plan
    python -m benchmarks.report --no-docs          # print, write nothing

Each section is written between its own ``<!-- name:start -->`` / ``<!-- name:end -->``
markers; every other section of the page is left byte for byte. The figures are results, not
tests: a target missed is reported as missed.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, TypeVar
from zoneinfo import ZoneInfo

from benchmarks.common import machine, write_section
from benchmarks.sim.compare import PacingComparison, RoutingComparison
from benchmarks.sim.scenario import load_scenario
from benchmarks.sim.tables import markdown, pacing_table, routing_table, verdict_table
from benchmarks.sim.targets import TTFC_FREE_P95_S, Verdict, pacing_verdicts, routing_verdicts

ROOT: Final = Path(__file__).resolve().parent.parent
IMG: Final = ROOT / "docs" / "img"
PACING_SCENARIOS: Final = (
    "newyear-spike",
    "newyear-repeat",
    "steady-500",
    "centre-5000",
    "small-team",
    "low-contact",
    "burst-5x",
    "skewed-categories",
)
ROUTING_SCENARIOS: Final = (("skewed-categories", 5), ("newyear-spike", 3))
SPEED_SCENARIO: Final = "newyear-spike"
SPEED_TARGET_S: Final = 10.0
SECTIONS: Final = ("speed", "pacing", "routing", "plan")


def _img(name: str) -> str:
    return f"img/{name}"


# -- speed -------------------------------------------------------------------------------------


def speed_section() -> str:
    from benchmarks.sim.harness import Simulation
    from benchmarks.sim.world import World

    base = load_scenario(SPEED_SCENARIO)
    peak = max(base.orders.per_day)
    scenario = base.with_changes(days=1, **{"orders.per_day": [peak]})
    rows: list[list[str]] = []
    world = World(scenario)
    for pacing in ("progressive", "adaptive", "predictive", "oracle"):
        result = Simulation(world, pacing=pacing).run()
        ok = "met" if result.wall_s < SPEED_TARGET_S else "missed"
        speedup = (world.end - world.start) / result.wall_s
        rows.append(
            [pacing, f"{result.calls_placed:,}", f"{result.wall_s:.2f}", f"{speedup:,.0f}×", ok]
        )
    table = (["pacing", "calls placed", "wall s", "simulated time / wall time", "< 10 s"], rows)
    return "\n".join(
        [
            "## Simulator speed (`benchmarks/sim/`)",
            "",
            f"Machine: {machine()}.",
            "",
            "Command: `python -m benchmarks.report --only speed` — one simulated day of the"
            f" spike's peak ({peak:,} orders, {base.operators.count} operators, the"
            f" `{SPEED_SCENARIO}` scenario's other settings), the real engine with each pacer.",
            "",
            markdown(table),
        ]
    )


# -- pacing ------------------------------------------------------------------------------------


def _pacing_one(name: str) -> PacingComparison:
    from benchmarks.sim.compare import compare_pacing

    return compare_pacing(load_scenario(name))


def _summary(comparisons: Sequence[PacingComparison]) -> str:
    verdicts = {cmp.scenario.name: pacing_verdicts(cmp) for cmp in comparisons}
    targets = [v.target for v in next(iter(verdicts.values()))]
    header = ["target", *verdicts]
    rows = [[t] + [_cell(verdicts[s], t) for s in verdicts] for t in targets]
    return markdown((header, rows))


def _cell(verdicts: Sequence[Verdict], target: str) -> str:
    for v in verdicts:
        if v.target == target:
            return v.mark
    return "—"


def pacing_section(comparisons: Sequence[PacingComparison], measured_on: str) -> str:
    from benchmarks.sim import plots

    plots.talk_vs_abandon(comparisons, IMG / "sim-talk-vs-abandon.png")
    spike = next(c for c in comparisons if c.scenario.name == "newyear-spike")
    peak_day = spike.scenario.orders.per_day.index(max(spike.scenario.orders.per_day))
    plots.spike_day(spike, IMG / "sim-spike-day.png", day=peak_day)
    burst = [c for c in comparisons if c.scenario.name in ("newyear-spike", "burst-5x")]
    plots.ttfc_distribution(burst, IMG / "sim-ttfc.png")
    idle = [c.scenario.name for c in comparisons if c.results["oracle"].talk_share < 0.3]
    burst_note = _peak_hour_note(spike, peak_day)
    short = [
        c.scenario.name for c in comparisons if (c.results["oracle"].ttfc_p95_s or 0.0) >= 60.0
    ]
    short_note = (
        f"Where even the oracle's p95 time to first call is 60 s or more ({', '.join(short)}),"
        " the operators do not suffice at the peaks (the morning release of the night's"
        " orders, a burst): no pacer can call every order within a minute there, and the"
        " capacity plan below says how many operators would."
        if short
        else "The oracle calls 95 % of orders within 60 s in every scenario."
    )
    behind = _ttfc_behind_oracle(comparisons)
    if behind:
        short_note += " " + behind
    parts = [
        "## Pacing on simulated traffic (`bench pacing`)",
        "",
        f"Machine: {measured_on}.",
        "",
        "Command: `python -m benchmarks.report --only pacing`; each scenario alone:"
        " `obzvon bench pacing --scenario NAME` (all four policies run on the same orders,"
        " operators and call fates; figures defined in `benchmarks/README.md`).",
        "",
        "Targets for the predictive pacer, by scenario (`n/a`: fewer than 100 live answers in"
        " any 24 h window):",
        "",
        _summary(comparisons),
        "",
        f"In {len(idle)} of {len(comparisons)} scenarios ({', '.join(idle) or 'none'}) even the"
        " oracle keeps operators talking less than 30 % of their logged-in time: orders, not"
        " operators, are the limit for most of the day, and a pacer can only win in the hours"
        " with a backlog (the morning after the night's orders, a burst). There the difference"
        " shows in the time to first call more than in the talk share.",
        "",
        burst_note,
        "",
        short_note,
        "",
        f"![Talk share against abandon rate]({_img('sim-talk-vs-abandon.png')})",
        "",
        f"![Dial level and abandon rate over the spike day]({_img('sim-spike-day.png')})",
        "",
        f"![Time from order to first call]({_img('sim-ttfc.png')})",
        "",
    ]
    for cmp in comparisons:
        parts += [
            f"### {cmp.scenario.name}",
            "",
            f"`obzvon bench pacing --scenario {cmp.scenario.name}`",
            "",
            markdown(pacing_table(cmp)),
            markdown(verdict_table(pacing_verdicts(cmp))),
        ]
    return "\n".join(parts)


def _ttfc_behind_oracle(comparisons: Sequence[PacingComparison]) -> str:
    """Where the oracle calls 95 % of orders within 60 s and the predictive pacer does not."""
    rows: list[str] = []
    explained = True
    for cmp in comparisons:
        pred, oracle = cmp.results.get("predictive"), cmp.results.get("oracle")
        if pred is None or oracle is None:
            continue
        if (oracle.ttfc_p95_s or 0.0) < 60.0 <= (pred.ttfc_p95_s or 0.0):
            free = pred.ttfc_free_p95_s
            rows.append(
                f"{cmp.scenario.name}: predictive {pred.ttfc_p95_s or 0.0:.0f} s, oracle"
                f" {oracle.ttfc_p95_s or 0.0:.0f} s, and p95 {free or 0.0:.0f} s over the orders"
                " stored while an operator was free for them"
            )
            explained = explained and free is not None and free < TTFC_FREE_P95_S
    if not rows:
        return ""
    text = f"The oracle makes it and the predictive pacer does not on {'; '.join(rows)}."
    if explained:
        text += (
            " The slow orders came while every operator was busy or spoken for: the oracle"
            " dials at once the calls it knows nobody will answer and times the others to the"
            " second an operator frees up, while a pacer that knows only the odds would risk"
            " an abandon on most such calls."
        )
    return text


def _peak_hour_note(cmp: PacingComparison, day: int) -> str:
    """Where each dialling-ahead pacer's last-hour abandon rate peaked on the given day."""
    zone = ZoneInfo(cmp.scenario.campaign.timezone)
    date_of_day = cmp.scenario.start + timedelta(days=day)
    notes: list[str] = []
    for name in ("predictive", "adaptive"):
        result = cmp.results.get(name)
        if result is None:
            continue
        on_day = [
            s
            for s in result.samples
            if datetime.fromtimestamp(s.at, zone).date() == date_of_day
            and s.abandon_rate_1h is not None
        ]
        if not on_day:
            continue
        worst = max(on_day, key=lambda s: s.abandon_rate_1h or 0.0)
        at = datetime.fromtimestamp(worst.at, zone)
        notes.append(
            f"{name} {100 * (worst.abandon_rate_1h or 0.0):.1f} % at {at:%H:%M}"
            f" (24 h rate then {100 * (worst.abandon_rate_24h or 0.0):.2f} %"
            f"{_after_opening(cmp, worst.at)})"
        )
    if not notes:
        return ""
    return (
        f"On {cmp.scenario.name}'s busiest day ({date_of_day:%d %b}) the abandon rate over the"
        f" last hour (sampled every 5 minutes) peaked at: {'; '.join(notes)}. A calling window"
        " opens on a night's orders, whose customers answer far less often than fresh ones;"
        " the predictive pacer weighs each call by its lead's age (docs/pacing.md)."
    )


def _after_opening(cmp: PacingComparison, at: float) -> str:
    """How long after a calling window opened (in any customers' zone) `at` is, if under an
    hour; else an empty string."""
    opens, _ = cmp.scenario.campaign.window_span().seconds()
    for tz in cmp.scenario.orders.timezones:
        local = datetime.fromtimestamp(at, ZoneInfo(tz))
        since = local.hour * 3600 + local.minute * 60 + local.second - opens
        if 0 <= since < 3600:
            return f", {since // 60:.0f} min after the calling window opened in {tz}"
    return ""


# -- routing -----------------------------------------------------------------------------------


def _routing_one(args: tuple[str, int]) -> RoutingComparison:
    from benchmarks.sim.compare import compare_routing

    name, replications = args
    return compare_routing(load_scenario(name), replications=replications)


def routing_section(comparisons: Sequence[RoutingComparison], measured_on: str) -> str:
    from benchmarks.sim import plots

    plots.routing_lift(comparisons, IMG / "sim-routing-lift.png")
    notes = []
    for cmp in comparisons:
        lift = cmp.lifts.get("performance")
        if lift is None or lift.share is None or lift.fair_share is None:
            continue
        notes.append(
            f"{cmp.scenario.name}: {100 * lift.share:.0f} % of the oracle's lift,"
            f" {100 * lift.fair_share:.0f} % of the fair oracle's"
        )
    summary = (
        "Performance routing reaches "
        + "; ".join(notes)
        + ". The gap between the two oracles is what the fairness guard costs (an operator"
        " idle for its limit gets the next call whatever their record, and no one may take"
        " more than the load ratio allows); the gap between performance routing and the fair"
        " oracle is what learning costs."
        if notes
        else "Performance routing (`acd.routing_learned`) was not present when this ran."
    )
    parts = [
        "## Routing on simulated traffic (`bench routing`)",
        "",
        f"Machine: {measured_on}.",
        "",
        "Command: `python -m benchmarks.report --only routing`. Every policy runs on the same"
        " worlds, one per seed; the lift is confirmed revenue minus longest-idle's on the same"
        " seed, with a 95 % t-interval over the seeds. `performance` is"
        " `acd.routing_learned.PerformanceRouting` with its production defaults (fairness guard"
        " included), its book holding 14 days of past outcomes; `oracle` gives each call to the"
        " free operator with the best true rate; `oracle-fair` is `PerformanceRouting` with the"
        " true rates in its book (perfect knowledge under the same fairness guard).",
        "",
        summary,
        "",
        f"![Routing lift over longest-idle]({_img('sim-routing-lift.png')})",
        "",
    ]
    for cmp in comparisons:
        n = len(cmp.seeds)
        parts += [
            f"### {cmp.scenario.name}",
            "",
            f"`obzvon bench routing --scenario {cmp.scenario.name} --replications {n}`"
            f" (pacing: {cmp.pacing}, seeds {cmp.seeds[0]}–{cmp.seeds[-1]})",
            "",
            markdown(routing_table(cmp)),
            markdown(verdict_table(routing_verdicts(cmp))),
        ]
    return "\n".join(parts)


# -- the command -------------------------------------------------------------------------------


T = TypeVar("T")
R = TypeVar("R")


def _map(fn: Callable[[T], R], items: Sequence[T], jobs: int) -> list[R]:
    if jobs <= 1:
        return [fn(item) for item in items]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(fn, items))


def _cached(
    directory: Path | None, name: str, compute: Callable[[], list[R]]
) -> tuple[list[R], str]:
    """The results and the machine they were measured on, from `directory` when cached."""
    if directory is None:
        return compute(), machine()
    path = directory / f"{name}.pickle"
    if path.exists():
        with path.open("rb") as f:
            loaded: tuple[list[R], str] = pickle.load(f)
        return loaded
    results = compute(), machine()
    directory.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(results, f)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    parser.add_argument("--jobs", type=int, default=1, help="scenarios run in parallel")
    parser.add_argument("--no-docs", action="store_true", help="print instead of writing")
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep the runs' results in this directory and reuse them (to redraw, not to measure)",
    )
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; valid: {', '.join(SECTIONS)}")

    def emit(name: str, text: str) -> None:
        if args.no_docs:
            print(text)
        else:
            write_section(name, text)
            print(f"docs/benchmarks.md: section {name} written", file=sys.stderr)

    if "speed" in wanted:
        emit("sim_speed", speed_section())
    if "pacing" in wanted:
        pacing = _cached(
            args.cache, "pacing", lambda: _map(_pacing_one, PACING_SCENARIOS, args.jobs)
        )
        emit("sim_pacing", pacing_section(*pacing))
    if "routing" in wanted:
        routing = _cached(
            args.cache, "routing", lambda: _map(_routing_one, ROUTING_SCENARIOS, args.jobs)
        )
        emit("sim_routing", routing_section(*routing))
    if "plan" in wanted:
        from benchmarks.sim.planner import plan_section

        emit("sim_plan", plan_section(machine()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
