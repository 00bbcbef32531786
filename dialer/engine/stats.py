"""Frozen snapshots of the engine for metrics and wallboards, and the samples behind them.

`DialerEngine.statistics(now)` returns an `EngineStatistics`; Prometheus collectors and the
wallboard read these snapshots instead of counters sprinkled through the decisions.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from dialer.engine.pacing import PacingStatistics

__all__ = [
    "CampaignCounters",
    "CampaignStatistics",
    "EngineStatistics",
    "QueueStatistics",
    "TimeToFirstCall",
    "TimeToFirstCallSamples",
]

# Recent orders kept for the time-to-first-call summary.
TTFC_SAMPLES: Final = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeToFirstCall:
    """Seconds from an order being stored to its first Originate, over the recent orders.

    Only orders that arrived inside their calling window are sampled (an order placed at night
    waits for the morning by design); `deferred` counts the others. The figures are None
    while there is no sample.
    """

    count: int
    deferred: int
    mean_s: float | None
    p50_s: float | None
    p90_s: float | None
    max_s: float | None


class TimeToFirstCallSamples:
    """A bounded record of recent time-to-first-call samples."""

    def __init__(self, maxlen: int = TTFC_SAMPLES) -> None:
        self._samples: deque[float] = deque(maxlen=maxlen)
        self._deferred = 0

    def add(self, seconds: float) -> None:
        self._samples.append(max(0.0, seconds))

    def defer(self) -> None:
        self._deferred += 1

    def summary(self) -> TimeToFirstCall:
        ordered = sorted(self._samples)
        if not ordered:
            return TimeToFirstCall(
                count=0, deferred=self._deferred, mean_s=None, p50_s=None, p90_s=None, max_s=None
            )
        return TimeToFirstCall(
            count=len(ordered),
            deferred=self._deferred,
            mean_s=sum(ordered) / len(ordered),
            p50_s=_quantile(ordered, 0.5),
            p90_s=_quantile(ordered, 0.9),
            max_s=ordered[-1],
        )


def _quantile(ordered: list[float], q: float) -> float:
    # Nearest rank: always one of the samples, so "p90 = 4 s" is a delay that happened.
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(slots=True)
class CampaignCounters:
    """Running totals of one campaign since the engine started (mutable, engine-internal)."""

    originated: int = 0
    live_answers: int = 0
    machines: int = 0
    abandons: int = 0
    connected: int = 0
    dispositions: int = 0
    missing_dispositions: int = 0
    unreached: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignStatistics:
    """One campaign at `EngineStatistics.now`.

    `calls_by_state` counts open calls by `CallState` value (every non-terminal state is a
    key); `dial_level` and `pacer` come from the campaign's pacer; the abandon rates are
    abandons over live answers in the last hour, 24 hours and 30 days (None without answers);
    `leads_waiting` counts every lead in the hopper, `leads_due` those that may be dialled now;
    `oldest_lead_age_s` is the age of the oldest lead in the hopper; `longest_wait_s` how long
    the longest-waiting answered customer has been waiting for an operator.
    """

    campaign_id: str
    paused: bool
    calls_by_state: Mapping[str, int]
    dial_level: float
    pacer: PacingStatistics
    originated: int
    live_answers: int
    machines: int
    abandons: int
    connected: int
    dispositions: int
    missing_dispositions: int
    unreached: int
    abandon_rate_1h: float | None
    abandon_rate_24h: float | None
    abandon_rate_30d: float | None
    leads_waiting: int
    leads_due: int
    oldest_lead_age_s: float | None
    longest_wait_s: float
    time_to_first_call: TimeToFirstCall


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStatistics:
    """One inbound line's queue at `EngineStatistics.now`, since the engine started.

    `waiting` callers are in line now, the longest for `longest_wait_s`. Of the callers whose
    wait ended: `answered` reached an operator (`answered_within_sl` of them within
    `service_level_s`), `abandoned` hung up while waiting, `callbacks` took the callback offer
    and left. `service_level` = answered within the threshold / all whose wait ended (None
    before the first); `asa_s` is the average speed of answer (mean wait of answered callers).
    `offered` counts every caller who entered the line.
    """

    line_id: str
    waiting: int
    longest_wait_s: float
    offered: int
    answered: int
    answered_within_sl: int
    abandoned: int
    callbacks: int
    service_level_s: float
    service_level: float | None
    asa_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineStatistics:
    """The whole engine at `now`.

    `open_calls` counts calls whose outcome is not stored yet (wrap-ups included),
    `live_calls` only those holding a channel on the PBX. `stale_events` counts PBX events
    that no longer fitted their call and were ignored. Once `draining` and `open_calls == 0`
    nothing is left to finish.
    """

    now: float
    draining: bool
    open_calls: int
    live_calls: int
    stale_events: int
    campaigns: Mapping[str, CampaignStatistics]
    queues: Mapping[str, QueueStatistics] = dataclasses.field(default_factory=dict)
