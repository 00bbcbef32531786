"""How likely a customer is to answer, given how old their order is: what the pacer learns.

A customer who ordered a minute ago still has the phone in their hand; one who ordered last
night has moved on. When a calling window opens on a night's orders, the calls placed are far
less likely to be answered than those placed in the afternoon on fresh orders, and a pacer
that only knows "the answer rate at this hour" dials too few calls into the old orders (and
too many once the fresh ones come back). So the predictive pacer learns the answer
probability as a function of the order's age when it is dialled:

    p(age, hour) = r_hour * p0 * 2 ** (-age / H)

- `p0` (the answer probability of a fresh order) and `H` (the age at which it has halved) have
  a joint posterior on a grid: p0 on 100 points of (0, 1), H on 48 points from 5 minutes to
  14 days, plus "no fading at all". The prior is Beta(`prior_rate` x `prior_strength`, ...) on
  p0 and, on H, `prior_no_decay` on "no fading" with the rest spread evenly over the log
  grid: until the data say otherwise, age changes nothing. The likelihood counts the attempts
  in 70 age buckets (each 15 % wider than the last), with exponential forgetting
  (`hourly_half_life_s`); an unanswered attempt is counted at its bucket's mean age, an
  answered one at its exact age.
- `r_hour` takes what the age curve does not explain: answers in this hour of the day over the
  answers the curve expects of the same attempts, a Gamma posterior whose prior is centred on
  the same ratio over the last hour (`recent_half_life_s`), with the weight of
  `hour_prior_strength` attempts; the last hour's ratio is itself shrunk to 1.

`estimate` returns, for each age, the posterior mean and standard deviation of p (both
factors' uncertainty). `DialledAges` pairs each finished attempt with the age its order had
when dialled, from what the engine's snapshots say about the calls dialing.

Plain state: no clock, no randomness, memory fixed by the grids.
"""

from __future__ import annotations

import bisect
import math
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from dialer.engine.pacing import PacingSnapshot

__all__ = ["AGE_EDGES_S", "HALF_LIVES_S", "AgeAnswerModel", "DialledAges", "Finished"]

FloatArray = npt.NDArray[np.float64]

_LN2: Final = math.log(2.0)
# Age buckets: under a minute, then each 15 % wider than the last, up to a week, then the rest.
AGE_EDGES_S: Final = np.concatenate([[0.0], 60.0 * 1.15 ** np.arange(0, 68), [np.inf]])
# Half-lives on the grid: 5 minutes to 14 days; "no fading" is the extra last column.
HALF_LIVES_S: Final = np.geomspace(300.0, 14 * 86400.0, 48)
_P0: Final = (np.arange(100) + 0.5) / 100


def _decay(dt: float, half_life_s: float) -> float:
    return math.exp(-_LN2 * max(0.0, dt) / half_life_s)


