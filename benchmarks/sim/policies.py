"""The engine's objects for a scenario: campaign rules, operator profiles and routing policies.

Pacers come from `dialer.engine.pacing.make_pacer` and routing policies from `acd.routing`
(and `acd.routing_learned` where it exists), exactly as the daemon builds them; only the two
oracles (`benchmarks.sim.oracle`) are the simulator's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import time
from typing import TYPE_CHECKING, Final

import numpy as np

from acd.profile import OperatorProfile
from acd.routing import LongestIdle, RandomRouting, RoutingPolicy, StaticTiers
from benchmarks.sim.oracle import OracleRouting
from benchmarks.sim.scenario import Scenario
from benchmarks.sim.world import World
from dialer.engine.campaign import CallingWindow, CampaignRules
from dialer.engine.commands import StoreOutcome

if TYPE_CHECKING:
    from acd.performance import PerformanceBook

__all__ = [
    "CAMPAIGN_ID",
    "PACING_NAMES",
    "ROUTING_NAMES",
    "OutcomeFeed",
    "Router",
    "campaign_rules",
    "daemon_feed",
    "make_router",
    "performance_routing_available",
    "profiles",
]

CAMPAIGN_ID: Final = "confirm"
PACING_NAMES: Final = ("progressive", "adaptive", "predictive", "oracle")
ROUTING_NAMES: Final = (
    "random",
    "longest-idle",
    "static-tiers",
    "performance",
    "oracle-fair",
    "oracle",
)
LEARNED: Final = frozenset({"performance", "oracle-fair"})
# The fair oracle's book: each operator's true rate in each category, as if measured over this
# many calls (a posterior so narrow that Thompson sampling picks by the true rate).
TRUTH_TRIALS: Final = 100_000.0

# The database `Learning` is built with in the simulator: never opened, as nothing is saved.
UNUSED_DATABASE: Final = "sqlite+aiosqlite://"

# How a stored outcome reaches a learning router: (the engine's command, the order's category,
# the order's amount, now), as `dialer.store.Store` hands it to `dialer.learning.Learning`.
OutcomeFeed = Callable[[StoreOutcome, str, float, float], None]


def campaign_rules(scenario: Scenario) -> CampaignRules:
    """The confirmation campaign the scenario's `[campaign]` and `[customers]` describe."""
    c = scenario.campaign
    window = c.window_span()
    start = window.start
    end = time(0, 0) if window.end_is_midnight else window.end
    return CampaignRules(
        id=CAMPAIGN_ID,
        pacing=c.pacing if c.pacing != "oracle" else "progressive",
        abandon_target=c.abandon_target,
        calling_window=CallingWindow(start=start, end=end),
        wrapup_s=scenario.operators.wrapup_s,
        connect_budget_s=c.connect_budget_s,
        ring_timeout_s=scenario.customers.no_answer_timeout_s,
        operator_ring_timeout_s=c.operator_ring_timeout_s,
        amd=c.amd,
        max_attempts=c.max_attempts,
        max_attempts_per_day=c.max_attempts_per_day,
        shop_name=scenario.name,
        timezone=c.timezone,
    )


def profiles(world: World) -> list[OperatorProfile]:
    """One profile per simulated operator, with the admin's skill levels.

    The board's wrap-up limit is set well past the longest simulated wrap-up (twice the mean),
    so every call gets its disposition from the operator, not from the limit running out.
    """
    limit = 2.0 * world.scenario.operators.wrapup_s + 60.0
    return [
        OperatorProfile(
            id=op.id,
            endpoint=f"PJSIP/{op.id}",
            campaigns=frozenset({CAMPAIGN_ID}),
            skills=op.levels,
            wrapup_s=limit,
        )
        for op in world.operators
    ]


@dataclass(frozen=True, slots=True)
class Router:
    """A routing policy and, for a learning one, where the engine's stored outcomes go."""

    policy: RoutingPolicy
    learn: OutcomeFeed | None = None


