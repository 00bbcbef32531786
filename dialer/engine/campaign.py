"""Campaign rules: what one line of the call centre may do, as one frozen value.

A campaign is one of the four lines (confirmation, reminder, complaints, delivery). Its rules are
read by the scheduler (when a lead may be called again), by the engine (how long an answered
customer may wait for an operator, whether to record, whether to run AMD) and by the daemon
(caller id, the shop's name in the abandon message). Rules are validated when built: a campaign
that could break the abandon regulations cannot be constructed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from enum import StrEnum
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialer.engine.errors import InvalidRules

__all__ = [
    "DEFAULT_RETRY_PLAN",
    "AttemptOutcome",
    "CallingWindow",
    "CampaignRules",
    "InboundRules",
    "Line",
    "OverflowStep",
]

HOUR: Final = 3600.0


class Line(StrEnum):
    """The four lines of the call centre; each campaign belongs to one."""

    CONFIRMATION = "confirmation"
    REMINDER = "reminder"
    COMPLAINTS = "complaints"
    DELIVERY = "delivery"


class AttemptOutcome(StrEnum):
    """How one call attempt ended, before any operator's disposition.

    The retry plan is keyed by these values; `CONNECTED` means an operator talked to the
    customer, and the order's outcome then comes from the operator's disposition.
    """

    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"
    FAILED = "failed"
    MACHINE = "machine"
    ABANDONED = "abandoned"
    HUNG_UP = "hung_up"
    CONNECTED = "connected"


# Seconds to wait before the next attempt, per outcome and attempt number; the last delay
# repeats. An abandoned customer is called back soon, but only with an operator reserved (the
# 72 h lockout), so the short delay cannot cause a second abandon.
DEFAULT_RETRY_PLAN: Final[Mapping[str, tuple[float, ...]]] = MappingProxyType(
    {
        AttemptOutcome.BUSY: (300.0,),
        AttemptOutcome.NO_ANSWER: (900.0, 1800.0, 3600.0, 7200.0),
        AttemptOutcome.CONGESTION: (120.0,),
        AttemptOutcome.MACHINE: (3600.0,),
        AttemptOutcome.FAILED: (600.0,),
        AttemptOutcome.ABANDONED: (120.0,),
        AttemptOutcome.HUNG_UP: (600.0,),
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallingWindow:
    """Local wall-clock hours in which a customer may be called.

    `start` is inclusive, `end` exclusive. A window whose end is before its start spans
    midnight (22:00–02:00); `start == end` means all day.
    """

    start: time = time(9, 0)
    end: time = time(21, 0)

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise InvalidRules("a calling window is local wall-clock time: no tzinfo")


@dataclass(frozen=True, slots=True, kw_only=True)
class OverflowStep:
    """After a caller has waited `after_s`, operators of `lines` may take them too (the way
    app_queue's penalty rules widen the members who may answer as the wait grows)."""

    after_s: float
    lines: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.after_s) and self.after_s >= 0):
            raise InvalidRules(f"overflow after_s must be >= 0 seconds, got {self.after_s}")
        object.__setattr__(self, "lines", frozenset(self.lines))


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundRules:
    """How an inbound line queues its callers.

    `priorities` maps a caller tag (``known``, ``open-order``, ``in-delivery``, ...) to a
    priority; a caller gets the highest of their tags' (0 without any), and higher priorities
    are served first, first come first within a priority. `overflow` widens the operators who
    may answer as the wait grows. After `callback_offer_after_s` of waiting (None: never) a
    caller is offered a callback once. `service_level_s` is the service-level threshold
    (answered within it).
    """

    priorities: Mapping[str, int] = field(default_factory=dict, hash=False)
    overflow: tuple[OverflowStep, ...] = ()
    callback_offer_after_s: float | None = 120.0
    service_level_s: float = 20.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "priorities", MappingProxyType(dict(self.priorities)))
        object.__setattr__(
            self, "overflow", tuple(sorted(self.overflow, key=lambda step: step.after_s))
        )
        offer = self.callback_offer_after_s
        if offer is not None and not (math.isfinite(offer) and offer > 0):
            raise InvalidRules(f"callback_offer_after_s must be > 0 seconds, got {offer}")
        if not (math.isfinite(self.service_level_s) and self.service_level_s > 0):
            raise InvalidRules(f"service_level_s must be > 0 seconds, got {self.service_level_s}")

    def priority(self, tags: frozenset[str]) -> int:
        """The caller's priority: the highest among their tags' (0 when none matches)."""
        return max((self.priorities[t] for t in tags if t in self.priorities), default=0)

    def widened_to(self, waited_s: float) -> frozenset[str]:
        """The other lines whose operators may take a caller who has waited `waited_s`."""
        lines: frozenset[str] = frozenset()
        for step in self.overflow:
            if waited_s >= step.after_s:
                lines |= step.lines
        return lines


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignRules:
    """Everything a campaign allows; validated when built.

    `ring_timeout_s` is how long the customer's phone rings before the attempt counts as
    "no answer"; `operator_ring_timeout_s` how long an operator's softphone rings before the
    call is offered to the next operator. `connect_budget_s` (at most 2 s, as the abandon
    rules require) is how long an answered customer may wait for an operator in total, across
    every operator tried. `retry_plan` maps an `AttemptOutcome` value to the delays before the
    next attempt (by attempt number, the last one repeating); it is laid over
    `DEFAULT_RETRY_PLAN`, so naming one outcome changes only that one, and an outcome missing
    from both uses the "failed" delays. `timezone` is the campaign's home zone, used only for
    the hour of day given to the pacer. A campaign with `inbound` rules is an inbound line:
    the engine never dials for it; callers to its numbers queue by those rules.
    """

    id: str
    line: Line = Line.CONFIRMATION
    pacing: str = "progressive"
    abandon_target: float = 0.03
    abandon_window_s: float = 24 * HOUR
    calling_window: CallingWindow = field(default_factory=CallingWindow)
    record: bool = True
    wrapup_s: float = 30.0
    connect_budget_s: float = 2.0
    ring_timeout_s: float = 25.0
    operator_ring_timeout_s: float = 8.0
    amd: bool = False
    max_attempts: int = 6
    max_attempts_per_day: int = 3
    # Excluded from the hash (not from equality): a mapping is not hashable.
    retry_plan: Mapping[str, tuple[float, ...]] = field(
        default_factory=lambda: DEFAULT_RETRY_PLAN, hash=False
    )
    abandon_lockout_s: float = 72 * HOUR
    shop_name: str = ""
    caller_id: str = ""
    timezone: str = "Europe/Moscow"
    inbound: InboundRules | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise InvalidRules("a campaign needs an id")
        object.__setattr__(self, "line", Line(self.line))
        # 0 is allowed: it means "never abandon", i.e. progressive dialing only
        if not 0.0 <= self.abandon_target < 1.0:
            raise InvalidRules(f"abandon_target must be in [0, 1), got {self.abandon_target}")
        if not 0.0 < self.connect_budget_s <= 2.0:
            raise InvalidRules(
                f"connect_budget_s must be in (0, 2] seconds, got {self.connect_budget_s}"
            )
        for name in (
            "abandon_window_s",
            "wrapup_s",
            "ring_timeout_s",
            "operator_ring_timeout_s",
            "abandon_lockout_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidRules(f"{name} must be a positive number of seconds, got {value}")
        if self.max_attempts < 1 or self.max_attempts_per_day < 1:
            raise InvalidRules("max_attempts and max_attempts_per_day must be at least 1")
        plan = {str(outcome): delays for outcome, delays in DEFAULT_RETRY_PLAN.items()}
        for outcome, delays in self.retry_plan.items():
            delays = tuple(float(d) for d in delays)
            if not delays or any(not (math.isfinite(d) and d > 0) for d in delays):
                raise InvalidRules(f"retry delays for {outcome!r} must be positive: {delays}")
            plan[str(outcome)] = delays
        object.__setattr__(self, "retry_plan", MappingProxyType(plan))
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidRules(f"unknown time zone {self.timezone!r}") from exc

    def retry_delays(self, outcome: str) -> tuple[float, ...]:
        """The delays after an attempt that ended with `outcome` (never empty)."""
        return self.retry_plan.get(outcome) or self.retry_plan[AttemptOutcome.FAILED]
