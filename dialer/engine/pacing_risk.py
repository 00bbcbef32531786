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

What it costs: with hundreds of operators and calls in flight a decision must still take a few
milliseconds, since the engine asks on every step that may dial and the daemon runs on one
event loop. The recursion runs on (r, d = r - pool): two matrix products per interval, cut
where the odds are under 1e-12 (no more calls still to come than that quantile allows, no
more columns than the ready operators leave room for). A table reaches the 1 - 1e-8 quantile
of the calls to come, and one more call to be answered loses at most one more, so for calls
past its end the table bounds the loss from both sides: one table serves every n the search
tries unless the bounds straddle the budget, and then a table out to 1 - 1e-12 decides as
the exact figure would. The search doubles, then halves, instead of trying every n. Matrix
products are split so that OpenBLAS keeps each on the calling thread: its thread pool costs
more than it saves at these sizes and stalls when the other cores are busy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["GRID_S", "PlannedCalls", "free_by_times", "plan_calls", "poisson_binomial"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# OpenBLAS runs a matrix product on its thread pool from 2^18 multiply-adds per thread.
_ONE_THREAD: Final = 1 << 18
_EXACT_CHOOSE: Final = 1024  # C(r, u) overflows past r = 1029
# A table reaches the 1 - 1e-8 quantile of the calls to come: past it the bounds on the loss
# differ by about 1e-8 calls, so a decision needs a table built out to 1 - 1e-12 only when its
# risk is that close to the budget. The risk reported is the lower bound, held within 1e-6 of
# the exact figure (the wallboard shows hundredths of a percent).
_TABLE_TAIL: Final = 1e-8
_CLOSE: Final = 1e-6
_BATCH: Final = 1 << 18  # a table's matrices all at once up to this many entries

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
    p_answer: float | FloatArray | Callable[[int], FloatArray],
    budget: float,
    n_min: int,
    n_max: int,
    free_counts: IntArray | None = None,
    frees: FloatArray | None = None,
) -> PlannedCalls:
    """The largest n in `n_min .. n_max` whose abandon probability is within `budget`.

    Per grid time `GRID_S[k]`: `free_by[i, k]` is the probability that busy operator i is free
    in time for a call answered in interval k (see `free_by_times`), `dialing_by[j, k]` that
    dialing call j has been answered by `GRID_S[k]`, and `new_timing[k]` that a new call that
    is answered at all has been by then. `dialing_eventual[j]` is the probability that dialing
    call j is answered at all; `p_answer` that a new call is: one number for every new call,
    or one per call in the order they would be placed (the last repeated if there are fewer
    than `n_max`), or a function giving those of the first n calls (asked only for as many as
    the search needs). `n_min` is accepted whatever its risk (the caller passes the progressive
    count, which cannot abandon). The risk grows with n, so the last n within the budget is
    found by doubling steps from `n_min`, then halving between the last n within and the
    first over.

    Operators who share a row of `free_by` may be given once, with `free_counts[i]` the number
    of operators behind row i; `frees[k, x]`, the probability that x of them are freed in
    interval k, may be given too (`HandleTimeModel.freed` keeps it from one decision to the
    next), else it is computed from the rows.
    """
    n_max = max(n_max, 0)
    n_min = min(max(n_min, 0), n_max)
    odds = _Odds(p_answer, n_max)
    counts = np.ones(free_by.shape[0], dtype=np.int64) if free_counts is None else free_counts
    if frees is None:
        frees = poisson_binomial(np.repeat(np.diff(free_by, axis=1, prepend=0.0), counts, axis=0))
    expected_dialing = float(dialing_eventual.sum())
    # When an eventually answered call is answered: the mix of the dialing calls' timings and
    # a new call's, weighted as if one call more than the progressive count were placed.
    n_ref = min(n_min + 1, n_max)
    weight = expected_dialing + odds.expected(n_ref)
    step = np.diff(dialing_by, axis=1, prepend=0.0).sum(axis=0) + odds.expected(n_ref) * np.diff(
        new_timing, prepend=0.0
    )
    timing = step / weight if weight > 0 else np.zeros_like(step)
    floor = _Floor(
        ready=ready,
        waiting=waiting,
        pool_cap=ready + int(counts.sum()),
        frees=frees,
        hazard=_hazards(timing),
    )
    risks = _Risks(
        floor=floor,
        dialing_pmf=poisson_binomial(dialing_eventual[:, None])[0],
        odds=odds,
        ahead=min(n_max, n_min + 4),
    )

    def expected(n: int) -> float:
        return waiting + expected_dialing + odds.expected(n)

    def over(n: int) -> bool:
        low, _ = risks.lost(n, limit=budget * expected(n))
        return expected(n) > 0 and low / expected(n) > budget

    # The risk grows with n: the last n within the budget, by doubling steps then halving.
    within, beyond, stride = n_min, None, 1
    while within < n_max:
        n = min(n_min + stride, n_max)
        if over(n):
            beyond = n
            break
        within, stride = n, 2 * stride
    while beyond is not None and beyond - within > 1:
        middle = (within + beyond) // 2
        if over(middle):
            beyond = middle
        else:
            within = middle
    risk = 0.0
    if within > n_min and expected(within) > 0:
        risk = risks.lost(within, limit=None, close=_CLOSE * expected(within))[0] / expected(within)
    return PlannedCalls(calls=within, abandon_probability=risk, expected_answers=expected(within))


