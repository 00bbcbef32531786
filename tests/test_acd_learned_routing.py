"""Performance routing: who may be chosen, the fairness guard, and learning on a simulated floor."""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.board import OperatorBoard, OperatorProfile, OperatorState, OperatorView
from acd.errors import InvalidValue
from acd.fairness import FairnessGuard, WorkLedger
from acd.performance import PerformanceBook, PerformanceSettings
from acd.routing import LongestIdle, RoutingPolicy, RoutingRequest, eligible, shortlist
from acd.routing_learned import Objective, PerformanceRouting, fast_shortlist

NOW = 10_000.0
CATEGORIES = ["cosmetics", "supplements", "garden"]


def view(
    op_id: str,
    *,
    idle_for: float = 10.0,
    calls: int = 0,
    state: OperatorState = OperatorState.READY,
    registered: bool = True,
    campaigns: Sequence[str] = ("confirm",),
    categories_only: Sequence[str] | None = None,
    languages: Sequence[str] = (),
    regions: Sequence[str] = (),
    supervisor: bool = False,
) -> OperatorView:
    return OperatorView(
        profile=OperatorProfile(
            id=op_id,
            endpoint=f"ep-{op_id}",
            campaigns=frozenset(campaigns),
            categories_only=None if categories_only is None else frozenset(categories_only),
            languages=frozenset(languages),
            regions=frozenset(regions),
            supervisor=supervisor,
        ),
        state=state,
        since=NOW - idle_for,
        pause_reason=None,
        call_id=None,
        calls_handled=calls,
        idle_since=NOW - idle_for if state is OperatorState.READY else None,
        registered=registered,
        consecutive_misses=0,
    )


def router(book: PerformanceBook | None = None, seed: int = 1, **kw: object) -> PerformanceRouting:
    return PerformanceRouting(
        book=book or PerformanceBook(),
        rng=np.random.default_rng(seed),
        **kw,  # type: ignore[arg-type]
    )


IDLE_FOR = [0.0, 5.0, 60.0, 179.0, 180.0, 181.0, 900.0, 3600.0]
STATES = [OperatorState.READY] * 8 + list(OperatorState)
CAMPAIGNS = [("confirm",), ("delivery",), ("confirm", "returns"), ("confirm",)]
ONLY: list[Sequence[str] | None] = [
    None,
    None,
    None,
    None,
    ["cosmetics"],
    ["garden"],
    [],
    CATEGORIES,
]


def subset(items: Sequence[str], bits: int) -> list[str]:
    return [x for i, x in enumerate(items) if bits >> i & 1]


def decoded(i: int, code: int) -> OperatorView:
    """An operator from the bits of `code`: one integer per operator keeps generation fast, and
    hypothesis shrinks it toward 0, a plain ready operator."""

    def bits(start: int, width: int) -> int:
        return code >> start & ((1 << width) - 1)

    return view(
        f"op{i}",
        idle_for=IDLE_FOR[bits(0, 3)],
        calls=bits(3, 5),
        state=STATES[bits(8, 4) % len(STATES)],
        registered=bits(12, 2) != 3,
        campaigns=CAMPAIGNS[bits(14, 2)],
        categories_only=ONLY[bits(16, 3)],
        languages=subset(["ru", "kk", "uk"], bits(19, 3)),
        regions=subset(["msk", "spb", "ekb"], bits(22, 3)),
        supervisor=bits(25, 2) == 3,
    )


views = st.lists(st.integers(0, 2**27 - 1), max_size=12).map(
    lambda codes: [decoded(i, c) for i, c in enumerate(codes)]
)


requests = st.builds(
    RoutingRequest,
    call_id=st.just("call-1"),
    campaign_id=st.sampled_from(["confirm", "delivery"]),
    category=st.none() | st.sampled_from([*CATEGORIES, "toys"]),
    language=st.none() | st.sampled_from(["ru", "kk", "be"]),
    region=st.none() | st.sampled_from(["msk", "ekb", "kzn"]),
)


