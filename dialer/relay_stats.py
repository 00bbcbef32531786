"""What the outbox relay has done and how late: sync lag samples, the SLA clock, snapshots.

`DeliveryLedger` is told of every acknowledged row and of the backlog's overdue rows, counts
each SLA breach once (while still waiting, or on a late acknowledgement, whichever is seen
first), logs it and publishes ``crm/sla-breach`` and ``crm/stats``. It does no I/O of its own
besides `publish`.
"""

from __future__ import annotations

import logging
import statistics as pystats
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from dialer.events_schema import CRM_STATS_TOPIC

log = logging.getLogger(__name__)

SLA_BREACH_TOPIC: Final = "crm/sla-breach"
# Outcome lags the published sync lag is the median of.
LAG_WINDOW: Final = 50
Publish = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True, slots=True)
class LagSample:
    """One acknowledged row: `kind`, and when it was stored and acknowledged (epoch s)."""

    kind: str
    stored_at: float
    acknowledged_at: float

    @property
    def lag_s(self) -> float:
        return self.acknowledged_at - self.stored_at


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayStatistics:
    """A snapshot. `backlog`, `oldest_undelivered_s` and `dead_letters` are as of the last
    database check (`OutboxRelay.refresh`); `sync_lag_s` is the median lag of the recent
    outcomes (None before the first); `samples` are the recent lags, oldest first."""

    backlog: int
    oldest_undelivered_s: float | None
    dead_letters: int
    delivered: int
    dead_lettered: int
    retried: int
    sla_breaches: int
    sync_lag_s: float | None
    samples: tuple[LagSample, ...]
    auth_failed: bool
    paused_until: float | None
    last_error: str | None

    def payload(self) -> dict[str, Any]:
        """The ``crm/stats`` payload (docs/events.md)."""
        oldest = self.oldest_undelivered_s
        return {
            "sync_lag_s": None if self.sync_lag_s is None else round(self.sync_lag_s, 1),
            "backlog": self.backlog,
            "oldest_undelivered_s": None if oldest is None else round(oldest, 1),
            "sla_breaches": self.sla_breaches,
            "dead_letters": self.dead_letters,
            "delivering": not self.auth_failed,
        }


# (outbox id, kind, stored at as epoch seconds)
Stored = tuple[int, str, float]


class DeliveryLedger:
    """Counters, lag samples and the SLA clock of one relay (`sla_s` seconds)."""

    def __init__(self, *, sla_s: float, lag_samples: int, publish: Publish) -> None:
        self.sla_s = sla_s
        self._publish = publish
        self._samples: deque[LagSample] = deque(maxlen=lag_samples)
        # Rows counted as breaches while still waiting; forgotten once delivered or dead, so
        # the set is never larger than the backlog.
        self._breached: set[int] = set()
        self.delivered = self.dead_lettered = self.retried = self.breaches = 0
        self.backlog = self.dead_letters = 0
        self.oldest: float | None = None
        self.auth_failed = False
        self.paused_until = 0.0
        self.last_error: str | None = None

    def acknowledged(self, rows: Iterable[Stored], now: float) -> None:
        late = []
        for row_id, kind, stored in rows:
            self.delivered += 1
            self._samples.append(LagSample(kind, stored, now))
            if row_id in self._breached:
                self._breached.discard(row_id)
            elif now - stored > self.sla_s:
                late.append((row_id, kind, stored))
        if late:
            self._breach(late, now, waiting=False)

    def dead(self, ids: Iterable[int], error: str) -> None:
        for row_id in ids:
            self._breached.discard(row_id)
            self.dead_lettered += 1
        self.last_error = error

    def waiting(
        self, *, count: int, oldest: float | None, dead: int, overdue: Sequence[Stored], now: float
    ) -> None:
        """The backlog as just counted; `overdue` are waiting rows stored before the SLA's
        cutoff (those not yet counted become breaches)."""
        self.backlog, self.oldest, self.dead_letters = count, oldest, dead
        late = [r for r in overdue if r[0] not in self._breached]
        if late:
            self._breached.update(r[0] for r in late)
            self._breach(late, now, waiting=True)

    def snapshot(self, now: float) -> RelayStatistics:
        outcomes = [s.lag_s for s in self._samples if s.kind == "outcome"][-LAG_WINDOW:]
        return RelayStatistics(
            backlog=self.backlog,
            oldest_undelivered_s=None if self.oldest is None else max(0.0, now - self.oldest),
            dead_letters=self.dead_letters,
            delivered=self.delivered,
            dead_lettered=self.dead_lettered,
            retried=self.retried,
            sla_breaches=self.breaches,
            sync_lag_s=pystats.median(outcomes) if outcomes else None,
            samples=tuple(self._samples),
            auth_failed=self.auth_failed,
            paused_until=self.paused_until if self.paused_until > now else None,
            last_error=self.last_error,
        )

    def _breach(self, rows: Sequence[Stored], now: float, *, waiting: bool) -> None:
        self.breaches += len(rows)
        oldest = max(now - stored for _, _, stored in rows)
        log.warning(
            "CRM SLA breached: %d message(s) %s more than %.0f min after being stored "
            "(the oldest %.0f s)",
            len(rows),
            "still undelivered" if waiting else "acknowledged",
            self.sla_s / 60,
            oldest,
        )
        self._publish(
            SLA_BREACH_TOPIC,
            {
                "count": len(rows),
                "kinds": sorted({kind for _, kind, _ in rows}),
                "undelivered": waiting,
                "oldest_s": round(oldest, 1),
                "sla_s": self.sla_s,
                "sla_breaches": self.breaches,
            },
        )
        self._publish(CRM_STATS_TOPIC, self.snapshot(now).payload())
