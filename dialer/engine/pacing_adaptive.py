"""The VICIdial-style adaptive pacer: the baseline the predictive pacer is measured against.

It reproduces the dial-level loop of VICIdial's ``bin/AST_VDadapt.pl`` (astguiclient, versions
2.4 to 2.14 compute the level identically) and the call count of ``bin/AST_VDauto_dial.pl``.
The steps, with the Perl variable names they follow:

1. **Samples** (``count_agents_lines``): once a second the script stores the campaign's ready
   agents (``$ready_agents``, status READY or DONE), waiting calls (``$waiting_calls``,
   ``vicidial_auto_calls`` in status LIVE) and logged-in agents (``$total_agents``). The averages
   over the last 15 samples (``$stat_it = 15``) give ``$ready_diff_avg``,
   ``$waiting_diff_avg`` and ``$total_agents_avg``, and ``$stat_differential`` =
   ready average - waiting average. Here a sample is taken on each `calls_to_place` call (the
   engine calls it about once a second); calls closer than `min_sample_gap_s` to the previous
   sample take none, so a burst of calls cannot crowd the window.
2. **Recalculation every 15 s** (``$diff_ratio_updater >= 15`` -> ``calculate_dial_level``),
   only while the campaign has leads (``$hopper_ready_count > 0``) and agents
   (``$total_agents_avg > 0``); the first one 15 s after the first sample:
   - ``$differential_target`` = differential + ``adaptive_dl_diff_target`` (-1 aims at one
     agent waiting, +1 at one customer waiting);
   - ``$differential_mul`` = differential_target / ``$agents_average_onemin`` (the average of
     logged-in agents), 0 when either is 0;
   - intensity (``adaptive_intensity``, -40..40): ``$intensity_mul`` = intensity / 100;
     a negative differential is scaled by ``abs($intensity_mul - 1)``, a positive one by
     ``$intensity_mul + 1``, giving ``$intensity_diff_mul``;
   - ``$intensity_dial_level`` = ``auto_dial_level`` * (1 + intensity_diff_mul), rounded to
     3 decimals (``sprintf("%.3f")``);
   - capped at ``adaptive_maximum_level`` (3.0) and raised to 1.0 if lower.
3. **Drop-rate overrides**, in this order, after the cap:
   - over the last minute, more than 20 calls and more than 50 % of them dropped
     (``$VCScalls_one > 20 && $VCSdrops_one_pct > 50``): the level is halved;
   - over the day, more than 50 calls (``$VCScalls_today > 50``) and the drop percentage of
     answers over ``adaptive_dropped_percentage`` (``$VCSdrops_answers_today_pct``), by the
     campaign's ``dial_method``:
     ``ADAPT_HARD_LIMIT`` sets the level to 1.0; ``ADAPT_AVERAGE`` halves it (the source divides
     by 2; the word "average" describes the effect over the day, the rate swinging around the
     target, not an average of two rates); ``ADAPT_TAPERED`` multiplies it by ``$tapered_rate``
     = (``adaptive_latest_server_time`` - current HHMM) / 1000, or leaves it alone while that
     difference exceeds 1000 (more than ten "hours" left: overshoot allowed early in the day),
     and sets it to 1.0 once the latest time has passed. The HHMM subtraction is the source's
     own arithmetic (2100 - 1130 = 970 -> 0.97) and is kept as is.
   - finally the level is raised to 1.0 if lower (``ALWAYS RAISE DIAL_LEVEL TO 1.0``).
   The drop figures are refreshed every 60 s (``$drop_count_updater >= 60``), and at the first
   sample (the script starts its counter at 61).
4. **Calls to place** (``AST_VDauto_dial.pl``): ``$DBIPgoalcalls`` = dial level * agents, less
   the campaign's live calls (SENT, RINGING, LIVE, ...). Here: ceil(ready operators * level)
   - calls dialing - calls waiting, within 0 .. leads available.

Where it simplifies, and why:

- The day's drop percentage is the engine's rolling 24 h rate (`PacingSnapshot.abandon_rate`,
  the Ofcom window) instead of "since 00:00:01 server time"; "calls today" and the one-minute
  figures are counted by the pacer itself over rolling windows (24 h and 60 s) from
  `on_attempt_result` and `on_abandon`.
- Agents are counted as with ``available_only_ratio_tally = Y``: the level multiplies ready
  operators, and calls already with an operator are not counted against it (in VICIdial they
  appear on both sides of the subtraction and cancel out). VICIdial rounds the goal with
  ``sprintf("%.0f")``; here it is rounded up, so one ready operator always gets a call.
- A sample missing because the campaign had no leads is not counted as zeros (the script's
  arrays are indexed by its global loop counter, so skipped loops read back as empty samples).
- Not reproduced: drop-rate groups, blended inbound agents (``campaign_allow_inbound``), the
  dial-level and available-only tally thresholds, the in-call tally threshold; none applies to
  a single outbound campaign.
- ``adaptive_dropped_percentage`` defaults to the campaign's abandon target (in percent).
- The current HHMM for ``ADAPT_TAPERED`` is `hour_of_day` * 100 + the minute of `now`, which
  assumes the campaign's time zone is a whole number of hours from UTC.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from dialer.engine.abandon import DAY, SlidingCounts
from dialer.engine.pacing import PacingSnapshot, PacingStatistics, ceil_calls

__all__ = ["AdaptiveMethod", "AdaptivePacer", "AdaptiveSettings"]

_CALLS: Final = 0
_DROPS: Final = 1


class AdaptiveMethod(StrEnum):
    """VICIdial's adaptive ``dial_method`` values: what happens when drops exceed the limit."""

    HARD_LIMIT = "ADAPT_HARD_LIMIT"
    TAPERED = "ADAPT_TAPERED"
    AVERAGE = "ADAPT_AVERAGE"


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveSettings:
    """The VICIdial campaign fields the adaptive loop reads, with VICIdial's defaults."""

    method: AdaptiveMethod | str = AdaptiveMethod.HARD_LIMIT
    initial_level: float = 1.0  # auto_dial_level when the campaign starts
    maximum_level: float = 3.0  # adaptive_maximum_level
    intensity: int = 0  # adaptive_intensity, -40 .. 40
    dl_diff_target: int = 0  # adaptive_dl_diff_target, -40 .. 40
    dropped_percentage: float | None = None  # adaptive_dropped_percentage; None: the target
    latest_server_time: int = 2100  # adaptive_latest_server_time, HHMM
    sample_window: int = 15  # $stat_it
    recalc_interval_s: float = 15.0  # $diff_ratio_updater threshold
    drop_refresh_interval_s: float = 60.0  # $drop_count_updater threshold
    min_sample_gap_s: float = 0.5

    def __post_init__(self) -> None:
        try:
            method = AdaptiveMethod(str(self.method).upper())
        except ValueError:
            valid = ", ".join(m.value for m in AdaptiveMethod)
            raise ValueError(f"method must be one of {valid}, got {self.method!r}") from None
        object.__setattr__(self, "method", method)
        if not 1.0 <= self.initial_level <= self.maximum_level:
            raise ValueError("need 1.0 <= initial_level <= maximum_level")
        if not -40 <= self.intensity <= 40:
            raise ValueError(f"intensity must be in -40..40, got {self.intensity}")
        if not -40 <= self.dl_diff_target <= 40:
            raise ValueError(f"dl_diff_target must be in -40..40, got {self.dl_diff_target}")
        if self.dropped_percentage is not None and not 0 <= self.dropped_percentage <= 100:
            raise ValueError("dropped_percentage is a percentage, 0..100")
        if not 0 <= self.latest_server_time <= 2400:
            raise ValueError("latest_server_time is HHMM, 0..2400")
        if self.sample_window < 1:
            raise ValueError("sample_window must be at least 1")
        if self.recalc_interval_s <= 0 or self.drop_refresh_interval_s <= 0:
            raise ValueError("intervals must be positive")
        if self.min_sample_gap_s < 0:
            raise ValueError("min_sample_gap_s must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sample:
    ready: int
    waiting: int
    total: int


class AdaptivePacer:
    """VICIdial's adaptive dial level; see the module docstring for the steps it reproduces."""

    name = "adaptive"

    def __init__(self, settings: AdaptiveSettings | None = None) -> None:
        self.settings = settings or AdaptiveSettings()
        self.level = self.settings.initial_level
        self._samples: deque[_Sample] = deque(maxlen=self.settings.sample_window)
        self._last_sample_at: float | None = None
        self._recalc_anchor: float | None = None
        self._recalculated_at: float | None = None
        self._drops_refreshed_at: float | None = None
        self._events = SlidingCounts(kinds=2, retention_s=DAY)
        # The drop figures as of the last refresh, as calculate_drops leaves them.
        self._calls_today = 0
        self._drops_answers_today_pct = 0.0
        self._calls_one = 0
        self._drops_one_pct = 0.0
        self._last_calls = 0
        self._last_reason = "no decision yet"

    # -- the engine's interface -------------------------------------------------------------

    def calls_to_place(self, snap: PacingSnapshot) -> int:
        if snap.leads_available > 0:
            self._sample(snap)
            if self._total_agents_avg() > 0:
                if (
                    self._drops_refreshed_at is None
                    or snap.now - self._drops_refreshed_at >= self.settings.drop_refresh_interval_s
                ):
                    self._refresh_drops(snap)
                assert self._recalc_anchor is not None
                if snap.now - self._recalc_anchor >= self.settings.recalc_interval_s:
                    self._recalculate(snap)
        goal = ceil_calls(snap.ready_operators, self.level)
        n = max(0, min(goal - snap.calls_dialing - snap.calls_waiting, snap.leads_available))
        self._last_calls = n
        return n

    def on_attempt_result(
        self, *, now: float, hour_of_day: int, answered: bool, ring_s: float
    ) -> None:
        self._events.add(now, _CALLS)

    def on_abandon(self, *, now: float) -> None:
        self._events.add(now, _DROPS)

    def on_call_finished(self, *, now: float, talk_s: float, wrapup_s: float) -> None:
        return None

    def statistics(self) -> PacingStatistics:
        return PacingStatistics(
            name=self.name,
            mode="adaptive",
            dial_level=self.level,
            last_reason=self._last_reason,
            last_calls=self._last_calls,
            recalculated_at=self._recalculated_at,
        )

    # -- the steps --------------------------------------------------------------------------

    @property
    def samples(self) -> tuple[tuple[int, int, int], ...]:
        """The samples in the window, oldest first, as (ready, waiting, logged in)."""
        return tuple((s.ready, s.waiting, s.total) for s in self._samples)

    def _sample(self, snap: PacingSnapshot) -> None:
        if self._recalc_anchor is None:
            self._recalc_anchor = snap.now
        if (
            self._last_sample_at is not None
            and snap.now - self._last_sample_at < self.settings.min_sample_gap_s
        ):
            return
        self._last_sample_at = snap.now
        self._samples.append(
            _Sample(ready=snap.ready_operators, waiting=snap.calls_waiting, total=snap.logged_in)
        )

    def _total_agents_avg(self) -> float:
        if not self._samples:
            return 0.0
        return sum(s.total for s in self._samples) / len(self._samples)

    def _refresh_drops(self, snap: PacingSnapshot) -> None:
        self._drops_refreshed_at = snap.now
        calls_today, _ = self._events.counts(snap.now, DAY)
        calls_one, drops_one = self._events.counts(snap.now, 60.0)
        self._calls_today = calls_today
        self._calls_one = calls_one
        self._drops_one_pct = 100.0 * drops_one / calls_one if calls_one else 0.0
        rate = snap.abandon_rate
        self._drops_answers_today_pct = 100.0 * rate if rate is not None else 0.0

    def _recalculate(self, snap: PacingSnapshot) -> None:
        s = self.settings
        self._recalc_anchor = snap.now
        self._recalculated_at = snap.now
        n = len(self._samples)
        ready_avg = sum(x.ready for x in self._samples) / n
        waiting_avg = sum(x.waiting for x in self._samples) / n
        agents_avg = self._total_agents_avg()
        differential_target = (ready_avg - waiting_avg) + s.dl_diff_target
        if differential_target != 0 and agents_avg != 0:
            differential_mul = differential_target / agents_avg
        else:
            differential_mul = 0.0
        intensity_mul = s.intensity / 100
        if differential_mul < 0:
            intensity_diff_mul = differential_mul * abs(intensity_mul - 1)
        else:
            intensity_diff_mul = differential_mul * (intensity_mul + 1)
        level = round(self.level * (1 + intensity_diff_mul), 3)
        steps = [f"differential {differential_target:+.2f}/{agents_avg:.2f} -> {level:.3f}"]
        if level > s.maximum_level:
            level = s.maximum_level
            steps.append(f"cap {s.maximum_level:.3f}")
        if level < 1:
            level = 1.0
            steps.append("floor 1.0")
        if self._calls_one > 20 and self._drops_one_pct > 50:
            level /= 2
            steps.append(f"last minute drops {self._drops_one_pct:.0f}% > 50%: halved")
        limit_pct = (
            s.dropped_percentage
            if s.dropped_percentage is not None
            else 100.0 * snap.abandon_target
        )
        if self._calls_today > 50 and self._drops_answers_today_pct > limit_pct:
            level, step = self._drop_override(level, snap, limit_pct)
            steps.append(step)
        if level < 1:
            level = 1.0
            steps.append("raised to 1.0")
        self.level = level
        self._last_reason = "; ".join(steps)

    def _drop_override(
        self, level: float, snap: PacingSnapshot, limit_pct: float
    ) -> tuple[float, str]:
        over = f"drops {self._drops_answers_today_pct:.2f}% > {limit_pct:.2f}%"
        method = self.settings.method
        if method is AdaptiveMethod.HARD_LIMIT:
            return 1.0, f"{over}: ADAPT_HARD_LIMIT -> 1.0"
        if method is AdaptiveMethod.AVERAGE:
            return level / 2, f"{over}: ADAPT_AVERAGE halved -> {level / 2:.3f}"
        hours_left = self.settings.latest_server_time - current_hourmin(snap)
        if hours_left < 0:
            return 1.0, f"{over}: ADAPT_TAPERED past latest time -> 1.0"
        rate = 1.0 if hours_left > 1000 else hours_left / 1000
        return level * rate, f"{over}: ADAPT_TAPERED x{rate:.3f} -> {level * rate:.3f}"


def current_hourmin(snap: PacingSnapshot) -> int:
    """The campaign-local time as VICIdial's HHMM integer (e.g. 1130 for 11:30)."""
    minute = int(snap.now // 60) % 60
    return snap.hour_of_day * 100 + minute
