"""Measuring what a routing policy is worth: alternate it with a baseline and compare outcomes.

`AbSwitch` is itself a `RoutingPolicy`. Time is cut into slices (30 minutes by default, counted
from `start` by the `now` of each call); even slices route with the `treatment` policy (say
`PerformanceRouting`), odd ones with the `control` (say `LongestIdle`). When a day holds an even
number of slices the order flips every day, so each half-hour of the day gets both policies on
alternate days and the time of day (lunch, evening peaks) does not favour either. Whole slices,
rather than a coin per call, keep the two policies from competing for the same operators.

A call belongs to the arm that routed it, even if its outcome arrives in the next slice; the
driver reports each outcome with `record_outcome`. `report(now)` gives the confirmed share and
the confirmed revenue per call of each arm, and the lift (treatment minus control) with
confidence intervals: Newcombe's hybrid Wilson score interval for the difference of two
proportions, and a percentile bootstrap for revenue per call (the normal approximation once the
samples are too large to resample cheaply, where it is just as good).

Like every `acd/` object it reads no clock and draws randomness only from the `rng` it is given
(used by the bootstrap alone: routing within a slice is the delegate's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

from acd.board import OperatorView
from acd.errors import InvalidValue
from acd.routing import RoutingPolicy, RoutingRequest

DAY_S = 86_400.0
_BOOTSTRAP_BUDGET = 20_000_000  # resampled values per report before switching to the normal
_CHUNK = 1_000_000  # resampled values held in memory at once


Numbers = float | NDArray[Any]
"""A number, or an array of them element-wise."""


class Arm(StrEnum):
    TREATMENT = "treatment"
    CONTROL = "control"


@dataclass(frozen=True, slots=True, kw_only=True)
class Interval:
    """A point estimate and its confidence interval `[low, high]`."""

    estimate: float
    low: float
    high: float

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True, slots=True, kw_only=True)
class ArmReport:
    """One arm's outcomes. Rates and intervals are `None` while the arm has no calls."""

    arm: Arm
    policy: str
    calls: int
    confirmed: int
    revenue: float
    confirmed_rate: Interval | None
    revenue_per_call: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AbReport:
    """The comparison at `now`: each arm, and the lift of treatment over control.

    `rate_lift` is the difference of confirmed shares (Newcombe); `relative_rate_lift` is
    `treatment / control - 1` (point only); `revenue_lift` is the difference of revenue per call
    by `revenue_method` ("bootstrap" or "normal"). Each is `None` until both arms have calls (two
    each for revenue).
    """

    campaign_id: str | None
    start: float
    now: float
    slice_s: float
    arm_now: Arm
    confidence: float
    treatment: ArmReport
    control: ArmReport
    rate_lift: Interval | None
    relative_rate_lift: float | None
    revenue_lift: Interval | None
    revenue_method: str | None


def z_value(confidence: float) -> float:
    """The two-sided standard normal quantile for `confidence` (1.96 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: Numbers, n: Numbers, z: float) -> tuple[Numbers, Numbers]:
    """Wilson score interval of a proportion; also works element-wise on numpy arrays."""
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def newcombe(s1: float, n1: float, s2: float, n2: float, z: float) -> Interval:
    """Newcombe's hybrid score interval for `s1/n1 - s2/n2` (method 10, Newcombe 1998)."""
    p1, p2 = s1 / n1, s2 / n2
    l1, u1 = wilson(s1, n1, z)
    l2, u2 = wilson(s2, n2, z)
    d = p1 - p2
    low = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Interval(estimate=float(d), low=float(low), high=float(high))


