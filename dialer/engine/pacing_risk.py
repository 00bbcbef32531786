"""The abandon risk of placing n more calls: exact counting over the next 40 seconds.

`plan_calls` is the arithmetic behind the predictive pacer (its module docstring explains the
model in words). Everything here is a pure function of probabilities: no state, no clock, no
randomness, so it can be checked against a Monte-Carlo simulation of the same inputs.

The future is cut into intervals by `GRID_S`. The calls in flight that will be answered at all
number M, a Poisson-binomial sum (one Bernoulli per call, with its own probability); they are
answered one interval after another, r still to come and Binomial(r, hazard) of them in the
next interval, so no more calls are ever answered than were placed. The busy operators who
become free in time for each interval are a Poisson-binomial sum too (one Bernoulli per
operator); counting each interval independently ignores that an operator frees only once,
which overstates the spread a little and errs on the safe side. A Lindley recursion over the
pool of idle operators (`_lost_given_pending`) then gives the expected number of answered
calls that find no operator, for every M at once; each candidate n costs one dot product.
The answer times of the calls in flight are pooled into one distribution (their mix, weighted
as if one call more than the progressive count were placed): the one approximation that can
err either way; it matters only when calls of very different ages are in flight together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["GRID_S", "PlannedCalls", "free_by_times", "plan_calls"]

FloatArray = npt.NDArray[np.float64]

# Seconds from now that cut the future into intervals: 2 s apart (the connect budget) while most
# answers come, coarser after 30 s. Calls still unanswered at 40 s (carriers give up at 30-45 s)
# are settled against the operators idle by then, without counting any freed later.
GRID_S: Final = np.concatenate([np.arange(0.0, 30.0, 2.0), np.arange(30.0, 41.0, 5.0)])


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
    dialing_eventual: FloatArray,
    new_timing: FloatArray,
    p_answer: float | FloatArray,
    budget: float,
    n_min: int,
    n_max: int,
) -> PlannedCalls:
    """The largest n in `n_min .. n_max` whose abandon probability is within `budget`.

    Per grid time `GRID_S[k]`: `free_by[i, k]` is the probability that busy operator i is free
    in time for a call answered in interval k (see `free_by_times`), `dialing_by[j, k]` that
    dialing call j has been answered by `GRID_S[k]`, and `new_timing[k]` that a new call that
    is answered at all has been by then. `dialing_eventual[j]` is the probability that dialing
    call j is answered at all; `p_answer` that a new call is: one number for every new call,
    or one per call in the order they would be placed (the last repeated if there are fewer
    than `n_max`). `n_min` is accepted whatever its risk (the caller passes the progressive
    count, which cannot abandon). The risk grows with n, so the scan stops at the first n over
    budget.
    """
    n_max = max(n_max, 0)
    n_min = min(max(n_min, 0), n_max)
    p_new = _per_call(p_answer, n_max)
    before = np.concatenate([[0.0], np.cumsum(p_new)])  # expected answers of the first n
    frees = _per_interval_pmfs(np.diff(free_by, axis=1, prepend=0.0))
    expected_dialing = float(dialing_eventual.sum())
    # When an eventually answered call is answered: the mix of the dialing calls' timings and
    # a new call's, weighted as if one call more than the progressive count were placed.
    n_ref = min(n_min + 1, n_max)
    weight = expected_dialing + before[n_ref]
    step = np.diff(dialing_by, axis=1, prepend=0.0).sum(axis=0) + before[n_ref] * np.diff(
        new_timing, prepend=0.0
    )
    timing = step / weight if weight > 0 else np.zeros_like(step)
    hazard = _hazards(timing)
    # Eventual answers among the calls in flight: dialing ones, then new ones one by one.
    dialing_pmf = _per_interval_pmfs(dialing_eventual[:, None])[0]
    new_pmf = _per_interval_pmfs(p_new[:n_min, None])[0]
    # Sized for a few calls above the progressive count; doubled if the scan goes further.
    ahead = min(n_max, n_min + 4)
    horizon = np.convolve(dialing_pmf, _per_interval_pmfs(p_new[:ahead, None])[0])
    table_top = _quantile(horizon)
    lost_given: FloatArray | None = None
    best = PlannedCalls(calls=0, abandon_probability=0.0, expected_answers=float(waiting))
    for n in range(n_min, n_max + 1):
        expected = waiting + expected_dialing + float(before[n])
        risk = 0.0
        if n > n_min:
            q = float(p_new[n - 1])
            new_pmf = np.convolve(new_pmf, [1.0 - q, q])
            pending = np.convolve(dialing_pmf, new_pmf)
            if lost_given is not None and _quantile(pending) > table_top:
                table_top, lost_given = 2 * table_top, None
            if lost_given is None:
                lost_given = _lost_given_pending(
                    ready=ready, waiting=waiting, frees=frees, hazard=hazard, top=table_top
                )
            # Beyond the table lies less than 1e-12 of probability.
            lost = float(np.dot(pending[: table_top + 1], lost_given[: pending.shape[0]]))
            risk = lost / expected if expected > 0 else 0.0
            if risk > budget:
                break
        best = PlannedCalls(calls=n, abandon_probability=risk, expected_answers=expected)
    return best


def _per_call(p_answer: float | FloatArray, n: int) -> FloatArray:
    """`p_answer` as one probability per call, `n` of them (the last given repeated)."""
    given = np.clip(np.atleast_1d(np.asarray(p_answer, dtype=np.float64)), 0.0, 1.0)
    if given.shape[0] == 0:
        raise ValueError("p_answer needs at least one probability")
    if given.shape[0] >= n:
        return given[:n]
    return np.concatenate([given, np.full(n - given.shape[0], given[-1])])


def _quantile(pmf: FloatArray, tail: float = 1e-12) -> int:
    """The smallest x with P(X > x) <= `tail`."""
    return int(np.searchsorted(np.cumsum(pmf), 1.0 - tail))


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


def _hazards(timing: FloatArray) -> FloatArray:
    """P(answered in interval k | eventually answered and not answered before k)."""
    before = np.concatenate([[0.0], np.cumsum(timing)[:-1]])
    left = 1.0 - before
    hazard: FloatArray = np.where(left > 1e-12, timing / np.maximum(left, 1e-12), 0.0)
    return np.clip(hazard, 0.0, 1.0)


def _lost_given_pending(
    *, ready: int, waiting: int, frees: FloatArray, hazard: FloatArray, top: int
) -> FloatArray:
    """E[answered calls that find no operator | r calls still to be answered], r = 0..top.

    A backward recursion over the grid on the value V_k(pool, r), the expected number lost
    from interval k on with `pool` idle operators and r calls still to be answered. In each
    interval the operators freed join the pool (`_join_matrices`), then a Binomial(r, hazard_k)
    number of calls is answered and takes operators from the pool; those that find none are
    lost: V_k(q, r) = E[(a - q)^+ + V_k+1((q - a)^+, r - a)]. Interval 0 is "now": the ready
    operators and the waiting calls. The pool never exceeds the operators logged in, and in
    interval k no more calls can still be waiting for their answer than the 1 - 1e-12 quantile
    of those left from `top`, so the arrays are cut there.
    """
    size = ready + frees.shape[1]
    pool = np.arange(size)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, top + 1)))])
    survival = np.clip(np.concatenate([[1.0], 1.0 - np.cumsum(_hazard_mass(hazard))]), 0.0, 1.0)
    caps = _survivor_caps(top, survival, log_fact)
    # Once fewer than 1e-3 calls are expected still to be answered, the rest is settled at
    # once: they may use the operators already idle and no others (an over-estimate).
    live = np.flatnonzero((top * survival[: hazard.shape[0]] >= 1e-3) & (hazard > 1e-12))
    end = int(live[-1]) if live.size else 0
    binom = _binomial_tables(hazard[: end + 1], top, log_fact)
    joins = _join_matrices(frees[: end + 1], size)
    answered = np.arange(binom.shape[2])
    # Flat indices into a (pool, r) table for "a calls answered": (pool - a)^+, r - a.
    flat = np.maximum(pool[:, None, None] - answered, 0) * (top + 1) + np.maximum(
        np.arange(top + 1)[None, :, None] - answered, 0
    )
    excess = np.maximum(answered - pool[:, None], 0).astype(np.float64)
    # Per interval, how many calls can be answered in it with more than negligible odds.
    widths = binom.shape[2] - np.argmax((binom.max(axis=1) > 1e-13)[:, ::-1], axis=1)
    value = np.maximum(np.arange(top + 1)[None, :] - pool[:, None], 0.0)
    for k in range(end, 0, -1):
        cap = int(caps[k])
        if cap > 0:
            w = min(int(widths[k]), cap + 1)
            b = binom[k, : cap + 1, :w]
            # V_k(q, r) = sum_a B(a; r) * (V_k+1((q - a)^+, r - a) + (a - q)^+); counts above
            # the cap (probability under 1e-12) keep the value at the cap.
            value[:, : cap + 1] = np.einsum(
                "qra,ra->qr", np.take(value, flat[:, : cap + 1, :w]), b
            ) + (excess[:, :w] @ b.T)
            value[:, cap + 1 :] = value[:, cap : cap + 1]
        value = joins[k] @ value
    after = np.maximum(pool - waiting, 0)
    value = np.maximum(waiting - pool, 0)[:, None] + value[after, :]
    result: FloatArray = joins[0, ready] @ value
    return result


def _survivor_caps(top: int, survival: FloatArray, log_fact: FloatArray) -> npt.NDArray[np.int64]:
    """Per interval, the 1 - 1e-12 quantile of Binomial(top, survival): calls still to come."""
    a = np.arange(top + 1)[None, :]
    s = survival[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = log_fact[top] - log_fact[a] - log_fact[top - a]
        logp = logp + np.where(a > 0, a * np.log(s), 0.0)
        logp = logp + np.where(a < top, (top - a) * np.log1p(-s), 0.0)
    pmf = np.where(np.isfinite(logp), np.exp(logp), 0.0)
    caps: npt.NDArray[np.int64] = np.argmax(np.cumsum(pmf, axis=1) >= 1.0 - 1e-12, axis=1)
    return caps


def _hazard_mass(hazard: FloatArray) -> FloatArray:
    """Per interval, the share of eventually answered calls answered in it, from the hazards."""
    left = np.concatenate([[1.0], np.cumprod(1.0 - hazard)[:-1]])
    mass: FloatArray = left * hazard
    return mass


def _binomial_tables(hazard: FloatArray, top: int, log_fact: FloatArray) -> FloatArray:
    """table[k, r, a] = P(Binomial(r, hazard[k]) = a), r, a in 0..top, cut where a vanishes."""
    r = np.arange(top + 1)[:, None]
    a = np.arange(top + 1)[None, :]
    h = np.clip(hazard, 1e-300, 1.0)[:, None, None]
    log_choose = log_fact[r] - log_fact[a] - log_fact[np.abs(r - a)]
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = log_choose + a * np.log(h) + np.where(r > a, (r - a) * np.log1p(-h), 0.0)
    table = np.where((a <= r) & np.isfinite(logp), np.exp(logp), 0.0)
    used = np.flatnonzero(table.max(axis=(0, 1)) > 1e-13)
    cut: FloatArray = table[:, :, : int(used[-1]) + 1 if used.size else 1]
    return cut


def _join_matrices(frees: FloatArray, size: int) -> FloatArray:
    """move[k, p, q] = P(a pool of p becomes q when interval k's freed operators join it).

    The pool is cut at `size - 1`: whatever would overflow lands on the top (it cannot happen
    with exact counts; it can with the per-interval approximation, rarely).
    """
    gap = np.arange(size)[None, :] - np.arange(size)[:, None]
    padded = np.zeros((frees.shape[0], size))
    width = min(size, frees.shape[1])
    padded[:, :width] = frees[:, :width]
    move = np.where(gap >= 0, padded[:, np.clip(gap, 0, size - 1)], 0.0)
    move[:, :, -1] += 1.0 - move.sum(axis=2)
    return move
