"""The abandon risk of placing n more calls: exact counting on a grid of the next 60 seconds.

`plan_calls` is the arithmetic behind the predictive pacer (its module docstring explains the
model in words). Everything here is a pure function of probabilities: no state, no clock, no
randomness, so it can be checked against a Monte-Carlo simulation of the same inputs.

The future is cut into intervals by `GRID_S`. For each interval there is a distribution of the
number of calls answered in it (a Poisson-binomial sum over the calls, one Bernoulli each) and
of the number of busy operators who become free in time to take them (likewise, one Bernoulli
per operator). Treating interval counts as independent ignores that one call can be answered in
only one interval (a negative correlation), which overstates the spread and errs on the safe
side. The expected number of answered calls that find no operator then follows from a Lindley
recursion over the idle-operator pool (`_expected_lost`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["GRID_S", "PlannedCalls", "free_by_times", "plan_calls"]

FloatArray = npt.NDArray[np.float64]

# Seconds from now that cut the future into intervals: 2 s apart (the connect budget) while most
# answers come, coarser after 30 s; answers after 60 s are rare (carriers give up at 30-45 s).
GRID_S: Final = np.concatenate([np.arange(0.0, 30.0, 2.0), np.arange(30.0, 61.0, 5.0)])


def free_by_times(connect_budget_s: float) -> FloatArray:
    """When an operator must be free to take a call answered within each grid interval.

    A call answered in (GRID_S[k-1], GRID_S[k]] can wait `connect_budget_s`; the middle of the
    interval stands for the whole of it. Interval 0 is "now".
    """
    mid = np.concatenate([[0.0], (GRID_S[:-1] + GRID_S[1:]) / 2])
    result: FloatArray = mid + connect_budget_s
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedCalls:
    """The outcome of `plan_calls`: how many calls, and the abandon probability it expects."""

    calls: int
    abandon_probability: float
    expected_answers: float


def plan_calls(
    *,
    ready: int,
    waiting: int,
    free_by: FloatArray,
    dialing_by: FloatArray,
    dialing_answers: float,
    new_by: FloatArray,
    p_answer: float,
    budget: float,
    n_min: int,
    n_max: int,
) -> PlannedCalls:
    """The largest n in `n_min .. n_max` whose abandon probability is within `budget`.

    Per grid time `GRID_S[k]`: `free_by[i, k]` is the probability that busy operator i is free
    by `FREE_BY_S[k]`, `dialing_by[j, k]` that dialing call j has been answered by `GRID_S[k]`,
    `new_by[k]` that a new call has. `dialing_answers` is the expected number of eventual
    answers among the dialing calls, `p_answer` the probability that a new call is answered at
    all. `n_min` is accepted whatever its risk (the caller passes the progressive count, which
    cannot abandon). The risk is assumed to grow with n, so the scan stops at the first n over
    budget.
    """
    frees = _per_interval_pmfs(np.diff(free_by, axis=1, prepend=0.0))
    answers = _per_interval_pmfs(np.diff(dialing_by, axis=1, prepend=0.0))
    new_step = np.diff(new_by, prepend=0.0)
    dialing = dialing_by.shape[0]
    best = PlannedCalls(calls=0, abandon_probability=0.0, expected_answers=float(waiting))
    for n in range(max(n_max, 0) + 1):
        expected = waiting + dialing_answers + p_answer * n
        if n <= n_min:
            risk = 0.0
        else:
            lost = _expected_lost(ready=ready, waiting=waiting, frees=frees, answers=answers)
            risk = lost / expected if expected > 0 else 0.0
            if risk > budget:
                break
        best = PlannedCalls(calls=n, abandon_probability=risk, expected_answers=expected)
        if n < n_max:
            answers = _add_bernoulli(answers, dialing + n, new_step)
    return best


def _per_interval_pmfs(step_probs: FloatArray) -> FloatArray:
    """pmf[k, x]: P(x of the rows' events fall in interval k), rows independent Bernoullis.

    Poisson-binomial by its characteristic function: the generating function prod_i (1 - q_i +
    q_i z) evaluated at the roots of unity, turned back into probabilities by one FFT.
    """
    rows, k = step_probs.shape
    if rows == 0:
        return np.ones((k, 1))
    q = np.clip(step_probs, 0.0, 1.0)[:, :, None]
    z = np.exp(2j * np.pi * np.arange(rows + 1) / (rows + 1))
    generating = np.prod(1.0 - q + q * z, axis=0)
    pmf: FloatArray = np.clip(np.fft.fft(generating, axis=1).real / (rows + 1), 0.0, 1.0)
    return pmf


def _add_bernoulli(pmf: FloatArray, count: int, prob: FloatArray) -> FloatArray:
    """Per row k, the pmf of a count in 0..`count` plus a Bernoulli(`prob[k]`)."""
    if pmf.shape[1] < count + 2:
        pmf = np.concatenate([pmf, np.zeros((pmf.shape[0], count + 2 - pmf.shape[1]))], axis=1)
    q = prob[:, None]
    nxt = pmf * (1.0 - q)
    nxt[:, 1 : count + 2] += pmf[:, : count + 1] * q
    return nxt


def _expected_lost(*, ready: int, waiting: int, frees: FloatArray, answers: FloatArray) -> float:
    """E[answered calls that find no operator in time], by a Lindley recursion on the grid.

    `pool` is the distribution of idle operators. Interval by interval the operators freed in
    it join the pool, the calls answered in it take operators from the pool, and those that
    find none are lost: lost_k = (answers_k - pool - freed_k)^+, pool = (pool + freed_k -
    answers_k)^+. Interval 0 is "now": the ready operators and the waiting calls.
    """
    # The pool never exceeds the operators logged in, so cutting arrays there is exact.
    width = ready + frees.shape[1]
    pool = np.zeros(width)
    pool[ready] = 1.0
    still_ringing = np.flatnonzero(answers[:, 0] < 1.0 - 1e-12)
    last = int(still_ringing[-1]) if still_ringing.size else 0
    lost = 0.0
    shortfall = np.arange(max(waiting, answers.shape[1]), 0, -1, dtype=np.float64)
    for k in range(last + 1):
        # An interval in which nobody can become free leaves the pool as it is.
        supply = pool if frees[k, 0] >= 1.0 else np.convolve(pool, frees[k])[:width]
        if k == 0:
            demand = np.zeros(waiting + 1)
            demand[waiting] = 1.0
        else:
            demand = answers[k]
        top = demand.shape[0] - 1
        # diff[top + v] = P(supply - demand = v), for v in -top .. width - 1
        diff = np.convolve(supply, demand[::-1])
        short = diff[:top]
        lost += float(np.dot(short, shortfall[-top:])) if top else 0.0
        pool = diff[top : top + width]
        pool[0] += float(short.sum())
    return lost