class AgeAnswerModel:
    """Live-answer probability by the lead's age and the hour; see the module docstring."""

    def __init__(
        self,
        *,
        prior_rate: float,
        prior_strength: float,
        prior_no_decay: float,
        hour_prior_strength: float,
        recent_half_life_s: float,
        hourly_half_life_s: float,
    ) -> None:
        if not 0 < prior_no_decay < 1:
            raise ValueError("prior_no_decay must be in (0, 1)")
        buckets = AGE_EDGES_S.shape[0] - 1
        self._recent_hl = recent_half_life_s
        self._hourly_hl = hourly_half_life_s
        self._hour_k = hour_prior_strength
        self._ratio_k = prior_strength
        # Per hour of day and age bucket: attempts, answers, sum of ages, sum of answered ages.
        self._n: FloatArray = np.zeros((24, buckets))
        self._y: FloatArray = np.zeros((24, buckets))
        self._age: FloatArray = np.zeros((24, buckets))
        self._age_y: FloatArray = np.zeros((24, buckets))
        # The same over all hours, forgotten faster, for the last hour's ratio.
        self._recent_n: FloatArray = np.zeros(buckets)
        self._recent_y: FloatArray = np.zeros(buckets)
        self._stamp: float | None = None
        self._dirty = True
        a0, b0 = prior_rate * prior_strength, (1 - prior_rate) * prior_strength
        self._log_prior_p0 = (a0 - 1) * np.log(_P0) + (b0 - 1) * np.log1p(-_P0)
        spread = (1 - prior_no_decay) / HALF_LIVES_S.shape[0]
        self._log_prior_h = np.log(
            np.append(np.full(HALF_LIVES_S.shape[0], spread), prior_no_decay)
        )
        self._rates = np.append(_LN2 / HALF_LIVES_S, 0.0)  # decay per second of age
        # The fit: per half-life column, its posterior weight and E[p0], E[p0^2] given it.
        self._weight: FloatArray = np.zeros(self._rates.shape[0])
        self._m1: FloatArray = np.zeros(self._rates.shape[0])
        self._m2: FloatArray = np.zeros(self._rates.shape[0])
        self._expected: FloatArray = np.zeros(buckets)
        self._used_rates: FloatArray = self._rates
        self._used_first: FloatArray = self._m1
        self._used_second: FloatArray = self._m2
        self.fit()

    @property
    def attempts(self) -> float:
        """The forgotten-in-part number of attempts with a known age behind the fit."""
        return float(self._n.sum()) * self._decayed(self._stamp, self._hourly_hl)

    @property
    def stale(self) -> bool:
        """Whether attempts were recorded since the last `fit`."""
        return self._dirty

    def record(self, now: float, hour_of_day: int, age_s: float, answered: bool) -> None:
        """One finished attempt at `now`, on an order `age_s` old when it was dialled."""
        if self._stamp is not None:
            hourly = _decay(now - self._stamp, self._hourly_hl)
            recent = _decay(now - self._stamp, self._recent_hl)
            for table in (self._n, self._y, self._age, self._age_y):
                table *= hourly
            for row in (self._recent_n, self._recent_y):
                row *= recent
        self._stamp = now if self._stamp is None else max(self._stamp, now)
        age = max(0.0, age_s)
        b = int(np.searchsorted(AGE_EDGES_S, age, side="right")) - 1
        hit = 1.0 if answered else 0.0
        self._n[hour_of_day, b] += 1.0
        self._y[hour_of_day, b] += hit
        self._age[hour_of_day, b] += age
        self._age_y[hour_of_day, b] += hit * age
        self._recent_n[b] += 1.0
        self._recent_y[b] += hit
        self._dirty = True

    def fit(self) -> None:
        """Recompute the posterior of (p0, H) from the attempts recorded so far."""
        n, y = self._n.sum(axis=0), self._y.sum(axis=0)
        seen = n > 1e-9
        mean_age = self._age.sum(axis=0)[seen] / n[seen]
        misses = (n - y)[seen]
        # log-likelihood[h, p0]: answered ones at their exact ages, the others at the mean age
        g = np.exp(-np.outer(self._rates, mean_age))  # (H, buckets)
        miss = np.log1p(-np.clip(_P0[None, :, None] * g[:, None, :], 0.0, 1 - 1e-12))
        loglik = (
            float(y.sum()) * np.log(_P0)[None, :]
            - self._rates[:, None] * float(self._age_y.sum())
            + miss @ misses
        )
        post = loglik + self._log_prior_p0[None, :] + self._log_prior_h[:, None]
        post = np.exp(post - post.max())
        post /= post.sum()
        self._weight = post.sum(axis=1)
        safe = np.maximum(self._weight, 1e-300)
        self._m1 = (post @ _P0) / safe
        self._m2 = (post @ (_P0 * _P0)) / safe
        # The half-lives that can move p at all: a column whose share of the posterior
        # moments is under 1e-18 changes no probability by more than 1e-16, at any age.
        first, second = self._weight * self._m1, self._weight * self._m2
        used = (first > 1e-18 * first.sum()) | (second > 1e-18 * second.sum())
        self._used_rates = self._rates[used]
        self._used_first, self._used_second = first[used], second[used]
        # What the curve expects of an attempt in each bucket, at the bucket's mean age so far.
        typical = self._bucket_ages(n, self._age.sum(axis=0))
        self._expected = self.curve(typical)[0]
        self._dirty = False

    def curve(self, ages_s: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Posterior mean and standard deviation of p0 * 2 ** (-age / H) at each age."""
        g = np.exp(-np.outer(np.asarray(ages_s, dtype=np.float64), self._used_rates))
        # einsum rather than @: a long matrix-vector product would wake OpenBLAS's threads.
        mean = np.einsum("ah,h->a", g, self._used_first)
        second = np.einsum("ah,h->a", g * g, self._used_second)
        return mean, np.sqrt(np.maximum(second - mean * mean, 0.0))

    def half_life_s(self) -> float:
        """The posterior median of H, in seconds (inf when "no fading" holds half the mass)."""
        at = int(np.searchsorted(np.cumsum(self._weight), 0.5))
        return float(HALF_LIVES_S[at]) if at < HALF_LIVES_S.shape[0] else math.inf

    def fresh_rate(self) -> float:
        """The posterior mean of p0, the answer probability of an order just placed."""
        return float(self._weight @ self._m1)

    def estimate(
        self, now: float, hour_of_day: int, ages_s: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Posterior mean and standard deviation of p at each age, in this hour of the day."""
        ratio, ratio_sd = self._ratio(now, hour_of_day)
        mean, sd = self.curve(ages_s)
        var = (ratio * sd) ** 2 + (ratio_sd * mean) ** 2 + (ratio_sd * sd) ** 2
        return np.minimum(ratio * mean, 1.0), np.sqrt(var)

    def _ratio(self, now: float, hour_of_day: int) -> tuple[float, float]:
        """Answers over those the curve expects: in the hour, shrunk to the last hour's."""
        recent = self._decayed(now, self._recent_hl)
        y_all = float(self._recent_y.sum()) * recent
        e_all = float(self._recent_n @ self._expected) * recent
        n_all = float(self._recent_n.sum()) * recent
        per_try = e_all / n_all if n_all > 1e-9 else self.fresh_rate()
        k0 = self._ratio_k * per_try
        ratio_all = (y_all + k0) / (e_all + k0)
        hourly = self._decayed(now, self._hourly_hl)
        y_h = float(self._y[hour_of_day].sum()) * hourly
        e_h = float(self._n[hour_of_day] @ self._expected) * hourly
        # The hour's prior can be no surer than the evidence behind the last hour's ratio.
        k = min(self._hour_k * per_try, e_all + k0)
        shape, rate = y_h + k * ratio_all, e_h + k
        return shape / rate, math.sqrt(shape) / rate

    def _decayed(self, now: float | None, half_life_s: float) -> float:
        if self._stamp is None or now is None:
            return 1.0
        return _decay(now - self._stamp, half_life_s)

    @staticmethod
    def _bucket_ages(n: FloatArray, age: FloatArray) -> FloatArray:
        mid = np.where(np.isfinite(AGE_EDGES_S[1:]), (AGE_EDGES_S[:-1] + AGE_EDGES_S[1:]) / 2, 0)
        mean: FloatArray = np.where(n > 1e-9, age / np.maximum(n, 1e-9), mid)
        return mean


class Finished(NamedTuple):
    """A finished attempt as the pacer learns from it."""

    placed_at: float  # when it was placed: the call it was paired with, else end - ring time
    hour_of_day: int  # campaign-local hour of its result
    answered: bool
    ring_s: float
    age_s: float | None  # its order's age when dialled; None when no call was paired


class DialledAges:
    """Pairs finished attempts with the ages their orders had when dialled.

    A result says only when it came, whether it was answered and how long it rang; the
    engine's snapshot lists each call dialing with its elapsed time and its order's age when
    dialled. A call that was in one snapshot and is gone from the next has finished: each
    result since the last snapshot is paired with a vanished call placed when the result says
    it was (the latest placed at or before its end minus its ring time, which allows for the
    seconds answering-machine detection adds). The calls a pacer has just decided to place
    are noted too (`placed`), so that one finishing before the next snapshot is not missed. A
    result with no such call (one placed with an operator reserved, or a snapshot without
    ages) is returned with no age.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[int, int], float] = {}
        self._results: list[Finished] = []

    def result(self, *, now: float, hour_of_day: int, answered: bool, ring_s: float) -> None:
        """An attempt finished; it is paired at the next `observe`."""
        ring_s = max(0.0, ring_s)
        self._results.append(Finished(now - ring_s, hour_of_day, answered, ring_s, None))

    def observe(self, snap: PacingSnapshot) -> list[Finished]:
        """Take in the calls dialing at `snap.now`; return the results since the last, each
        paired with its call where one is found."""
        elapsed, ages = snap.dialing_elapsed_s, snap.dialing_lead_ages_s
        current: dict[tuple[int, int], float] = {}
        if elapsed is not None and ages is not None and elapsed:
            # `_key` for every call at once (numpy rounds half to even, as `round` does).
            placed_at = snap.now - np.asarray(elapsed, dtype=np.float64)
            created_at = placed_at - np.asarray(ages, dtype=np.float64)
            keys = zip(
                np.rint(placed_at * 100).astype(np.int64).tolist(),
                np.rint(created_at * 100).astype(np.int64).tolist(),
                strict=True,
            )
            current = dict(zip(keys, ages, strict=True))
        gone = sorted(
            (key[0] / 100.0, age) for key, age in self._known.items() if key not in current
        )
        self._known = current
        starts = [at for at, _ in gone]
        paired: list[Finished] = []
        for result in sorted(self._results):
            at = bisect.bisect_right(starts, result.placed_at + 0.05) - 1
            if at < 0:
                paired.append(result)
                continue
            placed, age = gone[at]
            paired.append(result._replace(placed_at=min(placed, result.placed_at), age_s=age))
            del starts[at], gone[at]
        self._results.clear()
        return paired

    def placed(self, now: float, ages_s: tuple[float, ...]) -> None:
        """Calls about to be placed at `now` on orders this old."""
        for age in ages_s:
            self._known[_key(now, now - age)] = age


def _key(placed_at: float, created_at: float) -> tuple[int, int]:
    # Centiseconds: far finer than calls are placed, far coarser than float noise.
    return (round(placed_at * 100), round(created_at * 100))
