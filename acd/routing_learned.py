"""Routing by learned performance: Thompson sampling over each operator's record, kept fair.

`PerformanceRouting` is a `RoutingPolicy`. For a call of category c it narrows the candidates
to the same shortlist as every other policy (`acd.routing.shortlist`), applies the fairness
guard (`acd.fairness.FairnessGuard`: an operator idle past the limit gets the call; otherwise
only operators within their load quota compete), and among those it draws one number per
operator from their posterior for c in the `PerformanceBook` and gives the call to the highest
draw (Thompson sampling).

Why sampling rather than the highest mean: an operator with few calls in a category has a wide
posterior and wins now and then, so their record gets measured; one with a long record of
doing well wins most of the time; one measured to be weak rarely wins. Each operator gets the
call with the probability that they are the best of those free, so exploration fades by itself
as records grow, with no tuning knob. With `Objective.REVENUE` each draw is multiplied by the
operator's estimated value per confirmation (their upsell), ranking by expected revenue.

The choice depends only on the book, the candidates (and their order) and the random
generator's state: the same seed and sequence of calls gives the same choices. A call without
a category is routed on the figures the book keeps under category "".
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import cast

import numpy as np
from numpy.typing import NDArray

from acd.board import OperatorView
from acd.errors import InvalidValue
from acd.fairness import FairnessGuard
from acd.performance import PerformanceBook
from acd.routing import RoutingRequest, eligible, shortlist
from acd.states import OperatorState

_READY = OperatorState.READY


class Objective(StrEnum):
    """What the routing maximises: confirmations, or confirmed value (order plus upsell)."""

    CONFIRMED = "confirmed"
    REVENUE = "revenue"


def fast_shortlist(
    request: RoutingRequest, candidates: Sequence[OperatorView]
) -> list[OperatorView]:
    """The same list as `acd.routing.shortlist(request, candidates)`, in the same order.

    Written as flat comprehensions because it runs for every routed call over every free
    operator: about four times faster than the general one at a thousand candidates. A test
    holds the two equal on random boards.
    """
    if request.widened:  # overflow and escalations are rare: the general rule serves them
        return shortlist(request, candidates)
    campaign, category = request.campaign_id, request.category
    language, region = request.language, request.region
    views = [
        v
        for v in candidates
        if v.state is _READY
        and v.registered
        and campaign in (p := v.profile).campaigns
        and (category is None or p.categories_only is None or category in p.categories_only)
        # Without a language preference, supervisors can be set aside in the same pass.
        and (language is not None or not p.supervisor)
    ]
    if language is None:
        if not views:  # nobody but supervisors, if anyone: they take the call then
            views = [v for v in candidates if v.profile.supervisor and eligible(request, v)]
    else:
        views = [v for v in views if language in v.profile.languages] or views
        views = [v for v in views if not v.profile.supervisor] or views
    if region is not None:
        views = [v for v in views if region in v.profile.regions] or views
    return views


class PerformanceRouting:
    """Thompson sampling on `book` under `fairness` (see the module doc).

    `rng` is the only source of randomness. Each operator's own record in the book counts from
    the next call on; the priors it is blended with (the category's and the operator's wider
    record, which move little with one call) are recomputed at most every `refresh_s` per
    category, which keeps a decision well under a millisecond.
    """

    name = "performance"

    def __init__(
        self,
        *,
        book: PerformanceBook,
        rng: np.random.Generator,
        fairness: FairnessGuard | None = None,
        objective: Objective = Objective.CONFIRMED,
        refresh_s: float = 60.0,
    ) -> None:
        if not refresh_s >= 0:
            raise InvalidValue(f"refresh_s must be >= 0, got {refresh_s}")
        self.book = book
        self.fairness = fairness if fairness is not None else FairnessGuard()
        self.objective = Objective(objective)
        self.refresh_s = refresh_s
        self._rng = rng

    def choose(
        self, request: RoutingRequest, candidates: Sequence[OperatorView], now: float
    ) -> OperatorView | None:
        """An operator from the shortlist, or `None` if nobody on it may take the call."""
        views = fast_shortlist(request, candidates)
        count = len(views)
        if count <= 1:
            return views[0] if views else None
        guard = self.fairness
        # Plain comprehensions and min/max over lists: at a thousand operators these beat
        # building arrays, which are made only when someone is overdue or over quota.
        maybe = [v.idle_since for v in views]
        idle = cast("list[float]", maybe)
        if None in maybe:  # only in hand-made views: the board sets it for every READY operator
            idle = [v.since if v.idle_since is None else v.idle_since for v in views]
        if now - min(idle) >= guard.max_idle_s:
            first = guard.first_overdue(np.array(idle, dtype=np.float64), now)
            return min((views[int(i)] for i in first), key=lambda v: v.id)
        post = self.book.posteriors(request.category or "", now, prior_max_age_s=self.refresh_s)
        get, new = post.index.get, len(post.alpha) - 1
        rows = np.array([get(v.profile.id, new) for v in views], dtype=np.intp)
        # The book's index may have grown since the arrays were made: treat those as new.
        np.minimum(rows, new, out=rows)
        calls = [v.calls_handled for v in views]
        within: NDArray[np.intp] | None = None  # positions within quota, when not everyone is
        if max(calls) + 1 > guard.cap(min(calls)):
            within = np.flatnonzero(guard.within_quota(np.array(calls, dtype=np.int64)))
            rows = rows[within]
        draws = self._rng.beta(post.alpha[rows], post.beta[rows])
        if self.objective is Objective.REVENUE:
            draws *= post.value_per_success[rows]
        best = int(np.argmax(draws))
        return views[best if within is None else int(within[best])]
