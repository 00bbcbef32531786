"""The benchmark commands: `bench pacing`, `bench routing`, `bench e2e` and `plan`.

`bench` is a click group and `plan` a click command, both registered in the `obzvon` CLI. Each
command parses options, runs the simulator (`benchmarks.sim`; `bench e2e` runs the whole
daemon against `pbx.sim`, see `benchmarks.e2e`), prints a table and, with
`--json`, one JSON object on the last line of standard output. A scenario that does not
validate is reported key by key on standard error with exit code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from benchmarks.sim.scenario import Scenario, ScenarioError, load_scenario
from benchmarks.sim.tables import Table

__all__ = ["bench", "plan"]

_out = Console()
_err = Console(stderr=True)

ProgressFn = Callable[[str, float, float], None]


def _scenario(value: str) -> Scenario:
    try:
        return load_scenario(value)
    except ScenarioError as exc:
        for problem in exc.problems:
            _err.print(f"[red]✗[/red] {escape(exc.source)}: {escape(problem)}", highlight=False)
        sys.exit(2)


@contextmanager
def _progress(enabled: bool | None, unit: str = "of simulated time") -> Iterator[ProgressFn | None]:
    """A rich progress bar on standard error (by default only when it is a terminal)."""
    if enabled is None:
        enabled = _err.is_terminal
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f} % " + unit),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(label: str, done: float, total: float) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done)

        yield update


def _print(table: Table, title: str) -> None:
    header, rows = table
    rich_table = RichTable(title=title, title_justify="left")
    for i, name in enumerate(header):
        rich_table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        rich_table.add_row(*row)
    _out.print(rich_table)


_SCENARIO = click.option(
    "--scenario",
    "scenario_arg",
    required=True,
    help="A scenario file, or the name of one in benchmarks/scenarios/ (e.g. newyear-spike).",
)
_JSON = click.option(
    "--json", "as_json", is_flag=True, help="End with the figures as one JSON object."
)
_PROGRESS = click.option(
    "--progress/--no-progress", default=None, help="Show a progress bar (default: on a tty)."
)


@click.group("bench")
def bench() -> None:
    """Compare pacing and routing policies on simulated traffic (the real engine inside)."""


@bench.command("pacing")
@_SCENARIO
@click.option(
    "--policies",
    default="progressive,adaptive,predictive,oracle",
    show_default=True,
    help="Comma-separated pacing policies.",
)
@click.option("--seed", type=int, help="Override the scenario's seed.")
@_JSON
@_PROGRESS
def pacing_cmd(
    scenario_arg: str, policies: str, seed: int | None, as_json: bool, progress: bool | None
) -> None:
    """Run each pacing policy on the same simulated days and compare them."""
    from benchmarks.sim.compare import compare_pacing
    from benchmarks.sim.tables import pacing_table, verdict_table
    from benchmarks.sim.targets import pacing_verdicts

    scenario = _scenario(scenario_arg)
    names = [p.strip() for p in policies.split(",") if p.strip()]
    with _progress(progress) as report:
        try:
            cmp = compare_pacing(scenario, names, seed=seed, progress=report)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--policies") from None
    _print(pacing_table(cmp), f"pacing: {scenario.name}")
    verdicts = pacing_verdicts(cmp)
    if verdicts:
        _print(verdict_table(verdicts), "targets")
    if as_json:
        click.echo(json.dumps(cmp.to_json()))


@bench.command("routing")
@_SCENARIO
@click.option("--policies", help="Comma-separated routing policies (default: all present).")
@click.option(
    "--replications",
    default=5,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Seeds to run each policy on (paired across policies).",
)
@click.option("--pacing", help="Pacing policy to run under (default: the scenario's).")
@click.option(
    "--history-days",
    default=14.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Days of past outcomes in the performance book at the start (0: a cold start).",
)
@_JSON
@_PROGRESS
def routing_cmd(
    scenario_arg: str,
    policies: str | None,
    replications: int,
    pacing: str | None,
    history_days: float,
    as_json: bool,
    progress: bool | None,
) -> None:
    """Run each routing policy on the same simulated days and compare confirmed revenue."""
    from benchmarks.sim.compare import compare_routing
    from benchmarks.sim.tables import routing_table, verdict_table
    from benchmarks.sim.targets import routing_verdicts

    scenario = _scenario(scenario_arg)
    names = [p.strip() for p in policies.split(",") if p.strip()] if policies else None
    with _progress(progress) as report:
        try:
            cmp = compare_routing(
                scenario,
                names,
                replications=replications,
                pacing=pacing,
                history_days=history_days,
                progress=report,
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--policies") from None
    _print(routing_table(cmp), f"routing: {scenario.name} ({replications} seeds)")
    _print(verdict_table(routing_verdicts(cmp)), "targets")
    if as_json:
        click.echo(json.dumps(cmp.to_json()))


@bench.command("e2e")
@click.option("--operators", default=500, show_default=True, type=click.IntRange(1, 5000))
@click.option(
    "--rate",
    default=50.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Call attempts per second (wall time) the orders and the floor are sized for.",
)
@click.option(
    "--seconds",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds measured, after the warm-up.",
)
@click.option("--warmup", default=20.0, show_default=True, type=click.FloatRange(min=0))
@click.option(
    "--time-scale",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Simulated seconds per real second (daemon and simulator alike).",
)
@click.option(
    "--pacing",
    default="predictive",
    show_default=True,
    type=click.Choice(["progressive", "adaptive", "predictive"]),
)
@click.option(
    "--database",
    help="A PostgreSQL URL (postgresql+asyncpg://...): runs in a new schema, dropped after. "
    "Default: a SQLite file in a temporary directory.",
)
@click.option(
    "--runs",
    default=1,
    show_default=True,
    type=click.IntRange(1, 9),
    help="Repeat and report the median.",
)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option(
    "--profile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the daemon's cProfile statistics over the (last) measured window here and "
    "show where its time went (a profiled run is slower: do not quote its figures).",
)
@click.option("--docs", is_flag=True, help="Write the e2e section of docs/benchmarks.md.")
@_JSON
@_PROGRESS
def e2e_cmd(
    operators: int,
    rate: float,
    seconds: float,
    warmup: float,
    time_scale: float,
    pacing: str,
    database: str | None,
    runs: int,
    seed: int,
    profile: Path | None,
    docs: bool,
    as_json: bool,
    progress: bool | None,
) -> None:
    """The whole daemon (HTTP, database, AMI) against pbx.sim over loopback: call attempts a
    second, CPU seconds per 1,000 attempts, and the p99 from an AMI event to the action it
    causes."""
    import logging

    from benchmarks.common import write_section
    from benchmarks.e2e import E2eParams, measure
    from benchmarks.e2e_report import combine, profile_table, runs_table, section, verdict_table

    params = E2eParams(
        operators=operators,
        rate=rate,
        seconds=seconds,
        warmup_s=warmup,
        time_scale=time_scale,
        pacing=pacing,
        database=database,
        seed=seed,
    )
    try:
        params.talk_median_s()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--operators") from None
    # one line per call would drown the table (missing dispositions, refused writes): the
    # figures count them
    logging.getLogger("dialer").setLevel(logging.CRITICAL)
    results = []
    with _progress(progress, unit="of the run's time") as report:
        for i in range(runs):
            label = f"run {i + 1}/{runs}" if runs > 1 else "run"

            def step(what: str, done: float, total: float, label: str = label) -> None:
                if report is not None:
                    report(f"{label}: {what}", done, total)

            results.append(measure(params, progress=step, profile=profile))
    result = combine(results)
    _print(runs_table(result), f"e2e: {operators} operators, {rate:g} attempts/s, {pacing}")
    _print(verdict_table(result), "targets")
    if profile is not None:
        _print(profile_table(str(profile)), f"where the daemon's time went ({profile})")
    if docs:
        write_section("e2e", section(result, _e2e_command(params, runs)))
        _err.print("docs/benchmarks.md: section e2e written")
    if as_json:
        click.echo(json.dumps(result))


def _e2e_command(params: Any, runs: int) -> str:
    from sqlalchemy.engine import make_url

    words = [
        "obzvon bench e2e",
        f"--operators {params.operators}",
        f"--rate {params.rate:g}",
        f"--seconds {params.seconds:g}",
        f"--warmup {params.warmup_s:g}",
        f"--time-scale {params.time_scale:g}",
        f"--pacing {params.pacing}",
    ]
    if params.database:
        words.append(f"--database {make_url(params.database).render_as_string()}")
    words.append(f"--runs {runs}")
    return " ".join(words)


@click.command("plan")
@_SCENARIO
@click.option(
    "--target-ttfc",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="p95 seconds from order to first call to plan for.",
)
@click.option(
    "--abandon",
    default=0.03,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Abandon-rate target (share of live answers).",
)
@click.option("--pacing", help="Pacing policy to plan under (default: the scenario's).")
@_JSON
@_PROGRESS
def plan(
    scenario_arg: str,
    target_ttfc: float,
    abandon: float,
    pacing: str | None,
    as_json: bool,
    progress: bool | None,
) -> None:
    """Operators needed by hour of day, by simulation, with Erlang C and Erlang A beside it."""
    from benchmarks.sim.planner import plan_capacity, plan_table

    scenario = _scenario(scenario_arg)
    with _progress(progress) as report:
        result = plan_capacity(
            scenario,
            target_ttfc_s=target_ttfc,
            abandon_target=abandon,
            pacing=pacing,
            progress=report,
        )
    _print(plan_table(result), f"capacity plan: {scenario.name}")
    if as_json:
        click.echo(json.dumps(result.to_json()))