@functools.cache
def trained_book() -> PerformanceBook:
    """Shared by many examples: routing only reads the book."""
    book = PerformanceBook()
    rng = np.random.default_rng(5)
    for i in range(600):
        op, cat = f"op{i % 12}", CATEGORIES[i % 3]
        book.record(op, cat, "confirm", bool(rng.random() < 0.3 + 0.05 * (i % 12)), 900.0, i)
    return book


@settings(max_examples=300, deadline=None)
@given(requests, views)
def test_the_fast_shortlist_is_the_shortlist(
    req: RoutingRequest, cands: list[OperatorView]
) -> None:
    assert fast_shortlist(req, cands) == shortlist(req, cands)


@settings(max_examples=300, deadline=None)
@given(requests, views, st.integers(0, 2**32 - 1))
def test_the_chosen_operator_is_always_free_and_qualified(
    req: RoutingRequest, cands: list[OperatorView], seed: int
) -> None:
    chosen = router(trained_book(), seed).choose(req, cands, NOW)
    listed = shortlist(req, cands)
    if not listed:
        assert chosen is None
        return
    assert chosen in listed
    assert chosen.state is OperatorState.READY and chosen.registered
    assert chosen.profile.serves(req.campaign_id, req.category) and eligible(req, chosen)


@settings(max_examples=300, deadline=None)
@given(requests, views, st.integers(0, 2**32 - 1))
def test_an_operator_idle_past_the_limit_is_chosen_first(
    req: RoutingRequest, cands: list[OperatorView], seed: int
) -> None:
    guard = FairnessGuard(max_idle_s=180.0)
    chosen = router(trained_book(), seed, fairness=guard).choose(req, cands, NOW)
    overdue = [v for v in shortlist(req, cands) if NOW - (v.idle_since or 0) >= 180.0]
    if overdue:
        longest = min(overdue, key=lambda v: (v.idle_since, v.id))
        assert chosen == longest


# One operator's past, as (seconds ready, seconds handling a call) spells, oldest first.
pasts = st.lists(st.tuples(st.floats(0, 900), st.floats(1, 900)), max_size=6)


def lived(ledger: WorkLedger, ops: Sequence[str], past: Sequence[Sequence[tuple[float, float]]]):
    """Drive `ledger` through each operator's past, which ends before NOW - 3600: ready for a
    while, given a call, back ready after handling it (the operators take turns)."""
    t = NOW - 3600.0 - sum(r + b for spells in past for r, b in spells)
    for op, spells in zip(ops, past, strict=True):
        slot = ledger.slots([op])
        for ready, busy in spells:
            ledger.observe(slot, np.array([t]), t)
            t += ready
            ledger.assigned(int(slot[0]), t - ready, t)
            t += busy
            ledger.observe(slot, np.array([t]), t)


@settings(max_examples=300, deadline=None)
@given(requests, views, st.lists(pasts, min_size=12, max_size=12), st.integers(0, 2**32 - 1))
def test_otherwise_the_call_stays_within_the_occupancy_ratio(
    req: RoutingRequest,
    cands: list[OperatorView],
    past: list[list[tuple[float, float]]],
    seed: int,
) -> None:
    guard = FairnessGuard(max_idle_s=math.inf, max_load_ratio=1.3, occupancy_slack=0.03)
    policy = router(trained_book(), seed, fairness=guard)
    ops = [f"op{i}" for i in range(12)]
    lived(policy.ledger, ops, past)
    twin = WorkLedger(half_life_s=guard.occupancy_half_life_s)
    lived(twin, ops, past)
    chosen = policy.choose(req, cands, NOW)
    listed = shortlist(req, cands)
    if not listed:
        return
    assert chosen is not None
    idle = np.array([v.idle_since for v in listed], dtype=np.float64)
    occupancy = twin.observe(twin.slots([v.id for v in listed]), idle, NOW)
    lowest = float(occupancy.min())
    assert occupancy[listed.index(chosen)] <= max(1.3 * lowest, lowest + 0.03)


