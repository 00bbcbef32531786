"""The simulated world of one scenario and seed: its orders, its operators, and every call's fate.

Everything random is drawn here, from streams keyed by (seed, what, index), and nothing else in
the simulator draws a random number. Each order has its own stream of attempt fates, drawn in
attempt order the first time they are asked for, so attempt k of an order behaves the same
whichever policy is being measured and whenever it is placed (only the answer depends on the
time: the chance decays with the order's age). Policies are therefore compared on the same
customers (common random numbers), and the pacing oracle can read a call's future before it is
placed.

What a caller may rely on: the same scenario and seed give equal `World`s; `fate(i, k)` always
returns the same `Fate` for order i's attempt k (0-based).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from benchmarks.sim.scenario import MeanSd, Scenario, Span, lognormal_params

__all__ = ["Fate", "OperatorTruth", "Order", "World"]

# Streams of the seed sequence, one per kind of draw.
_ORDERS, _FATES, _OPERATORS, _ADMIN, _HISTORY = 0, 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class Order:
    """One order as the shop stored it, with what only the simulator knows about it."""

    index: int
    order_id: str
    phone: str
    created_at: float
    timezone: str
    category: str
    amount: float
    invalid: bool
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Fate:
    """What one call attempt will do, drawn before it is placed.

    The customer is busy (`busy`), or answers if `u_answer` is below the answer probability at
    the time of the call and `ring_s` is within the ring timeout, else rings out. An answer is
    an answering machine when `machine`. A person hangs up after `patience_s` of silence. The
    operator picks up `operator_answer_s` after being rung (or lets it ring out when
    `operator_miss`), talks `talk_s`, wraps up for `wrapup_s`; the order is confirmed when
    `u_confirm` is below the operator's true rate for its category, with `upsell_amount` added.
    """

    busy: bool
    u_answer: float
    ring_s: float
    setup_s: float
    machine: bool
    patience_s: float
    operator_answer_s: float
    operator_miss: bool
    talk_s: float
    wrapup_s: float
    customer_hangs_up: bool
    u_confirm: float
    upsell_amount: float


@dataclass(frozen=True, slots=True)
class OperatorTruth:
    """One operator: their shifts (epoch intervals), true confirmation rates, admin's levels."""

    id: str
    shifts: tuple[tuple[float, float], ...]
    rates: dict[str, float]
    levels: dict[str, int]


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _midnight(day: date, zone: str) -> float:
    return datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(zone)).timestamp()


class _Lognormal:
    __slots__ = ("mu", "sigma")

    def __init__(self, spec: MeanSd) -> None:
        self.mu, self.sigma = lognormal_params(spec)

    def at(self, z: float) -> float:
        return math.exp(self.mu + self.sigma * z)


