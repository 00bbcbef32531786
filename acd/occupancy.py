"""How one operator spent the recent past: the time in each state over a sliding window.

A `Timeline` remembers the states an operator went through, forgets what fell out of the window
when a new state is recorded (so its memory stays bounded however long the board runs), and
answers how long the operator was logged in and how long busy within the window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from acd.states import BUSY_STATES, LOGGED_IN_STATES, OperatorState


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeInWindow:
    """Seconds spent logged in and busy (RESERVED, RINGING, TALKING, WRAPUP) within a window."""

    logged_in_s: float
    busy_s: float

    @property
    def occupancy(self) -> float:
        """`busy_s / logged_in_s`, in 0..1; 0.0 when the operator was not logged in at all."""
        if self.logged_in_s <= 0:
            return 0.0
        return min(1.0, self.busy_s / self.logged_in_s)


class Timeline:
    """The states of one operator over the last `window_s` seconds."""

    __slots__ = ("_closed", "_since", "_state", "window_s")

    def __init__(self, *, state: OperatorState, since: float, window_s: float) -> None:
        self.window_s = window_s
        self._state = state
        self._since = since
        # (start, end, state) of finished periods, oldest first.
        self._closed: deque[tuple[float, float, OperatorState]] = deque()

    def enter(self, state: OperatorState, now: float) -> None:
        """Record that the operator entered `state` at `now`."""
        self._closed.append((self._since, now, self._state))
        self._state = state
        self._since = now
        horizon = now - self.window_s
        while self._closed and self._closed[0][1] <= horizon:
            self._closed.popleft()

    def time_in_window(self, now: float) -> TimeInWindow:
        """Logged-in and busy seconds within `[now - window_s, now]`."""
        horizon = now - self.window_s
        logged_in = busy = 0.0
        for start, end, state in (*self._closed, (self._since, now, self._state)):
            # Clamped so that a clock that stepped backwards never yields negative time.
            span = max(0.0, min(end, now) - max(start, horizon))
            if state in LOGGED_IN_STATES:
                logged_in += span
            if state in BUSY_STATES:
                busy += span
        return TimeInWindow(logged_in_s=logged_in, busy_s=busy)