def performance_routing_available() -> bool:
    """Whether `acd.routing_learned.PerformanceRouting` can be imported."""
    try:
        from acd.routing_learned import PerformanceRouting  # noqa: F401
    except ImportError:
        return False
    return True


def _learned(world: World, seed: int, *, history_days: float, truth: bool) -> Router:
    """`acd.routing_learned.PerformanceRouting` with its production defaults (fairness guard
    included), fed every stored outcome of the run as the daemon feeds it.

    Its book starts with `history_days` of the operators' past outcomes (as if restored from
    the database), or with `truth`, the true rates themselves (`TRUTH_TRIALS` calls a cell):
    the fair oracle, the same policy and guard with perfect knowledge, which learns nothing.
    """
    if not performance_routing_available():
        raise ValueError("performance routing (acd.routing_learned.PerformanceRouting) is absent")
    from acd.performance import ALL_CAMPAIGNS, PerformanceBook, PerformanceRow
    from acd.routing_learned import PerformanceRouting

    book = PerformanceBook()
    policy = PerformanceRouting(book=book, rng=np.random.default_rng(seed))
    if truth:
        value = world.scenario.orders.amount.mean
        book.restore(
            PerformanceRow(
                operator_id=op.id,
                category=category,
                campaign_id=ALL_CAMPAIGNS,
                successes=rate * TRUTH_TRIALS,
                trials=TRUTH_TRIALS,
                value=rate * TRUTH_TRIALS * value,
                updated_at=world.start,
            )
            for op in world.operators
            for category, rate in op.rates.items()
        )
        return Router(policy=policy)
    for at, operator_id, category, confirmed, amount in world.history(history_days):
        book.record(operator_id, category, ALL_CAMPAIGNS, confirmed, amount, at)
    return Router(policy=policy, learn=daemon_feed(book))


def daemon_feed(book: PerformanceBook) -> OutcomeFeed:
    """What the daemon does with a stored outcome, for `book`: `dialer.store.Store` names the
    disposition (a confirmation with an upsell is "upsell") and hands it with the order's
    category and value to `dialer.learning.Learning.outcome`, which records it in the book.
    The same `Learning` class does it here, on the simulator's clock."""
    from dialer.learning import Learning
    from dialer.storage.db import Database
    from dialer.store import DISPOSITIONS

    clock = [0.0]

    async def never(_: float) -> None:  # `Learning.run` (the periodic save) is not run here
        raise AssertionError("the simulator saves no performance book")

    learning = Learning(book=book, db=Database(UNUSED_DATABASE), now=lambda: clock[0], sleep=never)

    def learn(cmd: StoreOutcome, category: str, amount: float, now: float) -> None:
        if cmd.outcome not in DISPOSITIONS:
            return
        upsell = cmd.details.get("upsell_amount") or 0.0
        extra = float(upsell) if isinstance(upsell, int | float) else 0.0
        operator = cmd.details.get("operator_id")
        clock[0] = now
        learning.outcome(
            operator_id=str(operator) if operator else None,
            category=category,
            campaign_id=cmd.campaign_id,
            outcome="upsell" if cmd.outcome == "confirmed" and extra > 0 else cmd.outcome,
            value=amount + extra,
        )

    return learn


def make_router(name: str, world: World, seed: int, *, history_days: float = 0.0) -> Router:
    """The routing policy called `name` (one of `ROUTING_NAMES`) for `world`; a learning one
    starts with `history_days` of past outcomes."""
    if name == "random":
        return Router(RandomRouting(seed))
    if name == "longest-idle":
        return Router(LongestIdle())
    if name == "static-tiers":
        return Router(StaticTiers())
    if name == "performance":
        return _learned(world, seed, history_days=history_days, truth=False)
    if name == "oracle-fair":
        return _learned(world, seed, history_days=0.0, truth=True)
    if name == "oracle":
        return Router(OracleRouting(world.rate))
    raise ValueError(f"unknown routing {name!r}; valid: {', '.join(ROUTING_NAMES)}")
