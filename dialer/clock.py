"""Time for the daemon: one `Clock` interface, live or scaled.

The engine never reads a clock; the daemon reads one of these and stamps every event it feeds
the engine. `ScaledClock` runs simulated time faster than wall time for the demo: it must use
the same factor as the simulator it talks to, so that a 2-second connect budget means the same
thing on both sides.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (simulated for a scaled clock)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of this clock's time."""
        ...


class LiveClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Time that runs `scale` times faster than the wall, starting at `start` (epoch seconds)."""

    def __init__(self, *, scale: float, start: float | None = None) -> None:
        if scale <= 0:
            raise ValueError("scale must be positive")
        self.scale = scale
        self._start = time.time() if start is None else start
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._mono0) * self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)