def test_the_best_record_wins_most_calls_but_not_all() -> None:
    book = PerformanceBook()
    for i in range(200):
        book.record("star", "cosmetics", "confirm", i % 10 < 9, 0.0, i)
        book.record("fair", "cosmetics", "confirm", i % 10 < 6, 0.0, i)
    policy = router(book, fairness=FairnessGuard(max_idle_s=math.inf, max_load_ratio=math.inf))
    cands = [view("fair"), view("star"), view("newcomer")]
    req = RoutingRequest(call_id="c", campaign_id="confirm", category="cosmetics")
    picks = [policy.choose(req, cands, NOW) for _ in range(2000)]
    share = {op: sum(p is not None and p.id == op for p in picks) / 2000 for op in ("star", "fair")}
    assert share["star"] > 0.75
    assert share["fair"] < 0.02
    # The newcomer has no record: their wide posterior wins now and then, so they get measured.
    assert 0.02 < 1 - share["star"] - share["fair"] < 0.25


def test_the_same_seed_gives_the_same_choices() -> None:
    cands = [view(f"op{i}", idle_for=i) for i in range(12)]
    req = RoutingRequest(call_id="c", campaign_id="confirm", category="garden")
    first, second = router(trained_book(), 42), router(trained_book(), 42)
    assert [first.choose(req, cands, NOW) for _ in range(50)] == [
        second.choose(req, cands, NOW) for _ in range(50)
    ]


def test_revenue_objective_prefers_the_upseller_at_equal_rates() -> None:
    book = PerformanceBook(PerformanceSettings(half_life_s=math.inf))
    for i in range(400):
        book.record("upseller", "cosmetics", "confirm", i % 2 == 0, 4000.0, i)
        book.record("plain", "cosmetics", "confirm", i % 2 == 0, 1500.0, i)
    off = FairnessGuard(max_idle_s=math.inf, max_load_ratio=math.inf)
    req = RoutingRequest(call_id="c", campaign_id="confirm", category="cosmetics")
    cands = [view("plain"), view("upseller")]
    by_revenue = router(book, fairness=off, objective=Objective.REVENUE)
    by_rate = router(book, fairness=off)
    picks = [by_revenue.choose(req, cands, NOW) for _ in range(300)]
    assert all(p is not None and p.id == "upseller" for p in picks)
    rate_picks = [by_rate.choose(req, cands, NOW) for _ in range(600)]
    assert 0.3 < sum(p is not None and p.id == "plain" for p in rate_picks) / 600 < 0.7


def test_a_new_record_reaches_the_next_choice() -> None:
    book = PerformanceBook()
    off = FairnessGuard(max_idle_s=math.inf, max_load_ratio=math.inf)
    policy = router(book, fairness=off, refresh_s=3600.0)
    req = RoutingRequest(call_id="c", campaign_id="confirm", category="garden")
    cands = [view("a"), view("b")]
    policy.choose(req, cands, NOW)  # caches the (empty) posteriors of "garden"
    for i in range(300):
        book.record("b", "garden", "confirm", True, 0.0, NOW + i)
        book.record("a", "garden", "confirm", False, 0.0, NOW + i)
    picks = [policy.choose(req, cands, NOW + 400) for _ in range(50)]
    assert all(p is not None and p.id == "b" for p in picks)


def test_settings_that_make_no_sense_are_refused() -> None:
    with pytest.raises(InvalidValue):
        FairnessGuard(max_load_ratio=0.9)
    with pytest.raises(InvalidValue):
        FairnessGuard(occupancy_slack=0.0)
    with pytest.raises(InvalidValue):
        FairnessGuard(occupancy_half_life_s=math.inf)
    with pytest.raises(InvalidValue):
        router(balance=-1.0)
    with pytest.raises(InvalidValue):
        FairnessGuard(max_idle_s=0.0)
    with pytest.raises(InvalidValue):
        router(refresh_s=-1.0)


# --- a simulated floor ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Floor:
    calls_handled: dict[str, int]
    confirmed: int
    calls: int
    worst_ratio_after_warmup: float


