"""The `bench` commands as an admin runs them: a table, and with --json one JSON last line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.bench_cli import bench
from benchmarks.sim.scenario import SCENARIO_DIR

FIGURES = {
    "talk_share",
    "occupancy",
    "abandon_rate",
    "abandon_rate_max_24h",
    "ttfc_p50_s",
    "ttfc_p95_s",
    "confirmed",
    "confirmed_revenue",
    "confirmed_per_operator_hour",
    "unreached",
    "calls_placed",
}


def write_small(tmp_path: Path, *, invalid_share: str = "0.05") -> Path:
    """One day of the spike scenario with 60 orders and two operators."""
    text = (SCENARIO_DIR / "newyear-spike.toml").read_text(encoding="utf-8")
    for old, new in [
        ("days = 2", "days = 1"),
        ("per_day = [580, 1140]", "per_day = [60]"),
        ("count = 12", "count = 2"),
        ("invalid_share = 0.05", f"invalid_share = {invalid_share}"),
    ]:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_bench_pacing_prints_a_table_and_ends_with_the_figures_as_json(tmp_path: Path) -> None:
    path = write_small(tmp_path)
    result = CliRunner().invoke(
        bench,
        ["pacing", "--scenario", str(path), "--policies", "progressive,oracle", "--json"],
    )
    assert result.exit_code == 0, result.output
    assert "pacing: newyear-spike" in result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert last["scenario"] == "newyear-spike"
    assert set(last["policies"]) == {"progressive", "oracle"}
    for figures in last["policies"].values():
        assert FIGURES <= set(figures)


def test_bench_routing_compares_with_longest_idle(tmp_path: Path) -> None:
    path = write_small(tmp_path)
    args = ["routing", "--scenario", str(path), "--policies", "random,oracle"]
    result = CliRunner().invoke(
        bench, [*args, "--replications", "2", "--pacing", "progressive", "--json"]
    )
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert set(last["policies"]) == {"longest-idle", "random", "oracle"}
    assert len(last["policies"]["oracle"]["revenue_lift_ci95"]) == 2
    assert last["seeds"] == [1, 2]


def test_a_bad_scenario_is_reported_key_by_key_with_exit_code_2(tmp_path: Path) -> None:
    path = write_small(tmp_path, invalid_share="1.5\nfraud_share = 0.1")
    result = CliRunner().invoke(bench, ["pacing", "--scenario", str(path)])
    assert result.exit_code == 2
    assert "orders.fraud_share: unknown key" in result.output
    assert "orders.invalid_share: " in result.output


@pytest.mark.parametrize("command", ["pacing", "routing"])
def test_an_unknown_policy_is_a_usage_error(tmp_path: Path, command: str) -> None:
    path = write_small(tmp_path)
    result = CliRunner().invoke(bench, [command, "--scenario", str(path), "--policies", "psychic"])
    assert result.exit_code == 2
    assert "psychic" in result.output
