"""What a simulated run measured: recorded from the engine's own commands, summed at the end.

Operators' time comes from the engine's `Publish(kind="operator")` commands (the board's own
states), outcomes from its `StoreOutcome` commands, answers and abandons from the events fed to
it and its `PlayAbandon` commands. Definitions (also in `benchmarks/README.md`):

- talk_share: seconds operators spent talking / seconds they were logged in;
- occupancy: seconds reserved, ringing, talking or in wrap-up / seconds logged in;
- abandon_rate: abandons / live answers over the run; abandon_rate_max_24h: the highest
  rolling 24 h rate at any moment once the 24 h window holds `MIN_ANSWERS` live answers;
- occupancy_ratio: the busiest operator's occupancy / the least busy one's, over the operators
  who logged in (infinite when one of them took no call while another did);
- ttfc: seconds from an order being stored to its first Originate, over the orders stored
  inside their calling window (orders never dialled count until the end of the run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from benchmarks.sim.world import Order

__all__ = ["MIN_ANSWERS", "Recorder", "RunResult", "Sample", "nearest_rank"]

MIN_ANSWERS: Final = 100
DAY: Final = 86400.0
_BUSY: Final = frozenset({"reserved", "ringing", "talking", "wrap-up"})


def nearest_rank(values: list[float] | np.ndarray, q: float) -> float | None:
    """The q-quantile by nearest rank (always one of the values), None when there are none."""
    ordered = np.sort(np.asarray(values, dtype=float))
    if ordered.size == 0:
        return None
    return float(ordered[max(0, math.ceil(q * ordered.size) - 1)])


@dataclass(frozen=True, slots=True)
class Sample:
    """The campaign as the engine saw it at `at` (from `DialerEngine.statistics`)."""

    at: float
    dial_level: float
    mode: str
    calls_dialing: int
    calls_waiting: int
    ready: int
    logged_in: int
    leads_due: int
    abandon_rate_1h: float | None
    abandon_rate_24h: float | None


@dataclass(frozen=True, slots=True)
class RunResult:
    """The figures of one run; `figures()` gives the keys of the `--json` output.

    `ttfc_samples[i]` is the time to first call of the order stored at `ttfc_stored_at[i]`;
    `busy_s` the operators' seconds reserved, ringing, talking or in wrap-up.
    """

    scenario: str
    seed: int
    pacing: str
    routing: str
    start: float
    end: float
    orders: int
    talk_share: float
    occupancy: float
    abandon_rate: float | None
    abandon_rate_max_24h: float | None
    ttfc_p50_s: float | None
    ttfc_p95_s: float | None
    ttfc_free_p95_s: float | None
    confirmed: int
    confirmed_revenue: float
    confirmed_per_operator_hour: float
    unreached: int
    calls_placed: int
    live_answers: int
    abandons: int
    hung_up_waiting: int
    connected: int
    open_at_end: int
    outcomes: dict[str, int]
    operator_occupancy: dict[str, float]
    occupancy_ratio: float
    ttfc_samples: tuple[float, ...]
    ttfc_stored_at: tuple[float, ...]
    samples: tuple[Sample, ...]
    answer_times: tuple[float, ...]
    busy_s: float
    wall_s: float
    oracle_mismatches: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        """The comparison figures, JSON-ready (None where there was nothing to measure)."""

        def r(x: float | None, digits: int = 4) -> float | None:
            return None if x is None else round(x, digits)

        return {
            "talk_share": r(self.talk_share),
            "occupancy": r(self.occupancy),
            "abandon_rate": r(self.abandon_rate),
            "abandon_rate_max_24h": r(self.abandon_rate_max_24h),
            "ttfc_p50_s": r(self.ttfc_p50_s, 2),
            "ttfc_p95_s": r(self.ttfc_p95_s, 2),
            "confirmed": self.confirmed,
            "confirmed_revenue": round(self.confirmed_revenue, 2),
            "confirmed_per_operator_hour": r(self.confirmed_per_operator_hour, 3),
            "unreached": self.unreached,
            "calls_placed": self.calls_placed,
            "ttfc_free_p95_s": r(self.ttfc_free_p95_s, 2),
            "live_answers": self.live_answers,
            "abandons": self.abandons,
            "hung_up_waiting": self.hung_up_waiting,
            "open_at_end": self.open_at_end,
            "occupancy_ratio": r(self.occupancy_ratio, 3),
            "wall_s": round(self.wall_s, 2),
        }


def occupancy_ratio(occupancies: list[float]) -> float:
    """max / min of `occupancies`: 1.0 for none or all idle, infinite when some are 0 and not
    all (an operator left without a single call is as unfair as it gets)."""
    if not occupancies or max(occupancies) <= 0:
        return 1.0
    lowest = min(occupancies)
    return max(occupancies) / lowest if lowest > 0 else math.inf


class _OperatorClock:
    __slots__ = ("busy", "logged_in", "since", "state", "talk")

    def __init__(self, now: float) -> None:
        self.state = "offline"
        self.since = now
        self.logged_in = self.busy = self.talk = 0.0


class Recorder:
    """Collects a run's raw facts; `result()` turns them into a `RunResult`."""

    def __init__(self, *, start: float, end: float, orders: int) -> None:
        self.start, self.end = start, end
        self.orders = orders
        self._ops: dict[str, _OperatorClock] = {}
        self._stored: dict[int, tuple[float, bool, bool]] = {}
        self._first_call: dict[int, float] = {}
        self.answers: list[float] = []
        self.abandon_times: list[float] = []
        self.outcomes: dict[str, int] = {}
        self.revenue = 0.0
        self.calls_placed = 0
        self.hung_up_waiting = 0
        self.samples: list[Sample] = []

    # -- operators ---------------------------------------------------------------------------

    def operator_state(self, operator_id: str, state: str, now: float) -> None:
        clock = self._ops.get(operator_id)
        if clock is None:
            clock = self._ops[operator_id] = _OperatorClock(self.start)
        self._close(clock, now)
        clock.state = state
        clock.since = now

    def _close(self, clock: _OperatorClock, now: float) -> None:
        span = max(0.0, min(now, self.end) - max(clock.since, self.start))
        if clock.state != "offline":
            clock.logged_in += span
        if clock.state in _BUSY:
            clock.busy += span
        if clock.state == "talking":
            clock.talk += span

    # -- orders and calls --------------------------------------------------------------------

    def stored(self, order: Order, now: float, *, in_window: bool, operator_free: bool) -> None:
        self._stored[order.index] = (now, in_window, operator_free)

    def originated(self, order: Order, now: float) -> None:
        self.calls_placed += 1
        self._first_call.setdefault(order.index, now)

    def live_answer(self, now: float) -> None:
        self.answers.append(now)

    def abandon(self, now: float) -> None:
        self.abandon_times.append(now)

    def final(self, order: Order, outcome: str, upsell: float) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome == "confirmed":
            self.revenue += order.amount + upsell

    def sample(self, sample: Sample) -> None:
        self.samples.append(sample)

    # -- the figures -------------------------------------------------------------------------

    def _ttfc(self) -> tuple[list[float], list[float], list[float]]:
        every: list[float] = []
        with_free: list[float] = []
        stored: list[float] = []
        for index, (stored_at, in_window, free) in self._stored.items():
            if not in_window:
                continue
            first = self._first_call.get(index, self.end)
            every.append(max(0.0, first - stored_at))
            stored.append(stored_at)
            if free:
                with_free.append(every[-1])
        return every, with_free, stored

    def max_rate_24h(self) -> float | None:
        """The highest rolling 24 h abandon rate once the window holds MIN_ANSWERS answers."""
        answers = np.sort(np.asarray(self.answers))
        drops = np.sort(np.asarray(self.abandon_times))
        if drops.size == 0:
            return 0.0 if answers.size >= MIN_ANSWERS else None
        # The rate rises only when an abandon enters the window or an answer leaves it.
        points = np.concatenate([drops, answers + DAY + 1e-6])
        points = points[points <= self.end]
        n_ans = np.searchsorted(answers, points, "right") - np.searchsorted(
            answers, points - DAY, "right"
        )
        n_drop = np.searchsorted(drops, points, "right") - np.searchsorted(
            drops, points - DAY, "right"
        )
        ok = n_ans >= MIN_ANSWERS
        if not ok.any():
            return None
        return float((n_drop[ok] / n_ans[ok]).max())

    def result(
        self,
        *,
        scenario: str,
        seed: int,
        pacing: str,
        routing: str,
        engine_counts: dict[str, int],
        open_at_end: int,
        wall_s: float,
        oracle_mismatches: int = 0,
    ) -> RunResult:
        for clock in self._ops.values():
            self._close(clock, self.end)
            clock.since = self.end
        logged = sum(c.logged_in for c in self._ops.values())
        talk = sum(c.talk for c in self._ops.values())
        busy = sum(c.busy for c in self._ops.values())
        occ = {i: float(c.busy / c.logged_in) if c.logged_in else 0.0 for i, c in self._ops.items()}
        worked = [v for i, v in occ.items() if self._ops[i].logged_in > 0]
        every, with_free, stored = self._ttfc()
        answers, abandons = engine_counts["live_answers"], engine_counts["abandons"]
        confirmed = self.outcomes.get("confirmed", 0)
        return RunResult(
            scenario=scenario,
            seed=seed,
            pacing=pacing,
            routing=routing,
            start=self.start,
            end=self.end,
            orders=self.orders,
            talk_share=float(talk / logged) if logged else 0.0,
            occupancy=float(busy / logged) if logged else 0.0,
            abandon_rate=abandons / answers if answers else None,
            abandon_rate_max_24h=self.max_rate_24h(),
            ttfc_p50_s=nearest_rank(every, 0.5),
            ttfc_p95_s=nearest_rank(every, 0.95),
            ttfc_free_p95_s=nearest_rank(with_free, 0.95),
            confirmed=confirmed,
            confirmed_revenue=self.revenue,
            confirmed_per_operator_hour=confirmed / (logged / 3600.0) if logged else 0.0,
            unreached=self.outcomes.get("unreached", 0),
            calls_placed=self.calls_placed,
            live_answers=answers,
            abandons=abandons,
            hung_up_waiting=self.hung_up_waiting,
            connected=engine_counts["connected"],
            open_at_end=open_at_end,
            outcomes=dict(sorted(self.outcomes.items())),
            operator_occupancy=occ,
            occupancy_ratio=occupancy_ratio(worked),
            ttfc_samples=tuple(every),
            ttfc_stored_at=tuple(stored),
            samples=tuple(self.samples),
            answer_times=tuple(self.answers),
            busy_s=busy,
            wall_s=wall_s,
            oracle_mismatches=oracle_mismatches,
        )