def mean_difference(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    *,
    confidence: float,
    rng: np.random.Generator,
    resamples: int = 2000,
) -> tuple[Interval, str]:
    """`mean(x) - mean(y)` with a percentile bootstrap interval, or a normal (Welch) one when
    `resamples × (len(x) + len(y))` passes twenty million values. Needs two values in each."""
    d = float(x.mean() - y.mean())
    if resamples * (len(x) + len(y)) > _BOOTSTRAP_BUDGET:
        se = math.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
        z = z_value(confidence)
        return Interval(estimate=d, low=d - z * se, high=d + z * se), "normal"
    diffs = np.empty(resamples)
    step = max(1, _CHUNK // max(len(x), len(y)))
    for first in range(0, resamples, step):
        b = min(step, resamples - first)
        mx = x[rng.integers(0, len(x), size=(b, len(x)))].mean(axis=1)
        my = y[rng.integers(0, len(y), size=(b, len(y)))].mean(axis=1)
        diffs[first : first + b] = mx - my
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return Interval(estimate=d, low=float(low), high=float(high)), "bootstrap"


class AbSwitch:
    """Routes with `treatment` and `control` in alternate time slices and compares them.

    With `campaign_id` set, calls of other campaigns go to `control` and are not counted.
    `attribution_ttl_s` is how long a routed call waits for its outcome before it is forgotten.
    """

    def __init__(
        self,
        *,
        treatment: RoutingPolicy,
        control: RoutingPolicy,
        rng: np.random.Generator,
        slice_s: float = 1800.0,
        start: float = 0.0,
        campaign_id: str | None = None,
        confidence: float = 0.95,
        flip_daily: bool = True,
        resamples: int = 2000,
        attribution_ttl_s: float = DAY_S,
    ) -> None:
        if not 0 < slice_s < math.inf:
            raise InvalidValue(f"slice_s must be a positive number, got {slice_s}")
        if not 0 < confidence < 1:
            raise InvalidValue(f"confidence must be in (0, 1), got {confidence}")
        if resamples < 100:
            raise InvalidValue(f"resamples must be >= 100, got {resamples}")
        if not attribution_ttl_s > 0:
            raise InvalidValue(f"attribution_ttl_s must be > 0, got {attribution_ttl_s}")
        self.name = f"ab({treatment.name}|{control.name})"
        self.policies = {Arm.TREATMENT: treatment, Arm.CONTROL: control}
        self.slice_s, self.start, self.campaign_id = slice_s, start, campaign_id
        self.confidence, self.resamples = confidence, resamples
        self.attribution_ttl_s = attribution_ttl_s
        per_day = DAY_S / slice_s
        self._flip_every = int(per_day) if flip_daily and per_day == int(per_day) else 0
        if self._flip_every % 2:
            self._flip_every = 0  # an odd count alternates across days by itself
        self._rng = rng
        self._routed: dict[str, tuple[Arm, float]] = {}
        self._values: dict[Arm, list[float]] = {Arm.TREATMENT: [], Arm.CONTROL: []}
        self._confirmed = {Arm.TREATMENT: 0, Arm.CONTROL: 0}

    def arm_at(self, now: float) -> Arm:
        """The arm whose slice contains `now`."""
        k = math.floor((now - self.start) / self.slice_s)
        parity = k % 2
        if self._flip_every:
            parity ^= (k // self._flip_every) % 2
        return Arm.TREATMENT if parity == 0 else Arm.CONTROL

    def choose(
        self, request: RoutingRequest, candidates: Sequence[OperatorView], now: float
    ) -> OperatorView | None:
        """The choice of the policy of the current slice; the call is remembered for its arm.

        A call offered again (an operator did not answer) keeps the arm it first got.
        """
        if self.campaign_id is not None and request.campaign_id != self.campaign_id:
            return self.policies[Arm.CONTROL].choose(request, candidates, now)
        self._forget_before(now - self.attribution_ttl_s)
        known = self._routed.get(request.call_id)
        arm = known[0] if known is not None else self.arm_at(now)
        chosen = self.policies[arm].choose(request, candidates, now)
        if chosen is not None and known is None:
            self._routed[request.call_id] = (arm, now)
        return chosen

    def record_outcome(
        self,
        call_id: str,
        *,
        confirmed: bool,
        value: float,
        now: float,
        routed_at: float | None = None,
    ) -> Arm | None:
        """Count the outcome of a call under the arm that routed it, and return that arm.

        `value` (order plus upsell) counts only when `confirmed`. A call this switch did not
        route, or forgot, counts under the arm of `routed_at` if given, else not at all (None).
        """
        if not (math.isfinite(value) and value >= 0):
            raise InvalidValue(f"value must be a finite number >= 0, got {value}")
        known = self._routed.pop(call_id, None)
        if known is not None:
            arm = known[0]
        elif routed_at is not None:
            arm = self.arm_at(routed_at)
        else:
            return None
        self._values[arm].append(value if confirmed else 0.0)
        self._confirmed[arm] += confirmed
        return arm

    def report(self, now: float) -> AbReport:
        """Both arms and the lift so far (see `AbReport`); draws from `rng` for the bootstrap."""
        z = z_value(self.confidence)
        arms = {arm: self._arm_report(arm, z) for arm in Arm}
        t, c = arms[Arm.TREATMENT], arms[Arm.CONTROL]
        rate_lift = relative = revenue = method = None
        if t.calls and c.calls:
            rate_lift = newcombe(t.confirmed, t.calls, c.confirmed, c.calls, z)
            if c.confirmed:
                relative = (t.confirmed / t.calls) / (c.confirmed / c.calls) - 1
        if t.calls >= 2 and c.calls >= 2:
            revenue, method = mean_difference(
                np.array(self._values[Arm.TREATMENT]),
                np.array(self._values[Arm.CONTROL]),
                confidence=self.confidence,
                rng=self._rng,
                resamples=self.resamples,
            )
        return AbReport(
            campaign_id=self.campaign_id,
            start=self.start,
            now=now,
            slice_s=self.slice_s,
            arm_now=self.arm_at(now),
            confidence=self.confidence,
            treatment=t,
            control=c,
            rate_lift=rate_lift,
            relative_rate_lift=relative,
            revenue_lift=revenue,
            revenue_method=method,
        )

    def _arm_report(self, arm: Arm, z: float) -> ArmReport:
        values, confirmed = self._values[arm], self._confirmed[arm]
        calls, revenue = len(values), float(sum(values))
        rate = None
        if calls:
            low, high = wilson(confirmed, calls, z)
            rate = Interval(estimate=confirmed / calls, low=float(low), high=float(high))
        return ArmReport(
            arm=arm,
            policy=self.policies[arm].name,
            calls=calls,
            confirmed=confirmed,
            revenue=revenue,
            confirmed_rate=rate,
            revenue_per_call=revenue / calls if calls else None,
        )

    def _forget_before(self, horizon: float) -> None:
        # Calls are remembered in routing order, so the oldest are first.
        while self._routed:
            call_id, (_, at) = next(iter(self._routed.items()))
            if at >= horizon:
                return
            del self._routed[call_id]
