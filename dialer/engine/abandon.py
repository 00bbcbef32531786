"""Exact abandon counts per campaign over sliding windows (1 hour, 24 hours, 30 days).

The regulations count abandoned calls as a share of live answers over a window: 24 hours in the
UK (Ofcom), 30 days in the US (FTC/FCC). `AbandonLedger` keeps one campaign's counts and answers
`rate(now, window_s)` = abandons / live answers over `(now - window_s, now]`.

What a caller may rely on:

- Counts are exact at one-second resolution: an event stamped `t` belongs to second `floor(t)`,
  and a window covers the seconds `floor(now - window_s) + 1 .. floor(now)`. For whole-second
  stamps that is exactly the half-open interval `(now - window_s, now]`: an event at
  `now - window_s` has left the window, an event at `now` is in it.
- Memory is bounded: only seconds that saw an event are stored (one row of cumulative counts
  each), and rows older than the retention (30 days for the ledger) are dropped as new events
  arrive. At 5,000 answers a day that is at most ~150,000 rows of three 8-byte integers.
- Events may arrive slightly out of order (the newest stamp is not required to come last);
  they are still counted exactly. Events older than the retention are ignored: no window the
  ledger answers can contain them.
- The ledger reads no clock and keeps no global state; `now` is whatever clock the caller runs.

An abandoned call is also a live answer: the caller records both (the answer when the customer
picks up, the abandon when no operator took the call within the connect budget).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["DAY", "HOUR", "MONTH_30D", "AbandonLedger", "SlidingCounts"]

HOUR: Final = 3600.0
DAY: Final = 86400.0
MONTH_30D: Final = 30 * DAY

_INITIAL_CAPACITY: Final = 256


class SlidingCounts:
    """Exact per-second counts of a few kinds of events, queried over sliding windows.

    `add(now, kind)` counts one event of `kind` (0 .. kinds-1); `counts(now, window_s)` returns
    the number of events of each kind in the window, with the second-resolution rule of the
    module docstring. Windows longer than `retention_s` are refused rather than answered wrong.
    """

    __slots__ = ("_before", "_cum", "_head", "_keys", "_size", "kinds", "retention_s")

    def __init__(self, *, kinds: int, retention_s: float) -> None:
        if kinds < 1:
            raise ValueError(f"kinds must be at least 1, got {kinds}")
        if not retention_s > 0:
            raise ValueError(f"retention_s must be positive, got {retention_s}")
        self.kinds = kinds
        self.retention_s = float(retention_s)
        # Rows _head .. _size-1 are live: the second of each row, ascending, and the running
        # totals through that second. Prefix sums make every window query two binary searches.
        self._keys: npt.NDArray[np.int64] = np.zeros(_INITIAL_CAPACITY, dtype=np.int64)
        self._cum: npt.NDArray[np.int64] = np.zeros((_INITIAL_CAPACITY, kinds), dtype=np.int64)
        self._head = 0
        self._size = 0
        # Running totals of everything before row _head (pruned or never stored).
        self._before: npt.NDArray[np.int64] = np.zeros(kinds, dtype=np.int64)

    @property
    def bucket_count(self) -> int:
        """Seconds currently stored (each second that saw at least one event)."""
        return self._size - self._head

    @property
    def capacity(self) -> int:
        """Rows allocated; stays within a small factor of `bucket_count` plus a constant."""
        return int(self._keys.shape[0])

    def add(self, now: float, kind: int, count: int = 1) -> None:
        """Count `count` events of `kind` at `now`."""
        if not 0 <= kind < self.kinds:
            raise ValueError(f"kind must be in 0..{self.kinds - 1}, got {kind}")
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        if not math.isfinite(now):
            raise ValueError(f"now must be finite, got {now}")
        key = math.floor(now)
        if self._size > self._head:
            newest = int(self._keys[self._size - 1])
            if key <= math.floor(newest - self.retention_s):
                return
            if key == newest:
                self._cum[self._size - 1, kind] += count
                return
            if key < newest:
                self._insert_older(key, kind, count)
                return
        self._append(key, kind, count)
        self._prune(key)

    def counts(self, now: float, window_s: float) -> tuple[int, ...]:
        """Events of each kind in the seconds `floor(now - window_s) + 1 .. floor(now)`."""
        if not 0 < window_s <= self.retention_s:
            raise ValueError(f"window_s must be in (0, {self.retention_s:g}], got {window_s}")
        keys = self._keys[self._head : self._size]
        lo = math.floor(now - window_s)
        hi = math.floor(now)
        i = int(np.searchsorted(keys, lo, side="right"))
        j = int(np.searchsorted(keys, hi, side="right"))
        if j <= i:
            return (0,) * self.kinds
        upper = self._cum[self._head + j - 1]
        lower = self._cum[self._head + i - 1] if i > 0 else self._before
        return tuple(int(v) for v in upper - lower)

    def _append(self, key: int, kind: int, count: int) -> None:
        if self._size == self._keys.shape[0]:
            self._make_room()
        row = self._size
        self._keys[row] = key
        self._cum[row] = self._cum[row - 1] if row > self._head else self._before
        self._cum[row, kind] += count
        self._size += 1

    def _insert_older(self, key: int, kind: int, count: int) -> None:
        # Rare (a late event): O(rows) but keeps every window exact.
        keys = self._keys[self._head : self._size]
        pos = self._head + int(np.searchsorted(keys, key, side="left"))
        if pos < self._size and int(self._keys[pos]) == key:
            self._cum[pos : self._size, kind] += count
            return
        if self._size == self._keys.shape[0]:
            self._make_room()
            pos = self._head + int(np.searchsorted(self._keys[self._head : self._size], key))
        self._keys[pos + 1 : self._size + 1] = self._keys[pos : self._size]
        self._cum[pos + 1 : self._size + 1] = self._cum[pos : self._size]
        self._keys[pos] = key
        self._cum[pos] = self._cum[pos - 1] if pos > self._head else self._before
        self._cum[pos : self._size + 1, kind] += count
        self._size += 1

    def _prune(self, newest: int) -> None:
        keys = self._keys[self._head : self._size]
        # A second at or before `newest - retention` can be in no window the caller may ask.
        # (An integer bound: a float one would make numpy convert every key to compare.)
        oldest_out = math.floor(newest - self.retention_s)
        drop = int(np.searchsorted(keys, oldest_out, side="right"))
        if drop:
            self._before = self._cum[self._head + drop - 1].copy()
            self._head += drop

    def _make_room(self) -> None:
        live = self._size - self._head
        capacity = self._keys.shape[0]
        if live > capacity // 2:
            capacity *= 2
        keys = np.zeros(capacity, dtype=np.int64)
        cum = np.zeros((capacity, self.kinds), dtype=np.int64)
        keys[:live] = self._keys[self._head : self._size]
        cum[:live] = self._cum[self._head : self._size]
        self._keys, self._cum = keys, cum
        self._head, self._size = 0, live


class AbandonLedger:
    """One campaign's abandons and live answers, exact over windows up to 30 days."""

    HOUR: Final = HOUR
    DAY: Final = DAY
    MONTH_30D: Final = MONTH_30D

    __slots__ = ("_counts",)

    _ABANDON: Final = 0
    _ANSWER: Final = 1

    def __init__(self) -> None:
        self._counts = SlidingCounts(kinds=2, retention_s=MONTH_30D)

    @property
    def bucket_count(self) -> int:
        """Seconds currently stored; bounded by the 30-day retention."""
        return self._counts.bucket_count

    def record_live_answer(self, now: float) -> None:
        """A live person answered a call of this campaign at `now`."""
        self._counts.add(now, self._ANSWER)

    def record_abandon(self, now: float) -> None:
        """An answered call of this campaign was abandoned at `now` (also record its answer)."""
        self._counts.add(now, self._ABANDON)

    def counts(self, now: float, window_s: float) -> tuple[int, int]:
        """`(abandons, live_answers)` over the window ending at `now` (at most 30 days)."""
        abandons, answers = self._counts.counts(now, window_s)
        return abandons, answers

    def rate(self, now: float, window_s: float) -> float | None:
        """`abandons / live_answers` over the window, or None when it holds no answer."""
        abandons, answers = self.counts(now, window_s)
        if answers == 0:
            return None
        return abandons / answers
