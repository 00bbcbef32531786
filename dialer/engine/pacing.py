"""Pacing: how many new calls a campaign should place right now.

The engine builds a `PacingSnapshot` about once a second (on its tick) and asks the campaign's
`Pacer` for `calls_to_place(snap)`; it feeds every finished originate, abandon and finished
operator call back through the `on_*` methods so model-based pacers can learn. Pacers are
sans-I/O: they never await, never read a clock (every input carries `now`, epoch seconds,
possibly virtual), never touch a socket or the database, and draw random numbers only from an
injected `numpy.random.Generator`.

Three pacers, chosen per campaign by name through `make_pacer`:

- ``progressive`` (`ProgressivePacer`): one call per ready operator, minus the calls already
  dialing or waiting. Never abandons by construction, leaves operators idle while phones ring.
- ``adaptive`` (`AdaptivePacer`, in `pacing_adaptive`): a faithful VICIdial-style baseline; a
  dial level nudged every 15 s from 1-second samples of ready operators and waiting calls,
  with VICIdial's drop-rate overrides.
- ``predictive`` (`PredictivePacer`, in `pacing_predictive`): ours; learns the answer rate,
  time to answer and handle times, and places the most calls whose expected share of abandoned
  answers stays within the campaign's abandon budget.

`AbandonGuard` wraps any of them: while the rolling 24 h abandon rate is at or over the
campaign's target it dials progressively, whatever the wrapped pacer would do. `make_pacer`
wraps by default.

Every pacer guarantees: `calls_to_place` returns an int in `0 .. snap.leads_available`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np

from dialer.engine.errors import InvalidRules

__all__ = [
    "PACER_NAMES",
    "AbandonGuard",
    "BusyOperator",
    "Pacer",
    "PacingSnapshot",
    "PacingStatistics",
    "ProgressivePacer",
    "make_pacer",
    "progressive_calls",
]

PACER_NAMES: Final = ("adaptive", "predictive", "progressive")

_PHASES: Final = frozenset({"ringing", "talking", "wrap-up"})


@dataclass(frozen=True, slots=True, kw_only=True)
class BusyOperator:
    """An operator who is logged in but not free: being rung, talking, or in wrap-up.

    `elapsed_s` is the time since the call started (talk and wrap-up are counted together from
    the call's start), so a model can condition on how long the call has already lasted.
    """

    phase: str
    elapsed_s: float

    def __post_init__(self) -> None:
        if self.phase not in _PHASES:
            raise ValueError(f"phase must be one of {sorted(_PHASES)}, got {self.phase!r}")
        if not self.elapsed_s >= 0:
            raise ValueError(f"elapsed_s must be >= 0, got {self.elapsed_s}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PacingSnapshot:
    """What a pacer may know about one campaign at `now`.

    `abandon_rate` is the rolling 24 h rate (abandons / live answers, from `AbandonLedger`),
    None while there has been no live answer in the window. `abandon_target` is the campaign's
    ceiling on that rate (e.g. 0.03); a target of 0 means the campaign never dials ahead of its
    operators. `dialing_elapsed_s`, when the engine knows them, are the seconds since each call
    still dialing was originated; without them a pacer that needs them tracks its own
    placements. `dialing_lead_ages_s` gives, for the same calls in the same order, how old each
    call's order was when it was dialled, and `next_lead_ages_s` how old the orders are that the
    hopper would hand out next, best first (a few, not all of them): customers answer less the
    older their order, so a pacer may weigh each call by its lead's age.
    """

    now: float
    hour_of_day: int
    ready_operators: int
    busy_operators: tuple[BusyOperator, ...] = ()
    calls_dialing: int = 0
    calls_waiting: int = 0
    leads_available: int = 0
    abandon_rate: float | None = None
    abandon_target: float = 0.03
    dialing_elapsed_s: tuple[float, ...] | None = None
    # The counts behind `abandon_rate` (same window), when the engine knows them: they let the
    # guard see that the next abandon would cross the target, not only that one already has.
    abandon_counts: tuple[int, int] | None = None  # (abandons, live answers)
    dialing_lead_ages_s: tuple[float, ...] | None = None
    next_lead_ages_s: tuple[float, ...] | None = None
    # For the same calls as `dialing_elapsed_s`: True for a call answered and under
    # answering-machine detection (a live answer due within seconds unless a machine picked up).
    dialing_screening: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        if self.dialing_elapsed_s is not None and len(self.dialing_elapsed_s) != self.calls_dialing:
            raise ValueError("dialing_elapsed_s must give one age per call dialing")
        if self.dialing_lead_ages_s is not None and (
            self.dialing_elapsed_s is None
            or len(self.dialing_lead_ages_s) != len(self.dialing_elapsed_s)
        ):
            raise ValueError("dialing_lead_ages_s needs dialing_elapsed_s, one age per call")
        if self.dialing_screening is not None and (
            self.dialing_elapsed_s is None
            or len(self.dialing_screening) != len(self.dialing_elapsed_s)
        ):
            raise ValueError("dialing_screening needs dialing_elapsed_s, one flag per call")
        if self.next_lead_ages_s is not None and len(self.next_lead_ages_s) > self.leads_available:
            raise ValueError("next_lead_ages_s cannot list more leads than leads_available")
        if not 0 <= self.hour_of_day <= 23:
            raise ValueError(f"hour_of_day must be in 0..23, got {self.hour_of_day}")
        for name in ("ready_operators", "calls_dialing", "calls_waiting", "leads_available"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.abandon_rate is not None and not self.abandon_rate >= 0:
            raise ValueError(f"abandon_rate must be >= 0, got {self.abandon_rate}")
        if not 0 <= self.abandon_target < 1:
            raise ValueError(f"abandon_target must be in [0, 1), got {self.abandon_target}")

    @property
    def logged_in(self) -> int:
        """Ready plus busy operators."""
        return self.ready_operators + len(self.busy_operators)


@dataclass(frozen=True, slots=True, kw_only=True)
class PacingStatistics:
    """A frozen view of a pacer for metrics and the wallboard.

    `dial_level` is the number of calls per ready operator the pacer is aiming at: VICIdial's
    level for the adaptive pacer; for the others, calls dialing plus waiting plus new over
    ready operators (counted as at least one). `mode` is what decided
    the last call: ``progressive``, ``adaptive``, ``predictive``, or ``guarded`` while an
    `AbandonGuard` holds the campaign to progressive dialing. The optional fields are filled by
    the pacers that have them.
    """

    name: str
    mode: str
    dial_level: float
    last_reason: str
    last_calls: int = 0
    guard_engaged: bool = False
    answer_rate: float | None = None
    abandon_budget: float | None = None
    predicted_abandon: float | None = None
    recalculated_at: float | None = None


class Pacer(Protocol):
    """The interface the engine drives; see the module docstring for what it may rely on."""

    name: str

    def calls_to_place(self, snap: PacingSnapshot) -> int:
        """New originates to place now: `0 <= n <= snap.leads_available`."""
        ...

    def on_attempt_result(
        self, *, now: float, hour_of_day: int, answered: bool, ring_s: float
    ) -> None:
        """An originate finished: answered by a live person or not, `ring_s` after it started."""
        ...

    def on_abandon(self, *, now: float) -> None:
        """An answered call found no operator within the connect budget."""
        ...

    def on_call_finished(self, *, now: float, talk_s: float, wrapup_s: float) -> None:
        """An operator's call and its wrap-up ended."""
        ...

    def statistics(self) -> PacingStatistics:
        """A frozen snapshot of the pacer's state."""
        ...


def progressive_calls(snap: PacingSnapshot) -> int:
    """One call per ready operator minus calls dialing or waiting, in `0..leads_available`."""
    wanted = snap.ready_operators - snap.calls_dialing - snap.calls_waiting
    return max(0, min(wanted, snap.leads_available))


def dial_level_of(snap: PacingSnapshot, new_calls: int) -> float:
    """Calls in flight after placing `new_calls`, per ready operator (at least one)."""
    in_flight = snap.calls_dialing + snap.calls_waiting + new_calls
    return in_flight / max(1, snap.ready_operators)


class ProgressivePacer:
    """One call per ready operator; learns nothing."""

    name = "progressive"

    def __init__(self) -> None:
        self._last_calls = 0
        self._last_level = 1.0
        self._last_reason = "no decision yet"

    def calls_to_place(self, snap: PacingSnapshot) -> int:
        n = progressive_calls(snap)
        self._last_calls = n
        self._last_level = dial_level_of(snap, n)
        self._last_reason = (
            f"{snap.ready_operators} ready - {snap.calls_dialing} dialing"
            f" - {snap.calls_waiting} waiting, {snap.leads_available} leads"
        )
        return n

    def on_attempt_result(
        self, *, now: float, hour_of_day: int, answered: bool, ring_s: float
    ) -> None:
        return None

    def on_abandon(self, *, now: float) -> None:
        return None

    def on_call_finished(self, *, now: float, talk_s: float, wrapup_s: float) -> None:
        return None

    def statistics(self) -> PacingStatistics:
        return PacingStatistics(
            name=self.name,
            mode="progressive",
            dial_level=self._last_level,
            last_reason=self._last_reason,
            last_calls=self._last_calls,
        )


class AbandonGuard:
    """Any pacer, held to progressive dialing while the 24 h abandon rate is at its target.

    The guard is engaged while `snap.abandon_rate >= snap.abandon_target`, while one more
    abandon would take the rate over the target (when the snapshot carries the counts), and
    always for a target of 0, which means "never dial ahead"; it lets go as soon as the rate
    leaves room for an abandon again. The wrapped pacer keeps receiving every snapshot and every
    result while the guard is engaged, so its samples and models stay current and it resumes
    where it would have been. `statistics()` reports ``mode="guarded"`` and `guard_engaged=True`
    while engaged.
    """

    def __init__(self, inner: Pacer) -> None:
        # Wrapping a guard again would only repeat the same test.
        self.inner: Pacer = inner.inner if isinstance(inner, AbandonGuard) else inner
        self.name = self.inner.name
        self._engaged = False
        self._last_calls = 0
        self._last_level = 1.0
        self._last_reason = ""

    @property
    def engaged(self) -> bool:
        """Whether the last decision was held to progressive dialing."""
        return self._engaged

    def calls_to_place(self, snap: PacingSnapshot) -> int:
        inner_calls = self.inner.calls_to_place(snap)
        if getattr(self.inner, "never_abandons", False):
            # a pacer that knows every call's future (the simulator's oracle) is its own guard
            self._engaged = False
            return inner_calls
        rate = snap.abandon_rate
        over = rate is not None and rate >= snap.abandon_target
        # The target is a promise, not an average to hover around: while one more abandon would
        # take the window's rate over it, dial progressively (early in a day, after few answers,
        # that is most of the time; over a day of answers it costs almost nothing).
        brink = False
        if snap.abandon_counts is not None and snap.abandon_counts[1] > 0:
            # (with no answer yet there is no rate to protect; the pacers start cautious)
            abandons, answers = snap.abandon_counts
            brink = abandons + 1 > snap.abandon_target * (answers + 1)
        self._engaged = snap.abandon_target <= 0 or over or brink
        if not self._engaged:
            return inner_calls
        n = progressive_calls(snap)
        self._last_calls = n
        self._last_level = dial_level_of(snap, n)
        if snap.abandon_target <= 0:
            self._last_reason = "abandon target is 0: progressive only"
        elif over:
            self._last_reason = (
                f"abandon rate {rate:.2%} at or over target {snap.abandon_target:.2%}:"
                " progressive until it falls below"
            )
        else:
            self._last_reason = (
                f"one more abandon would cross the target {snap.abandon_target:.2%}:"
                " progressive until the answers leave room for it"
            )
        return n

    def on_attempt_result(
        self, *, now: float, hour_of_day: int, answered: bool, ring_s: float
    ) -> None:
        self.inner.on_attempt_result(
            now=now, hour_of_day=hour_of_day, answered=answered, ring_s=ring_s
        )

    def on_abandon(self, *, now: float) -> None:
        self.inner.on_abandon(now=now)

    def on_call_finished(self, *, now: float, talk_s: float, wrapup_s: float) -> None:
        self.inner.on_call_finished(now=now, talk_s=talk_s, wrapup_s=wrapup_s)

    def statistics(self) -> PacingStatistics:
        inner = self.inner.statistics()
        if not self._engaged:
            return inner
        return dataclasses.replace(
            inner,
            mode="guarded",
            dial_level=self._last_level,
            last_reason=self._last_reason,
            last_calls=self._last_calls,
            guard_engaged=True,
        )


def make_pacer(
    name: str,
    *,
    rng: np.random.Generator | None = None,
    guard: bool = True,
    **options: Any,
) -> Pacer:
    """Build the pacer called `name` with its options, wrapped in an `AbandonGuard` by default.

    `name` is one of `PACER_NAMES`; `options` are the fields of that pacer's settings class
    (`AdaptiveSettings`, `PredictiveSettings`; the progressive pacer takes none). An unknown
    name or option raises `InvalidRules` (a `ValueError`) naming the valid ones. `rng` is
    accepted for pacers that draw random numbers; the three built-in pacers are deterministic
    (the same inputs give the same decisions), so it is optional.
    """
    # Imported here: both modules import this one for the snapshot and statistics types.
    from dialer.engine.pacing_adaptive import AdaptivePacer, AdaptiveSettings
    from dialer.engine.pacing_predictive import PredictivePacer, PredictiveSettings

    pacer: Pacer
    if name == "progressive":
        _check_options(name, options, ())
        pacer = ProgressivePacer()
    elif name == "adaptive":
        _check_options(name, options, _field_names(AdaptiveSettings))
        pacer = AdaptivePacer(AdaptiveSettings(**options))
    elif name == "predictive":
        _check_options(name, options, _field_names(PredictiveSettings))
        pacer = PredictivePacer(PredictiveSettings(**options))
    else:
        raise InvalidRules(f"unknown pacer {name!r}; valid pacers: {', '.join(PACER_NAMES)}")
    return AbandonGuard(pacer) if guard else pacer


def _field_names(cls: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _check_options(name: str, options: dict[str, Any], valid: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(valid) if valid else "none"
        raise InvalidRules(
            f"unknown option(s) {', '.join(unknown)} for pacer {name!r}; valid options: {listed}"
        )


def ceil_calls(operators: int, level: float) -> int:
    """`ceil(operators * level)`, immune to float noise such as 3 * 1.1 = 3.3000000000000003."""
    return math.ceil(round(operators * level, 9))
