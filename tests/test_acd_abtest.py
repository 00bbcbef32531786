"""The A/B switch: slices by time, attribution of outcomes, and intervals that cover the truth."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from acd.abtest import AbSwitch, Arm, mean_difference, newcombe, wilson, z_value
from acd.board import OperatorProfile, OperatorState, OperatorView
from acd.errors import InvalidValue
from acd.performance import PerformanceBook
from acd.routing import LongestIdle, RoutingRequest
from acd.routing_learned import PerformanceRouting

HALF_HOUR = 1800.0
DAY = 86_400.0


def view(op_id: str, campaign: str = "confirm") -> OperatorView:
    return OperatorView(
        profile=OperatorProfile(id=op_id, endpoint=f"ep-{op_id}", campaigns=frozenset({campaign})),
        state=OperatorState.READY,
        since=0.0,
        pause_reason=None,
        call_id=None,
        calls_handled=0,
        idle_since=0.0,
        registered=True,
        consecutive_misses=0,
    )


class Always:
    """A policy that always picks one operator: the arms' true rates are then known."""

    def __init__(self, op_id: str) -> None:
        self.name = f"always-{op_id}"
        self.op_id = op_id

    def choose(
        self, request: RoutingRequest, candidates: Sequence[OperatorView], now: float
    ) -> OperatorView | None:
        return next((v for v in candidates if v.id == self.op_id), None)


def switch(**kw: object) -> AbSwitch:
    kw.setdefault("treatment", Always("a"))
    kw.setdefault("control", Always("b"))
    kw.setdefault("rng", np.random.default_rng(1))
    return AbSwitch(**kw)  # type: ignore[arg-type]


def request(call_id: str, campaign_id: str = "confirm") -> RoutingRequest:
    return RoutingRequest(call_id=call_id, campaign_id=campaign_id, category="cosmetics")


def test_slices_alternate_by_time_within_a_day() -> None:
    ab = switch(start=1_000.0)
    arms = [ab.arm_at(1_000.0 + k * HALF_HOUR + 1.0) for k in range(48)]
    assert arms[0] is Arm.TREATMENT
    assert all(a is not b for a, b in itertools.pairwise(arms))
    assert ab.arm_at(1_000.0 + HALF_HOUR - 0.001) is Arm.TREATMENT
    assert ab.arm_at(1_000.0 + HALF_HOUR) is Arm.CONTROL


def test_each_time_of_day_gets_both_arms_on_alternate_days() -> None:
    ab = switch()
    for slot in range(48):
        t = slot * HALF_HOUR + 60.0
        assert ab.arm_at(t) is not ab.arm_at(t + DAY)
        assert ab.arm_at(t) is ab.arm_at(t + 2 * DAY)
    plain = switch(flip_daily=False)
    assert plain.arm_at(60.0) is plain.arm_at(60.0 + DAY)


def test_slices_that_do_not_divide_a_day_simply_alternate() -> None:
    ab = switch(slice_s=35 * 60.0)
    arms = [ab.arm_at(k * 35 * 60.0 + 1.0) for k in range(200)]
    assert all(a is not b for a, b in itertools.pairwise(arms))


def test_each_slice_routes_with_its_own_policy() -> None:
    ab = switch()
    cands = [view("a"), view("b")]
    first = ab.choose(request("c1"), cands, 10.0)
    second = ab.choose(request("c2"), cands, HALF_HOUR + 10.0)
    assert first is not None and first.id == "a"
    assert second is not None and second.id == "b"
    assert ab.name == "ab(always-a|always-b)"


def test_an_outcome_counts_for_the_arm_that_routed_the_call() -> None:
    ab = switch()
    cands = [view("a"), view("b")]
    ab.choose(request("late"), cands, HALF_HOUR - 1.0)  # routed by treatment
    ab.choose(request("late"), cands, HALF_HOUR + 5.0)  # offered again: keeps its arm
    assert ab.record_outcome("late", confirmed=True, value=900.0, now=HALF_HOUR + 300.0) is (
        Arm.TREATMENT
    )
    assert ab.record_outcome("unknown", confirmed=True, value=1.0, now=HALF_HOUR) is None
    assert ab.record_outcome(
        "restart", confirmed=False, value=0.0, now=1.0, routed_at=HALF_HOUR
    ) is (Arm.CONTROL)
    report = ab.report(HALF_HOUR + 400.0)
    assert (report.treatment.calls, report.treatment.confirmed) == (1, 1)
    assert report.treatment.revenue == 900.0
    assert (report.control.calls, report.control.confirmed) == (1, 0)
    assert report.arm_now is Arm.CONTROL


def test_calls_of_other_campaigns_go_to_the_control_and_are_not_counted() -> None:
    ab = switch(campaign_id="confirm")
    chosen = ab.choose(request("d1", "delivery"), [view("a", "delivery"), view("b", "delivery")], 5)
    assert chosen is not None and chosen.id == "b"
    assert ab.record_outcome("d1", confirmed=True, value=10.0, now=6.0) is None


