"""What the predictive pacer learns from a campaign's own calls, each with a prior for a cold start.

- `AnswerRateModel`: the probability that a call is answered by a live person, by hour of day.
  Counts decay exponentially (recent attempts weigh more); each hour's estimate is a Beta
  posterior whose prior is centred on the all-hours estimate, so an hour with few attempts
  shrinks to the campaign's recent answer rate.
- `DurationModel`: the distribution of a duration, such as the time from originate to answer of
  answered calls (or to failure of the others): the empirical distribution of the recent
  samples blended with a lognormal prior worth `prior_weight` samples.
- `HandleTimeModel`: the joint distribution of (talk, wrap-up) from finished calls, blended with
  a lognormal prior, answering "what is the probability that an operator in this phase, this
  far into the call, is free within h seconds?" by conditioning on the call having lasted
  that long (an empirical survival estimate), and "how many of these busy operators are
  freed between one horizon and the next?" (`freed`).

All three are plain state: no clock, no randomness, memory bounded by `max_samples`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final

import numpy as np
import numpy.typing as npt

from dialer.engine.pacing import BusyOperator

__all__ = ["AnswerRateModel", "DurationModel", "FreedOperators", "HandleTimeModel", "norm_cdf"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_STD_NORMAL: Final = NormalDist()
_PRIOR_POINTS: Final = 40
# The FFT behind `HandleTimeModel.freed` is long enough that more frees in one interval have
# less than this chance (a Chernoff bound): an order under where the risk arithmetic cuts.
_FOLDED_TAIL: Final = 1e-13


def _decay(dt: float, half_life_s: float) -> float:
    # Out-of-order stamps (dt < 0) are treated as simultaneous rather than amplified.
    return math.exp(-math.log(2.0) * max(0.0, dt) / half_life_s)


def _lognormal_quantiles(median: float, sigma: float, points: int) -> FloatArray:
    z = [_STD_NORMAL.inv_cdf((i + 0.5) / points) for i in range(points)]
    return np.asarray([median * math.exp(sigma * v) for v in z], dtype=np.float64)


class AnswerRateModel:
    """Live-answer probability by hour of day: decayed counts and a Beta prior."""

    def __init__(
        self,
        *,
        prior_rate: float,
        prior_strength: float,
        hour_prior_strength: float,
        recent_half_life_s: float,
        hourly_half_life_s: float,
    ) -> None:
        self._a0 = prior_rate * prior_strength
        self._b0 = (1 - prior_rate) * prior_strength
        self._hour_k = hour_prior_strength
        self._recent_hl = recent_half_life_s
        self._hourly_hl = hourly_half_life_s
        self._answered = 0.0
        self._attempts = 0.0
        self._hour_answered: FloatArray = np.zeros(24)
        self._hour_attempts: FloatArray = np.zeros(24)
        self._stamp: float | None = None

    def record(self, now: float, hour_of_day: int, answered: bool) -> None:
        """One finished attempt at `now`, in campaign-local hour `hour_of_day`."""
        if self._stamp is not None:
            recent = _decay(now - self._stamp, self._recent_hl)
            hourly = _decay(now - self._stamp, self._hourly_hl)
            self._answered *= recent
            self._attempts *= recent
            self._hour_answered *= hourly
            self._hour_attempts *= hourly
        self._stamp = now if self._stamp is None else max(self._stamp, now)
        hit = 1.0 if answered else 0.0
        self._answered += hit
        self._attempts += 1.0
        self._hour_answered[hour_of_day] += hit
        self._hour_attempts[hour_of_day] += 1.0

    @property
    def attempts(self) -> float:
        """The decayed number of attempts behind the all-hours estimate."""
        return self._attempts

    def estimate(self, now: float, hour_of_day: int) -> tuple[float, float]:
        """Posterior mean and standard deviation of the answer probability for the hour."""
        recent = hourly = 1.0
        if self._stamp is not None:
            recent = _decay(now - self._stamp, self._recent_hl)
            hourly = _decay(now - self._stamp, self._hourly_hl)
        answered = self._answered * recent
        attempts = self._attempts * recent
        p_all = (answered + self._a0) / (attempts + self._a0 + self._b0)
        # The hour's prior can be no surer than the evidence behind the all-hours estimate.
        k = min(self._hour_k, attempts + self._a0 + self._b0)
        a_h = float(self._hour_answered[hour_of_day]) * hourly
        n_h = float(self._hour_attempts[hour_of_day]) * hourly
        alpha = k * p_all + a_h
        beta = k * (1 - p_all) + (n_h - a_h)
        total = alpha + beta
        mean = alpha / total
        sd = math.sqrt(alpha * beta / (total * total * (total + 1)))
        return mean, sd


class DurationModel:
    """A duration (e.g. time to answer): recent samples blended with a lognormal prior.

    `cdf(t)` = (samples <= t + `prior_weight` * lognormal CDF(t)) / (samples + `prior_weight`).
    """

    def __init__(
        self, *, prior_median_s: float, prior_sigma: float, prior_weight: float, max_samples: int
    ) -> None:
        self._mu = math.log(prior_median_s)
        self._sigma = prior_sigma
        self._w0 = prior_weight
        self._buf: FloatArray = np.zeros(max_samples)
        self._count = 0
        self._next = 0
        self._sorted: FloatArray | None = None

    @property
    def samples(self) -> int:
        """Samples held (at most `max_samples`, the most recent)."""
        return self._count

    def record(self, duration_s: float) -> None:
        """One observed duration."""
        self._buf[self._next] = max(0.0, duration_s)
        self._next = (self._next + 1) % self._buf.shape[0]
        self._count = min(self._count + 1, self._buf.shape[0])
        self._sorted = None

    def cdf(self, t_s: FloatArray) -> FloatArray:
        """P(duration <= t), element-wise, for an array of any shape."""
        t = np.asarray(t_s, dtype=np.float64)
        with np.errstate(divide="ignore"):
            z = (np.log(np.maximum(t, 0.0)) - self._mu) / self._sigma
        prior = norm_cdf(z)
        if self._count == 0:
            return prior
        if self._sorted is None:
            self._sorted = np.sort(self._buf[: self._count])
        seen = np.searchsorted(self._sorted, t, side="right").astype(np.float64)
        result: FloatArray = (seen + self._w0 * prior) / (self._count + self._w0)
        return result


def norm_cdf(z: FloatArray) -> FloatArray:
    """The standard normal CDF, element-wise (Abramowitz & Stegun 7.1.26, error < 1.5e-7)."""
    x = np.abs(np.asarray(z, dtype=np.float64)) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-x * x)
    result: FloatArray = 0.5 * (1.0 + np.sign(z) * erf)
    return result


class HandleTimeModel:
    """(talk, wrap-up) samples and a prior; free-by probabilities conditioned on elapsed time.

    `free_within(phase, elapsed_s)` answers, for each horizon h given at construction,
    P(talk + wrap-up <= elapsed + h | what is known at `elapsed`): for ``talking`` that the talk
    has lasted `elapsed` (talk > elapsed), for ``wrap-up`` that the talk ended and the wrap-up
    has not (talk <= elapsed < talk + wrap-up), and for ``ringing`` nothing (the call has not
    started). Results are cached per phase and `elapsed_step_s` of elapsed time until `rebuild`
    takes in new samples.

    `freed(busy)` groups operators by that cache's key and gives, for each interval between
    consecutive horizons, the distribution of the number freed in it: a Poisson-binomial sum
    of one Bernoulli per operator, by its characteristic function (the operators' generating
    functions at the roots of unity, multiplied as a weighted sum of logarithms, then one
    inverse FFT). Each key's logarithms are cached with its row, so a decision costs one
    weighted sum over the keys in use.
    """

    def __init__(
        self,
        *,
        horizons_s: FloatArray,
        prior_talk_median_s: float,
        prior_talk_sigma: float,
        prior_wrapup_median_s: float,
        prior_wrapup_sigma: float,
        prior_weight: float,
        max_samples: int,
        elapsed_step_s: float = 2.0,
    ) -> None:
        self._horizons = np.asarray(horizons_s, dtype=np.float64)
        talk = _lognormal_quantiles(prior_talk_median_s, prior_talk_sigma, _PRIOR_POINTS)
        wrap = _lognormal_quantiles(prior_wrapup_median_s, prior_wrapup_sigma, _PRIOR_POINTS)
        # Pair the quantiles in a scrambled order so talk and wrap-up are not comonotone.
        wrap = wrap[(np.arange(_PRIOR_POINTS) * 17) % _PRIOR_POINTS]
        self._prior_talk = talk
        self._prior_end = talk + wrap
        self._prior_w = np.full(_PRIOR_POINTS, prior_weight / _PRIOR_POINTS)
        self._talk: FloatArray = np.zeros(max_samples)
        self._end: FloatArray = np.zeros(max_samples)
        self._count = 0
        self._next = 0
        self._step = elapsed_step_s
        self._dirty = True
        self._all_talk: FloatArray = self._prior_talk
        self._all_end: FloatArray = self._prior_end
        self._all_w: FloatArray = self._prior_w
        self._mean_end = float(np.average(self._prior_end, weights=self._prior_w))
        self._cache: dict[tuple[str, int], FloatArray] = {}
        self._generating = _GeneratingFunctions()
        self.rebuild()

    @property
    def samples(self) -> int:
        """Finished calls held (at most `max_samples`, the most recent)."""
        return self._count

    @property
    def stale(self) -> bool:
        """Whether samples arrived since the last `rebuild`."""
        return self._dirty

    def record(self, talk_s: float, wrapup_s: float) -> None:
        """One finished call: its talk and wrap-up times."""
        talk = max(0.0, talk_s)
        self._talk[self._next] = talk
        self._end[self._next] = talk + max(0.0, wrapup_s)
        self._next = (self._next + 1) % self._talk.shape[0]
        self._count = min(self._count + 1, self._talk.shape[0])
        self._dirty = True

    def rebuild(self) -> None:
        """Take in the samples recorded since the last rebuild (and drop the cached answers)."""
        if not self._dirty:
            return
        talk = np.concatenate([self._talk[: self._count], self._prior_talk])
        end = np.concatenate([self._end[: self._count], self._prior_end])
        w = np.concatenate([np.ones(self._count), self._prior_w])
        order = np.argsort(end, kind="stable")
        self._all_talk, self._all_end, self._all_w = talk[order], end[order], w[order]
        self._mean_end = float(np.average(end, weights=w))
        self._cache.clear()
        self._generating.clear()
        self._dirty = False

    def free_within(self, phase: str, elapsed_s: float) -> FloatArray:
        """P(free within each horizon), given the phase and the time since the call started."""
        return self._row((phase, 0 if phase == "ringing" else int(elapsed_s // self._step)))

    def freed(self, busy: Iterable[BusyOperator]) -> FreedOperators:
        """These operators' `free_within` rows, once per distinct row, and how many are freed.

        `per_interval[k, x]` is the probability that x of them become free between horizon
        k - 1 and horizon k (k = 0: within the first), each operator independently.
        """
        counts: dict[tuple[str, int], int] = {}
        step = self._step
        for b in busy:
            key = (b.phase, 0 if b.phase == "ringing" else int(b.elapsed_s // step))
            counts[key] = counts.get(key, 0) + 1
        keys = list(counts)
        many = np.fromiter(counts.values(), dtype=np.int64, count=len(keys))
        cache = self._cache
        rows = np.array([cache[k] if k in cache else self._row(k) for k in keys])
        rows = rows.reshape(len(keys), self._horizons.shape[0])
        steps = np.clip(np.diff(rows, axis=1, prepend=0.0), 0.0, 1.0)
        per_interval = self._generating.counts(keys, steps, many)
        return FreedOperators(free_by=rows, counts=many, per_interval=per_interval)

    def _row(self, key: tuple[str, int]) -> FloatArray:
        cached = self._cache.get(key)
        if cached is None:
            phase, bucket = key
            elapsed = 0.0 if phase == "ringing" else (bucket + 0.5) * self._step
            cached = self._free_within(phase, elapsed)
            self._cache[key] = cached
        return cached

    def _free_within(self, phase: str, elapsed: float) -> FloatArray:
        talk, end, w = self._all_talk, self._all_end, self._all_w
        if phase == "wrap-up":
            alive = (talk <= elapsed) & (end > elapsed)
        else:
            alive = talk > elapsed
        ends = end[alive]
        weights = w[alive]
        total = float(weights.sum())
        if total < 1e-9:
            # Longer than anything seen: assume a memoryless remainder of an average call.
            return 1.0 - np.exp(-self._horizons / self._mean_end)
        cum = np.concatenate([[0.0], np.cumsum(weights)])
        idx = np.searchsorted(ends, elapsed + self._horizons, side="right")
        result: FloatArray = cum[idx] / total
        return result


@dataclass(frozen=True, slots=True)
class FreedOperators:
    """Busy operators as distinct `free_within` rows, and how many are freed per interval."""

    free_by: FloatArray  # [i, k]: P(an operator of row i is free within horizon k)
    counts: IntArray  # operators behind each row
    per_interval: FloatArray  # [k, x]: P(x of them are freed in interval k)


class _GeneratingFunctions:
    """Per key, log(1 - q + q z) of each interval's free probability q at the FFT's roots.

    Operators freed in an interval are a sum of Bernoullis: its generating function is the
    product of theirs, so the logarithms of the keys in use are summed, weighted by how many
    operators share each key, and one inverse FFT gives the distribution. The FFT is long
    enough that more frees in an interval have less than `_FOLDED_TAIL` chance; a key's
    logarithms stay until the rows behind them change (`clear`) or the length does.
    """

    def __init__(self) -> None:
        self._size = 0
        self._rows: dict[tuple[str, int], int] = {}
        self._table: FloatArray = np.zeros((0, 0))
        # The last sum and its weights: the next decision adds only the keys that changed.
        self._weights: FloatArray = np.zeros(0)
        self._total: FloatArray = np.zeros(0)
        self._updates = 0

    def clear(self) -> None:
        self._rows.clear()
        self._weights = np.zeros(0)

    def counts(self, keys: list[tuple[str, int]], steps: FloatArray, many: IntArray) -> FloatArray:
        """[k, x]: P(x freed in interval k); `steps[i, k]`: key i's chance, `many[i]` its
        operators."""
        intervals = steps.shape[1]
        size = _fft_size(float((many @ steps).max(initial=0.0)), int(many.sum()))
        if size > self._size or 4 * size <= self._size:
            self._size = size
            self.clear()
        if len(self._rows) > 2 * len(keys) + 256:
            self.clear()  # keys of calls long finished
        size = self._size
        width = 2 * intervals * (size // 2 + 1)
        if not self._rows:
            self._table = np.zeros((len(keys), width))
        missing = [i for i, k in enumerate(keys) if k not in self._rows]
        if missing:
            start = len(self._rows)
            if start + len(missing) > self._table.shape[0]:
                grown = np.zeros((2 * (start + len(missing)), width))
                grown[:start] = self._table[:start]
                self._table = grown
            self._table[start : start + len(missing)] = _log_generating(steps[missing], size)
            for j, i in enumerate(missing):
                self._rows[keys[i]] = start + j
        used = len(self._rows)
        weights = np.zeros(used)
        weights[[self._rows[k] for k in keys]] = many
        change = weights.copy()
        change[: self._weights.shape[0]] -= self._weights
        changed = np.flatnonzero(change)
        # einsum rather than @: a long matrix-vector product would wake OpenBLAS's threads.
        if self._weights.shape[0] and self._updates < 64 and 4 * changed.shape[0] < used:
            step = np.einsum("i,ij->j", change[changed], self._table[changed])
            total = self._total + step
            self._updates += 1
        else:
            total = np.einsum("i,ij->j", weights, self._table[:used])
            self._updates = 0
        self._weights, self._total = weights, total
        magnitude, angle = total.reshape(2, intervals, size // 2 + 1)
        spectrum = np.exp(magnitude) * (np.cos(angle) + 1j * np.sin(angle))
        pmf: FloatArray = np.clip(np.fft.irfft(spectrum, size), 0.0, 1.0)
        return pmf


def _fft_size(most_expected: float, operators: int) -> int:
    """A power of two above the frees any interval can see, bar a `_FOLDED_TAIL` chance.

    `most_expected` is the largest expected count over the intervals; P(X >= x) <=
    exp(-mu) (e mu / x)^x for a sum of Bernoullis with mean mu < x.
    """
    size = 16
    while size <= operators:
        if most_expected < size and (
            most_expected <= 0
            or size * (1 + math.log(most_expected / size)) - most_expected <= math.log(_FOLDED_TAIL)
        ):
            break
        size *= 2
    return size


def _log_generating(steps: FloatArray, size: int) -> FloatArray:
    """log(1 - q + q z) at z = exp(-2 pi i j / size), j = 0 .. size / 2, per row of `steps`.

    Rows come out flat: the real parts of every interval, then the imaginary parts (the
    angles). A generating function that vanishes there (q = 1/2 at z = -1) gets -1000,
    which the sum and the exponential turn back into nothing.
    """
    theta = 2.0 * np.pi * np.arange(size // 2 + 1) / size
    q = steps[:, :, None]
    with np.errstate(divide="ignore"):
        magnitude = 0.5 * np.log1p(-2.0 * q * (1.0 - q) * (1.0 - np.cos(theta)))
    angle = np.arctan2(-q * np.sin(theta), 1.0 - q + q * np.cos(theta))
    flat: FloatArray = np.concatenate([np.maximum(magnitude, -1000.0), angle], axis=1)
    return flat.reshape(steps.shape[0], -1)