class World:
    """The orders, operators and fates of `scenario` with `seed` (default: the scenario's)."""

    def __init__(self, scenario: Scenario, seed: int | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        zones = list(scenario.orders.timezones)
        first, last = scenario.start, scenario.start + timedelta(days=scenario.days)
        self.start = min(_midnight(first, z) for z in zones)
        self.end = max(_midnight(last, z) for z in zones)
        self.orders: tuple[Order, ...] = self._draw_orders(zones)
        self.categories = tuple(scenario.orders.categories)
        self.operators: tuple[OperatorTruth, ...] = self._draw_operators()
        self._truth = {op.id: op for op in self.operators}
        c, o = scenario.customers, scenario.operators
        self._ring, self._patience = _Lognormal(c.ring_time_s), _Lognormal(c.patience_s)
        self._talk, self._answer = _Lognormal(o.talk_time_s), _Lognormal(o.answer_delay_s)
        self._wrapup = _Lognormal(MeanSd(mean=o.wrapup_s, sd=o.wrapup_s * 0.3))
        self._fates: dict[int, list[Fate]] = {}
        self._streams: dict[int, np.random.Generator] = {}

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, *key]))

    # -- orders ------------------------------------------------------------------------------

    def _draw_orders(self, zones: list[str]) -> tuple[Order, ...]:
        spec = self.scenario.orders
        rng = self._rng(_ORDERS)
        zone_p = np.array([spec.timezones[z] for z in zones])
        hour_p = np.array(spec.hourly_profile, dtype=float)
        cats = list(spec.categories)
        cat_p = np.array([spec.categories[c] for c in cats])
        rows: list[tuple[float, str, str, float, bool]] = []
        for d, count in enumerate(spec.per_day):
            day = self.scenario.start + timedelta(days=d)
            midnights = [_midnight(day, z) for z in zones]
            zi = rng.choice(len(zones), size=count, p=zone_p / zone_p.sum())
            hours = rng.choice(24, size=count, p=hour_p / hour_p.sum())
            within = rng.random(count)
            ci = rng.choice(len(cats), size=count, p=cat_p / cat_p.sum())
            amounts = rng.normal(spec.amount.mean, spec.amount.sd, size=count)
            invalid = rng.random(count) < spec.invalid_share
            for k in range(count):
                at = float(midnights[zi[k]] + (hours[k] + within[k]) * 3600.0)
                amount = max(100.0, round(float(amounts[k]), 2))
                rows.append((at, zones[zi[k]], cats[ci[k]], amount, bool(invalid[k])))
        rows.sort(key=lambda r: r[0])
        dup = rng.random(len(rows)) < spec.duplicate_share
        earlier = rng.random(len(rows))
        orders: list[Order] = []
        for i, (at, zone, category, amount, bad) in enumerate(rows):
            duplicate = bool(dup[i]) and i > 0
            # A duplicate is the same customer ordering again: the earlier order's phone.
            phone = orders[int(earlier[i] * i)].phone if duplicate else _phone(i)
            orders.append(
                Order(
                    index=i,
                    order_id=f"o{i:06d}",
                    phone=phone,
                    created_at=at,
                    timezone=zone,
                    category=category,
                    amount=amount,
                    invalid=bad,
                    duplicate=duplicate,
                )
            )
        return tuple(orders)

    # -- operators ---------------------------------------------------------------------------

    def _draw_operators(self) -> tuple[OperatorTruth, ...]:
        spec = self.scenario.operators
        conv = spec.conversion
        rng = self._rng(_OPERATORS)
        admin = self._rng(_ADMIN)
        n, cats = spec.count, self.categories
        op_eff = rng.normal(0.0, conv.operator_sd, size=n)
        cat_eff = rng.normal(0.0, conv.category_sd, size=len(cats))
        inter = rng.normal(0.0, conv.interaction_sd, size=(n, len(cats)))
        spread = math.hypot(conv.operator_sd, conv.interaction_sd) or 1.0
        noise = admin.normal(0.0, spec.admin_noise * spread, size=(n, len(cats)))
        spans = spec.shift_spans()
        width = len(str(n))
        result: list[OperatorTruth] = []
        for i in range(n):
            rates: dict[str, float] = {}
            levels: dict[str, int] = {}
            for j, cat in enumerate(cats):
                effect = op_eff[i] + inter[i, j]
                rates[cat] = _expit(_logit(conv.base) + effect + cat_eff[j])
                # The admin ranks operators by a noisy view of their own effect: levels 1..10.
                seen = (effect + noise[i, j]) / spread
                levels[cat] = int(min(10, max(1, round(5.5 + 2.0 * seen))))
            shifts = self._shift_intervals(spans[i % len(spans)])
            result.append(
                OperatorTruth(id=f"op{i + 1:0{width}d}", shifts=shifts, rates=rates, levels=levels)
            )
        return tuple(result)

    def _shift_intervals(self, span: Span) -> tuple[tuple[float, float], ...]:
        zone = self.scenario.campaign.timezone
        begin, finish = span.seconds()
        out: list[tuple[float, float]] = []
        for d in range(-1, self.scenario.days + 1):
            midnight = _midnight(self.scenario.start + timedelta(days=d), zone)
            lo, hi = max(self.start, midnight + begin), min(self.end, midnight + finish)
            if hi <= lo:
                continue
            if out and lo <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], hi))  # back-to-back shifts: one login
            else:
                out.append((lo, hi))
        return tuple(out)

    def rate(self, operator_id: str, category: str) -> float:
        """The operator's true probability of confirming an order of `category`."""
        return self._truth[operator_id].rates[category]

    def history(self, days: float) -> list[tuple[float, str, str, bool, float]]:
        """Outcomes the operators had in the `days` before the run, oldest first, as
        (time, operator, category, confirmed, confirmed value).

        What a performance record restored from the database would hold: each operator took
        an equal share of the scenario's average daily live answers, of every category in the
        scenario's mix, and confirmed at their true rate.
        """
        if days <= 0:
            return []
        spec, rng = self.scenario, self._rng(_HISTORY)
        per_op = days * sum(spec.orders.per_day) / spec.days * spec.customers.answer_prob
        per_op /= spec.operators.count
        cats = list(spec.orders.categories)
        weights = np.array([spec.orders.categories[c] for c in cats])
        rows: list[tuple[float, str, str, bool, float]] = []
        for op in self.operators:
            n = round(per_op)
            times = self.start - days * 86400.0 * rng.random(n)
            picks = rng.choice(len(cats), size=n, p=weights / weights.sum())
            wins = rng.random(n)
            amounts = np.maximum(
                100.0, rng.normal(spec.orders.amount.mean, spec.orders.amount.sd, n)
            )
            upsell = spec.operators.upsell
            extra = np.where(
                rng.random(n) < upsell.prob, rng.exponential(upsell.amount_mean or 1.0, n), 0.0
            )
            for k in range(n):
                cat = cats[int(picks[k])]
                won = bool(wins[k] < op.rates[cat])
                value = float(amounts[k] + extra[k]) if won else 0.0
                rows.append((float(times[k]), op.id, cat, won, value))
        rows.sort()
        return rows

    # -- fates -------------------------------------------------------------------------------

    def fate(self, order_index: int, attempt: int) -> Fate:
        """Order `order_index`'s attempt `attempt` (0-based); the same value every time."""
        fates = self._fates.setdefault(order_index, [])
        while len(fates) <= attempt:
            fates.append(self._draw_fate(order_index))
        return fates[attempt]

    def _draw_fate(self, order_index: int) -> Fate:
        rng = self._streams.get(order_index)
        if rng is None:
            rng = self._streams[order_index] = self._rng(_FATES, order_index)
        u = rng.random(8)
        z = rng.standard_normal(5)
        c, o = self.scenario.customers, self.scenario.operators
        upsell = 0.0
        if u[6] < o.upsell.prob and o.upsell.amount_mean > 0:
            upsell = round(-o.upsell.amount_mean * math.log1p(-u[7]), 2)  # exponential
        return Fate(
            busy=bool(u[0] < c.busy_share),
            u_answer=float(u[1]),
            ring_s=self._ring.at(z[0]),
            setup_s=1.0 + 3.0 * float(u[2]),
            machine=bool(u[3] < c.machine_share),
            patience_s=max(0.2, self._patience.at(z[1])),
            operator_answer_s=self._answer.at(z[2]),
            operator_miss=bool(u[4] < o.miss_share),
            talk_s=max(5.0, self._talk.at(z[3])),
            wrapup_s=min(2.0 * o.wrapup_s, self._wrapup.at(z[4])),
            customer_hangs_up=bool(u[5] < 0.5),
            u_confirm=float(rng.random()),
            upsell_amount=upsell,
        )

    def answer_probability(self, order: Order, at: float) -> float:
        """The chance that the customer answers a call placed at `at` (decays with age)."""
        c = self.scenario.customers
        age_min = max(0.0, at - order.created_at) / 60.0
        return float(c.answer_prob * 0.5 ** (age_min / c.answer_half_life_min))

    def answers(self, order: Order, fate: Fate, at: float, timeout_s: float) -> bool:
        """Whether attempt `fate`, placed at `at`, is picked up within `timeout_s` of ringing."""
        if order.invalid or fate.busy or fate.ring_s >= timeout_s:
            return False
        return fate.u_answer < self.answer_probability(order, at)


def _phone(i: int) -> str:
    # 7919 is prime and so coprime with 10**9: distinct orders get distinct numbers.
    return f"79{(i * 7919 + 12_345_678) % 1_000_000_000:09d}"