class _Risks:
    """E[lost] with n new calls, for any n, from as few tables as the bounds allow."""

    def __init__(self, *, floor: _Floor, dialing_pmf: FloatArray, odds: _Odds, ahead: int):
        self._floor, self._odds = floor, odds
        self._mean_dialing = float(np.dot(np.arange(dialing_pmf.shape[0]), dialing_pmf))
        self.dialing = _Dialing.of(dialing_pmf)
        # Answers among the first n new calls, for the n asked about so far.
        self._prefix: dict[int, FloatArray] = {0: np.ones(1)}
        # How far ahead answers are followed: sized for a few calls above the progressive
        # count, doubled for as many calls as make more answers than that likely.
        self._top = _quantile(_convolve(dialing_pmf, self._answers(ahead)))
        self._tables: dict[int, _Table] = {}  # by the last interval followed
        self._ends: dict[int, int] = {}  # that interval, by `top`

    def lost(self, n: int, *, limit: float | None, close: float = 0.0) -> tuple[float, float]:
        """Bounds on E[lost] with n new calls that tell whether it is over `limit`, or, for
        None, within `close` of each other (for the figure reported)."""
        new_pmf = self._answers(n)
        top = self._top
        while top > 0 and self.dialing.at_most(new_pmf, top) < 1.0 - 1e-12:
            top *= 2
        end = self._ends.get(top)
        if end is None:
            end = self._ends[top] = _last_interval(self._floor.hazard, top)
        mean = self._mean_dialing + self._odds.expected(n)
        table = self._tables.get(end)
        if table is not None:
            low, high = table.lost(new_pmf, self.dialing, mean)
            if _settled(low, high, limit, close):
                return low, high
        pending = _convolve(self.dialing.pmf, new_pmf)
        # Out to the 1 - 1e-12 quantile if need be: the figure then is the exact one.
        for tail in (_TABLE_TAIL, 1e-12):
            rows = _quantile(pending, tail) + 1
            table = _Table.build(self._floor, end=end, rows=rows, dialing=self.dialing)
            self._tables[end] = table
            low, high = table.lost(new_pmf, self.dialing, mean)
            if _settled(low, high, limit, close):
                break
        return low, high

    def _answers(self, n: int) -> FloatArray:
        """The pmf of answers among the first n new calls."""
        known = max(k for k in self._prefix if k <= n)
        pmf = self._prefix[known]
        if n > known:
            pmf = _convolve(pmf, poisson_binomial(self._odds.first(n)[known:, None])[0])
            self._prefix[n] = pmf
        return pmf


def _settled(low: float, high: float, limit: float | None, close: float) -> bool:
    """Whether bounds on E[lost] tell which side of `limit` it lies (None: are `close`)."""
    if limit is None:
        return high - low <= close
    return low > limit or high <= limit


