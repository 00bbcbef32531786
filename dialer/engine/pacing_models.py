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
  that long (an empirical survival estimate).

All three are plain state: no clock, no randomness, memory bounded by `max_samples`.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["AnswerRateModel", "DurationModel", "HandleTimeModel", "norm_cdf"]

FloatArray = npt.NDArray[np.float64]

_STD_NORMAL: Final = NormalDist()
_PRIOR_POINTS: Final = 40


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
        self._dirty = False

    def free_within(self, phase: str, elapsed_s: float) -> FloatArray:
        """P(free within each horizon), given the phase and the time since the call started."""
        if phase == "ringing":
            bucket = 0
        else:
            bucket = int(elapsed_s // self._step)
        key = (phase, bucket)
        cached = self._cache.get(key)
        if cached is None:
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
