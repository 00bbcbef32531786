"""Simulated shop traffic and simulated operators for `obzvon demo`.

`OrderFeed` produces orders the way the field sees them: a daily volume shaped by an hourly
profile (the New Year spike's 580 → 1,140 orders a day by default), several time zones, product
categories and amounts. `OperatorBot` is a simulated operator's desktop: it logs in through the
same HTTP API a real operator's desktop uses, goes ready, and after each call posts the
disposition its true conversion rate for the order's category gives.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from dialer.clock import Clock
from dialer.config import OperatorSettings

log = logging.getLogger(__name__)

# relative arrivals by local hour (the field's curve: a morning rise, an evening peak)
HOURLY_PROFILE: tuple[int, ...] = (
    1,
    1,
    1,
    1,
    1,
    1,
    2,
    4,
    6,
    7,
    7,
    7,
    6,
    6,
    6,
    6,
    6,
    6,
    7,
    8,
    8,
    6,
    4,
    2,
)
CATEGORIES: Mapping[str, float] = {"cosmetics": 0.4, "gadgets": 0.3, "health": 0.2, "home": 0.1}
TIMEZONES: Mapping[str, float] = {
    "Europe/Moscow": 0.6,
    "Asia/Yekaterinburg": 0.25,
    "Asia/Novosibirsk": 0.15,
}
REGIONS = {"Europe/Moscow": "77", "Asia/Yekaterinburg": "66", "Asia/Novosibirsk": "54"}
FIRST_NAMES = ("Ирина", "Ольга", "Сергей", "Анна", "Дмитрий", "Елена", "Алексей", "Мария")


@dataclass(frozen=True, slots=True)
class DemoOrder:
    external_id: str
    phone: str
    customer_name: str
    timezone: str
    region: str
    category: str
    amount: float
    items: tuple[Mapping[str, Any], ...]


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


@dataclass
class OrderFeed:
    """Orders arriving as a Poisson process whose rate follows `per_day` × `HOURLY_PROFILE`."""

    per_day: float = 1140.0
    seed: int = 1
    profile: Sequence[int] = HOURLY_PROFILE
    rng: random.Random = field(init=False)
    _n: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def rate_per_s(self, local_hour: int) -> float:
        share = self.profile[local_hour % 24] / sum(self.profile)
        return self.per_day * share / 3600.0

    def next_gap_s(self, local_hour: int) -> float:
        return self.rng.expovariate(max(self.rate_per_s(local_hour), 1e-9))

    def make(self) -> DemoOrder:
        self._n += 1
        rng = self.rng
        tz = _pick(rng, TIMEZONES)
        category = _pick(rng, CATEGORIES)
        amount = max(490.0, round(rng.gauss(2500, 900), -1))
        return DemoOrder(
            external_id=f"demo-{self._n:06d}",
            phone=f"+79{rng.randrange(10**9):09d}",
            customer_name=rng.choice(FIRST_NAMES),
            timezone=tz,
            region=REGIONS[tz],
            category=category,
            amount=amount,
            items=({"sku": f"{category[:3].upper()}-{rng.randrange(100):02d}", "qty": 1},),
        )


@dataclass
class OperatorBot:
    """One simulated operator driving the HTTP API with their own token."""

    operator_id: str
    token: str
    base_url: str
    clock: Clock
    conversion: Mapping[str, float]  # category → probability the customer confirms
    rng: random.Random
    poll_s: float = 0.05
    upsell_prob: float = 0.75
    dispositions: int = 0

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=5) as http:
            # the daemon's HTTP server may still be starting: keep trying to log in
            for _ in range(600):
                if await self._call(http, "post", "/api/operators/me/login") is not None:
                    break
                await asyncio.sleep(0.1)
            await self._call(http, "post", "/api/operators/me/ready")
            cards: dict[str, dict[str, Any] | None] = {}
            while True:
                await asyncio.sleep(self.poll_s)
                me = await self._call(http, "get", "/api/operators/me")
                if me is None:
                    continue
                call_id = me.get("call_id")
                if call_id and call_id not in cards:
                    cards[call_id] = await self._call(http, "get", "/api/operators/me/call")
                # every call of ours that ended: say how it went (late ones too, nothing lost)
                for done in me.get("awaiting_disposition", []):
                    await self._dispose(http, done, cards.pop(done, None))
                if me["state"] == "paused" and me.get("pause_reason") == "no answer":
                    await self._call(http, "post", "/api/operators/me/ready")
                if len(cards) > 100:  # calls that never reached us (released before talking)
                    cards.clear()

    async def _dispose(
        self, http: httpx.AsyncClient, call_id: str, card: Mapping[str, Any] | None
    ) -> None:
        category = (card or {}).get("category") or "cosmetics"
        p = self.conversion.get(category, 0.6)
        body: dict[str, Any]
        if self.rng.random() < p:
            body = {"outcome": "confirmed"}
            if self.rng.random() < self.upsell_prob:
                price = round(self.rng.uniform(400, 1400), -1)
                body["upsell_items"] = [{"sku": "UP-1", "name": "upsell", "price": price}]
        elif self.rng.random() < 0.15:
            callback_at = self.clock.now() + 3600
            body = {"outcome": "callback", "callback_at": _iso(callback_at)}
        else:
            body = {"outcome": "rejected", "reason": "changed mind"}
        if await self._call(http, "post", f"/api/calls/{call_id}/disposition", json=body):
            self.dispositions += 1

    async def _call(
        self, http: httpx.AsyncClient, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any] | None:
        try:
            response = await http.request(method.upper(), path, **kwargs)
        except httpx.HTTPError as exc:
            log.debug("operator %s: %s %s failed: %s", self.operator_id, method, path, exc)
            return None
        if response.status_code >= 400:
            log.debug("operator %s: %s %s → %s", self.operator_id, method, path, response.text)
            return None
        data = response.json() if response.content else {}
        return data if isinstance(data, dict) else {}


def operator_bots(
    operators: Iterable[OperatorSettings],
    *,
    base_url: str,
    clock: Clock,
    conversion: Callable[[int], Mapping[str, float]],
    rng: random.Random,
    poll_s: float = 0.05,
) -> list[OperatorBot]:
    """A simulated desktop for each operator (supervisors excluded), the i-th converting as
    `conversion(i)` says, each with its own generator drawn from `rng`."""
    return [
        OperatorBot(
            operator_id=o.id,
            token=o.token.get_secret_value() if o.token else "",
            base_url=base_url,
            clock=clock,
            conversion=conversion(i),
            rng=random.Random(rng.random()),
            poll_s=poll_s,
        )
        for i, o in enumerate(op for op in operators if op.role == "operator")
    ]


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()


def true_conversion(rng: random.Random, categories: Sequence[str]) -> dict[str, float]:
    """An operator's true success per category: a base of 0.65 with operator and category
    spread, clipped to a sane range (the benchmark scenarios use the same shape)."""
    op = rng.gauss(0, 0.08)
    return {c: min(0.95, max(0.2, 0.65 + op + rng.gauss(0, 0.1))) for c in categories}


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[k]