def _convolve(a: FloatArray, b: FloatArray) -> FloatArray:
    """The pmf of a sum from the pmfs of its independent terms (by FFT when both are long)."""
    if min(a.shape[0], b.shape[0]) <= 64:
        direct: FloatArray = np.convolve(a, b)
        return direct
    length = a.shape[0] + b.shape[0] - 1
    size = 1 << (length - 1).bit_length()
    product = np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(b, size), size)[:length]
    pmf: FloatArray = np.clip(product, 0.0, 1.0)
    return pmf


@dataclass(frozen=True, slots=True)
class _Dialing:
    """The dialing calls' eventual answers: pmf, cdf, and E[(j - D)^+] for each j."""

    pmf: FloatArray
    cdf: FloatArray
    short: FloatArray  # short[j] = E[(j - D)^+] = cdf[0] + ... + cdf[j - 1]

    @classmethod
    def of(cls, pmf: FloatArray) -> _Dialing:
        cdf = np.cumsum(pmf)
        return cls(pmf=pmf, cdf=cdf, short=np.concatenate([[0.0], np.cumsum(cdf)]))

    def at_most(self, new_pmf: FloatArray, total: int) -> float:
        """P(new + dialing answers <= total)."""
        x = min(new_pmf.shape[0], total + 1)
        if x <= 0:
            return 0.0
        at = np.minimum(total - np.arange(x), self.cdf.shape[0] - 1)
        return float(np.dot(new_pmf[:x], self.cdf[at]))

    def below(self, new_pmf: FloatArray, total: int) -> float:
        """E[(total - new - dialing answers)^+]."""
        x = min(new_pmf.shape[0], total + 1)
        if x <= 0:
            return 0.0
        j = total - np.arange(x)
        last = self.cdf.shape[0]
        # Past the dialing calls' count the cdf is 1: each further step adds 1.
        short = np.where(j <= last, self.short[np.minimum(j, last)], self.short[last] + j - last)
        return float(np.dot(new_pmf[:x], short))


@dataclass(frozen=True, slots=True)
class _Table:
    """E[lost | r calls to come] for r < `rows`, and what it gives for any n new calls.

    An extra call to be answered loses at most one more call (it is lost, or takes an operator
    a later one needed) and never fewer, so past the table E[lost | r] lies between the last
    entry and the last entry plus r - (rows - 1): `lost` returns both bounds, and a table
    built for a few calls serves the next ones as long as the bounds decide.
    """

    rows: int
    end: int
    last: float  # E[lost | rows - 1 calls to come]
    by_new: FloatArray  # [x]: E[lost; answers < rows | x new calls answered]

    @classmethod
    def build(cls, floor: _Floor, *, end: int, rows: int, dialing: _Dialing) -> _Table:
        lost_given = _lost_given_pending(floor, end=end, rows=rows)
        reachable = dialing.pmf[:rows]
        by_new = np.correlate(lost_given, reachable, mode="full")[reachable.shape[0] - 1 :]
        return cls(
            rows=rows,
            end=end,
            last=float(lost_given[-1]),
            by_new=by_new,
        )

    def lost(self, new_pmf: FloatArray, dialing: _Dialing, mean: float) -> tuple[float, float]:
        """Bounds on E[lost] with these new calls' answers; `mean`: E[answers to come]."""
        x = min(new_pmf.shape[0], self.rows)
        inside = float(np.dot(new_pmf[:x], self.by_new[:x]))
        edge = self.rows - 1
        beyond = 1.0 - dialing.at_most(new_pmf, edge)
        if beyond <= 0.0:
            return inside, inside
        # E[(M - edge)^+] = E[M] - edge + E[(edge - M)^+]
        excess = max(0.0, mean - edge + dialing.below(new_pmf, edge))
        low = inside + beyond * self.last
        return low, low + excess


