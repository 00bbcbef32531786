"""Settings turned into the engine's and the ACD's own objects.

The configuration speaks the admin's language (a window as "09:00-21:00", a policy by name);
the engine and the ACD take validated values. These functions are the only place that
translates one into the other.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import time

import numpy as np

from acd.board import OperatorProfile
from acd.fairness import FairnessGuard
from acd.performance import PerformanceBook
from acd.routing import FewestCalls, LongestIdle, RandomRouting, RoutingPolicy, StaticTiers
from acd.routing_learned import PerformanceRouting
from dialer.config import CampaignSettings, OperatorSettings
from dialer.config.models import InboundSettings, RoutingSettings
from dialer.engine.campaign import CallingWindow, CampaignRules, InboundRules, OverflowStep


def _time(minute: int) -> time:
    return time(0, 0) if minute >= 24 * 60 else time(minute // 60, minute % 60)


def campaign_rules(c: CampaignSettings) -> CampaignRules:
    """The engine's rules for a configured campaign."""
    window = CallingWindow(
        start=_time(c.calling_window.start_minute), end=_time(c.calling_window.end_minute)
    )
    return CampaignRules(
        id=c.id,
        line=c.line,
        pacing=c.pacing,
        abandon_target=c.abandon_target,
        calling_window=window,
        record=c.record,
        wrapup_s=c.wrapup_s,
        connect_budget_s=c.connect_budget_s,
        ring_timeout_s=c.ring_timeout_s,
        amd=c.amd,
        max_attempts=c.max_attempts,
        max_attempts_per_day=c.max_attempts_per_day,
        retry_plan={
            "busy": c.retry.busy,
            "no_answer": c.retry.no_answer,
            "congestion": c.retry.congestion,
            "machine": c.retry.machine,
            "failed": c.retry.failed,
        },
        shop_name=c.shop_name or c.name,
        caller_id=c.caller_id or "",
        inbound=inbound_rules(c.inbound) if c.inbound is not None else None,
    )


def inbound_rules(i: InboundSettings) -> InboundRules:
    """The engine's queue rules for a configured inbound line."""
    return InboundRules(
        priorities=i.priorities,
        overflow=tuple(
            OverflowStep(after_s=step.after_s, lines=frozenset(step.lines)) for step in i.overflow
        ),
        callback_offer_after_s=i.callback_offer_after_s or None,
        service_level_s=i.service_level_s,
    )


def routing_policy(settings: RoutingSettings, book: PerformanceBook) -> RoutingPolicy:
    """The configured routing policy (learned performance routing by default)."""
    match settings.policy:
        case "performance":
            return PerformanceRouting(
                book=book,
                rng=np.random.default_rng(),
                fairness=FairnessGuard(
                    max_idle_s=settings.max_idle_s, max_load_ratio=settings.max_load_ratio
                ),
            )
        case "fewest-calls":
            return FewestCalls()
        case "random":
            return RandomRouting(seed=secrets.randbits(32))
        case "static-tiers":
            return StaticTiers()
        case _:
            return LongestIdle()


def operator_profile(o: OperatorSettings, campaigns: Sequence[CampaignSettings]) -> OperatorProfile:
    """An operator's profile: their campaigns are those they name, those that name them, or
    (when neither says) every campaign."""
    mine = set(o.campaigns) | {c.id for c in campaigns if o.id in c.operators}
    if not mine:
        mine = {c.id for c in campaigns if not c.operators}
    wrapup = o.wrapup_s if o.wrapup_s is not None else min(c.wrapup_s for c in campaigns)
    return OperatorProfile(
        id=o.id,
        endpoint=o.endpoint,
        campaigns=frozenset(mine),
        skills=dict(o.skills),
        regions=frozenset(o.regions),
        languages=frozenset(o.languages),
        categories_only=frozenset(o.categories_only) if o.categories_only is not None else None,
        supervisor=o.role != "operator",
        wrapup_s=wrapup,
    )
