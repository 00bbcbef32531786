"""Scenario files: every shipped one loads, and a bad key is named by its dotted path."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from benchmarks.sim.scenario import SCENARIO_DIR, ScenarioError, load_scenario, parse_scenario

SHIPPED = sorted(SCENARIO_DIR.glob("*.toml"))


def spike() -> dict[str, Any]:
    return tomllib.loads((SCENARIO_DIR / "newyear-spike.toml").read_text(encoding="utf-8"))


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, source="test.toml")
    return info.value.problems


def test_the_eight_scenarios_are_shipped() -> None:
    assert {p.stem for p in SHIPPED} >= {
        "newyear-spike",
        "newyear-repeat",
        "steady-500",
        "centre-5000",
        "small-team",
        "low-contact",
        "burst-5x",
        "skewed-categories",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_scenario_loads_and_is_named_after_its_file(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert len(scenario.orders.per_day) == scenario.days


def test_a_scenario_is_found_by_name() -> None:
    assert load_scenario("small-team").operators.count == 4


def test_per_day_must_have_one_number_per_day() -> None:
    data = spike()
    data["orders"]["per_day"] = [580, 1140, 900]
    assert problems(data) == ["orders.per_day: needs one number per day (days = 2), got 3"]


def test_a_misspelt_key_is_reported_as_unknown() -> None:
    data = spike()
    data["orders"]["perday"] = data["orders"].pop("per_day")
    assert problems(data) == [
        "orders.per_day: required key is missing",
        "orders.perday: unknown key",
    ]


def test_every_problem_is_reported_at_once() -> None:
    data = spike()
    del data["customers"]["patience_s"]
    data["orders"]["hourly_profile"] = [1, 2, 3]
    data["operators"]["shifts"] = ["9-17"]
    data["orders"]["timezones"] = {"Mars/Olympus": 1.0}
    data["campaign"]["abandon_target"] = 1.5
    found = problems(data)
    assert "customers.patience_s: required key is missing" in found
    assert "orders.hourly_profile: needs 24 weights, one per local hour, got 3" in found
    assert "operators.shifts: expected HH:MM-HH:MM, got '9-17'" in found
    assert "orders.timezones: unknown time zone 'Mars/Olympus'" in found
    assert any(p.startswith("campaign.abandon_target: ") for p in found)


def test_a_share_must_be_below_one() -> None:
    data = spike()
    data["orders"]["invalid_share"] = 1.2
    (problem,) = problems(data)
    assert problem.startswith("orders.invalid_share: ")


def test_a_file_that_is_not_toml_says_so(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("name = \n", encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.problems[0].startswith("not valid TOML")


def test_optional_keys_have_defaults() -> None:
    scenario = load_scenario("newyear-spike")
    assert scenario.campaign.pacing == "predictive"
    assert scenario.campaign.amd is False
    assert scenario.operators.miss_share == 0.0


def test_with_changes_validates_the_result() -> None:
    scenario = load_scenario("newyear-spike")
    assert scenario.with_changes(**{"operators.count": 3}).operators.count == 3
    with pytest.raises(ScenarioError):
        scenario.with_changes(days=3)
