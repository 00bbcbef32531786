"""The two oracles: a pacer and a router that know what no real policy can, run only here.

They are upper bounds to measure real policies against, never candidates for the daemon.

`OraclePacer` implements the engine's `Pacer` protocol and is fed the simulator's knowledge of
the future (a `Clairvoyant`): when each busy operator will be free, which calls already placed
will be answered and when, and, for every lead in the order the hopper hands them out, whether
a call placed now would be answered, when, and for how long it would hold an operator. On each
decision it places the longest run of leads, in that order, such that every answered call it
places finds an operator in time (within the connect budget and before the customer's patience
runs out), operators being taken first come first served as the engine does. It never abandons
a call it placed; it leaves an operator idle only while the next lead would be answered too
early for any operator to take it (or, with the 1 s tick, for up to a tick).

Where it falls short of a perfect clairvoyant: it cannot reorder the hopper (a lead that must
wait holds up those behind it), it decides only on the engine's ticks, a lead under an abandon
lockout stops the run (the oracle itself never causes a lockout). It says `never_abandons`,
which lets it through the engine's `AbandonGuard` (the guard would otherwise hold it to
progressive dialling until a 24 h window holds enough answers for one abandon to fit).

`OracleRouting` implements `RoutingPolicy` with the true confirmation rate of every operator
for every category: it gives each call the free operator most likely to confirm it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from acd.board import OperatorView
from acd.routing import RoutingRequest, shortlist
from dialer.engine.pacing import PacingSnapshot, PacingStatistics, dial_level_of

__all__ = [
    "Candidate",
    "Clairvoyant",
    "Demand",
    "Foresight",
    "OraclePacer",
    "OracleRouting",
    "serves_in_time",
]


@dataclass(frozen=True, slots=True)
class Demand:
    """An answered call's need: an operator free between `answer_at` and `deadline`, busy then
    for `hold_s` (their pick-up, the talk and the wrap-up)."""

    answer_at: float
    deadline: float
    hold_s: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """The next lead the hopper would hand out: `demand` None if a call now needs no operator
    (it will not be answered, or AMD will hang up on a machine); `locked` if it may only be
    dialled with an operator reserved (an abandon lockout)."""

    order_id: str
    demand: Demand | None
    locked: bool = False


@dataclass(frozen=True, slots=True)
class Foresight:
    """The future as it stands: each logged-in operator as (free from, logged in until), and
    the calls already placed or waiting that will need an operator."""

    operators: tuple[tuple[float, float], ...]
    committed: tuple[Demand, ...]


class Clairvoyant(Protocol):
    """What the simulator tells the pacing oracle."""

    def foresight(self, now: float) -> Foresight: ...

    def candidates(self, now: float) -> Iterator[Candidate]: ...


def serves_in_time(
    operators: Sequence[tuple[float, float]], committed: Sequence[Demand], new: Sequence[Demand]
) -> bool:
    """Whether every `new` demand finds an operator by its deadline, and every committed one
    that would find one without them still does.

    `operators` are (free from, logged in until). Demands are served in the order they are
    answered, each by the operator free earliest who is still logged in when taking it (the
    engine's first come first served line); a committed demand that cannot be served in time
    even without the new ones is lost anyway (it takes no operator).
    """
    base = _baseline(operators, committed)
    return _served(operators, base + [(d, True) for d in new]) is not None


def _baseline(
    operators: Sequence[tuple[float, float]], committed: Sequence[Demand]
) -> list[tuple[Demand, bool]]:
    """The committed demands, each marked must-serve if it is served without any new one."""
    served = _served(operators, [(d, False) for d in committed]) or []
    return list(zip(committed, served, strict=True))


def _served(
    operators: Sequence[tuple[float, float]], demands: list[tuple[Demand, bool]]
) -> list[bool] | None:
    """Serve `(demand, must)` pairs in answer order; which were served, or None when a `must`
    demand was not. The result is in the order given."""
    free = [list(op) for op in operators]
    served = [False] * len(demands)
    order = sorted(range(len(demands)), key=lambda i: (demands[i][0].answer_at, i))
    for i in order:
        demand, must = demands[i]
        best: list[float] | None = None
        start = math.inf
        for op in free:
            at = max(op[0], demand.answer_at)
            if at < op[1] and at < start:
                best, start = op, at
        if best is None or start > demand.deadline:
            if must:
                return None
            continue
        best[0] = start + demand.hold_s
        served[i] = True
    return served


class OraclePacer:
    """Pacing with foresight; see the module docstring. `mismatches` is set by the driver."""

    name = "oracle"
    # It knows every call's future and never lets an answered call find no operator, so the
    # engine's abandon guard has nothing to protect against (see `AbandonGuard`).
    never_abandons = True

    def __init__(self, sight: Clairvoyant) -> None:
        self._sight = sight
        self.expected: deque[str] = deque()
        self.unconsumed = 0
        self._stats = PacingStatistics(
            name=self.name, mode="oracle", dial_level=1.0, last_reason="no decision yet"
        )

    def calls_to_place(self, snap: PacingSnapshot) -> int:
        # The driver consumes `expected` as the Originates come out; leftovers mean fewer calls
        # were placed than planned (the hopper found fewer leads in their window).
        self.unconsumed += len(self.expected)
        self.expected.clear()
        if snap.leads_available <= 0:
            return self._decided(snap, 0, "no leads")
        future = self._sight.foresight(snap.now)
        if not future.operators:
            return self._decided(snap, 0, "nobody logged in")
        base = _baseline(future.operators, future.committed)
        new: list[tuple[Demand, bool]] = []
        chosen: list[str] = []
        reason = "every due lead placed"
        for candidate in self._sight.candidates(snap.now):
            if len(chosen) >= snap.leads_available:
                break
            if candidate.locked:
                reason = "a locked-out lead is next"
                break
            if candidate.demand is not None:
                trial = [*new, (candidate.demand, True)]
                if _served(future.operators, base + trial) is None:
                    reason = "the next answer would find no operator in time"
                    break
                new = trial
            chosen.append(candidate.order_id)
        self.expected.extend(chosen)
        return self._decided(snap, len(chosen), f"{len(new)} answers planned; {reason}")

    def _decided(self, snap: PacingSnapshot, n: int, reason: str) -> int:
        self._stats = PacingStatistics(
            name=self.name,
            mode="oracle",
            dial_level=dial_level_of(snap, n),
            last_reason=reason,
            last_calls=n,
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
        return self._stats


class OracleRouting:
    """Each call to the free operator with the highest true rate for its category."""

    name = "oracle"

    def __init__(self, rate: Callable[[str, str], float]) -> None:
        self._rate = rate

    def choose(
        self, request: RoutingRequest, candidates: Sequence[OperatorView], now: float
    ) -> OperatorView | None:
        views = shortlist(request, candidates)
        category = request.category
        if category is None:
            return min(views, key=_idle_key, default=None)
        return min(views, key=lambda v: (-self._rate(v.id, category), *_idle_key(v)), default=None)


def _idle_key(view: OperatorView) -> tuple[float, str]:
    started = view.idle_since if view.idle_since is not None else view.since
    return (started, view.id)
