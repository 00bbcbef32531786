"""The predictive pacer's fast path decides as the plain computation of the same model does.

The reference here is the model of docs/pacing.md computed the slow way: every Poisson-binomial
by adding one Bernoulli at a time, the Lindley recursion over every (idle operators, calls to
come) pair with no cut, and a scan that tries every n in turn (its table sized and doubled as
the pacer always has, which decides when answers stop being followed one interval at a time).
The fast path keeps generating functions between decisions, cuts its tables where the odds are
under 1e-12, bounds the loss past a table's end and searches by doubling and halving; none of
that may change a decision, and the risk it reports stays within 1e-6 of the exact figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.engine import pacing_predictive
from dialer.engine.pacing import BusyOperator, PacingSnapshot
from dialer.engine.pacing_models import HandleTimeModel, norm_cdf
from dialer.engine.pacing_predictive import PredictivePacer
from dialer.engine.pacing_risk import GRID_S, PlannedCalls, free_by_times, plan_calls

T0 = 1_700_000_000.0
FloatArray = np.ndarray


# -- the reference ----------------------------------------------------------------------------


def one_by_one(probs: FloatArray) -> FloatArray:
    """P(x of independent Bernoulli(probs) events happen), one event at a time."""
    pmf = np.ones(1)
    for q in np.clip(probs, 0.0, 1.0):
        pmf = np.convolve(pmf, [1.0 - q, q])
    return pmf


def quantile(pmf: FloatArray) -> int:
    return int(np.searchsorted(np.cumsum(pmf), 1.0 - 1e-12))


def lost_given(
    *,
    ready: int,
    waiting: int,
    frees: list[FloatArray],
    hazard: FloatArray,
    top: int,
    operators: int,
) -> FloatArray:
    """E[lost | r calls to come], r = 0..top: the recursion over every (pool, r), uncut."""
    left = np.concatenate([[1.0], np.cumprod(1.0 - hazard)[:-1]])
    survival = np.clip(np.concatenate([[1.0], 1.0 - np.cumsum(left * hazard)]), 0.0, 1.0)
    live = np.flatnonzero((top * survival[: hazard.shape[0]] >= 1e-3) & (hazard > 1e-12))
    end = int(live[-1]) if live.size else 0
    size = ready + operators + 1  # the pool holds at most the operators logged in
    pool = np.arange(size)
    calls = np.arange(top + 1)
    value = np.maximum(calls[None, :] - pool[:, None], 0).astype(np.float64)  # settled at the end
    for k in range(end, 0, -1):
        answered = np.zeros_like(value)
        for r in range(top + 1):
            binomial = one_by_one(np.full(r, hazard[k]))  # answers among r in interval k
            for a in range(r + 1):
                later = value[np.maximum(pool - a, 0), r - a] + np.maximum(a - pool, 0)
                answered[:, r] += binomial[a] * later
        joined = np.zeros_like(value)
        for f, chance in enumerate(frees[k]):
            joined += chance * answered[np.minimum(pool + f, size - 1), :]
        value = joined
    result = np.zeros(top + 1)
    for f, chance in enumerate(frees[0]):
        now = min(ready + f, size - 1)
        result += chance * (max(waiting - now, 0) + value[max(now - waiting, 0), :])
    return result


def exact_plan(plan: Mapping[str, Any]) -> tuple[PlannedCalls, dict[int, float]]:
    """The plan, and the risk of each n tried, the plain way; `plan` holds `plan_calls`'
    arguments, with one row of `free_by` per operator."""
    ready, waiting, budget = plan["ready"], plan["waiting"], plan["budget"]
    free_by, dialing_by, dialing_eventual = (
        plan["free_by"],
        plan["dialing_by"],
        plan["dialing_eventual"],
    )
    new_timing, p_answer = plan["new_timing"], plan["p_answer"]
    n_max = max(plan["n_max"], 0)
    n_min = min(max(plan["n_min"], 0), n_max)
    if callable(p_answer):
        p_answer = p_answer(n_max) if n_max else np.ones(1)
    given = np.atleast_1d(np.clip(np.asarray(p_answer, dtype=np.float64), 0.0, 1.0))
    p_new = np.concatenate([given, np.full(max(0, n_max - given.shape[0]), given[-1])])[:n_max]
    steps = np.diff(free_by, axis=1, prepend=0.0)
    frees = [one_by_one(steps[:, k]) for k in range(GRID_S.shape[0])]
    expected_dialing = float(dialing_eventual.sum())
    n_ref = min(n_min + 1, n_max)
    weight = expected_dialing + p_new[:n_ref].sum()
    step = np.diff(dialing_by, axis=1, prepend=0.0).sum(axis=0)
    step = step + p_new[:n_ref].sum() * np.diff(new_timing, prepend=0.0)
    timing = step / weight if weight > 0 else np.zeros_like(step)
    before = np.concatenate([[0.0], np.cumsum(timing)[:-1]])
    hazard = np.clip(np.where(1 - before > 1e-12, timing / np.maximum(1 - before, 1e-12), 0), 0, 1)
    dialing = one_by_one(dialing_eventual)
    top = quantile(np.convolve(dialing, one_by_one(p_new[: min(n_max, n_min + 4)])))
    tables: dict[int, FloatArray] = {}
    risks: dict[int, float] = {}
    best = PlannedCalls(
        calls=n_min,
        abandon_probability=0.0,
        expected_answers=waiting + expected_dialing + p_new[:n_min].sum(),
    )
    for n in range(n_min + 1, n_max + 1):
        pending = np.convolve(dialing, one_by_one(p_new[:n]))
        if n > n_min + 1 and quantile(pending) > top:
            top *= 2
        if top not in tables:
            tables[top] = lost_given(
                ready=ready,
                waiting=waiting,
                frees=frees,
                hazard=hazard,
                top=top,
                operators=free_by.shape[0],
            )
        expected = waiting + expected_dialing + p_new[:n].sum()
        lost = float(np.dot(pending[: top + 1], tables[top][: pending.shape[0]]))
        risks[n] = lost / expected if expected > 0 else 0.0
        if risks[n] > budget:
            break
        best = PlannedCalls(calls=n, abandon_probability=risks[n], expected_answers=expected)
    return best, risks


def assert_same_plan(
    fast: PlannedCalls, exact: PlannedCalls, risks: dict[int, float], budget: float
) -> None:
    if fast.calls != exact.calls:
        # Only a risk within rounding of the budget may tip the other way.
        deciding = min(fast.calls, exact.calls) + 1
        assert risks.get(deciding) == pytest.approx(budget, rel=1e-9), (fast, exact)
        return
    assert fast.abandon_probability == pytest.approx(exact.abandon_probability, abs=1e-6)
    assert fast.expected_answers == pytest.approx(exact.expected_answers, rel=1e-12)


# -- random inputs ----------------------------------------------------------------------------


@st.composite
def plans(draw: st.DrawFn) -> dict[str, object]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    busy = draw(st.integers(0, 14))
    ready = draw(st.integers(0, 6))
    # Time left in each busy operator's call, memoryless; some rows share the same value, as
    # operators in the same phase and bucket do.
    left = rng.choice(rng.uniform(3.0, 200.0, max(1, busy // 2 + 1)), busy)
    free_by = 1.0 - np.exp(-free_by_times(2.0)[None, :] / left[:, None])
    if busy and draw(st.booleans()):
        free_by[: busy // 2] = np.round(free_by[: busy // 2] * 2) / 2  # lumps, as samples make
    dialing = draw(st.integers(0, 16))
    ages = rng.uniform(0.0, 30.0, dialing)
    median = rng.uniform(2.0, 15.0)

    def answered_by(t: FloatArray) -> FloatArray:
        return norm_cdf(np.log(np.maximum(t, 1e-9) / median) / 0.6)

    p = rng.uniform(0.05, 0.95)
    early = answered_by(ages)
    pending = np.maximum(1 - p * early - (1 - p) * (1 - np.exp(-ages / 20)), 1e-9)
    later = answered_by(ages[:, None] + GRID_S[None, :])
    n_min = draw(st.integers(0, ready))
    n_max = n_min + draw(st.integers(0, 14))
    p_answer: float | FloatArray = p
    if draw(st.booleans()):
        p_answer = np.sort(rng.uniform(0.02, 0.95, draw(st.integers(1, max(1, n_max)))))[::-1]
    return {
        "ready": ready,
        "waiting": draw(st.integers(0, 3)),
        "free_by": free_by,
        "dialing_by": np.clip(p * (later - early[:, None]) / pending[:, None], 0, 1),
        "dialing_eventual": np.clip(p * (1 - early) / pending, 0, 1),
        "new_timing": answered_by(GRID_S),
        "p_answer": p_answer,
        "budget": draw(st.sampled_from([0.005, 0.01, 0.03, 0.06, 0.15])),
        "n_min": n_min,
        "n_max": n_max,
    }


# -- the arithmetic ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(plan=plans())
def test_plan_calls_decides_as_the_recursion_computed_without_cuts(plan: dict) -> None:
    exact, risks = exact_plan(plan)
    assert_same_plan(plan_calls(**plan), exact, risks, plan["budget"])


@settings(max_examples=20, deadline=None)
@given(plan=plans())
def test_rows_given_once_with_their_counts_plan_as_one_row_per_operator(plan: dict) -> None:
    rows, counts = np.unique(plan["free_by"], axis=0, return_counts=True)
    grouped = plan_calls(**{**plan, "free_by": rows, "free_counts": counts.astype(np.int64)})
    each = plan_calls(**plan)
    assert grouped.calls == each.calls
    assert grouped.abandon_probability == pytest.approx(each.abandon_probability, abs=1e-12)


def test_every_line_is_placed_when_the_ready_operators_outnumber_any_likely_answers() -> None:
    # 40 ready operators and rare answers: the search reaches the line cap in a few steps.
    plan = plan_calls(
        ready=40,
        waiting=0,
        free_by=np.zeros((0, GRID_S.shape[0])),
        dialing_by=np.zeros((0, GRID_S.shape[0])),
        dialing_eventual=np.zeros(0),
        new_timing=np.linspace(0.0, 1.0, GRID_S.shape[0]),
        p_answer=0.05,
        budget=0.03,
        n_min=40,
        n_max=160,
    )
    assert plan.calls == 160
    assert plan.abandon_probability == pytest.approx(0.0, abs=1e-12)


# -- the handle-time model's frees ------------------------------------------------------------


def test_frees_per_interval_match_the_operators_counted_one_by_one() -> None:
    rng = np.random.default_rng(3)
    model = HandleTimeModel(
        horizons_s=free_by_times(2.0),
        prior_talk_median_s=120.0,
        prior_talk_sigma=0.7,
        prior_wrapup_median_s=15.0,
        prior_wrapup_sigma=0.6,
        prior_weight=10.0,
        max_samples=500,
    )
    for _ in range(300):
        model.record(float(rng.lognormal(math.log(90), 0.6)), float(rng.lognormal(2.5, 0.5)))
    model.rebuild()
    phases = ("talking", "wrap-up", "ringing")
    elapsed = rng.uniform(0.0, 300.0, 120)
    for step in range(12):  # a floor a second apart: keys come and go, sums are updated
        busy = [
            BusyOperator(phase=phases[i % 3], elapsed_s=float(e) + step)
            for i, e in enumerate(elapsed[: 60 + 5 * step])
        ]
        if step == 6:  # new samples: rows and their generating functions are rebuilt
            for _ in range(50):
                model.record(float(rng.lognormal(math.log(60), 0.5)), 10.0)
            model.rebuild()
        freed = model.freed(busy)
        rows = np.array([model.free_within(b.phase, b.elapsed_s) for b in busy])
        steps = np.diff(rows, axis=1, prepend=0.0)
        assert freed.counts.sum() == len(busy)
        for k in range(GRID_S.shape[0]):
            exact = one_by_one(steps[:, k])
            got = freed.per_interval[k]
            width = max(exact.shape[0], got.shape[0])
            exact, got = (
                np.pad(exact, (0, width - exact.shape[0])),
                np.pad(got, (0, width - got.shape[0])),
            )
            np.testing.assert_allclose(got, exact, atol=1e-12)


# -- the pacer --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> PredictivePacer:
    """A pacer that has learned answer times, handle times and answers by age."""
    rng = np.random.default_rng(11)
    pacer = PredictivePacer()
    for i in range(1500):
        now = T0 - 3000 + 2 * i
        answered = bool(rng.random() < 0.4)
        ring = float(rng.lognormal(math.log(9), 0.5 if answered else 0.3))
        pacer.on_attempt_result(now=now, hour_of_day=10, answered=answered, ring_s=ring)
        age = float(rng.exponential(4000))
        pacer.answer_by_age.record(now, 10, age, bool(rng.random() < 0.6 * 2 ** (-age / 7200)))
        if i % 2:
            talk, wrap = rng.lognormal(math.log(100), 0.6), rng.lognormal(math.log(12), 0.5)
            pacer.on_call_finished(now=now, talk_s=float(talk), wrapup_s=float(wrap))
    return pacer


@st.composite
def snapshots(draw: st.DrawFn) -> PacingSnapshot:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    talking, wrapping = draw(st.integers(0, 16)), draw(st.integers(0, 4))
    busy = [BusyOperator(phase="talking", elapsed_s=float(e)) for e in rng.uniform(0, 400, talking)]
    busy += [
        BusyOperator(phase="wrap-up", elapsed_s=float(e)) for e in rng.uniform(60, 300, wrapping)
    ]
    ready = draw(st.integers(0, 10))
    dialing = draw(st.integers(0, 10))
    logged_in = ready + len(busy)
    ahead = np.sort(rng.exponential(3000, min(40, 4 * logged_in)))
    return PacingSnapshot(
        now=T0 + draw(st.integers(0, 600)),
        hour_of_day=10,
        ready_operators=ready,
        busy_operators=tuple(busy),
        calls_dialing=dialing,
        calls_waiting=draw(st.integers(0, 2)),
        leads_available=40,
        abandon_rate=draw(st.sampled_from([None, 0.0, 0.01, 0.02])),
        abandon_target=0.03,
        dialing_elapsed_s=tuple(rng.uniform(0, 30, dialing).tolist()),
        dialing_lead_ages_s=tuple(rng.exponential(3000, dialing).tolist()),
        next_lead_ages_s=tuple(ahead.tolist()),
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(snaps=st.lists(snapshots(), min_size=1, max_size=3))
def test_the_pacer_decides_as_the_exact_computation_on_random_snapshots(
    trained: PredictivePacer, snaps: list[PacingSnapshot]
) -> None:
    # The pacer keeps its caches between decisions; each one is checked against the plan
    # computed afresh from one row per busy operator (its own handle-time model's rows).
    seen: list[tuple[dict, PlannedCalls]] = []

    def spy(**inputs: object) -> PlannedCalls:
        planned = plan_calls(**inputs)  # type: ignore[arg-type]
        seen.append((inputs, planned))
        return planned

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pacing_predictive, "plan_calls", spy)
        for snap in snaps:
            seen.clear()
            n = trained.calls_to_place(snap)
            if not seen:
                continue  # progressive: no budget or no room, nothing to plan
            inputs, planned = seen[0]
            assert n == planned.calls
            rows = np.array(
                [trained.handle_time.free_within(b.phase, b.elapsed_s) for b in snap.busy_operators]
            ).reshape(len(snap.busy_operators), GRID_S.shape[0])
            plain = {k: v for k, v in inputs.items() if k not in ("free_counts", "frees")}
            exact, risks = exact_plan({**plain, "free_by": rows})
            assert_same_plan(planned, exact, risks, float(inputs["budget"]))  # type: ignore[arg-type]