def poisson_binomial(step_probs: FloatArray) -> FloatArray:
    """pmf[k, x]: P(x of the rows' events fall in column k), rows independent Bernoullis.

    The product of the rows' generating polynomials (1 - q + q z): multiplied pairwise while
    they are short, then all at once through their spectra (one FFT long enough for the
    product). Exact but for rounding, about 1e-16 of the largest probability.
    """
    rows, k = step_probs.shape
    polys = np.stack([1.0 - step_probs, step_probs], axis=-1).clip(0.0, 1.0)
    while polys.shape[0] > 64 or (polys.shape[0] > 8 and polys.shape[2] <= 8):
        if polys.shape[0] % 2:
            identity = np.zeros((1, k, polys.shape[2]))
            identity[..., 0] = 1.0
            polys = np.concatenate([polys, identity])
        a, b = polys[0::2], polys[1::2]
        width = a.shape[2]
        product = np.zeros((*a.shape[:2], 2 * width - 1))
        for j in range(width):
            product[..., j : j + width] += a[..., j : j + 1] * b
        polys = product
    if polys.shape[0] > 1:
        size = 1 << rows.bit_length()  # more than rows + 1 coefficients: no wrap-around
        spectrum = np.prod(np.fft.rfft(polys, size, axis=-1), axis=0)
        polys = np.fft.irfft(spectrum, size, axis=-1)[None]
    if rows == 0:
        return np.ones((k, 1))
    pmf: FloatArray = np.clip(polys[0, :, : rows + 1], 0.0, 1.0)
    return pmf


class _Odds:
    """The new calls' answer probabilities in the order they would be placed, worked out as
    far as they are asked for (a function given is asked for twice as many each time)."""

    def __init__(self, p_answer: float | FloatArray | Callable[[int], FloatArray], n: int):
        self._n = n
        self._source = p_answer if callable(p_answer) else None
        self._known = np.zeros(0) if callable(p_answer) else _per_call(p_answer, n)
        self._sums = np.concatenate([[0.0], np.cumsum(self._known)])

    def first(self, n: int) -> FloatArray:
        """Those of the first n calls."""
        if n > self._known.shape[0] and self._source is not None:
            want = min(self._n, max(n, 2 * self._known.shape[0], 16))
            self._known = _per_call(self._source(want), want)
            self._sums = np.concatenate([[0.0], np.cumsum(self._known)])
        return self._known[:n]

    def expected(self, n: int) -> float:
        """The answers expected of the first n calls."""
        self.first(n)
        return float(self._sums[n])


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


