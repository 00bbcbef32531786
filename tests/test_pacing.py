"""Pacing: the progressive arithmetic, the VICIdial baseline's steps, the predictive pacer's
behaviour and risk arithmetic, the abandon guard, the factory, and a small simulated day."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from dialer.engine.abandon import DAY, AbandonLedger
from dialer.engine.pacing import (
    AbandonGuard,
    BusyOperator,
    PacingSnapshot,
    PacingStatistics,
    ProgressivePacer,
    make_pacer,
    progressive_calls,
)
from dialer.engine.pacing_adaptive import (
    AdaptiveMethod,
    AdaptivePacer,
    AdaptiveSettings,
    current_hourmin,
)
from dialer.engine.pacing_models import norm_cdf
from dialer.engine.pacing_predictive import PredictivePacer, PredictiveSettings
from dialer.engine.pacing_risk import GRID_S, free_by_times, plan_calls

T0 = 1_700_000_000.0


def snap(
    now: float = T0,
    *,
    hour: int = 10,
    ready: int = 0,
    busy: tuple[BusyOperator, ...] = (),
    dialing: int = 0,
    waiting: int = 0,
    leads: int = 200,
    rate: float | None = None,
    target: float = 0.03,
    ages: tuple[float, ...] | None = None,
) -> PacingSnapshot:
    return PacingSnapshot(
        now=now,
        hour_of_day=hour,
        ready_operators=ready,
        busy_operators=busy,
        calls_dialing=dialing,
        calls_waiting=waiting,
        leads_available=leads,
        abandon_rate=rate,
        abandon_target=target,
        dialing_elapsed_s=ages,
    )


def talking(*elapsed: float) -> tuple[BusyOperator, ...]:
    return tuple(BusyOperator(phase="talking", elapsed_s=e) for e in elapsed)


# -- progressive ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready", "dialing", "waiting", "leads", "expected"),
    [
        (5, 0, 0, 100, 5),
        (5, 2, 1, 100, 2),
        (5, 6, 0, 100, 0),
        (3, 0, 4, 100, 0),
        (5, 0, 0, 3, 3),
        (5, 0, 0, 0, 0),
        (0, 0, 0, 100, 0),
    ],
)
def test_progressive_places_one_call_per_ready_operator_minus_calls_in_flight(
    ready: int, dialing: int, waiting: int, leads: int, expected: int
) -> None:
    s = snap(ready=ready, dialing=dialing, waiting=waiting, leads=leads)
    assert progressive_calls(s) == expected
    pacer = ProgressivePacer()
    assert pacer.calls_to_place(s) == expected
    assert pacer.statistics().mode == "progressive"
    assert pacer.statistics().last_calls == expected


# -- the factory ------------------------------------------------------------------------------


def test_make_pacer_names_the_valid_pacers_when_the_name_is_unknown() -> None:
    with pytest.raises(ValueError, match=r"'vicidial'.*adaptive, predictive, progressive"):
        make_pacer("vicidial")


def test_make_pacer_names_the_valid_options_when_an_option_is_unknown() -> None:
    with pytest.raises(ValueError, match=r"intensty.*intensity"):
        make_pacer("adaptive", intensty=20)
    with pytest.raises(ValueError, match="valid options: none"):
        make_pacer("progressive", level=2)


def test_make_pacer_wraps_in_the_guard_unless_told_not_to() -> None:
    guarded = make_pacer("predictive", rng=np.random.default_rng(1))
    assert isinstance(guarded, AbandonGuard)
    assert isinstance(guarded.inner, PredictivePacer)
    assert guarded.name == "predictive"
    bare = make_pacer("adaptive", guard=False, method="adapt_tapered", maximum_level=2.5)
    assert isinstance(bare, AdaptivePacer)
    assert bare.settings.method is AdaptiveMethod.TAPERED
    assert bare.settings.maximum_level == 2.5


def test_out_of_range_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="intensity"):
        AdaptiveSettings(intensity=90)
    with pytest.raises(ValueError, match="method"):
        AdaptiveSettings(method="ADAPT_SOMETIMES")
    with pytest.raises(ValueError, match="connect_budget_s"):
        PredictiveSettings(connect_budget_s=3.0)


# -- the abandon guard ------------------------------------------------------------------------


@dataclass
class FixedPacer:
    """Always asks for `calls`; records what it was given."""

    calls: int = 7
    name: str = "fixed"
    seen: list[PacingSnapshot] = field(default_factory=list)
    results: int = 0

    def calls_to_place(self, snap: PacingSnapshot) -> int:
        self.seen.append(snap)
        return min(self.calls, snap.leads_available)

    def on_attempt_result(
        self, *, now: float, hour_of_day: int, answered: bool, ring_s: float
    ) -> None:
        self.results += 1

    def on_abandon(self, *, now: float) -> None:
        self.results += 1

    def on_call_finished(self, *, now: float, talk_s: float, wrapup_s: float) -> None:
        self.results += 1

    def statistics(self) -> PacingStatistics:
        return PacingStatistics(name=self.name, mode="fixed", dial_level=2.0, last_reason="")


@pytest.mark.parametrize(
    ("rate", "target", "engaged"),
    [
        (None, 0.03, False),
        (0.0, 0.03, False),
        (0.0299, 0.03, False),
        (0.03, 0.03, True),
        (0.08, 0.03, True),
        (None, 0.0, True),
        (0.0, 0.0, True),
    ],
)
def test_guard_dials_progressively_at_or_over_the_target(
    rate: float | None, target: float, engaged: bool
) -> None:
    guard = AbandonGuard(FixedPacer())
    n = guard.calls_to_place(snap(ready=2, dialing=1, rate=rate, target=target))
    assert n == (1 if engaged else 7)
    stats = guard.statistics()
    assert stats.guard_engaged is engaged
    assert stats.mode == ("guarded" if engaged else "fixed")


def test_guard_lets_go_when_the_rate_falls_back_below_the_target() -> None:
    inner = FixedPacer()
    guard = AbandonGuard(inner)
    modes = []
    for i, rate in enumerate([0.01, 0.031, 0.035, 0.0301, 0.029, 0.02]):
        guard.calls_to_place(snap(T0 + i, ready=3, rate=rate))
        modes.append(guard.statistics().mode)
    assert modes == ["fixed", "guarded", "guarded", "guarded", "fixed", "fixed"]
    # The wrapped pacer kept seeing every snapshot, so its samples stay current.
    assert len(inner.seen) == 6


def test_guard_passes_every_result_to_the_wrapped_pacer_and_is_not_doubled() -> None:
    inner = FixedPacer()
    guard = AbandonGuard(AbandonGuard(inner))
    assert guard.inner is inner
    guard.on_attempt_result(now=T0, hour_of_day=10, answered=True, ring_s=5.0)
    guard.on_abandon(now=T0)
    guard.on_call_finished(now=T0, talk_s=60.0, wrapup_s=5.0)
    assert inner.results == 3


# -- the adaptive baseline (AST_VDadapt.pl) ---------------------------------------------------


def adaptive(**settings: object) -> AdaptivePacer:
    return AdaptivePacer(AdaptiveSettings(**settings))  # type: ignore[arg-type]


def run_adaptive(
    pacer: AdaptivePacer, seconds: int, *, ready: int, waiting: int = 0, busy: int = 0, **kw: object
) -> None:
    for i in range(seconds + 1):
        pacer.calls_to_place(
            snap(T0 + i, ready=ready, waiting=waiting, busy=talking(*[30.0] * busy), **kw)  # type: ignore[arg-type]
        )


def test_adaptive_samples_each_call_and_keeps_the_last_15() -> None:
    pacer = adaptive()
    for i in range(20):
        pacer.calls_to_place(snap(T0 + i, ready=i % 4, waiting=i % 3, busy=talking(9.0)))
    assert pacer.samples == tuple((i % 4, i % 3, i % 4 + 1) for i in range(5, 20))
    # A second call within the same second takes no sample.
    pacer.calls_to_place(snap(T0 + 19.2, ready=9))
    assert len(pacer.samples) == 15 and pacer.samples[-1] == (3, 1, 4)


def test_adaptive_recalculates_the_level_only_every_15_seconds() -> None:
    pacer = adaptive()
    levels = []
    for i in range(46):
        pacer.calls_to_place(snap(T0 + i, ready=2, busy=talking(*[30.0] * 8)))
        levels.append(pacer.level)
    # differential (2 ready - 0 waiting) / 10 agents = +20 % per recalculation
    assert levels[0] == levels[14] == 1.0
    assert levels[15] == levels[29] == pytest.approx(1.2)
    assert levels[30] == levels[44] == pytest.approx(1.44)
    assert levels[45] == pytest.approx(1.728)
    assert pacer.statistics().recalculated_at == T0 + 45


@pytest.mark.parametrize(
    ("intensity", "dl_diff_target", "ready", "waiting", "busy", "expected"),
    [
        (0, 0, 2, 0, 8, 2.4),  # +0.2 of the level
        (20, 0, 2, 0, 8, 2.48),  # positive differential * (1 + 0.2)
        (-20, 0, 2, 0, 8, 2.32),  # positive differential * (1 - 0.2)
        (0, 0, 0, 2, 10, 1.6),  # -0.2 of the level
        (20, 0, 0, 2, 10, 1.68),  # negative differential * |0.2 - 1|
        (-20, 0, 0, 2, 10, 1.52),  # negative differential * |-0.2 - 1|
        (0, -1, 2, 0, 8, 2.2),  # aiming at one agent waiting: (2 - 1) / 10
        (0, 0, 10, 0, 0, 3.0),  # 2.0 * 2 = 4.0, capped at adaptive_maximum_level
        (0, 0, 0, 10, 10, 1.0),  # 2.0 * 0 = 0, raised to the 1.0 floor
    ],
)
def test_adaptive_level_follows_the_differential_and_intensity(
    intensity: int, dl_diff_target: int, ready: int, waiting: int, busy: int, expected: float
) -> None:
    pacer = adaptive(initial_level=2.0, intensity=intensity, dl_diff_target=dl_diff_target)
    run_adaptive(pacer, 15, ready=ready, waiting=waiting, busy=busy)
    assert pacer.level == pytest.approx(expected)


def _overrun(pacer: AdaptivePacer, attempts: int = 60) -> None:
    # Yesterday's and today's calls: enough for the "more than 50 calls today" condition.
    for i in range(attempts):
        pacer.on_attempt_result(now=T0 - 3000 + i, hour_of_day=9, answered=True, ring_s=8.0)


@pytest.mark.parametrize(
    ("method", "hour", "expected"),
    [
        ("ADAPT_HARD_LIMIT", 11, lambda level, hhmm: 1.0),
        ("ADAPT_AVERAGE", 11, lambda level, hhmm: level / 2),
        # more than 1000 "HHMM" left before 21:00: overshoot allowed, the level stands
        ("ADAPT_TAPERED", 8, lambda level, hhmm: level),
        ("ADAPT_TAPERED", 11, lambda level, hhmm: level * (2100 - hhmm) / 1000),
        ("ADAPT_TAPERED", 20, lambda level, hhmm: max(1.0, level * (2100 - hhmm) / 1000)),
        ("ADAPT_TAPERED", 21, lambda level, hhmm: 1.0),  # past the latest time
    ],
)
def test_adaptive_drop_overrides_change_the_level_as_vicidial_does(
    method: str, hour: int, expected: object
) -> None:
    pacer = adaptive(method=method, initial_level=2.0)
    _overrun(pacer)
    run_adaptive(pacer, 15, ready=2, busy=8, hour=hour, rate=0.05)
    hhmm = current_hourmin(snap(T0 + 15, hour=hour))
    assert callable(expected)
    assert pacer.level == pytest.approx(expected(2.4, hhmm))


@pytest.mark.parametrize(
    ("attempts", "rate", "dropped_percentage", "overridden"),
    [
        (60, 0.05, None, True),
        (50, 0.05, None, False),  # "more than 50 calls today" not met
        (60, 0.03, None, False),  # at the limit is not over it
        (60, 0.05, 6.0, False),  # the campaign's own adaptive_dropped_percentage
    ],
)
def test_adaptive_drop_override_needs_50_calls_and_a_rate_over_the_limit(
    attempts: int, rate: float, dropped_percentage: float | None, overridden: bool
) -> None:
    pacer = adaptive(initial_level=2.0, dropped_percentage=dropped_percentage)
    _overrun(pacer, attempts)
    run_adaptive(pacer, 15, ready=2, busy=8, rate=rate)
    assert pacer.level == pytest.approx(1.0 if overridden else 2.4)


def test_adaptive_halves_the_level_when_most_calls_of_the_last_minute_dropped() -> None:
    pacer = adaptive(initial_level=2.0)
    for i in range(25):
        pacer.on_attempt_result(now=T0 - 30 + i, hour_of_day=10, answered=True, ring_s=5.0)
    for i in range(14):
        pacer.on_abandon(now=T0 - 20 + i)
    run_adaptive(pacer, 15, ready=2, busy=8, rate=0.01)
    assert pacer.level == pytest.approx(1.2)


def test_adaptive_takes_no_sample_and_keeps_its_level_without_leads() -> None:
    pacer = adaptive(initial_level=2.0)
    run_adaptive(pacer, 30, ready=10, leads=0)
    assert pacer.samples == () and pacer.level == 2.0


@pytest.mark.parametrize(
    ("ready", "level", "dialing", "waiting", "leads", "expected"),
    [
        (3, 1.5, 0, 0, 100, 5),  # ceil(4.5)
        (3, 1.1, 0, 0, 100, 4),  # ceil(3.3), not 3.3000000000000003 rounded oddly
        (3, 1.5, 2, 1, 100, 2),
        (3, 1.5, 6, 0, 100, 0),
        (3, 1.5, 0, 0, 2, 2),
        (0, 3.0, 0, 0, 100, 0),
    ],
)
def test_adaptive_places_ceil_of_ready_times_level_minus_calls_in_flight(
    ready: int, level: float, dialing: int, waiting: int, leads: int, expected: int
) -> None:
    pacer = adaptive(initial_level=level)
    s = snap(ready=ready, dialing=dialing, waiting=waiting, leads=leads, busy=talking(5.0))
    assert pacer.calls_to_place(s) == expected


# -- the predictive pacer ---------------------------------------------------------------------


def trained(p_answer: float, *, ring_median_s: float = 12.0, seed: int = 3) -> PredictivePacer:
    """A predictive pacer that has seen 400 attempts and 300 finished calls."""
    rng = np.random.default_rng(seed)
    pacer = PredictivePacer()
    for i in range(400):
        answered = bool(rng.random() < p_answer)
        ring = rng.lognormal(math.log(ring_median_s), 0.4) if answered else rng.uniform(4, 30)
        pacer.on_attempt_result(
            now=T0 - 3600 + 5 * i, hour_of_day=10, answered=answered, ring_s=ring
        )
    for i in range(300):
        talk = rng.lognormal(math.log(90), 0.5)
        pacer.on_call_finished(now=T0 - 3600 + 10 * i, talk_s=talk, wrapup_s=10.0)
    return pacer


SEVENTEEN_BUSY = talking(*np.linspace(10, 170, 17).tolist())


def test_predictive_backs_off_as_the_abandon_rate_rises() -> None:
    calls = [
        trained(0.35).calls_to_place(snap(ready=3, busy=SEVENTEEN_BUSY, rate=rate))
        for rate in (None, 0.0, 0.02, 0.025, 0.028, 0.03)
    ]
    assert calls == sorted(calls, reverse=True)
    assert calls[1] > calls[4] > calls[5] == 3  # at the target: progressive


def test_predictive_dials_more_per_ready_operator_when_fewer_calls_are_answered() -> None:
    s = snap(ready=5, busy=talking(*np.linspace(10, 170, 15).tolist()))
    rarely, mostly = trained(0.2), trained(0.8)
    n_rarely, n_mostly = rarely.calls_to_place(s), mostly.calls_to_place(s)
    assert n_rarely > n_mostly >= 5
    assert rarely.statistics().dial_level > 2 * mostly.statistics().dial_level
    assert rarely.statistics().answer_rate == pytest.approx(0.2, abs=0.05)


@pytest.mark.parametrize("dialing", [0, 2])
def test_predictive_does_not_overdial_when_everyone_answers_at_once(dialing: int) -> None:
    pacer = PredictivePacer()
    for i in range(300):
        pacer.on_attempt_result(now=T0 - 1000 + i, hour_of_day=10, answered=True, ring_s=0.1)
    s = snap(ready=6, busy=talking(*[5.0] * 14), dialing=dialing, ages=(0.0,) * dialing)
    assert pacer.calls_to_place(s) == 6 - dialing


def test_predictive_learns_a_batch_only_once_its_answers_are_in_too() -> None:
    # Ten calls placed together, six of them answered after 8 s; the four busy ones end
    # first. Learned as they came, the four failures would read as an answer rate near 0.
    pacer = PredictivePacer()
    placed = T0 - 20
    prior, _ = pacer.answer_rate.estimate(T0, 10)
    for i in range(4):
        pacer.on_attempt_result(now=placed + 1 + i * 0.1, hour_of_day=10, answered=False, ring_s=1)
    pacer.calls_to_place(snap(placed + 2, ready=6, dialing=6, ages=(2.0,) * 6))
    assert pacer.answer_rate.estimate(T0, 10)[0] == prior  # the batch is not whole yet
    for i in range(6):
        pacer.on_attempt_result(now=placed + 8, hour_of_day=10, answered=True, ring_s=8.0 - i / 10)
    pacer.calls_to_place(snap(placed + 9, ready=0, busy=talking(*[1.0] * 6)))
    learned, _ = pacer.answer_rate.estimate(T0, 10)
    assert learned > prior  # six of ten answered: more than the prior's one in two


def test_a_call_under_answering_machine_detection_counts_as_an_answer_due() -> None:
    # Four calls placed 8 s ago, four operators ready, answers usually within 4 s. Still
    # ringing, the calls are likely failures and the pacer dials four more; answered and
    # being screened, they are four answers about to need the four operators.
    def decide(screening: tuple[bool, ...] | None) -> int:
        pacer = trained(0.5, ring_median_s=4.0)
        s = snap(ready=4, busy=SEVENTEEN_BUSY, dialing=4, ages=(8.0,) * 4)
        return pacer.calls_to_place(dataclasses.replace(s, dialing_screening=screening))

    assert decide(None) == decide((False,) * 4) == 4
    assert decide((True,) * 4) == 0
    with pytest.raises(ValueError, match="dialing_screening"):
        snap(ready=1, dialing=1, ages=(1.0,)).__class__(
            now=T0, hour_of_day=10, ready_operators=1, calls_dialing=1, dialing_screening=(True,)
        )


def test_predictive_is_progressive_without_an_abandon_target() -> None:
    pacer = trained(0.2)
    assert pacer.calls_to_place(snap(ready=4, busy=SEVENTEEN_BUSY, target=0.0)) == 4


def test_predictive_never_asks_for_more_than_the_leads_available() -> None:
    pacer = trained(0.2)
    assert pacer.calls_to_place(snap(ready=10, busy=SEVENTEEN_BUSY, leads=7)) == 7
    assert pacer.calls_to_place(snap(ready=0, busy=talking(1.0), leads=0)) == 0


def test_predictive_spends_half_the_budget_with_five_operators_or_fewer() -> None:
    pacer = trained(0.35)
    pacer.calls_to_place(snap(ready=1, busy=talking(20.0, 40.0, 60.0, 80.0)))
    assert pacer.statistics().abandon_budget == pytest.approx(0.015)
    pacer.calls_to_place(snap(ready=1, busy=talking(20.0, 40.0, 60.0, 80.0, 90.0, 100.0)))
    assert pacer.statistics().abandon_budget == pytest.approx(0.03)


def test_predictive_counts_long_ringing_calls_as_less_likely_answers() -> None:
    def calls(age: float) -> int:
        s = snap(ready=3, busy=SEVENTEEN_BUSY, dialing=4, ages=(age,) * 4)
        return trained(0.5).calls_to_place(s)

    assert calls(1.0) < calls(40.0)


def test_predictive_tracks_its_own_calls_when_the_snapshot_has_no_ages() -> None:
    told, tracking = trained(0.35), trained(0.35)
    first = snap(ready=6, busy=SEVENTEEN_BUSY)
    placed = told.calls_to_place(first)
    assert tracking.calls_to_place(first) == placed > 0
    later = dict(ready=0, busy=SEVENTEEN_BUSY, dialing=placed)
    with_ages = told.calls_to_place(snap(T0 + 6, ages=(6.0,) * placed, **later))  # type: ignore[arg-type]
    assert tracking.calls_to_place(snap(T0 + 6, **later)) == with_ages  # type: ignore[arg-type]


def test_predictive_cold_start_dials_at_least_progressively_and_within_the_line_cap() -> None:
    pacer = PredictivePacer()
    n = pacer.calls_to_place(snap(ready=10, busy=talking(*[60.0] * 10)))
    assert 10 <= n <= 4 * 20
    assert pacer.statistics().mode == "predictive"


# -- the risk arithmetic ----------------------------------------------------------------------


def _plan(ready: int, *, busy_free_by: np.ndarray, p: float, ring_median: float, n: int) -> float:
    timing = norm_cdf((np.log(np.maximum(GRID_S, 1e-9)) - math.log(ring_median)) / 0.4)
    plan = plan_calls(
        ready=ready,
        waiting=0,
        free_by=busy_free_by,
        dialing_by=np.zeros((0, GRID_S.shape[0])),
        dialing_eventual=np.zeros(0),
        new_timing=timing,
        p_answer=p,
        budget=1.0,
        n_min=n - 1,
        n_max=n,
    )
    assert plan.calls == n
    return plan.abandon_probability


def _monte_carlo(
    ready: int, *, mean_left: np.ndarray, p: float, ring_median: float, n: int
) -> float:
    rng = np.random.default_rng(2024)
    runs = 20_000
    free_at = np.sort(
        np.concatenate(
            [np.zeros((runs, ready)), rng.exponential(mean_left, (runs, len(mean_left)))], axis=1
        ),
        axis=1,
    )
    answered = rng.random((runs, n)) < p
    answer_at = np.sort(
        np.where(answered, rng.lognormal(math.log(ring_median), 0.4, (runs, n)), np.inf), axis=1
    )
    # The j-th answer can only be served by the operators free within 2 s of it (Hall).
    lost = np.zeros(runs)
    for j in range(n):
        served_by = (free_at <= answer_at[:, j : j + 1] + 2.0).sum(axis=1)
        lost = np.maximum(lost, np.where(np.isfinite(answer_at[:, j]), j + 1 - served_by, 0))
    return float(lost.mean() / answered.sum(axis=1).mean())


@pytest.mark.parametrize(("p", "n"), [(0.8, 4), (0.8, 5), (0.35, 6), (0.35, 8), (0.2, 11)])
def test_risk_estimate_agrees_with_a_monte_carlo_run_and_errs_on_the_safe_side(
    p: float, n: int
) -> None:
    mean_left = np.linspace(20.0, 200.0, 17)  # seconds left, memoryless
    free_by = 1.0 - np.exp(-free_by_times(2.0)[None, :] / mean_left[:, None])
    model = _plan(3, busy_free_by=free_by, p=p, ring_median=12.0, n=n)
    simulated = _monte_carlo(3, mean_left=mean_left, p=p, ring_median=12.0, n=n)
    assert simulated <= model <= 2.0 * simulated + 0.002


def test_one_call_too_many_with_certain_instant_answers_loses_exactly_one() -> None:
    certain = np.ones(GRID_S.shape[0])
    certain[0] = 0.0
    plan = plan_calls(
        ready=4,
        waiting=0,
        free_by=np.zeros((3, GRID_S.shape[0])),
        dialing_by=np.zeros((0, GRID_S.shape[0])),
        dialing_eventual=np.zeros(0),
        new_timing=certain,
        p_answer=1.0,
        budget=1.0,
        n_min=4,
        n_max=5,
    )
    assert plan.calls == 5
    assert plan.abandon_probability == pytest.approx(1 / 5)


def test_calls_waiting_beyond_the_ready_operators_block_any_new_call() -> None:
    plan = plan_calls(
        ready=1,
        waiting=3,
        free_by=np.zeros((2, GRID_S.shape[0])),
        dialing_by=np.zeros((0, GRID_S.shape[0])),
        dialing_eventual=np.zeros(0),
        new_timing=np.linspace(0.0, 1.0, GRID_S.shape[0]),
        p_answer=0.3,
        budget=0.03,
        n_min=0,
        n_max=10,
    )
    assert plan.calls == 0


# -- a small simulated day --------------------------------------------------------------------


@dataclass
class Day:
    answers: int = 0
    abandons: int = 0
    talk_s: float = 0.0

    @property
    def abandon_rate(self) -> float:
        return self.abandons / max(1, self.answers)


def simulate(pacer_name: str, operators: int, hours: float, *, seed: int, p: float = 0.35) -> Day:
    """Operators, customers and a 1 s tick, event by event; no asyncio, no engine.

    A call is answered with probability `p` after a lognormal ring (median 12 s), or fails
    after 4-30 s. An answered call takes a ready operator, or waits the 2 s connect budget for
    one and is abandoned. Talk is lognormal (median 90 s), wrap-up lognormal (median 10 s).
    """
    rng = np.random.default_rng(seed)
    pacer = make_pacer(pacer_name)
    ledger = AbandonLedger()
    day = Day()
    events: list[tuple[float, int, str, tuple[float, ...]]] = []
    seq = 0

    def push(at: float, kind: str, *data: float) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, data))

    ready = operators
    busy: dict[int, tuple[float, float]] = {}  # call -> (start, end of talk)
    waiting: list[int] = []
    dialing = 0
    ids = itertools.count()

    def connect(now: float) -> None:
        talk, wrap = rng.lognormal(math.log(90), 0.5), rng.lognormal(math.log(10), 0.4)
        call = next(ids)
        busy[call] = (now, now + talk)
        day.talk_s += talk
        push(now + talk + wrap, "free", call, talk, wrap)

    for tick in range(int(hours * 3600)):
        now = T0 + tick
        hour = (9 + tick // 3600) % 24
        while events and events[0][0] <= now:
            at, _, kind, data = heapq.heappop(events)
            if kind == "result":
                dialing -= 1
                answered = data[0] > 0
                pacer.on_attempt_result(now=at, hour_of_day=hour, answered=answered, ring_s=data[1])
                if answered:
                    day.answers += 1
                    ledger.record_live_answer(at)
                    if ready:
                        ready -= 1
                        connect(at)
                    else:
                        call = next(ids)
                        waiting.append(call)
                        push(at + 2.0, "deadline", call)
            elif kind == "free":
                del busy[int(data[0])]
                pacer.on_call_finished(now=at, talk_s=data[1], wrapup_s=data[2])
                if waiting:
                    waiting.pop(0)
                    connect(at)
                else:
                    ready += 1
            elif int(data[0]) in waiting:
                waiting.remove(int(data[0]))
                day.abandons += 1
                ledger.record_abandon(at)
                pacer.on_abandon(now=at)
        s = PacingSnapshot(
            now=now,
            hour_of_day=hour,
            ready_operators=ready,
            busy_operators=tuple(
                BusyOperator(phase="talking" if now < end else "wrap-up", elapsed_s=now - start)
                for start, end in busy.values()
            ),
            calls_dialing=dialing,
            calls_waiting=len(waiting),
            leads_available=10_000,
            abandon_rate=ledger.rate(now, DAY),
            abandon_target=0.03,
        )
        for _ in range(pacer.calls_to_place(s)):
            dialing += 1
            if rng.random() < p:
                ring = rng.lognormal(math.log(12), 0.4)
                push(now + ring, "result", 1.0, ring)
            else:
                ring = rng.uniform(4, 30)
                push(now + ring, "result", 0.0, ring)
    return day


@pytest.mark.slow
def test_predictive_holds_the_abandon_target_and_beats_progressive_in_a_simulated_day() -> None:
    small = simulate("predictive", 4, 1.0, seed=11)
    large = simulate("predictive", 20, 1.0, seed=12)
    baseline = simulate("progressive", 20, 1.0, seed=12)
    figures = (
        f"4 ops: {small.abandon_rate:.2%} of {small.answers}; 20 ops: {large.abandon_rate:.2%}"
        f" of {large.answers}, talk {large.talk_s / 3600:.1f} h vs progressive"
        f" {baseline.talk_s / 3600:.1f} h"
    )
    assert small.abandon_rate <= 0.03, figures
    assert large.abandon_rate <= 0.03, figures
    assert baseline.abandons == 0, figures
    assert large.talk_s > 1.1 * baseline.talk_s, figures
