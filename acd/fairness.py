"""The fairness guard: limits on how far skill-based routing may starve or overload anyone.

Routing by measured performance sends calls to the best operators; left alone it lets the rest
idle for long stretches and piles calls on the few. `FairnessGuard` states two limits that a
policy applies to its shortlist (the free operators who may take the call) before it picks:

1. **Idle limit.** If anyone on the shortlist has been ready for `max_idle_s` or longer, the
   call goes to whoever of them has been ready longest (the smaller id on a tie), whatever
   their record. Overdue operators are therefore served in the order they became ready, one per
   routed call, ahead of everyone else.
2. **Load ratio.** Otherwise the call goes to someone for whom it is within quota: with `m` the
   fewest calls handled by anyone on the shortlist, taking the call must not lift the
   operator's `calls_handled` above `max(max_load_ratio × m, m + load_slack)`. The operator
   with the fewest calls is always within quota, so the guard never leaves a call unrouted.

What this does not promise: operators who are busy, or not on the shortlist (another category,
another language, supervisors kept free), are outside both rules for that call; and the load is
a count of calls handled (`OperatorView.calls_handled`, since the operator joined the board),
which tracks occupancy only as far as calls are of similar length. An operator who joins late
is favoured until their count reaches the quota of the others.

The guard works on arrays, one entry per shortlisted operator, so that a policy can apply it
to a thousand operators without a Python loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from acd.errors import InvalidValue

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Mask = NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True)
class FairnessGuard:
    """The two limits (see the module doc). `math.inf` switches either one off."""

    max_idle_s: float = 180.0
    max_load_ratio: float = 1.3
    load_slack: int = 2

    def __post_init__(self) -> None:
        if not self.max_idle_s > 0:
            raise InvalidValue(f"max_idle_s must be > 0, got {self.max_idle_s}")
        if not self.max_load_ratio >= 1:
            raise InvalidValue(f"max_load_ratio must be >= 1, got {self.max_load_ratio}")
        if self.load_slack < 1:
            # With no slack the operator with the fewest calls could be over quota (0 calls).
            raise InvalidValue(f"load_slack must be >= 1, got {self.load_slack}")

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

    def cap(self, fewest: int) -> float:
        """The most calls anyone may reach when the fewest on the shortlist is `fewest`."""
        if math.isinf(self.max_load_ratio):
            return math.inf
        return max(self.max_load_ratio * fewest, fewest + self.load_slack)

    def within_quota(self, calls_handled: Ints) -> Mask:
        """Which operators may take the call under the load ratio (never none, if any given)."""
        if len(calls_handled) == 0:
            return np.zeros(0, dtype=np.bool_)
        return np.asarray(calls_handled + 1 <= self.cap(int(calls_handled.min())))
