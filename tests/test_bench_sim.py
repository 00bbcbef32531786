"""The benchmark simulator: deterministic, small runs work, the engine's own objects inside."""

from __future__ import annotations

from typing import Any

import pytest

from acd.board import OperatorBoard
from acd.routing import LongestIdle
from benchmarks.sim import Simulation, World, load_scenario
from benchmarks.sim.harness import Simulation as HarnessSimulation
from benchmarks.sim.oracle import Demand, serves_in_time
from benchmarks.sim.scenario import Scenario
from dialer.engine import pacing as pacing_module
from dialer.engine.engine import DialerEngine
from dialer.engine.pacing import AbandonGuard


def small(**changes: Any) -> Scenario:
    """One day of the spike scenario, scaled down so a run takes a fraction of a second."""
    base = {"days": 1, "orders.per_day": [120], "operators.count": 3}
    return load_scenario("newyear-spike").with_changes(**(base | changes))


def busy(**changes: Any) -> Scenario:
    """A team short of operators for its orders: leads wait, so pacing decides."""
    return small(**({"orders.per_day": [260], "operators.count": 2} | changes))


def test_the_same_scenario_and_seed_give_identical_results() -> None:
    first = Simulation(World(small()), pacing="predictive").run()
    second = Simulation(World(small()), pacing="predictive").run()
    assert first.figures() | {"wall_s": 0} == second.figures() | {"wall_s": 0}
    assert first.outcomes == second.outcomes
    assert first.ttfc_samples == second.ttfc_samples


def test_another_seed_gives_another_world() -> None:
    one, other = World(small()), World(small(), seed=99)
    assert [o.created_at for o in one.orders] != [o.created_at for o in other.orders]


def test_a_call_fate_is_the_same_whenever_it_is_asked_for() -> None:
    world = World(small())
    late_first = world.fate(5, 2)
    again = World(small())
    assert again.fate(5, 0) is not None
    assert again.fate(5, 2) == late_first


def test_a_small_scenario_runs_and_confirms_orders() -> None:
    result = Simulation(World(small()), pacing="progressive").run()
    assert result.orders == 120
    assert result.calls_placed >= result.live_answers > 0
    assert result.confirmed > 0
    assert result.confirmed_revenue > 0
    assert 0 < result.talk_share < result.occupancy < 1
    assert result.abandons == 0  # progressive never dials ahead of its operators
    finished = sum(result.outcomes.values()) + result.open_at_end
    assert finished == result.orders


def test_orders_arrive_by_hour_in_each_customers_own_time_zone() -> None:
    world = World(small(**{"orders.per_day": [2000]}))
    from datetime import datetime
    from zoneinfo import ZoneInfo

    night = sum(
        1
        for o in world.orders
        if datetime.fromtimestamp(o.created_at, ZoneInfo(o.timezone)).hour < 6
    )
    # Hours 0-5 carry 6 of the profile's 119 weight units: about 5 % of orders.
    assert 0.02 < night / len(world.orders) < 0.09
    zones = {o.timezone for o in world.orders}
    assert zones == {"Europe/Moscow", "Asia/Yekaterinburg", "Asia/Novosibirsk"}


def test_the_oracle_pacer_never_abandons_and_dials_in_the_hoppers_order() -> None:
    sim = Simulation(World(busy()), pacing="oracle")
    result = sim.run()
    assert result.live_answers > 50
    assert result.abandons == 0
    assert result.oracle_mismatches == 0
    assert sim.oracle is not None and sim.oracle.unconsumed == 0  # every planned call placed


def test_a_pacer_that_dials_ahead_does_abandon_in_the_same_world() -> None:
    # The same busy world the oracle handled without an abandon is not trivially safe.
    result = Simulation(World(busy(**{"campaign.abandon_target": 0.2})), pacing="adaptive").run()
    assert result.abandons > 0


def test_the_harness_drives_the_engines_own_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    real = pacing_module.make_pacer

    def recording(name: str, **options: Any) -> Any:
        pacer = real(name, **options)
        made.append(pacer)
        return pacer

    monkeypatch.setattr(pacing_module, "make_pacer", recording)
    sim = HarnessSimulation(World(small()), pacing="predictive", routing="longest-idle")
    assert made == [sim.pacer]
    assert isinstance(sim.pacer, AbandonGuard)
    assert type(sim.pacer.inner).__name__ == "PredictivePacer"
    assert type(sim.engine) is DialerEngine
    assert type(sim.board) is OperatorBoard
    assert type(sim.router.policy) is LongestIdle
    sim.run()
    # The engine decided with that very pacer: its models learned from the run's calls.
    stats = sim.engine.statistics(sim.world.end).campaigns["confirm"].pacer
    assert stats.name == "predictive"
    assert sim.pacer.inner.statistics().last_reason != "no decision yet"
    assert sim.board.statistics(sim.world.end).total_calls_handled > 0


def test_operators_work_only_their_shifts() -> None:
    scenario = small(**{"operators.shifts": ["09:00-13:00"]})
    sim = Simulation(World(scenario), pacing="progressive")
    result = sim.run()
    logged_in_h = result.confirmed / result.confirmed_per_operator_hour
    assert logged_in_h == pytest.approx(3 * 4.0, abs=0.01)


