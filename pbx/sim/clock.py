"""Simulated time: seconds that run `time_scale` times faster than the wall."""

from __future__ import annotations

import asyncio
import math
import time


class SimClock:
    """Simulated seconds since the clock was made; every sim timer sleeps through this.

    With ``time_scale=60`` a 15-second ring lasts a quarter of a real second.
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        if not (time_scale > 0 and math.isfinite(time_scale)):
            raise ValueError(f"time_scale must be a positive number, not {time_scale!r}")
        self.time_scale = time_scale
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.time_scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.time_scale)

    async def sleep_until(self, t: float) -> None:
        await self.sleep(t - self.now())
