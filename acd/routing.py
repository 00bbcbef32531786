"""Which free operator gets a call: the baseline routing policies.

A policy is a small object with a `name` and `choose(request, candidates, now)`. Every policy
here first narrows the candidates to a shortlist (`shortlist`), the same for all of them:

1. only operators who may take the call at all (`eligible`): READY, registered, working in
   the request's campaign (or one of the lines it overflows to) and qualified for its category;
2. if the request names a language and someone on the list speaks it, only those;
3. operators who are not supervisors, if there are any: supervisors are kept free for
   escalations and take a queue call only when nobody else can (an escalation asks for
   supervisors only);
4. if the request names a region and someone left covers it, only those (local promotions).

The policies differ only in how they pick from the shortlist. They never change the board: the
caller reserves the chosen operator. They are deterministic for the same input (the random one
for the same seed and sequence of calls), which the simulator relies on to compare them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from acd.board import OperatorView
from acd.profile import MAX_SKILL_LEVEL
from acd.states import OperatorState


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingRequest:
    """A call looking for an operator. `amount` is the order's value (unused by the baselines).

    `also_campaigns` widens the pool to operators of other lines (an inbound caller's overflow
    after waiting); `supervisor_only` narrows it to supervisors (an escalation).
    """

    call_id: str
    campaign_id: str
    category: str | None = None
    region: str | None = None
    language: str | None = None
    amount: float = 0.0
    also_campaigns: frozenset[str] = frozenset()
    supervisor_only: bool = False

    @property
    def widened(self) -> bool:
        """True when the pool is not simply the campaign's qualified operators."""
        return bool(self.also_campaigns) or self.supervisor_only

    def works_in(self, campaigns: frozenset[str]) -> bool:
        """Whether an operator working in `campaigns` belongs to this request's pool."""
        return self.campaign_id in campaigns or not self.also_campaigns.isdisjoint(campaigns)


class RoutingPolicy(Protocol):
    """Picks the operator for a call, or `None` if no candidate may take it."""

    name: str

    def choose(
        self, request: RoutingRequest, candidates: Sequence[OperatorView], now: float
    ) -> OperatorView | None:
        """One of `candidates` that is `eligible` for `request`, or `None` if there is none."""
        ...


def eligible(request: RoutingRequest, view: OperatorView) -> bool:
    """True if the operator may be offered the call: the same test as `OperatorBoard.free`."""
    profile = view.profile
    return (
        view.state is OperatorState.READY
        and view.registered
        and request.works_in(profile.campaigns)
        and profile.qualified_for(request.category)
        and (profile.supervisor or not request.supervisor_only)
    )


def _prefer(views: list[OperatorView], keep: Callable[[OperatorView], bool]) -> list[OperatorView]:
    # A preference narrows the list only when someone satisfies it; otherwise it is ignored.
    preferred = [v for v in views if keep(v)]
    return preferred or views


def shortlist(request: RoutingRequest, candidates: Sequence[OperatorView]) -> list[OperatorView]:
    """The eligible candidates the request prefers, in their original order (see module doc)."""
    views = [v for v in candidates if eligible(request, v)]
    language, region = request.language, request.region
    if language is not None:
        views = _prefer(views, lambda v: language in v.profile.languages)
    if not request.supervisor_only:
        views = _prefer(views, lambda v: not v.profile.supervisor)
    if region is not None:
        views = _prefer(views, lambda v: region in v.profile.regions)
    return views


def _idle_key(view: OperatorView) -> tuple[float, str]:
    # Earlier idle_since = idle longer; the id makes ties deterministic.
    started = view.idle_since if view.idle_since is not None else view.since
    return (started, view.id)


class LongestIdle:
    """The operator who has been READY the longest (close to app_queue's `leastrecent`)."""

    name = "longest-idle"

    def choose(
        self, request: RoutingRequest, candidates: Sequence[OperatorView], now: float
    ) -> OperatorView | None:
        return min(shortlist(request, candidates), key=_idle_key, default=None)


class FewestCalls:
    """The operator who has handled the fewest calls; longest idle breaks ties."""

    name = "fewest-calls"

    def choose(
        self, request: RoutingRequest, candidates: Sequence[OperatorView], now: float
    ) -> OperatorView | None:
        return min(
            shortlist(request, candidates),
            key=lambda v: (v.calls_handled, *_idle_key(v)),
            default=None,
        )


class RandomRouting:
    """A uniformly random operator from the shortlist; the same seed gives the same choices."""

    name = "random"

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def choose(
        self, request: RoutingRequest, candidates: Sequence[OperatorView], now: float
    ) -> OperatorView | None:
        # Sorted so that the choice depends on the seed, not on the order candidates come in.
        views = sorted(shortlist(request, candidates), key=lambda v: v.id)
        return self._rng.choice(views) if views else None


class StaticTiers:
    """Skill tiers from the admin's levels, as Asterisk app_queue does with member penalties.

    An operator's penalty for a category is `10 - level` (level 10 -> penalty 0); an operator
    with no level for the category, or a call with no category, gets the worst penalty, 10. The
    lowest penalty wins, and longest idle breaks ties within a tier.
    """

    name = "static-tiers"

    @staticmethod
    def penalty(view: OperatorView, category: str | None) -> int:
        """The operator's penalty for `category`: 0 (best) to `MAX_SKILL_LEVEL` (no level)."""
        level = view.profile.level(category)
        return MAX_SKILL_LEVEL - level if level is not None else MAX_SKILL_LEVEL

    def choose(
        self, request: RoutingRequest, candidates: Sequence[OperatorView], now: float
    ) -> OperatorView | None:
        return min(
            shortlist(request, candidates),
            key=lambda v: (self.penalty(v, request.category), *_idle_key(v)),
            default=None,
        )
