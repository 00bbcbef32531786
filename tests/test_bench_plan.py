"""The capacity planner: queueing formulas against known values, and a small plan end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.bench_cli import plan
from benchmarks.sim.planner import (
    erlang_a_abandon,
    erlang_a_servers,
    erlang_c_servers,
    erlang_c_wait_over,
    plan_capacity,
)
from benchmarks.sim.scenario import SCENARIO_DIR, load_scenario


def erlang_c_by_the_book(servers: int, load: float) -> float:
    top = load**servers / math.factorial(servers) * servers / (servers - load)
    below = sum(load**k / math.factorial(k) for k in range(servers))
    return top / (below + top)


@pytest.mark.parametrize(("servers", "load"), [(2, 1.0), (12, 10.0), (30, 25.5)])
def test_erlang_c_matches_the_textbook_formula(servers: int, load: float) -> None:
    service_s = 180.0
    got = erlang_c_wait_over(servers, load / service_s, service_s, 0.0)
    assert got == pytest.approx(erlang_c_by_the_book(servers, load), rel=1e-9)


def test_erlang_c_is_certain_to_wait_when_overloaded() -> None:
    assert erlang_c_wait_over(3, 4.0 / 100, 100.0, 30.0) == 1.0


def test_erlang_a_with_patience_equal_to_service_is_a_poisson_count() -> None:
    # With theta = mu every customer in the system leaves at rate mu: M/M/inf, Poisson(1).
    assert erlang_a_abandon(1, 1 / 180, 180.0, 180.0) == pytest.approx(math.exp(-1), rel=1e-9)


def test_erlang_a_with_endless_patience_loses_almost_nobody_below_capacity() -> None:
    assert erlang_a_abandon(12, 10 / 180, 180.0, 1e9) < 1e-6


def test_more_traffic_needs_more_servers() -> None:
    assert erlang_c_servers(0.0, 180.0, 60.0) == 0
    light, heavy = erlang_c_servers(10 / 180, 180.0, 60.0), erlang_c_servers(40 / 180, 180.0, 60.0)
    assert light is not None and heavy is not None and heavy > light > 10
    assert erlang_a_servers(40 / 180, 180.0, 3.0, 0.03) > erlang_a_servers(
        10 / 180, 180.0, 3.0, 0.03
    )  # type: ignore[operator]


def test_a_plan_names_operators_for_every_hour_with_orders() -> None:
    scenario = load_scenario("small-team").with_changes(**{"orders.per_day": [80, 80]})
    result = plan_capacity(scenario, target_ttfc_s=60.0, pacing="progressive")
    assert len(result.hours) == 24
    busy_hours = [h for h in result.hours if h.released > 0]
    assert busy_hours
    for hour in busy_hours:
        assert hour.simulated is not None and hour.simulated >= 1
        assert hour.erlang_c is not None and hour.erlang_c >= 1
    quiet = [h for h in result.hours if h.released == 0 and h.live_answers == 0]
    assert all(h.erlang_c == 0 and h.erlang_a == 0 for h in quiet)


def test_plan_prints_a_table_and_ends_with_json(tmp_path: Path) -> None:
    text = (SCENARIO_DIR / "small-team.toml").read_text(encoding="utf-8")
    path = tmp_path / "tiny.toml"
    path.write_text(text.replace("per_day = [400, 400]", "per_day = [60, 60]"), encoding="utf-8")
    args = ["--scenario", str(path), "--pacing", "progressive", "--json", "--no-progress"]
    result = CliRunner().invoke(plan, args)
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert last["scenario"] == "small-team"
    assert len(last["hours"]) == 24
