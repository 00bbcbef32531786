"""The model-based predictive pacer: the most calls whose abandon risk fits the budget.

In plain words, each time the engine asks (about once a second):

1. **What it knows.** From the campaign's own recent calls it has learned: p, the probability
   that a call is answered by a live person, as a function of how old the order was when it
   was dialled and of the hour of the day (`pacing_age`: a posterior over a fresh order's rate
   and the age at which it halves, times the hour's own ratio; when the snapshot carries no
   ages, the hour's rate of `pacing_models`, a Beta posterior whose prior is the all-hours
   rate); F, the distribution of the time from originate to answer, and G, the time from
   originate to failure (busy, no answer) of the calls nobody answered; and the joint
   distribution of talk and wrap-up times of finished calls. Each blends recent samples with a
   prior for a cold start.

2. **Answers to come.** The i-th new call goes to the i-th lead the hopper would hand out, and
   is answered at all with probability p_i (p at that lead's age), then by t seconds from now
   with probability F(t). A call already dialing for a seconds, on an order aged d when dialled,
   is still undecided, so it is answered at all with probability p (1 - F(a)) / (1 - p F(a) -
   (1 - p) G(a)) with p = p(d), and then by a + t following F conditioned on exceeding a. The
   number M of calls in flight (dialing and new) that will be answered is a sum of these
   Bernoullis, a Poisson-binomial computed exactly; the W calls already answered and waiting
   are due now.

3. **Operators to come.** A ready operator counts 1. A busy operator becomes free in time for
   a call answered at t (by t + c, the 2 s connect budget) with a probability conditioned on
   how long their call has lasted: for one talking for e seconds,
   P(talk + wrap <= e + t + c | talk > e); for one in wrap-up, given that the talk has ended.
   The number freed in each 2-second interval of the next 40 s is a Poisson-binomial sum of
   those Bernoullis.

4. **Abandons to expect.** Interval by interval, the operators freed join a pool of idle
   operators; of the r calls still to be answered, Binomial(r, h) are answered in the interval
   (h the chance of an answer in this interval for a call not answered before, from the answer
   times above), take operators from the pool, and those that find none are abandoned:
   lost = (answered - pool)^+, pool = (pool - answered)^+ (a Lindley recursion). Carrying the
   distribution of (pool, r) through the intervals (`pacing_risk`) gives E[abandoned | M = r]
   for every r at once, hence E[abandoned] for any n; divided by the expected number of
   answers (W plus those expected among the calls in flight) it is the probability that an
   answered call finds no operator within the connect budget. Against Monte-Carlo runs of the
   same inputs it errs on the safe side: a few percent over with lognormal handle times, up
   to 1.7 times over when operators free up quickly and at random.

5. **The choice.** Every connected call adds talk time, so expected operator talk time grows
   with n for as long as answers find operators; maximising it under the risk ceiling means
   taking the largest n whose abandon probability is within the budget. n starts from the
   progressive count (one call per ready operator minus calls dialing or waiting, which cannot
   abandon) and is capped by the leads available and by `max_lines_per_operator` calls in
   flight per logged-in operator. The answer probabilities used are the posterior means plus
   `answer_rate_z` standard deviations, so a campaign with little data dials cautiously.

6. **The budget.** The campaign's target (e.g. 3 % of live answers over 24 h) is spent in full
   while the rolling rate is below `full_budget_below` of the target, then linearly less, down
   to nothing at the target (the pacer is then progressive, and an `AbandonGuard` takes over
   anyway). A target of 0 means progressive dialing. Teams of `small_team` operators or fewer
   get `small_team_budget_share` of that budget: a handful of operators frees up in lumps, and
   one unlucky minute is a large share of their day.

The pacer keeps the risk of the calls in flight within the budget at every decision, but it
cannot withdraw a call when later news is bad; the feedback from the rolling rate (point 6)
absorbs that. When the snapshot does not carry `dialing_elapsed_s`, the pacer tracks the calls
it placed itself and reconciles them with `calls_dialing`.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dialer.engine.pacing import (
    PacingSnapshot,
    PacingStatistics,
    dial_level_of,
    progressive_calls,
)
from dialer.engine.pacing_age import AgeAnswerModel, DialledAges, Finished
from dialer.engine.pacing_models import AnswerRateModel, DurationModel, HandleTimeModel
from dialer.engine.pacing_risk import GRID_S, free_by_times, plan_calls

__all__ = ["PredictivePacer", "PredictiveSettings", "abandon_budget"]

FloatArray = npt.NDArray[np.float64]
# A result is learned from once every call placed before it has one too, or this long after
# its call was placed, whichever is first (a call the engine lost track of holds nothing up).
HOLD_LIMIT_S = 180.0
# Calls placed in one decision share a placement time; a result's own estimate of it may be
# off by float rounding.
_SAME_PLACEMENT_S = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictiveSettings:
    """Parameters of the predictive pacer; docs/pacing.md explains each."""

    connect_budget_s: float = 2.0
    full_budget_below: float = 0.5
    small_team: int = 5
    small_team_budget_share: float = 0.5
    max_lines_per_operator: float = 4.0
    answer_rate_z: float = 1.0
    prior_answer_rate: float = 0.5
    prior_answer_strength: float = 2.0
    by_lead_age: bool = True
    prior_no_decay: float = 0.5
    hour_prior_strength: float = 20.0
    recent_half_life_s: float = 3600.0
    hourly_half_life_s: float = 3 * 86400.0
    prior_ring_median_s: float = 8.0
    prior_ring_sigma: float = 0.6
    prior_ring_weight: float = 10.0
    prior_failure_median_s: float = 20.0
    prior_failure_sigma: float = 0.7
    ring_samples: int = 500
    prior_talk_median_s: float = 120.0
    prior_talk_sigma: float = 0.7
    prior_wrapup_median_s: float = 15.0
    prior_wrapup_sigma: float = 0.6
    prior_handle_weight: float = 10.0
    handle_samples: int = 1000
    model_refresh_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.connect_budget_s <= 2.0:
            raise ValueError("connect_budget_s must be in (0, 2] (the regulations allow 2 s)")
        if not 0 <= self.full_budget_below < 1:
            raise ValueError("full_budget_below must be in [0, 1)")
        if not 0 <= self.small_team_budget_share <= 1:
            raise ValueError("small_team_budget_share must be in [0, 1]")
        if self.max_lines_per_operator < 1:
            raise ValueError("max_lines_per_operator must be at least 1")
        if not 0 < self.prior_answer_rate < 1:
            raise ValueError("prior_answer_rate must be in (0, 1)")
        if not 0 < self.prior_no_decay < 1:
            raise ValueError("prior_no_decay must be in (0, 1)")
        positive = (
            "prior_answer_strength",
            "recent_half_life_s",
            "hourly_half_life_s",
            "prior_ring_median_s",
            "prior_ring_sigma",
            "prior_talk_median_s",
            "prior_talk_sigma",
            "prior_wrapup_median_s",
            "prior_wrapup_sigma",
            "prior_handle_weight",
            "prior_ring_weight",
            "prior_failure_median_s",
            "prior_failure_sigma",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.answer_rate_z < 0 or self.hour_prior_strength < 0 or self.model_refresh_s < 0:
            raise ValueError("answer_rate_z, hour_prior_strength, model_refresh_s must be >= 0")
        if self.ring_samples < 1 or self.handle_samples < 1:
            raise ValueError("ring_samples and handle_samples must be at least 1")


def abandon_budget(snap: PacingSnapshot, settings: PredictiveSettings) -> float:
    """The share of live answers the pacer may risk now, from the rolling rate and the target."""
    target = snap.abandon_target
    if target <= 0:
        return 0.0
    x = 0.0 if snap.abandon_rate is None else snap.abandon_rate / target
    if x <= settings.full_budget_below:
        share = 1.0
    elif x >= 1.0:
        share = 0.0
    else:
        share = (1.0 - x) / (1.0 - settings.full_budget_below)
    if snap.logged_in <= settings.small_team:
        share *= settings.small_team_budget_share
    return target * share


class PredictivePacer:
    """Model-based pacing; see the module docstring for the math."""

    name = "predictive"

    def __init__(self, settings: PredictiveSettings | None = None) -> None:
        s = self.settings = settings or PredictiveSettings()
        self.answer_rate = AnswerRateModel(
            prior_rate=s.prior_answer_rate,
            prior_strength=s.prior_answer_strength,
            hour_prior_strength=s.hour_prior_strength,
            recent_half_life_s=s.recent_half_life_s,
            hourly_half_life_s=s.hourly_half_life_s,
        )
        self.answer_by_age = AgeAnswerModel(
            prior_rate=s.prior_answer_rate,
            prior_strength=s.prior_answer_strength,
            prior_no_decay=s.prior_no_decay,
            hour_prior_strength=s.hour_prior_strength,
            recent_half_life_s=s.recent_half_life_s,
            hourly_half_life_s=s.hourly_half_life_s,
        )
        self._dialled = DialledAges()
        # Results not learned from yet, by placement time (see `_learn`).
        self._held: list[tuple[float, int, Finished]] = []
        self._held_seq = itertools.count()
        self._age_fitted_at: float | None = None
        self.answer_time = DurationModel(
            prior_median_s=s.prior_ring_median_s,
            prior_sigma=s.prior_ring_sigma,
            prior_weight=s.prior_ring_weight,
            max_samples=s.ring_samples,
        )
        self.failure_time = DurationModel(
            prior_median_s=s.prior_failure_median_s,
            prior_sigma=s.prior_failure_sigma,
            prior_weight=s.prior_ring_weight,
            max_samples=s.ring_samples,
        )
        self.handle_time = HandleTimeModel(
            horizons_s=free_by_times(s.connect_budget_s),
            prior_talk_median_s=s.prior_talk_median_s,
            prior_talk_sigma=s.prior_talk_sigma,
            prior_wrapup_median_s=s.prior_wrapup_median_s,
            prior_wrapup_sigma=s.prior_wrapup_sigma,
            prior_weight=s.prior_handle_weight,
            max_samples=s.handle_samples,
        )
        self._rebuilt_at: float | None = None
        # When each call still dialing was placed, oldest first, for engines whose snapshot
        # does not carry `dialing_elapsed_s`.
        self._placed: list[float] = []
        self._stats = PacingStatistics(
            name=self.name, mode="predictive", dial_level=1.0, last_reason="no decision yet"
        )

    def calls_to_place(self, snap: PacingSnapshot) -> int:
        s = self.settings
        ages = self._dialing_ages(snap)
        self._learn(snap, ages)
        n_min = progressive_calls(snap)
        budget = abandon_budget(snap, s)
        lines = int(s.max_lines_per_operator * snap.logged_in)
        n_max = min(snap.leads_available, lines - snap.calls_dialing - snap.calls_waiting)
        p_mean, p_sd = self.answer_rate.estimate(snap.now, snap.hour_of_day)
        if budget <= 0 or n_max <= n_min:
            reason = "no abandon budget" if budget <= 0 else "no room above progressive"
            return self._decided(snap, n_min, reason, p_mean, budget, 0.0)
        self._refresh_models(snap.now)
        p = min(1.0, p_mean + s.answer_rate_z * p_sd)
        new_p, dialing_p, about = self._answer_probs(snap, n_max, p)
        if about is not None:
            p_mean = about
        dialing_by, dialing_eventual = self._dialing_answer_probs(ages, dialing_p)
        if snap.dialing_screening is not None and any(snap.dialing_screening):
            # Answered and being screened: counted as a live answer due now (the safe side of
            # a machine's share of them and of the seconds detection takes).
            screening = np.asarray(snap.dialing_screening, dtype=np.bool_)
            dialing_by[screening] = 1.0
            dialing_eventual[screening] = 1.0
        freed = self.handle_time.freed(snap.busy_operators)
        plan = plan_calls(
            ready=snap.ready_operators,
            waiting=snap.calls_waiting,
            free_by=freed.free_by,
            free_counts=freed.counts,
            frees=freed.per_interval,
            dialing_by=dialing_by,
            dialing_eventual=dialing_eventual,
            new_timing=self.answer_time.cdf(GRID_S),
            p_answer=new_p,
            budget=budget,
            n_min=n_min,
            n_max=n_max,
        )
        reason = (
            f"P(abandon) {plan.abandon_probability:.2%}, budget {budget:.2%}"
            f" (p={p_mean:.2f}, {snap.ready_operators} ready, {len(snap.busy_operators)} busy,"
            f" {snap.calls_dialing} dialing, {snap.calls_waiting} waiting)"
        )
        return self._decided(snap, plan.calls, reason, p_mean, budget, plan.abandon_probability)

    def on_attempt_result(
        self, *, now: float, hour_of_day: int, answered: bool, ring_s: float
    ) -> None:
        # Learned from at the next decision, in the order the calls were placed (`_learn`).
        self._dialled.result(now=now, hour_of_day=hour_of_day, answered=answered, ring_s=ring_s)
        if self._placed:
            # Forget the tracked placement that best matches this result.
            at = bisect.bisect_left(self._placed, now - ring_s)
            if at == len(self._placed) or (
                at > 0 and (now - ring_s) - self._placed[at - 1] < self._placed[at] - (now - ring_s)
            ):
                at -= 1
            del self._placed[at]

    def on_abandon(self, *, now: float) -> None:
        # The rolling rate that sets the budget arrives with every snapshot.
        return None

    def on_call_finished(self, *, now: float, talk_s: float, wrapup_s: float) -> None:
        self.handle_time.record(talk_s, wrapup_s)

    def statistics(self) -> PacingStatistics:
        return self._stats

    def _dialing_ages(self, snap: PacingSnapshot) -> FloatArray:
        given = snap.dialing_elapsed_s
        if given is not None and len(given) == snap.calls_dialing:
            self._placed.clear()
            return np.asarray(given, dtype=np.float64)
        placed = self._placed
        # The snapshot's count wins: drop the youngest placements the engine did not make
        # (e.g. an AbandonGuard placed fewer), or add unknown ones as placed just now.
        del placed[snap.calls_dialing :]
        placed.extend([snap.now] * (snap.calls_dialing - len(placed)))
        return np.maximum(0.0, snap.now - np.asarray(placed, dtype=np.float64))

    def _learn(self, snap: PacingSnapshot, ages: FloatArray) -> None:
        """Learn from the results of calls placed before every call still dialing.

        Calls end in another order than they were placed: in a burst, those that fail fast
        (busy, congestion) end seconds before those that are answered, and answering-machine
        detection holds a live answer back a few seconds more. Learning from results as they
        come would see a batch's failures first and take the answer rate for a fraction of
        what it is (at the opening of a calling window, 0.11 where customers answered 0.6) and
        dial too many calls just before the answers arrive. Results are held until every call
        placed before theirs has ended, so the answer rate, the answer and failure times and
        the answer rate by age always learn from whole batches.
        """
        for result in self._dialled.observe(snap):
            heapq.heappush(self._held, (result.placed_at, next(self._held_seq), result))
        pending = snap.now - float(ages.max()) if ages.shape[0] else math.inf
        by_age = self.settings.by_lead_age
        held = self._held
        while held and (
            held[0][0] < pending - _SAME_PLACEMENT_S or held[0][0] < snap.now - HOLD_LIMIT_S
        ):
            r = heapq.heappop(held)[2]
            self.answer_rate.record(snap.now, r.hour_of_day, r.answered)
            (self.answer_time if r.answered else self.failure_time).record(r.ring_s)
            if by_age and r.age_s is not None:
                self.answer_by_age.record(snap.now, r.hour_of_day, r.age_s, r.answered)

    def _answer_probs(
        self, snap: PacingSnapshot, n_max: int, p: float
    ) -> tuple[FloatArray | Callable[[int], FloatArray], FloatArray, float | None]:
        """The answer probability to plan with for each new call and each call dialing.

        By the age of each lead when the snapshot gives ages (the posterior mean plus
        `answer_rate_z` standard deviations; for the new calls, a function giving those of the
        first n, as far as the plan looks), else the hour's rate `p` for every call; the third
        value is the mean answer rate of the new calls by age, for the wallboard, or None.
        """
        s = self.settings
        new_p: FloatArray | Callable[[int], FloatArray] = np.full(max(n_max, 0), p)
        dialing_p: FloatArray = np.full(snap.calls_dialing, p)
        about: float | None = None
        if not s.by_lead_age:
            return new_p, dialing_p, about
        ahead = snap.next_lead_ages_s
        if ahead:
            listed = ahead[:n_max]

            def by_age(n: int) -> tuple[FloatArray, FloatArray]:
                # Leads past those listed are taken to be as old as the last one listed.
                ages = np.asarray(listed[:n], dtype=np.float64)
                padded = np.concatenate([ages, np.full(max(0, n - ages.shape[0]), listed[-1])])
                return self.answer_by_age.estimate(snap.now, snap.hour_of_day, padded)

            def first(n: int) -> FloatArray:
                mean, sd = by_age(n)
                return np.minimum(1.0, mean + s.answer_rate_z * sd)

            new_p = first
            about = float(by_age(min(n_max, max(1, progressive_calls(snap))))[0].mean())
        given = snap.dialing_lead_ages_s
        if given is not None and len(given) == snap.calls_dialing and given:
            mean, sd = self.answer_by_age.estimate(
                snap.now, snap.hour_of_day, np.asarray(given, dtype=np.float64)
            )
            dialing_p = np.minimum(1.0, mean + s.answer_rate_z * sd)
        return new_p, dialing_p, about

    def _dialing_answer_probs(
        self, ages: FloatArray, p: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """P(answered by each grid time | still ringing at its age), and P(answered at all)."""
        if ages.shape[0] == 0:
            return np.zeros((0, GRID_S.shape[0])), np.zeros(0)
        later = self.answer_time.cdf(ages[:, None] + GRID_S[None, :])
        answered_by_age = later[:, 0]  # GRID_S[0] is now
        pending = 1.0 - p * answered_by_age - (1.0 - p) * self.failure_time.cdf(ages)
        pending = np.maximum(pending, 1e-9)
        probs = np.clip(
            p[:, None] * (later - answered_by_age[:, None]) / pending[:, None], 0.0, 1.0
        )
        eventual = np.clip(p * (1.0 - answered_by_age) / pending, 0.0, 1.0)
        return probs, eventual

    def _refresh_models(self, now: float) -> None:
        refresh = self.settings.model_refresh_s
        if self.answer_by_age.stale and (
            self._age_fitted_at is None or now - self._age_fitted_at >= refresh
        ):
            self.answer_by_age.fit()
            self._age_fitted_at = now
        # Rebuilding drops the per-elapsed cache; once per `model_refresh_s` keeps it useful.
        if not self.handle_time.stale:
            return
        if self._rebuilt_at is None or now - self._rebuilt_at >= self.settings.model_refresh_s:
            self.handle_time.rebuild()
            self._rebuilt_at = now

    def _decided(
        self,
        snap: PacingSnapshot,
        n: int,
        reason: str,
        p_mean: float,
        budget: float,
        risk: float,
    ) -> int:
        self._placed.extend([snap.now] * n)
        if self.settings.by_lead_age and snap.next_lead_ages_s is not None:
            self._dialled.placed(snap.now, snap.next_lead_ages_s[:n])
        self._stats = PacingStatistics(
            name=self.name,
            mode="predictive",
            dial_level=dial_level_of(snap, n),
            last_reason=reason,
            last_calls=n,
            answer_rate=p_mean,
            abandon_budget=budget,
            predicted_abandon=risk,
        )
        return n
