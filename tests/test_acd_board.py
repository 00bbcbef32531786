"""The operator board: every (state, action) pair, misses, registration, wrap-up, statistics."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from acd.board import (
    PAUSE_LOGGED_IN,
    PAUSE_NO_ANSWER,
    OperatorBoard,
    OperatorProfile,
    OperatorState,
)
from acd.errors import (
    AcdError,
    DuplicateOperator,
    IllegalTransition,
    InvalidValue,
    OperatorUnavailable,
    UnknownOperator,
)
from acd.states import TRANSITIONS, Action, transition_table_markdown

S = OperatorState
A = Action

# The transitions the board must allow, written out independently of acd.states.TRANSITIONS;
# every pair not listed must be refused.
LEGAL: dict[tuple[OperatorState, Action], OperatorState] = {
    (S.OFFLINE, A.LOGIN): S.PAUSED,
    (S.PAUSED, A.READY): S.READY,
    (S.PAUSED, A.LOGOUT): S.OFFLINE,
    (S.READY, A.PAUSE): S.PAUSED,
    (S.READY, A.LOGOUT): S.OFFLINE,
    (S.READY, A.RESERVE): S.RESERVED,
    (S.RESERVED, A.RINGING): S.RINGING,
    (S.RESERVED, A.ANSWERED): S.TALKING,
    (S.RESERVED, A.NOT_ANSWERED): S.READY,
    (S.RESERVED, A.NO_ANSWER_PAUSE): S.PAUSED,
    (S.RESERVED, A.RELEASE): S.READY,
    (S.RINGING, A.ANSWERED): S.TALKING,
    (S.RINGING, A.NOT_ANSWERED): S.READY,
    (S.RINGING, A.NO_ANSWER_PAUSE): S.PAUSED,
    (S.RINGING, A.RELEASE): S.READY,
    (S.TALKING, A.HUNG_UP): S.WRAPUP,
    (S.WRAPUP, A.WRAPUP_DONE): S.READY,
    (S.WRAPUP, A.WRAPUP_EXPIRED): S.READY,
    (S.WRAPUP, A.PAUSE): S.PAUSED,
    (S.WRAPUP, A.LOGOUT): S.OFFLINE,
}

OP = "ivanova"


def profile(op_id: str = OP, endpoint: str = "1001", **kw: object) -> OperatorProfile:
    kw.setdefault("campaigns", frozenset({"confirm"}))
    return OperatorProfile(id=op_id, endpoint=endpoint, **kw)  # type: ignore[arg-type]


# How to bring an operator from OFFLINE into each state, one board call per step.
PATH: dict[OperatorState, list[Callable[[OperatorBoard, float], None]]] = {
    S.OFFLINE: [],
    S.PAUSED: [lambda b, t: b.login(OP, t)],
    S.READY: [lambda b, t: b.login(OP, t), lambda b, t: b.ready(OP, t)],
}
PATH[S.RESERVED] = [*PATH[S.READY], lambda b, t: b.reserve(OP, "call-1", t)]
PATH[S.RINGING] = [*PATH[S.RESERVED], lambda b, t: b.ringing(OP, t)]
PATH[S.TALKING] = [*PATH[S.RINGING], lambda b, t: b.answered(OP, t)]
PATH[S.WRAPUP] = [*PATH[S.TALKING], lambda b, t: b.hung_up(OP, t)]


def board_in(state: OperatorState, *, threshold: int = 2) -> OperatorBoard:
    board = OperatorBoard(no_answer_pause_threshold=threshold)
    board.add(profile(), 0.0)
    for t, step in enumerate(PATH[state], start=1):
        step(board, float(t))
    assert board.get(OP).state is state
    return board


# Each action as the board call that performs it. WRAPUP_EXPIRED is a sweep, not a call on one
# operator, and is covered by its own test.
DO: dict[Action, Callable[[OperatorBoard, float], object]] = {
    A.LOGIN: lambda b, t: b.login(OP, t),
    A.READY: lambda b, t: b.ready(OP, t),
    A.PAUSE: lambda b, t: b.pause(OP, "lunch", t),
    A.LOGOUT: lambda b, t: b.logout(OP, t),
    A.RESERVE: lambda b, t: b.reserve(OP, "call-2", t),
    A.RINGING: lambda b, t: b.ringing(OP, t),
    A.ANSWERED: lambda b, t: b.answered(OP, t),
    A.NOT_ANSWERED: lambda b, t: b.not_answered(OP, t),
    A.NO_ANSWER_PAUSE: lambda b, t: b.not_answered(OP, t),
    A.RELEASE: lambda b, t: b.release(OP, t),
    A.HUNG_UP: lambda b, t: b.hung_up(OP, t),
    A.WRAPUP_DONE: lambda b, t: b.wrapup_done(OP, t),
}
PAIRS = [(s, a) for s, a in itertools.product(S, A) if a is not A.WRAPUP_EXPIRED]


def test_the_transition_table_is_exactly_the_legal_moves() -> None:
    table = {(s, a): new for s, row in TRANSITIONS.items() for a, new in row.items()}
    assert table == LEGAL


@pytest.mark.parametrize(("state", "action"), [p for p in PAIRS if p in LEGAL])
def test_a_legal_action_reaches_its_state(state: OperatorState, action: Action) -> None:
    board = board_in(state, threshold=1 if action is A.NO_ANSWER_PAUSE else 2)
    DO[action](board, 100.0)
    view = board.get(OP)
    assert view.state is LEGAL[state, action]
    assert view.since == 100.0


@pytest.mark.parametrize(("state", "action"), [p for p in PAIRS if p not in LEGAL])
def test_an_illegal_action_raises_and_changes_nothing(state: OperatorState, action: Action) -> None:
    board = board_in(state, threshold=1 if action is A.NO_ANSWER_PAUSE else 2)
    before, stats_before = board.get(OP), board.statistics(50.0)
    with pytest.raises(IllegalTransition) as info:
        DO[action](board, 100.0)
    assert isinstance(info.value, AcdError)
    assert info.value.op_id == OP and info.value.state == state
    assert board.get(OP) == before
    assert board.statistics(50.0) == stats_before


@pytest.mark.parametrize("state", [s for s in S if s is not S.WRAPUP])
def test_expiring_wrapups_leaves_operators_outside_wrapup_alone(state: OperatorState) -> None:
    board = board_in(state)
    before = board.get(OP)
    assert board.expire_wrapups(10_000.0) == []
    assert board.get(OP) == before


def test_login_pauses_with_a_reason_and_ready_clears_it() -> None:
    board = board_in(S.PAUSED)
    assert board.get(OP).pause_reason == PAUSE_LOGGED_IN
    board.ready(OP, 5.0)
    view = board.get(OP)
    assert (view.pause_reason, view.idle_since) == (None, 5.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.login("nobody", 1.0),
        lambda b: b.ready("nobody", 1.0),
        lambda b: b.pause("nobody", "lunch", 1.0),
        lambda b: b.logout("nobody", 1.0),
        lambda b: b.reserve("nobody", "c", 1.0),
        lambda b: b.ringing("nobody", 1.0),
        lambda b: b.answered("nobody", 1.0),
        lambda b: b.not_answered("nobody", 1.0),
        lambda b: b.release("nobody", 1.0),
        lambda b: b.hung_up("nobody", 1.0),
        lambda b: b.wrapup_done("nobody", 1.0),
        lambda b: b.get("nobody"),
    ],
)
def test_an_unknown_operator_is_reported_by_id(call: Callable[[OperatorBoard], object]) -> None:
    with pytest.raises(UnknownOperator, match="nobody"):
        call(board_in(S.READY))


def test_an_operator_id_or_endpoint_can_be_on_the_board_only_once() -> None:
    board = board_in(S.OFFLINE)
    with pytest.raises(DuplicateOperator):
        board.add(profile(OP, "2002"), 1.0)
    with pytest.raises(DuplicateOperator):
        board.add(profile("petrov", "1001"), 1.0)
    assert [v.id for v in board.all()] == [OP]


@pytest.mark.parametrize(
    "bad",
    [
        {"id": ""},
        {"endpoint": ""},
        {"wrapup_s": -1.0},
        {"skills": {"cosmetics": 0}},
        {"skills": {"cosmetics": 11}},
    ],
)
def test_a_profile_out_of_range_is_refused(bad: dict[str, object]) -> None:
    kw: dict[str, object] = {"id": OP, "endpoint": "1001", **bad}
    with pytest.raises(InvalidValue):
        OperatorProfile(campaigns=frozenset({"confirm"}), **kw)  # type: ignore[arg-type]


def test_a_profile_keeps_its_own_copy_of_the_skills() -> None:
    skills = {"cosmetics": 7}
    p = profile(skills=skills)
    skills["cosmetics"] = 1
    assert p.skills["cosmetics"] == 7
    assert hash(p) == hash(profile(skills={"cosmetics": 7}))


def test_pause_and_reserve_need_a_reason_and_a_call_id() -> None:
    board = board_in(S.READY)
    with pytest.raises(InvalidValue):
        board.pause(OP, "", 9.0)
    with pytest.raises(InvalidValue):
        board.reserve(OP, "", 9.0)
    assert board.get(OP).state is S.READY


@pytest.mark.parametrize("threshold", [0, -1])
def test_a_miss_threshold_below_one_is_refused(threshold: int) -> None:
    with pytest.raises(InvalidValue):
        OperatorBoard(no_answer_pause_threshold=threshold)


# --- missed calls ----------------------------------------------------------------------------


def miss(board: OperatorBoard, t: float) -> OperatorState:
    board.reserve(OP, f"call-{t}", t)
    board.ringing(OP, t)
    return board.not_answered(OP, t + 1)


def test_two_misses_in_a_row_pause_the_operator() -> None:
    board = board_in(S.READY)
    assert miss(board, 10.0) is S.READY
    assert board.get(OP).consecutive_misses == 1
    assert miss(board, 20.0) is S.PAUSED
    view = board.get(OP)
    assert (view.pause_reason, view.consecutive_misses) == (PAUSE_NO_ANSWER, 2)


@pytest.mark.parametrize("threshold", [1, 3, 5])
def test_the_miss_threshold_is_configurable(threshold: int) -> None:
    board = board_in(S.READY, threshold=threshold)
    states = [miss(board, 10.0 * i) for i in range(1, threshold + 1)]
    assert states == [S.READY] * (threshold - 1) + [S.PAUSED]


def test_an_answered_call_resets_the_miss_count() -> None:
    board = board_in(S.READY)
    miss(board, 10.0)
    board.reserve(OP, "call-ok", 20.0)
    board.answered(OP, 21.0)
    assert board.get(OP).consecutive_misses == 0
    board.hung_up(OP, 30.0)
    board.wrapup_done(OP, 31.0)
    assert miss(board, 40.0) is S.READY


def test_a_released_call_is_not_a_miss() -> None:
    board = board_in(S.READY)
    miss(board, 10.0)
    for t in (20.0, 30.0, 40.0):
        board.reserve(OP, "call", t)
        board.release(OP, t + 1)
    view = board.get(OP)
    assert (view.state, view.consecutive_misses) == (S.READY, 1)


def test_coming_back_from_a_no_answer_pause_restarts_the_count() -> None:
    board = board_in(S.READY)
    miss(board, 10.0)
    miss(board, 20.0)
    board.ready(OP, 60.0)
    assert board.get(OP).consecutive_misses == 0
    assert miss(board, 70.0) is S.READY


# --- call bookkeeping ------------------------------------------------------------------------


def test_the_call_id_stays_with_the_operator_until_the_wrapup_ends() -> None:
    board = board_in(S.READY)
    board.reserve(OP, "call-7", 10.0)
    seen = [board.get(OP).call_id]
    for step in (board.ringing, board.answered, board.hung_up):
        step(OP, 11.0)
        seen.append(board.get(OP).call_id)
    board.wrapup_done(OP, 12.0)
    assert seen == ["call-7"] * 4
    assert board.get(OP).call_id is None


def test_a_finished_call_counts_as_handled() -> None:
    board = board_in(S.WRAPUP)
    assert board.get(OP).calls_handled == 1
    assert board.statistics(100.0).calls_handled == {OP: 1}


def test_a_release_keeps_the_operators_place_in_the_idle_line() -> None:
    board = board_in(S.READY)  # ready at t=2
    board.reserve(OP, "call", 50.0)
    board.release(OP, 51.0)
    assert board.get(OP).idle_since == 2.0
    board.reserve(OP, "call", 60.0)
    board.not_answered(OP, 61.0)
    assert board.get(OP).idle_since == 61.0


# --- registration ----------------------------------------------------------------------------


def two_ready_operators() -> OperatorBoard:
    board = OperatorBoard()
    for op_id, endpoint in (("a", "1001"), ("b", "1002")):
        board.add(profile(op_id, endpoint), 0.0)
        board.login(op_id, 1.0)
        board.ready(op_id, 2.0)
    return board


def test_an_unregistered_endpoint_is_never_free() -> None:
    board = two_ready_operators()
    board.set_registered("1001", False, 5.0)
    assert [v.id for v in board.free("confirm")] == ["b"]
    assert board.get("a").state is S.READY
    with pytest.raises(OperatorUnavailable):
        board.reserve("a", "call", 6.0)
    assert board.get("a").state is S.READY
    board.set_registered("1001", True, 7.0)
    assert [v.id for v in board.free("confirm")] == ["a", "b"]


def test_registration_of_an_endpoint_that_is_no_operator_is_ignored() -> None:
    board = two_ready_operators()
    board.set_registered("trunk-mts", False, 5.0)
    assert len(board.free("confirm")) == 2


def test_free_respects_campaign_and_new_hire_categories() -> None:
    board = OperatorBoard()
    board.add(profile("veteran", "1001"), 0.0)
    board.add(profile("newbie", "1002", categories_only=frozenset({"cosmetics"})), 0.0)
    board.add(profile("inbound", "1003", campaigns=frozenset({"delivery"})), 0.0)
    for v in board.all():
        board.login(v.id, 1.0)
        board.ready(v.id, 1.0)
    assert [v.id for v in board.free("confirm")] == ["veteran", "newbie"]
    assert [v.id for v in board.free("confirm", "cosmetics")] == ["veteran", "newbie"]
    assert [v.id for v in board.free("confirm", "supplements")] == ["veteran"]
    assert [v.id for v in board.free("delivery")] == ["inbound"]


# --- wrap-up ---------------------------------------------------------------------------------


def test_a_wrapup_expires_at_its_deadline_and_reports_the_operator() -> None:
    board = OperatorBoard()
    board.add(profile(wrapup_s=15.0), 0.0)
    for step in PATH[S.TALKING]:
        step(board, 1.0)
    board.hung_up(OP, 100.0)
    assert board.get(OP).wrapup_until == 115.0
    assert board.expire_wrapups(114.9) == []
    assert board.get(OP).state is S.WRAPUP
    assert board.expire_wrapups(115.0) == [OP]
    view = board.get(OP)
    assert (view.state, view.idle_since, view.wrapup_until) == (S.READY, 115.0, None)
    assert board.expire_wrapups(200.0) == []


def test_a_disposition_before_the_deadline_ends_the_wrapup() -> None:
    board = board_in(S.WRAPUP)
    board.wrapup_done(OP, 8.0)
    assert board.expire_wrapups(1_000.0) == []
    assert board.get(OP).state is S.READY


def test_only_the_operators_whose_wrapup_passed_expire() -> None:
    board = OperatorBoard()
    for op_id, endpoint, wrapup in (("fast", "1", 5.0), ("slow", "2", 60.0), ("zero", "3", 0)):
        board.add(profile(op_id, endpoint, wrapup_s=wrapup), 0.0)
        board.login(op_id, 0.0)
        board.ready(op_id, 0.0)
        board.reserve(op_id, "c-" + op_id, 0.0)
        board.answered(op_id, 0.0)
        board.hung_up(op_id, 10.0)
    assert board.expire_wrapups(10.0) == ["zero"]
    assert board.expire_wrapups(20.0) == ["fast"]
    assert board.get("slow").state is S.WRAPUP


# --- statistics ------------------------------------------------------------------------------


def test_statistics_count_operators_by_state_and_the_longest_idle() -> None:
    board = two_ready_operators()
    board.add(profile("c", "1003"), 0.0)
    board.reserve("b", "call", 30.0)
    stats = board.statistics(100.0)
    assert stats.by_state == {**dict.fromkeys(S, 0), S.READY: 1, S.RESERVED: 1, S.OFFLINE: 1}
    assert (stats.ready, stats.longest_idle_s) == (1, 98.0)
    board.set_registered("1001", False, 100.0)
    stats = board.statistics(100.0)
    assert (stats.ready, stats.longest_idle_s, stats.unregistered) == (0, 0.0, 1)


def test_occupancy_is_busy_time_over_logged_in_time_in_the_last_hour() -> None:
    board = OperatorBoard()
    board.add(profile(), 0.0)
    board.login(OP, 0.0)
    board.ready(OP, 0.0)
    board.reserve(OP, "call", 600.0)
    board.ringing(OP, 600.0)
    board.answered(OP, 610.0)
    board.hung_up(OP, 1500.0)
    board.wrapup_done(OP, 1515.0)
    assert board.statistics(3600.0).occupancy[OP] == pytest.approx(915 / 3600)
    # Half an hour later the first 1800 s (600..1515 busy in there) have left the window.
    assert board.statistics(5400.0).occupancy[OP] == pytest.approx(0.0)
    assert board.statistics(4200.0).occupancy[OP] == pytest.approx((1515 - 600) / 3600)
    assert board.statistics(4500.0).occupancy[OP] == pytest.approx((1515 - 900) / 3600)


def test_occupancy_counts_pauses_as_logged_in_and_offline_time_not_at_all() -> None:
    board = OperatorBoard()
    board.add(profile(), 0.0)
    board.add(profile("absent", "1002"), 0.0)
    board.login(OP, 1800.0)  # offline for the first half hour
    board.ready(OP, 2400.0)  # paused for ten minutes
    board.reserve(OP, "call", 3000.0)
    board.answered(OP, 3000.0)
    occupancy = board.statistics(3600.0).occupancy
    assert occupancy[OP] == pytest.approx(600 / 1800)
    assert occupancy["absent"] == 0.0


def test_occupancy_window_slides_over_many_hours() -> None:
    board = board_in(S.READY)
    for hour in range(48):
        t = hour * 3600.0 + 100
        board.reserve(OP, f"c{hour}", t)
        board.answered(OP, t)
        board.hung_up(OP, t + 1800)
        board.wrapup_done(OP, t + 1800)
    assert board.statistics(48 * 3600.0 + 100).occupancy[OP] == pytest.approx(0.5)


# --- docs ------------------------------------------------------------------------------------


def test_the_docs_show_the_current_transition_table() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "acd.md").read_text(encoding="utf-8")
    assert transition_table_markdown() in doc