def run_floor(policy: RoutingPolicy, book: PerformanceBook, *, calls: int, seed: int) -> Floor:
    """Ten operators, one campaign, calls of equal length at about 60% load, outcomes fed back
    to `book` at hang-up. A call's outcome is `u < true rate of its operator` with `u` drawn per
    call, so two policies run on the same seed meet the same customers."""
    rng = np.random.default_rng(seed)
    true = {f"op{i}": 0.45 + 0.04 * i for i in range(10)}  # op9 confirms 81%, op0 45%
    board = OperatorBoard()
    for op in true:
        board.add(OperatorProfile(id=op, endpoint=f"ep-{op}", campaigns=frozenset({"confirm"})), 0)
        board.login(op, 0.0)
        board.ready(op, 0.0)
    talk, wrap = 120.0, 15.0
    arrivals = np.cumsum(rng.exponential((talk + wrap) / len(true) / 0.6, size=calls))
    luck = rng.random(calls)
    events: list[tuple[float, int, str, int, str]] = [  # (time, seq, kind, call, operator)
        (float(at), n, "arrive", n, "") for n, at in enumerate(arrivals)
    ]
    heapq.heapify(events)
    waiting: list[int] = []
    confirmed, seq, worst = 0, calls, 0.0

    def serve(now: float) -> None:
        nonlocal seq, worst
        while waiting:
            req = RoutingRequest(call_id=f"c{waiting[0]}", campaign_id="confirm", category="garden")
            chosen = policy.choose(req, board.free("confirm", "garden"), now)
            if chosen is None:
                return
            call = waiting.pop(0)
            board.reserve(chosen.id, req.call_id, now)
            board.answered(chosen.id, now)
            seq += 1
            heapq.heappush(events, (now + talk, seq, "hangup", call, chosen.id))
            handled = [v.calls_handled for v in board.all()]
            if min(handled) >= 20:
                worst = max(worst, max(handled) / min(handled))

    while events:
        now, _, kind, call, op = heapq.heappop(events)
        if kind == "arrive":
            waiting.append(call)
        elif kind == "hangup":
            board.hung_up(op, now)
            won = bool(luck[call] < true[op])
            confirmed += won
            book.record(op, "garden", "confirm", won, 1000.0 if won else 0.0, now)
            seq += 1
            heapq.heappush(events, (now + wrap, seq, "wrapped", call, op))
        else:
            board.wrapup_done(op, now)
        serve(now)
    handled = {v.id: v.calls_handled for v in board.all()}
    return Floor(
        calls_handled=handled,
        confirmed=confirmed,
        calls=sum(handled.values()),
        worst_ratio_after_warmup=worst,
    )


def test_on_a_simulated_floor_the_load_ratio_holds_for_the_whole_campaign() -> None:
    guard = FairnessGuard(max_idle_s=600.0, max_load_ratio=1.3)
    book = PerformanceBook()
    fair = run_floor(router(book, 3, fairness=guard), book, calls=2000, seed=8)
    low, high = min(fair.calls_handled.values()), max(fair.calls_handled.values())
    assert high <= max(1.3 * low, low + 2) + 1
    # Over every operator of the campaign, busy ones too, once each has 20 calls: the quota
    # applies to those free at each call, so a busy operator may trail by a call or two.
    assert fair.worst_ratio_after_warmup <= 1.3 + 3 / 20
    assert fair.calls_handled["op9"] > fair.calls_handled["op0"]

    book = PerformanceBook()
    off = FairnessGuard(max_idle_s=math.inf, max_load_ratio=math.inf)
    # Without the guard, and without the occupancy discount, the best take the most calls.
    greedy = run_floor(router(book, 3, fairness=off, balance=0.0), book, calls=2000, seed=8)
    assert max(greedy.calls_handled.values()) > 1.5 * min(greedy.calls_handled.values())


def test_on_a_simulated_floor_learned_routing_confirms_more_than_longest_idle() -> None:
    book = PerformanceBook()
    loose = FairnessGuard(max_idle_s=900.0, max_load_ratio=2.0)
    learned = run_floor(router(book, 4, fairness=loose), book, calls=2000, seed=9)
    baseline = run_floor(LongestIdle(), PerformanceBook(), calls=2000, seed=9)
    assert learned.calls == baseline.calls == 2000
    assert learned.confirmed / learned.calls > baseline.confirmed / baseline.calls + 0.02