def test_with_amd_machines_are_hung_up_on_without_an_operator() -> None:
    scenario = small(**{"customers.machine_share": 0.5, "campaign.amd": True})
    result = Simulation(World(scenario), pacing="progressive").run()
    assert result.calls_placed > result.live_answers
    assert "callback" not in result.outcomes


@pytest.mark.parametrize(
    ("free", "committed", "new", "fits"),
    [
        ([(0.0, 1e9)], [], [Demand(answer_at=5.0, deadline=6.0, hold_s=100.0)], True),
        ([(10.0, 1e9)], [], [Demand(answer_at=5.0, deadline=6.0, hold_s=100.0)], False),
        # The operator leaves before the customer answers.
        ([(0.0, 4.0)], [], [Demand(answer_at=5.0, deadline=6.0, hold_s=100.0)], False),
        # One operator, two answers close together: the second finds nobody.
        (
            [(0.0, 1e9)],
            [Demand(answer_at=3.0, deadline=4.0, hold_s=100.0)],
            [Demand(answer_at=5.0, deadline=6.0, hold_s=100.0)],
            False,
        ),
        # A new answer that would take the operator a committed call needs is refused.
        (
            [(0.0, 1e9)],
            [Demand(answer_at=8.0, deadline=9.0, hold_s=100.0)],
            [Demand(answer_at=5.0, deadline=6.0, hold_s=100.0)],
            False,
        ),
        # A committed call that is lost anyway does not block a new one.
        (
            [(10.0, 1e9)],
            [Demand(answer_at=1.0, deadline=2.0, hold_s=100.0)],
            [Demand(answer_at=9.5, deadline=10.5, hold_s=100.0)],
            True,
        ),
    ],
)
def test_the_oracle_plans_answers_against_operators_free_in_time(
    free: list[tuple[float, float]], committed: list[Demand], new: list[Demand], fits: bool
) -> None:
    assert serves_in_time(free, committed, new) is fits


def test_performance_routing_is_the_learned_policy_fed_every_stored_outcome() -> None:
    from acd.routing_learned import PerformanceRouting
    from benchmarks.sim.policies import CAMPAIGN_ID

    sim = Simulation(World(small()), pacing="progressive", routing="performance")
    assert type(sim.router.policy) is PerformanceRouting
    result = sim.run()
    rows = sim.router.policy.book.snapshot()
    trials = sum(row.trials for row in rows if not row.campaign_id)
    handled = result.outcomes.get("confirmed", 0) + result.outcomes.get("rejected", 0)
    # Counts decay with a 14-day half-life: a day's calls keep nearly all their weight.
    assert trials == pytest.approx(handled, rel=0.05)
    # Fed as the daemon feeds it: each outcome under its campaign too, not only over all.
    in_campaign = sum(row.trials for row in rows if row.campaign_id == CAMPAIGN_ID)
    assert in_campaign == pytest.approx(handled, rel=0.05)


def test_the_learning_feed_records_what_the_daemon_records() -> None:
    from acd.performance import PerformanceBook
    from benchmarks.sim.policies import daemon_feed
    from dialer.engine.commands import StoreOutcome

    book = PerformanceBook()
    learn = daemon_feed(book)

    def stored(outcome: str, **details: object) -> StoreOutcome:
        return StoreOutcome(
            order_id="1", call_id="c", campaign_id="confirm", outcome=outcome, final=True,
            details={"operator_id": "op1", **details},
        )  # fmt: skip

    learn(stored("confirmed", upsell_amount=500.0), "home", 2000.0, 100.0)
    learn(stored("rejected"), "home", 3000.0, 110.0)
    learn(stored("duplicate"), "home", 3000.0, 120.0)  # says nothing about the operator
    learn(stored("unreached"), "home", 3000.0, 130.0)  # not a disposition at all
    est = book.estimate("op1", "home", 200.0)
    assert est.trials == pytest.approx(2.0, rel=1e-3)
    assert est.successes == pytest.approx(1.0, rel=1e-3)
    (row,) = [r for r in book.snapshot() if not r.campaign_id]
    assert row.value == pytest.approx(2500.0, rel=1e-3)  # the order's amount plus the upsell


def test_the_routing_oracle_gives_the_call_to_the_best_free_operator() -> None:
    from acd.profile import OperatorProfile
    from acd.routing import RoutingRequest
    from benchmarks.sim.oracle import OracleRouting

    board = OperatorBoard()
    for op in ("a", "b", "c"):
        board.add(OperatorProfile(id=op, endpoint=op, campaigns=frozenset({"x"})), 0.0)
        board.login(op, 0.0)
        board.ready(op, 1.0)
    rates = {("a", "home"): 0.5, ("b", "home"): 0.8, ("c", "home"): 0.6}
    oracle = OracleRouting(lambda op, cat: rates[(op, cat)])
    request = RoutingRequest(call_id="c1", campaign_id="x", category="home")
    chosen = oracle.choose(request, board.free("x", "home"), 2.0)
    assert chosen is not None and chosen.id == "b"