def _hazards(timing: FloatArray) -> FloatArray:
    """P(answered in interval k | eventually answered and not answered before k)."""
    before = np.concatenate([[0.0], np.cumsum(timing)[:-1]])
    left = 1.0 - before
    hazard: FloatArray = np.where(left > 1e-12, timing / np.maximum(left, 1e-12), 0.0)
    return np.clip(hazard, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class _Floor:
    """What the recursion needs of the floor (see `_lost_given_pending`)."""

    ready: int
    waiting: int
    pool_cap: int
    frees: FloatArray  # [k, x]: P(x busy operators freed in interval k)
    hazard: FloatArray


def _lost_given_pending(floor: _Floor, *, end: int, rows: int) -> FloatArray:
    """E[answered calls that find no operator | r calls still to be answered], r < `rows`.

    A backward recursion over the grid on V_k(pool, r), the expected number lost from interval
    k on with `pool` idle operators and r calls still to be answered. In each interval the
    operators freed join the pool (which holds at most `pool_cap`, the operators logged in),
    then a Binomial(r, hazard_k) number of calls is answered and takes operators from the pool;
    those that find none are lost: V_k(q, r) = E[(a - q)^+ + V_k+1((q - a)^+, r - a)].
    Interval 0 is "now": the ready operators and the waiting calls; past interval `end` the
    calls still to come are settled against the pool as it is (`_last_interval`).

    The table is kept by r and d = r - pool, the calls to come beyond the idle operators: V is
    0 for d <= 0; answers leave d alone while the pool lasts (d' = min(d, r - a), and d - d'
    are lost); freed operators lower it. So each interval is two matrix products: the binomial
    thinning of r, then the frees' convolution along d. In interval k no more calls can still
    be waiting for their answer than the 1 - 1e-12 quantile of those left from `rows - 1`, so
    the table is cut there. And d only ever falls: the ready operators left after the waiting
    calls bound it from the start, and the columns stop there.
    """
    ready, waiting, pool_cap = floor.ready, floor.waiting, floor.pool_cap
    frees, hazard = floor.frees, floor.hazard
    columns = rows - max(0, ready - waiting)
    if columns <= 1:
        return np.zeros(rows)  # more idle operators than calls to come: nothing is lost
    counts = _counts(64 * -(-rows // 64))
    count, beyond, upper = counts.count[:rows], counts.beyond, counts.upper
    log_choose = _log_choose(rows) if counts.choose is None else None
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, rows + 1)))])
    survival = np.clip(np.concatenate([[1.0], 1.0 - np.cumsum(_hazard_mass(hazard))]), 0.0, 1.0)
    caps = _survivor_caps(rows - 1, survival[: end + 1], log_fact).tolist()
    width = frees.shape[1]
    # value[r, d] for d > r stands for an empty pool with d - r calls lost already: V(r, r) +
    # d - r. Answers keep that true (every one of those r calls finds the pool empty too), so
    # value[u, d] is also what follows u calls still to come after answers, whatever d; the
    # table keeps, from the start, as many columns as the widest interval needs.
    wide = min(caps[1] + 1 if end >= 1 else 1, columns)
    n = caps[end] + 1
    value: FloatArray = np.broadcast_to(count[:wide] * 1.0, (n, wide)).copy()  # all lost: d
    # Small tables: every interval's matrices in a few array operations (each numpy call has
    # its own cost, which small matrices do not cover); large ones: interval by interval.
    tall = caps[1] + 1 if end >= 1 else 1
    batch = end * tall * tall <= _BATCH
    if batch:
        thinnings = _thinnings(hazard[1 : end + 1], tall, counts, log_choose)
        joins = _joins(frees[1 : end + 1], min(tall, columns), counts)
    for k in range(end, 0, -1):
        n = caps[k] + 1
        m = min(n, value.shape[0])
        c = min(n, columns)
        if batch:
            thinning = thinnings[k - 1, :n, :m]
        else:
            thinning = _thinnings(hazard[k : k + 1], n, counts, log_choose)[0, :, :m]
        answered = _product(thinning, value[:m, :c])
        if pool_cap < n - 1:
            # The pool cannot grow past the operators logged in: d never falls below r - cap.
            lowest = np.minimum(np.maximum(count[:n] - pool_cap, 0), c - 1)
            edge = answered[count[:n], lowest]
            answered = np.where(count[:c] < lowest[:, None], edge[:, None], answered)
        join = joins[k - 1, :c, :c] if batch else _joins(frees[k : k + 1], c, counts)[0]
        value = np.empty((n, wide))
        _product(answered, join, out=value[:, :c])
        empty = np.zeros((n, 1))
        empty[:c, 0] = value.diagonal()[:c]
        np.add(empty, beyond[:n, :wide], out=value, where=upper[:n, :wide])
    pool = np.minimum(ready + np.arange(width), pool_cap)
    lost_now = np.maximum(waiting - pool, 0).astype(np.float64)
    left = np.maximum(pool - waiting, 0)
    r = np.minimum(count, value.shape[0] - 1)
    d = r[None, :] - left[:, None]
    later = np.where(d > 0, value[r[None, :], np.clip(d, 0, value.shape[1] - 1)], 0.0)
    result: FloatArray = (frees[0][:, None] * (lost_now[:, None] + later)).sum(axis=0)
    return result


@dataclass(frozen=True, slots=True)
class _Counts:
    """Tables that depend only on how many calls a table follows (read-only; sliced)."""

    count: IntArray  # 0 .. size - 1
    gap: IntArray  # [r, u]: r - u
    beyond: FloatArray  # [r, d]: d - r where positive, else 0
    upper: BoolArray  # [r, d]: d > r
    below: IntArray  # [r, u]: r - u where u <= r, else size (an index to a zero)
    ahead: IntArray  # [d', d]: d - d' where d' <= d, else size
    choose: FloatArray | None  # [r, u]: C(r, u), 0 where u > r; None past `_EXACT_CHOOSE`


