"""The fairness guard: limits on how far skill-based routing may starve or overload anyone.

Routing by measured performance sends calls to the best operators; left alone it lets the rest
idle for long stretches and piles work on the few. `FairnessGuard` states two limits that a
policy applies to its shortlist (the free operators who may take the call) before it picks:

1. **Occupancy ratio** (the primary rule). Only operators within quota compete: with `m` the
   lowest occupancy on the shortlist, those whose occupancy is at most
   `max(max_load_ratio × m, m + occupancy_slack)`. The least occupied operator is always within
   quota, so the guard never leaves a call unrouted, and an operator whose occupancy falls a
   ratio behind the others' gets the next call.
2. **Idle limit** (a backstop). If anyone on the shortlist has been ready for `max_idle_s` or
   longer, the call goes to whoever of them has been ready longest (the smaller id on a tie),
   whatever their record and before the ratio is looked at. Overdue operators are served in
   the order they became ready, one per routed call. The occupancy ratio already feeds anyone
   whose share of the work falls behind, so the default limit is long (30 minutes): it binds
   on a floor with far more operators than calls (at night, say), where it rotates the few
   calls among those who have waited longest.

Occupancy is the standard call-centre one: time handling calls / (time handling calls + time
ready for one), exponentially weighted with a half-life of `occupancy_half_life_s` (a day, so
that the ratio holds over a day's work as a supervisor judges it; a short half-life lets it
drift over the day). `WorkLedger` measures it from what a router sees, so the daemon and the
simulator measure it alike: a handling spell runs from the moment the router gives the
operator a call to the moment the operator is next seen ready (reserved, ringing, talking and
wrap-up: what the board calls busy); a ready spell runs from when the operator became ready to
when they were given a call, or to the latest decision that saw them ready. Time paused or
logged out counts as neither. A pause taken straight after a call, before the operator is ready
again, counts as handling time (the ledger cannot tell the two apart) unless the spell is longer
than `longest_handling_s` (15 minutes: a break or a logout), which counts as the usual handling
spell instead.

What this does not promise: operators who are busy, or not on the shortlist (another category,
another language, supervisors kept free), are outside both rules for that call; the ledger
lives in memory, so after a restart everyone starts level.

Both work on arrays, one entry per shortlisted operator, so that a policy can apply them to a
thousand operators without a Python loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from acd.errors import InvalidValue

Floats = NDArray[np.float64]
Slots = NDArray[np.intp]
Mask = NDArray[np.bool_]

_RESCALE_AT: Final = 64.0  # half-lives past the reference time before sums are renormalised


@dataclass(frozen=True, slots=True, kw_only=True)
class FairnessGuard:
    """The two limits (see the module doc). `math.inf` switches either one off."""

    max_idle_s: float = 1800.0
    max_load_ratio: float = 1.3
    occupancy_slack: float = 0.03
    occupancy_half_life_s: float = 86_400.0

    def __post_init__(self) -> None:
        if not self.max_idle_s > 0:
            raise InvalidValue(f"max_idle_s must be > 0, got {self.max_idle_s}")
        if not self.max_load_ratio >= 1:
            raise InvalidValue(f"max_load_ratio must be >= 1, got {self.max_load_ratio}")
        if not 0 < self.occupancy_slack < 1:
            # With no slack an operator at occupancy 0 would hold everyone else out of quota.
            raise InvalidValue(f"occupancy_slack must be in (0, 1), got {self.occupancy_slack}")
        if not 0 < self.occupancy_half_life_s < math.inf:
            raise InvalidValue(
                f"occupancy_half_life_s must be a positive number, got {self.occupancy_half_life_s}"
            )

    def overdue(self, idle_since: Floats, now: float) -> Mask:
        """Which operators have been ready for `max_idle_s` or longer at `now`."""
        return np.asarray(now - idle_since >= self.max_idle_s)

    def first_overdue(self, idle_since: Floats, now: float) -> NDArray[np.intp]:
        """Positions of the overdue operators who became ready earliest (several on a tie).

        Empty when nobody is overdue. The caller breaks a tie (by id, for example).
        """
        late = self.overdue(idle_since, now)
        if not late.any():
            return np.empty(0, dtype=np.intp)
        earliest = idle_since[late].min()
        return np.flatnonzero(late & (idle_since == earliest))

    def cap(self, lowest: float) -> float:
        """The highest occupancy that may take a call when the lowest on the shortlist is
        `lowest`."""
        if math.isinf(self.max_load_ratio):
            return math.inf
        return max(self.max_load_ratio * lowest, lowest + self.occupancy_slack)

    def within_quota(self, occupancy: Floats) -> Mask:
        """Which operators may take the call under the occupancy ratio (never none, if any
        given)."""
        if len(occupancy) == 0:
            return np.zeros(0, dtype=np.bool_)
        return np.asarray(occupancy <= self.cap(float(occupancy.min())))


class WorkLedger:
    """Each operator's handling and ready time as a router sees it (see the module doc).

    `slots` gives the ledger's row of each operator (adding newcomers); `observe` records that
    some are ready at `now` and returns their occupancy; `assigned` records that one of them
    was given a call.
    Sums are exponentially weighted with `half_life_s`. Nothing here reads a clock, and a `now`
    earlier than one already seen is taken as that one.
    """

    __slots__ = (
        "_busy",
        "_ids",
        "_latest",
        "_mark",
        "_pending",
        "_ready",
        "_spells",
        "_t_ref",
        "half_life_s",
        "longest_handling_s",
    )

    def __init__(self, *, half_life_s: float = 86_400.0, longest_handling_s: float = 900.0) -> None:
        if not 0 < half_life_s < math.inf:
            raise InvalidValue(f"half_life_s must be a positive number, got {half_life_s}")
        if not longest_handling_s > 0:
            raise InvalidValue(f"longest_handling_s must be > 0, got {longest_handling_s}")
        self.half_life_s = half_life_s
        self.longest_handling_s = longest_handling_s
        self._spells = np.zeros(2)  # seconds and count of the handling spells taken as they are
        self._ids: dict[str, int] = {}
        # Weighted sums, scaled to the reference time `_t_ref`: a spell ending at t adds its
        # length times 2**((t - t_ref) / half_life). Occupancy is a ratio of two such sums, so
        # the common factor of time passing never has to be applied.
        self._busy = np.zeros(8)
        self._ready = np.zeros(8)
        self._pending = np.full(8, np.nan)  # when the operator was last given a call
        self._mark = np.full(8, -np.inf)  # ready time before this is already counted
        self._t_ref = math.nan
        self._latest = -math.inf

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def operator_ids(self) -> list[str]:
        """The operator of each row, in row order (a copy)."""
        return list(self._ids)

    def slots(self, operator_ids: Sequence[str]) -> Slots:
        """The ledger's row of each operator, in order; an operator not seen before is added."""
        get = self._ids.get
        rows = [get(op, -1) for op in operator_ids]
        if -1 in rows:
            rows = [self._add(op) if r < 0 else r for op, r in zip(operator_ids, rows, strict=True)]
        return np.array(rows, dtype=np.intp)

    def observe(self, slots: Slots, idle_since: Floats, now: float) -> Floats:
        """Record that the operators in `slots` are ready at `now`, ready since `idle_since`,
        and return their occupancy.

        Closes the handling spell of each one given a call since they were last seen ready,
        and counts their ready time up to `now`. An operator with no time yet has occupancy 0.
        """
        now = self._now(now)
        w = self._weight(now)
        given = self._pending[slots]
        back = given <= idle_since  # NaN (no call pending) compares False
        if back.any():
            rows = slots[back]
            spell = idle_since[back] - given[back]
            long = spell > self.longest_handling_s
            if long.any():
                # A break or a logout after the call: count the usual handling time instead.
                usual = self._spells[0] / self._spells[1] if self._spells[1] > 0 else 0.0
                spell = np.where(long, min(usual, self.longest_handling_s), spell)
            if not long.all():
                self._spells += (float(spell[~long].sum()), float((~long).sum()))
            self._busy[rows] += spell * w
            self._pending[rows] = np.nan
        waited = np.maximum(now - np.maximum(idle_since, self._mark[slots]), 0.0)
        self._ready[slots] += waited * w
        self._mark[slots] = now
        busy = self._busy[slots]
        total = busy + self._ready[slots]
        out = np.zeros(len(slots))
        np.divide(busy, total, out=out, where=total > 0)
        return out

    def assigned(self, slot: int, idle_since: float, now: float) -> None:
        """Record that the operator in `slot`, ready since `idle_since`, was given a call."""
        now = self._now(now)
        waited = now - max(idle_since, float(self._mark[slot]))
        if waited > 0:
            self._ready[slot] += waited * self._weight(now)
        self._mark[slot] = now
        self._pending[slot] = now

    def _now(self, now: float) -> float:
        if math.isnan(self._t_ref):
            self._t_ref = now
        self._latest = max(self._latest, now)
        return self._latest

    def _weight(self, now: float) -> float:
        exponent = (now - self._t_ref) / self.half_life_s
        if exponent > _RESCALE_AT:
            # Bring the reference time forward before the scaled sums overflow a float.
            factor = float(np.exp2(-exponent))
            self._busy *= factor
            self._ready *= factor
            self._t_ref, exponent = now, 0.0
        return float(np.exp2(exponent))

    def _add(self, operator_id: str) -> int:
        row = self._ids.setdefault(operator_id, len(self._ids))
        if row >= len(self._busy):
            size = 2 * len(self._busy)
            old = (self._busy, self._ready, self._pending, self._mark)
            grown = [np.full(size, fill) for fill in (0.0, 0.0, np.nan, -np.inf)]
            for bigger, smaller in zip(grown, old, strict=True):
                bigger[: len(smaller)] = smaller
            self._busy, self._ready, self._pending, self._mark = grown
        return row
