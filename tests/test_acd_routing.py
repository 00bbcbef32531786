"""Routing policies: each one's choice, the shared shortlist, and a property over random boards."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.board import OperatorBoard, OperatorProfile, OperatorState, OperatorView
from acd.errors import AcdError
from acd.routing import (
    FewestCalls,
    LongestIdle,
    RandomRouting,
    RoutingPolicy,
    RoutingRequest,
    StaticTiers,
    shortlist,
)

NOW = 1_000.0


def view(
    op_id: str,
    *,
    idle_since: float = 0.0,
    calls: int = 0,
    state: OperatorState = OperatorState.READY,
    registered: bool = True,
    campaigns: Sequence[str] = ("confirm",),
    skills: dict[str, int] | None = None,
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
            skills=skills or {},
            categories_only=None if categories_only is None else frozenset(categories_only),
            languages=frozenset(languages),
            regions=frozenset(regions),
            supervisor=supervisor,
        ),
        state=state,
        since=idle_since,
        pause_reason=None,
        call_id=None,
        calls_handled=calls,
        idle_since=idle_since if state is OperatorState.READY else None,
        registered=registered,
        consecutive_misses=0,
    )


def request(**kw: object) -> RoutingRequest:
    kw.setdefault("campaign_id", "confirm")
    return RoutingRequest(call_id="call-1", **kw)  # type: ignore[arg-type]


def policies() -> list[RoutingPolicy]:
    return [LongestIdle(), FewestCalls(), RandomRouting(seed=7), StaticTiers()]


POLICY_NAMES = ["longest-idle", "fewest-calls", "random", "static-tiers"]


def test_every_policy_has_its_own_name() -> None:
    assert [p.name for p in policies()] == POLICY_NAMES


# (case, policy, request, candidates, expected id)
CHOICES: list[tuple[str, RoutingPolicy, RoutingRequest, list[OperatorView], str | None]] = [
    (
        "longest idle wins",
        LongestIdle(),
        request(),
        [view("a", idle_since=50), view("b", idle_since=10), view("c", idle_since=30)],
        "b",
    ),
    (
        "longest idle: a tie goes to the smaller id",
        LongestIdle(),
        request(),
        [view("b", idle_since=10), view("a", idle_since=10)],
        "a",
    ),
    (
        "fewest calls wins over longer idle",
        FewestCalls(),
        request(),
        [view("a", idle_since=0, calls=9), view("b", idle_since=500, calls=2)],
        "b",
    ),
    (
        "fewest calls: longest idle breaks a tie",
        FewestCalls(),
        request(),
        [view("a", idle_since=90, calls=3), view("b", idle_since=20, calls=3)],
        "b",
    ),
    (
        "tiers: the best level wins over longer idle",
        StaticTiers(),
        request(category="cosmetics"),
        [
            view("a", idle_since=0, skills={"cosmetics": 5}),
            view("b", idle_since=900, skills={"cosmetics": 9}),
        ],
        "b",
    ),
    (
        "tiers: the same level goes to the longest idle",
        StaticTiers(),
        request(category="cosmetics"),
        [
            view("a", idle_since=300, skills={"cosmetics": 7}),
            view("b", idle_since=100, skills={"cosmetics": 7}),
        ],
        "b",
    ),
    (
        "tiers: any level beats none for the category",
        StaticTiers(),
        request(category="cosmetics"),
        [view("a", idle_since=0, skills={"supplements": 10}), view("b", skills={"cosmetics": 1})],
        "b",
    ),
    (
        "tiers: a call without a category goes to the longest idle",
        StaticTiers(),
        request(),
        [view("a", idle_since=300, skills={"cosmetics": 10}), view("b", idle_since=100)],
        "b",
    ),
    (
        "a new hire is never offered a category outside their list",
        StaticTiers(),
        request(category="supplements"),
        [
            view("a", idle_since=0, skills={"supplements": 10}, categories_only=["cosmetics"]),
            view("b", idle_since=500),
        ],
        "b",
    ),
]


@pytest.mark.parametrize(
    ("policy", "req", "candidates", "expected"),
    [c[1:] for c in CHOICES],
    ids=[c[0] for c in CHOICES],
)
def test_policy_choice(
    policy: RoutingPolicy, req: RoutingRequest, candidates: list[OperatorView], expected: str
) -> None:
    chosen = policy.choose(req, candidates, NOW)
    assert chosen is not None and chosen.id == expected


NOBODY_ELIGIBLE = [
    view("talking", state=OperatorState.TALKING),
    view("paused", state=OperatorState.PAUSED),
    view("reserved", state=OperatorState.RESERVED),
    view("unregistered", registered=False),
    view("other-campaign", campaigns=["delivery"]),
    view("new-hire", categories_only=["supplements"]),
]


@pytest.mark.parametrize("policy", policies(), ids=POLICY_NAMES)
def test_no_policy_chooses_an_operator_who_may_not_take_the_call(policy: RoutingPolicy) -> None:
    assert policy.choose(request(category="cosmetics"), NOBODY_ELIGIBLE, NOW) is None
    assert policy.choose(request(), [], NOW) is None
    chosen = policy.choose(request(category="cosmetics"), [*NOBODY_ELIGIBLE, view("ok")], NOW)
    assert chosen is not None and chosen.id == "ok"


SHORTLISTS: list[tuple[str, RoutingRequest, list[OperatorView], list[str]]] = [
    (
        "speakers of the language first",
        request(language="kk"),
        [view("a"), view("b", languages=["kk", "ru"]), view("c", languages=["kk"])],
        ["b", "c"],
    ),
    (
        "everyone when nobody speaks the language",
        request(language="be"),
        [view("a", languages=["ru"]), view("b")],
        ["a", "b"],
    ),
    (
        "supervisors only when nobody else is free",
        request(),
        [view("boss", supervisor=True), view("a")],
        ["a"],
    ),
    (
        "a supervisor when they are the only one",
        request(),
        [view("boss", supervisor=True), view("a", state=OperatorState.TALKING)],
        ["boss"],
    ),
    (
        "the language outranks keeping the supervisor free",
        request(language="kk"),
        [view("boss", supervisor=True, languages=["kk"]), view("a")],
        ["boss"],
    ),
    (
        "operators covering the region first",
        request(region="KZ-ALA"),
        [view("a", regions=["KZ-AST"]), view("b", regions=["KZ-ALA"])],
        ["b"],
    ),
    (
        "the region does not pull in a supervisor",
        request(region="KZ-ALA"),
        [view("boss", supervisor=True, regions=["KZ-ALA"]), view("a")],
        ["a"],
    ),
]


@pytest.mark.parametrize(
    ("req", "candidates", "expected"),
    [c[1:] for c in SHORTLISTS],
    ids=[c[0] for c in SHORTLISTS],
)
def test_shortlist_preference(
    req: RoutingRequest, candidates: list[OperatorView], expected: list[str]
) -> None:
    assert [v.id for v in shortlist(req, candidates)] == expected


def test_random_routing_repeats_for_a_seed_whatever_the_candidate_order() -> None:
    candidates = [view(op_id) for op_id in "abcdef"]

    def draws(seed: int, order: list[OperatorView]) -> list[str]:
        policy = RandomRouting(seed)
        picks = [policy.choose(request(), order, NOW) for _ in range(50)]
        return [p.id for p in picks if p is not None]

    first = draws(3, candidates)
    assert first == draws(3, candidates[::-1])
    assert first != draws(4, candidates)
    assert set(first) == set("abcdef")


def test_routing_does_not_change_the_board() -> None:
    board = OperatorBoard()
    board.add(OperatorProfile(id="a", endpoint="1001", campaigns=frozenset({"confirm"})), 0.0)
    board.login("a", 0.0)
    board.ready("a", 0.0)
    before = board.all()
    for policy in policies():
        policy.choose(request(), board.free("confirm"), NOW)
    assert board.all() == before


# --- property: whatever the board, the choice is someone who may take the call ---------------

CAMPAIGNS = ["confirm", "delivery"]
CATEGORIES = ["cosmetics", "supplements", "gadgets"]

profiles: st.SearchStrategy[list[tuple[dict[str, object], OperatorState, bool]]] = st.lists(
    st.tuples(
        st.builds(
            dict,
            campaigns=st.frozensets(st.sampled_from(CAMPAIGNS), min_size=1),
            skills=st.dictionaries(st.sampled_from(CATEGORIES), st.integers(1, 10)),
            categories_only=st.none() | st.frozensets(st.sampled_from(CATEGORIES)),
            languages=st.frozensets(st.sampled_from(["ru", "kk", "uk"])),
            regions=st.frozensets(st.sampled_from(["RU-MOW", "KZ-ALA"])),
            supervisor=st.booleans(),
        ),
        st.sampled_from(OperatorState),
        st.booleans() | st.just(True),
    ),
    min_size=1,
    max_size=8,
)
steps = st.lists(
    st.tuples(
        st.integers(0, 7),
        st.sampled_from(
            [
                "login",
                "ready",
                "ready",
                "pause",
                "logout",
                "reserve",
                "ringing",
                "answered",
                "not_answered",
                "release",
                "hung_up",
                "wrapup_done",
                "unregister",
                "register",
            ]
        ),
    ),
    max_size=30,
)
requests = st.builds(
    RoutingRequest,
    call_id=st.just("call"),
    campaign_id=st.sampled_from(CAMPAIGNS),
    category=st.none() | st.sampled_from(CATEGORIES),
    region=st.none() | st.sampled_from(["RU-MOW", "KZ-ALA"]),
    language=st.none() | st.sampled_from(["ru", "kk"]),
)


# Steps that bring a fresh operator into each state, so random boards start varied and the
# random steps after them mix legal and illegal moves.
START = {
    OperatorState.OFFLINE: [],
    OperatorState.PAUSED: ["login"],
    OperatorState.READY: ["login", "ready"],
    OperatorState.RESERVED: ["login", "ready", "reserve"],
    OperatorState.RINGING: ["login", "ready", "reserve", "ringing"],
    OperatorState.TALKING: ["login", "ready", "reserve", "answered"],
    OperatorState.WRAPUP: ["login", "ready", "reserve", "answered", "hung_up"],
}


def apply(board: OperatorBoard, op_id: str, endpoint: str, step: str, now: float) -> None:
    try:
        if step in ("register", "unregister"):
            board.set_registered(endpoint, step == "register", now)
        elif step == "pause":
            board.pause(op_id, "lunch", now)
        elif step == "reserve":
            board.reserve(op_id, f"call-{now}", now)
        else:
            getattr(board, step)(op_id, now)
    except AcdError:
        pass  # random steps are often illegal; the board refuses them and stays consistent


def build_board(
    raw_profiles: list[tuple[dict[str, object], OperatorState, bool]],
    raw_steps: list[tuple[int, str]],
) -> OperatorBoard:
    board = OperatorBoard()
    n = len(raw_profiles)
    for i, (raw, start, registered) in enumerate(raw_profiles):
        op_id, endpoint = f"op{i}", str(1001 + i)
        board.add(OperatorProfile(id=op_id, endpoint=endpoint, **raw), 0.0)  # type: ignore[arg-type]
        for step in START[start]:
            apply(board, op_id, endpoint, step, 1.0 + i)
        board.set_registered(endpoint, registered, 1.0)
    for t, (index, step) in enumerate(raw_steps, start=10):
        apply(board, f"op{index % n}", str(1001 + index % n), step, float(t))
    board.expire_wrapups(40.0)
    return board


@settings(max_examples=150, deadline=None)
@given(raw_profiles=profiles, raw_steps=steps, req=requests, seed=st.integers(0, 2**16))
def test_a_chosen_operator_is_always_ready_registered_in_the_campaign_and_qualified(
    raw_profiles: list[tuple[dict[str, object], OperatorState, bool]],
    raw_steps: list[tuple[int, str]],
    req: RoutingRequest,
    seed: int,
) -> None:
    board = build_board(raw_profiles, raw_steps)
    free_ids = {v.id for v in board.free(req.campaign_id, req.category)}
    chosen_policies: list[RoutingPolicy] = [
        LongestIdle(),
        FewestCalls(),
        RandomRouting(seed),
        StaticTiers(),
    ]
    for policy in chosen_policies:
        for candidates in (board.all(), board.free(req.campaign_id, req.category)):
            chosen = policy.choose(req, candidates, 100.0)
            if chosen is None:
                assert not free_ids
                continue
            assert chosen.state is OperatorState.READY
            assert chosen.registered
            assert req.campaign_id in chosen.profile.campaigns
            assert chosen.profile.qualified_for(req.category)
            assert chosen.id in free_ids