@functools.lru_cache(maxsize=4)
def _counts(size: int) -> _Counts:
    count = np.arange(size)
    gap = count[:, None] - count[None, :]
    beyond = np.maximum(-gap, 0).astype(np.float64)
    choose = np.where(gap >= 0, np.exp(_log_choose(size)), 0.0) if size <= _EXACT_CHOOSE else None
    tables = _Counts(
        count=count,
        gap=gap,
        beyond=beyond,
        upper=beyond > 0,
        below=np.where(gap >= 0, gap, size),
        ahead=np.where(gap <= 0, -gap, size),
        choose=choose,
    )
    for table in (count, gap, beyond, tables.upper, tables.below, tables.ahead, choose):
        if table is not None:
            table.setflags(write=False)
    return tables


def _log_choose(rows: int) -> FloatArray:
    """log C(r, u) for r, u < rows (meaningless where u > r)."""
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, rows)))])
    count = np.arange(rows)
    table: FloatArray = (
        log_fact[:, None] - log_fact[None, :] - log_fact[np.abs(count[:, None] - count)]
    )
    return table


def _thinnings(
    hazard: FloatArray, size: int, counts: _Counts, log_choose: FloatArray | None
) -> FloatArray:
    """[k, r, u]: P(u of r calls still to come after interval k), Binomial(r, 1 - hazard[k]):
    C(r, u) (1 - h)^u h^(r - u) for r, u < `size` (by logarithms past `_EXACT_CHOOSE`)."""
    h = np.clip(hazard, 0.0, 1.0)[:, None]
    if counts.choose is not None:
        # h^(r - u) gathered by r - u (a zero above the diagonal), then the other factors.
        powers = np.zeros((h.shape[0], counts.count.shape[0] + 1))
        powers[:, :size] = h ** counts.count[:size]
        table = powers[:, counts.below[:size, :size]]
        table *= counts.choose[:size, :size]
        table *= ((1.0 - h) ** counts.count[:size])[:, None, :]
        return table
    assert log_choose is not None
    steps = counts.gap[:size, :size]
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = log_choose[None, :size, :size] + steps * np.log(h)[:, :, None]
        logp += counts.count[:size] * np.log1p(-h)[:, :, None]
    result: FloatArray = np.where((steps >= 0) & np.isfinite(logp), np.exp(logp), 0.0)
    return result


def _joins(frees: FloatArray, size: int, counts: _Counts) -> FloatArray:
    """[k, d', d]: P(d - d' freed in interval k), and from d' = 0 (a pool of r or more, where
    nothing is lost) P(d or more freed); d', d < `size`."""
    width = min(size, frees.shape[1])
    padded = np.zeros((frees.shape[0], counts.count.shape[0] + 1))
    padded[:, :width] = frees[:, :width]
    table = padded[:, counts.ahead[:size, :size]]
    table[:, 0, :] = np.cumsum(padded[:, ::-1], axis=1)[:, ::-1][:, :size]
    return table


def _product(a: FloatArray, b: FloatArray, out: FloatArray | None = None) -> FloatArray:
    """a @ b, in row blocks small enough that OpenBLAS runs each on the calling thread."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]))
    block = max(1, _ONE_THREAD // max(1, a.shape[1] * b.shape[1]))
    for i in range(0, a.shape[0], block):
        np.matmul(a[i : i + block], b, out=out[i : i + block])
    return out


def _last_interval(hazard: FloatArray, top: int) -> int:
    """The last interval the recursion follows answers through.

    Once fewer than 1e-3 of `top` calls are expected still to be answered, the rest is settled
    at once: they may use the operators already idle and no others (an over-estimate).
    """
    survival = np.concatenate([[1.0], 1.0 - np.cumsum(_hazard_mass(hazard))])
    survival = np.clip(survival, 0.0, 1.0)
    live = np.flatnonzero((top * survival[: hazard.shape[0]] >= 1e-3) & (hazard > 1e-12))
    return int(live[-1]) if live.size else 0


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