def test_unanswered_calls_are_forgotten_after_the_attribution_window() -> None:
    ab = switch(attribution_ttl_s=600.0)
    ab.choose(request("old"), [view("a")], 0.0)
    ab.choose(request("new"), [view("a")], 700.0)
    assert ab.record_outcome("old", confirmed=True, value=1.0, now=701.0) is None
    assert ab.record_outcome("new", confirmed=True, value=1.0, now=701.0) is Arm.TREATMENT


def test_a_report_before_any_outcome_has_no_intervals() -> None:
    report = switch().report(0.0)
    assert report.rate_lift is None and report.revenue_lift is None
    assert report.treatment.confirmed_rate is None and report.control.revenue_per_call is None


def test_the_measured_lift_covers_the_true_lift_in_a_simulation() -> None:
    rng = np.random.default_rng(2026)
    ab = switch(rng=np.random.default_rng(7))
    rates = {"a": 0.70, "b": 0.62}  # the treatment's operator confirms 8 points more
    upsell = {"a": 400.0, "b": 250.0}  # mean upsell on top of a 1,000 order
    cands = [view("a"), view("b")]
    now = 0.0
    for n in range(6000):
        now += float(rng.exponential(60.0))  # ~4 days: about 200 slices
        chosen = ab.choose(request(f"c{n}"), cands, now)
        assert chosen is not None
        won = bool(rng.random() < rates[chosen.id])
        value = 1000.0 + float(rng.exponential(upsell[chosen.id])) if won else 0.0
        ab.record_outcome(f"c{n}", confirmed=won, value=value, now=now + 120.0)
    report = ab.report(now)
    assert abs(report.treatment.calls - report.control.calls) < 400
    assert report.rate_lift is not None and report.rate_lift.covers(0.08)
    assert report.rate_lift.low > 0  # and it is large enough to be told from nothing
    true_revenue = {op: rates[op] * (1000.0 + upsell[op]) for op in rates}
    assert report.revenue_lift is not None and report.revenue_method == "bootstrap"
    assert report.revenue_lift.covers(true_revenue["a"] - true_revenue["b"])
    assert report.relative_rate_lift == pytest.approx(0.08 / 0.62, abs=0.06)


def test_the_rate_interval_covers_the_true_difference_about_95_times_in_100() -> None:
    rng = np.random.default_rng(3)
    z = z_value(0.95)
    n1, n2, p1, p2 = 400, 300, 0.66, 0.60
    s1, s2 = rng.binomial(n1, p1, size=4000), rng.binomial(n2, p2, size=4000)
    covered = [newcombe(a, n1, b, n2, z).covers(p1 - p2) for a, b in zip(s1, s2, strict=True)]
    assert 0.93 < np.mean(covered) < 0.97
    low, high = wilson(rng.binomial(n1, p1, size=4000), n1, z)
    assert 0.93 < np.mean((low <= p1) & (p1 <= high)) < 0.97


def test_the_revenue_interval_covers_the_true_difference_most_of_the_time() -> None:
    rng = np.random.default_rng(4)
    covered = 0
    for _ in range(80):
        x = np.where(rng.random(300) < 0.7, 1000 + rng.exponential(300, 300), 0.0)
        y = np.where(rng.random(300) < 0.6, 1000 + rng.exponential(300, 300), 0.0)
        interval, method = mean_difference(x, y, confidence=0.95, rng=rng, resamples=400)
        covered += interval.covers(0.1 * 1300)
        assert method == "bootstrap"
    assert covered >= 70  # 76 expected; a binomial(80, 0.95) falls below 71 about 1 in 100


def test_large_samples_use_the_normal_interval() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(10, 2, 20_000), rng.normal(9, 2, 20_000)
    interval, method = mean_difference(x, y, confidence=0.95, rng=rng)
    assert method == "normal" and interval.covers(1.0) and interval.high - interval.low < 0.1


def test_performance_routing_can_be_measured_against_longest_idle() -> None:
    book = PerformanceBook()
    ab = AbSwitch(
        treatment=PerformanceRouting(book=book, rng=np.random.default_rng(1)),
        control=LongestIdle(),
        rng=np.random.default_rng(2),
    )
    assert ab.name == "ab(performance|longest-idle)"
    chosen = ab.choose(request("c1"), [view("a"), view("b")], 5.0)
    assert chosen is not None
    book.record(chosen.id, "cosmetics", "confirm", True, 1200.0, 200.0)
    assert ab.record_outcome("c1", confirmed=True, value=1200.0, now=200.0) is Arm.TREATMENT


@pytest.mark.parametrize(
    "kw",
    [{"slice_s": 0.0}, {"confidence": 1.0}, {"resamples": 10}, {"attribution_ttl_s": 0.0}],
)
def test_settings_that_make_no_sense_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(InvalidValue):
        switch(**kw)
