"""The dialer engine, driven purely by events with a fake clock value."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, time
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.board import PAUSE_NO_ANSWER, OperatorBoard
from acd.profile import OperatorProfile
from acd.routing import LongestIdle
from acd.states import OperatorState
from dialer.engine.campaign import CallingWindow, CampaignRules
from dialer.engine.commands import (
    Command,
    ConnectToOperator,
    HangupCall,
    MissingDisposition,
    Originate,
    PlayAbandon,
    ScreenPop,
    StartRecording,
    StoreAttempt,
    StoreOutcome,
)
from dialer.engine.engine import DialerEngine
from dialer.engine.errors import (
    InvalidEvent,
    OperatorActionRejected,
    UnknownCall,
    UnknownCampaign,
)
from dialer.engine.events import (
    AmdResult,
    AmdStatus,
    CampaignPaused,
    CampaignResumed,
    ConnectFailed,
    CustomerAnswered,
    CustomerHungUp,
    Disposition,
    DispositionOutcome,
    Drain,
    Event,
    OperatorAnswered,
    OperatorHungUp,
    OperatorLogin,
    OperatorLogout,
    OperatorPause,
    OperatorReady,
    OrderArrived,
    OrdersArrived,
    OriginateResult,
    Tick,
)
from dialer.engine.pacing import PacingSnapshot, PacingStatistics
from dialer.engine.scheduling import Lead

T0 = datetime(2024, 7, 15, 9, tzinfo=UTC).timestamp()
ALL_DAY = CallingWindow(start=time(0), end=time(0))
HOURS_72 = 72 * 3600.0
C = TypeVar("C", bound=Command)


class DialEverything:
    """A pacer that dials every due lead: over-dials on purpose, as a predictive pacer may."""

    name = "dial-everything"

    def calls_to_place(self, snap: PacingSnapshot) -> int:
        return snap.leads_available

    def on_attempt_result(
        self, *, now: float, hour_of_day: int, answered: bool, ring_s: float
    ) -> None:
        return None

    def on_abandon(self, *, now: float) -> None:
        return None

    def on_call_finished(self, *, now: float, talk_s: float, wrapup_s: float) -> None:
        return None

    def statistics(self) -> PacingStatistics:
        return PacingStatistics(name=self.name, mode="test", dial_level=1.0, last_reason="")


class Harness:
    """An engine with one campaign, a board with operators and a call id counter."""

    def __init__(
        self,
        *,
        operators: Sequence[str] = ("op-a",),
        wrapup_s: float = 15.0,
        dial_everything: bool = False,
        **rules: Any,
    ) -> None:
        rules.setdefault("calling_window", ALL_DAY)
        self.rules = CampaignRules(id="confirm", shop_name="Shop", caller_id="74950000000", **rules)
        self.board = OperatorBoard()
        for op in operators:
            profile = OperatorProfile(
                id=op, endpoint=f"ep-{op}", campaigns=frozenset({"confirm"}), wrapup_s=wrapup_s
            )
            self.board.add(profile, T0 - 3600)
        counter = itertools.count(1)
        self.engine = DialerEngine(
            campaigns=[self.rules],
            board=self.board,
            router=LongestIdle(),
            pacers={"confirm": DialEverything()} if dial_everything else None,
            id_factory=lambda: f"call-{next(counter)}",
        )

    def send(self, event: Event) -> list[Command]:
        return self.engine.handle(event)

    def ready(self, operator_id: str, now: float) -> list[Command]:
        self.send(OperatorLogin(now=now, operator_id=operator_id))
        return self.send(OperatorReady(now=now, operator_id=operator_id))

    def order(self, order_id: str, now: float, **fields: Any) -> list[Command]:
        lead = Lead(
            order_id=order_id,
            phone="7900" + order_id[-1] * 7,
            campaign_id="confirm",
            timezone="Europe/Moscow",
            created_at=now,
            **fields,
        )
        return self.send(OrderArrived(now=now, lead=lead))

    def answer(self, call_id: str, now: float) -> list[Command]:
        self.send(OriginateResult(now=now, call_id=call_id, reason=4))
        return self.send(CustomerAnswered(now=now, call_id=call_id))

    def talk(self, call_id: str, operator_id: str, start: float, end: float) -> list[Command]:
        self.answer(call_id, start)
        self.send(OperatorAnswered(now=start + 0.5, call_id=call_id, operator_id=operator_id))
        return self.send(CustomerHungUp(now=end, call_id=call_id, cause=16))

    def state(self, operator_id: str) -> OperatorState:
        return self.board.get(operator_id).state


def of(commands: list[Command], kind: type[C]) -> list[C]:
    return [c for c in commands if isinstance(c, kind)]


def one(commands: list[Command], kind: type[C]) -> C:
    found = of(commands, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
    return found[0]


# -- dialling ----------------------------------------------------------------------------------


def test_a_new_order_is_dialled_at_once_when_an_operator_is_free() -> None:
    h = Harness()
    h.ready("op-a", T0)
    originate = one(h.order("o-1", T0 + 1), Originate)
    assert (originate.call_id, originate.order_id, originate.campaign_id) == (
        "call-1",
        "o-1",
        "confirm",
    )
    assert originate.phone == "79001111111"
    assert (originate.timeout_s, originate.amd, originate.caller_id) == (25.0, False, "74950000000")
    assert originate.operator_id is None
    ttfc = h.engine.statistics(T0 + 2).campaigns["confirm"].time_to_first_call
    assert (ttfc.count, ttfc.max_s) == (1, 0.0)


def test_an_order_waits_for_a_free_operator_and_is_dialled_on_the_next_tick() -> None:
    h = Harness()
    assert of(h.order("o-1", T0), Originate) == []
    assert of(h.send(Tick(now=T0 + 1)), Originate) == []
    h.ready("op-a", T0 + 4)
    assert one(h.send(Tick(now=T0 + 4)), Originate).order_id == "o-1"
    stats = h.engine.statistics(T0 + 5).campaigns["confirm"]
    assert stats.time_to_first_call.max_s == 4.0
    assert stats.calls_by_state["dialing"] == 1


def test_an_order_outside_its_calling_window_waits_for_the_morning() -> None:
    h = Harness(calling_window=CallingWindow(start=time(9), end=time(21)))
    night = datetime(2024, 7, 15, 19, tzinfo=UTC).timestamp()  # 22:00 in Moscow
    h.ready("op-a", night)
    assert of(h.order("o-1", night), Originate) == []
    morning = datetime(2024, 7, 16, 6, tzinfo=UTC).timestamp()
    assert of(h.send(Tick(now=morning - 1)), Originate) == []
    assert one(h.send(Tick(now=morning)), Originate).order_id == "o-1"
    ttfc = h.engine.statistics(morning).campaigns["confirm"].time_to_first_call
    assert (ttfc.count, ttfc.deferred) == (0, 1)


def test_orders_arrived_together_are_taken_in_and_dialled_in_one_decision() -> None:
    h = Harness(operators=("op-a", "op-b", "op-c"))
    for op in ("op-a", "op-b", "op-c"):
        h.ready(op, T0)
    asked: list[int] = []
    pacer = h.engine._pacers["confirm"]  # count the decisions the engine asks for
    decide = pacer.calls_to_place
    pacer.calls_to_place = lambda snap: asked.append(snap.leads_available) or decide(snap)  # type: ignore[method-assign]

    def arrival(order_id: str, now: float) -> OrderArrived:
        lead = Lead(
            order_id=order_id, phone="7900", campaign_id="confirm", timezone="UTC", created_at=now
        )
        return OrderArrived(now=now, lead=lead)

    known = arrival("o-0", T0)
    h.send(known)  # dialled on its own
    batch = (arrival("o-1", T0 + 1), arrival("o-2", T0 + 2), known)
    commands = h.send(OrdersArrived(arrivals=batch, now=T0 + 3))
    assert sorted(c.order_id for c in of(commands, Originate)) == ["o-1", "o-2"]
    assert asked == [1, 2]  # one decision for the lone order, one for the two together
    ttfc = h.engine.statistics(T0 + 4).campaigns["confirm"].time_to_first_call
    assert (ttfc.count, ttfc.max_s) == (3, 2.0)  # o-1 waited from its own arrival
    with pytest.raises(InvalidEvent):
        OrdersArrived(arrivals=(), now=T0)


def test_an_order_for_an_unknown_campaign_is_refused() -> None:
    h = Harness()
    lead = Lead(order_id="o", phone="7", campaign_id="nope", timezone="UTC", created_at=T0)
    with pytest.raises(UnknownCampaign):
        h.send(OrderArrived(now=T0, lead=lead))


def test_a_paused_campaign_places_no_calls_until_resumed() -> None:
    h = Harness()
    h.ready("op-a", T0)
    h.send(CampaignPaused(now=T0, campaign_id="confirm"))
    assert of(h.order("o-1", T0), Originate) == []
    h.send(CampaignResumed(now=T0 + 1, campaign_id="confirm"))
    assert one(h.send(Tick(now=T0 + 1)), Originate).order_id == "o-1"


# -- answered customers and operators ------------------------------------------------------------


def test_an_answered_customer_goes_to_the_longest_idle_free_operator() -> None:
    h = Harness(operators=("op-a", "op-b"))
    h.ready("op-b", T0)
    h.ready("op-a", T0 + 10)
    h.order("o-1", T0 + 20)
    commands = h.answer("call-1", T0 + 25)
    connect = one(commands, ConnectToOperator)
    assert (connect.operator_id, connect.endpoint) == ("op-b", "ep-op-b")
    assert one(commands, ScreenPop).order_id == "o-1"
    assert one(commands, StartRecording).filename == "call-1.wav"
    assert h.state("op-b") is OperatorState.RINGING
    h.send(OperatorAnswered(now=T0 + 26, call_id="call-1", operator_id="op-b"))
    assert h.state("op-b") is OperatorState.TALKING
    assert h.engine.statistics(T0 + 27).campaigns["confirm"].connected == 1


def test_no_operator_within_two_seconds_means_abandon_and_a_72_hour_lockout() -> None:
    h = Harness(dial_everything=True)
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.order("o-2", T0)  # over-dialled: two calls for one operator
    h.answer("call-1", T0 + 3)
    assert of(h.answer("call-2", T0 + 4), ConnectToOperator) == []
    assert h.engine.next_deadline() == T0 + 6
    assert of(h.send(Tick(now=T0 + 5.9)), PlayAbandon) == []
    commands = h.send(Tick(now=T0 + 6))
    assert one(commands, PlayAbandon).call_id == "call-2"
    assert one(commands, StoreAttempt).outcome == "abandoned"
    outcome = one(commands, StoreOutcome)
    assert (outcome.order_id, outcome.outcome, outcome.final) == ("o-2", "abandoned", False)
    assert outcome.lead is not None and outcome.lead.lockout_until == T0 + 6 + HOURS_72
    stats = h.engine.statistics(T0 + 7).campaigns["confirm"]
    assert (stats.abandons, stats.live_answers, stats.abandon_rate_24h) == (1, 2, 0.5)


def test_a_locked_out_number_is_redialled_only_with_an_operator_reserved() -> None:
    h = Harness(dial_everything=True)
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.send(OperatorPause(now=T0 + 1, operator_id="op-a", reason="coffee"))
    h.answer("call-1", T0 + 3)
    one(h.send(Tick(now=T0 + 5)), PlayAbandon)
    # The retry is due after two minutes, but nobody is free to be reserved for it.
    assert of(h.send(Tick(now=T0 + 300)), Originate) == []
    h.send(OperatorReady(now=T0 + 400, operator_id="op-a"))
    originate = one(h.send(Tick(now=T0 + 400)), Originate)
    assert (originate.order_id, originate.operator_id) == ("o-1", "op-a")
    assert h.state("op-a") is OperatorState.RESERVED
    connect = one(h.answer(originate.call_id, T0 + 410), ConnectToOperator)
    assert connect.operator_id == "op-a"


def test_a_reserved_operator_is_released_when_the_progressive_call_fails() -> None:
    h = Harness(dial_everything=True)
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.send(OperatorPause(now=T0 + 1, operator_id="op-a", reason="coffee"))
    h.answer("call-1", T0 + 3)
    h.send(Tick(now=T0 + 5))
    h.send(OperatorReady(now=T0 + 400, operator_id="op-a"))
    call_id = one(h.send(Tick(now=T0 + 400)), Originate).call_id
    h.send(OriginateResult(now=T0 + 405, call_id=call_id, reason=5))
    assert h.state("op-a") is OperatorState.READY


def test_a_machine_is_hung_up_and_retried_in_an_hour() -> None:
    h = Harness(amd=True)
    h.ready("op-a", T0)
    assert one(h.order("o-1", T0), Originate).amd is True
    h.send(OriginateResult(now=T0 + 5, call_id="call-1", reason=4))
    commands = h.send(AmdResult(now=T0 + 8, call_id="call-1", status=AmdStatus.MACHINE))
    assert one(commands, HangupCall).call_id == "call-1"
    assert one(commands, StoreAttempt).outcome == "machine"
    outcome = one(commands, StoreOutcome)
    assert (outcome.outcome, outcome.final, outcome.next_attempt_at) == (
        "machine",
        False,
        T0 + 8 + 3600,
    )
    stats = h.engine.statistics(T0 + 9).campaigns["confirm"]
    assert (stats.machines, stats.live_answers) == (1, 0)
    assert of(h.send(Tick(now=T0 + 3607)), Originate) == []
    assert one(h.send(Tick(now=T0 + 3608)), Originate).order_id == "o-1"


def test_a_human_after_amd_is_connected() -> None:
    h = Harness(amd=True)
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.send(OriginateResult(now=T0 + 5, call_id="call-1", reason=4))
    assert h.send(AmdResult(now=T0 + 7, call_id="call-1", status=AmdStatus.HUMAN)) == []
    commands = h.send(CustomerAnswered(now=T0 + 7, call_id="call-1"))
    assert one(commands, ConnectToOperator).operator_id == "op-a"


def test_an_operator_who_misses_twice_is_paused_and_the_call_goes_to_the_next() -> None:
    h = Harness(operators=("op-a", "op-b", "op-c"))
    h.ready("op-a", T0)
    h.ready("op-b", T0 + 1)
    h.order("o-1", T0 + 2)
    assert one(h.answer("call-1", T0 + 5), ConnectToOperator).operator_id == "op-a"
    commands = h.send(ConnectFailed(now=T0 + 5.5, call_id="call-1", operator_id="op-a"))
    assert one(commands, ConnectToOperator).operator_id == "op-b"
    assert of(commands, StartRecording) == []  # already recording since the first offer
    assert h.state("op-a") is OperatorState.READY
    h.send(OperatorAnswered(now=T0 + 6, call_id="call-1", operator_id="op-b"))

    h.ready("op-c", T0 + 7)
    call_2 = one(h.order("o-2", T0 + 8), Originate).call_id
    assert one(h.answer(call_2, T0 + 10), ConnectToOperator).operator_id == "op-a"
    commands = h.send(ConnectFailed(now=T0 + 10.5, call_id=call_2, operator_id="op-a"))
    assert h.state("op-a") is OperatorState.PAUSED
    assert h.board.get("op-a").pause_reason == PAUSE_NO_ANSWER
    assert one(commands, ConnectToOperator).operator_id == "op-c"


def test_an_operator_who_missed_one_customer_is_offered_the_next_in_line() -> None:
    h = Harness(dial_everything=True)
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.order("o-2", T0)
    assert one(h.answer("call-1", T0 + 5), ConnectToOperator).operator_id == "op-a"
    assert of(h.answer("call-2", T0 + 5.2), ConnectToOperator) == []
    commands = h.send(ConnectFailed(now=T0 + 5.5, call_id="call-1", operator_id="op-a"))
    connect = one(commands, ConnectToOperator)
    assert (connect.call_id, connect.operator_id) == ("call-2", "op-a")


def test_a_connect_failure_after_the_budget_is_an_abandon() -> None:
    h = Harness(operators=("op-a", "op-b"))
    h.ready("op-a", T0)
    h.ready("op-b", T0 + 1)
    h.order("o-1", T0 + 2)
    h.answer("call-1", T0 + 5)
    commands = h.send(ConnectFailed(now=T0 + 13, call_id="call-1", operator_id="op-a"))
    assert of(commands, ConnectToOperator) == []
    assert one(commands, PlayAbandon).call_id == "call-1"


def test_a_customer_who_hangs_up_while_waiting_frees_the_ringing_operator() -> None:
    h = Harness()
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.answer("call-1", T0 + 5)
    commands = h.send(CustomerHungUp(now=T0 + 6, call_id="call-1", cause=16))
    assert one(commands, StoreAttempt).outcome == "hung_up"
    assert one(commands, StoreOutcome).next_attempt_at == T0 + 6 + 600
    assert h.state("op-a") is OperatorState.READY


# -- after the conversation ----------------------------------------------------------------------


def test_a_disposition_stores_the_outcome_and_frees_the_operator() -> None:
    h = Harness()
    h.ready("op-a", T0)
    h.order("o-1", T0)
    commands = h.talk("call-1", "op-a", T0 + 5, T0 + 65)
    attempt = one(commands, StoreAttempt)
    assert (attempt.outcome, attempt.answered_at, attempt.connected_at, attempt.ended_at) == (
        "connected",
        T0 + 5,
        T0 + 5.5,
        T0 + 65,
    )
    assert h.state("op-a") is OperatorState.WRAPUP
    commands = h.send(
        Disposition(
            now=T0 + 70,
            call_id="call-1",
            operator_id="op-a",
            outcome=DispositionOutcome.CONFIRMED,
            upsell_items=("cream-50ml",),
            upsell_amount=990.0,
        )
    )
    outcome = one(commands, StoreOutcome)
    assert (outcome.order_id, outcome.outcome, outcome.final) == ("o-1", "confirmed", True)
    assert outcome.details["upsell_items"] == ("cream-50ml",)
    assert outcome.details["upsell_amount"] == 990.0
    assert h.state("op-a") is OperatorState.READY
    assert h.engine.statistics(T0 + 71).open_calls == 0


def test_the_same_disposition_sent_twice_is_stored_once() -> None:
    h = Harness()
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.talk("call-1", "op-a", T0 + 5, T0 + 65)
    disposition = Disposition(
        now=T0 + 70, call_id="call-1", operator_id="op-a", outcome=DispositionOutcome.REJECTED
    )
    assert len(of(h.send(disposition), StoreOutcome)) == 1
    assert h.send(disposition) == []


def test_a_disposition_for_someone_elses_call_is_refused_and_changes_nothing() -> None:
    h = Harness(operators=("op-a", "op-b"))
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.talk("call-1", "op-a", T0 + 5, T0 + 65)
    with pytest.raises(OperatorActionRejected):
        h.send(
            Disposition(
                now=T0 + 70,
                call_id="call-1",
                operator_id="op-b",
                outcome=DispositionOutcome.CONFIRMED,
            )
        )
    with pytest.raises(UnknownCall):
        h.send(
            Disposition(
                now=T0 + 70,
                call_id="call-9",
                operator_id="op-a",
                outcome=DispositionOutcome.CONFIRMED,
            )
        )
    assert h.engine.call("call-1") is not None
    assert h.state("op-a") is OperatorState.WRAPUP


def test_a_callback_for_me_is_dialled_at_its_time_with_me_reserved() -> None:
    h = Harness(operators=("op-a", "op-b"))
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.talk("call-1", "op-a", T0 + 5, T0 + 65)
    at = T0 + 3600
    commands = h.send(
        Disposition(
            now=T0 + 70,
            call_id="call-1",
            operator_id="op-a",
            outcome=DispositionOutcome.CALLBACK,
            callback_at=at,
            callback_mine=True,
        )
    )
    outcome = one(commands, StoreOutcome)
    assert (outcome.outcome, outcome.final, outcome.next_attempt_at) == ("callback", False, at)
    assert outcome.lead is not None and outcome.lead.callback_operator_id == "op-a"
    h.ready("op-b", T0 + 100)
    assert of(h.send(Tick(now=at - 1)), Originate) == []
    h.send(OperatorPause(now=at - 1, operator_id="op-a", reason="lunch"))
    assert of(h.send(Tick(now=at)), Originate) == []  # op-b is free, but it is op-a's callback
    h.send(OperatorReady(now=at + 60, operator_id="op-a"))
    originate = one(h.send(Tick(now=at + 60)), Originate)
    assert (originate.order_id, originate.operator_id) == ("o-1", "op-a")


def test_a_callback_to_anyone_is_dialled_at_its_time() -> None:
    h = Harness()
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.talk("call-1", "op-a", T0 + 5, T0 + 65)
    h.send(
        Disposition(
            now=T0 + 70,
            call_id="call-1",
            operator_id="op-a",
            outcome=DispositionOutcome.CALLBACK,
            callback_at=T0 + 900,
        )
    )
    assert of(h.send(Tick(now=T0 + 899)), Originate) == []
    originate = one(h.send(Tick(now=T0 + 900)), Originate)
    assert (originate.order_id, originate.operator_id) == ("o-1", None)


def test_a_missing_disposition_is_flagged_and_a_late_one_is_still_stored() -> None:
    h = Harness(wrapup_s=15.0)
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.talk("call-1", "op-a", T0 + 5, T0 + 65)
    assert of(h.send(Tick(now=T0 + 79)), MissingDisposition) == []
    flagged = one(h.send(Tick(now=T0 + 80)), MissingDisposition)
    assert (flagged.operator_id, flagged.call_id, flagged.order_id) == ("op-a", "call-1", "o-1")
    assert h.state("op-a") is OperatorState.READY
    late = h.send(
        Disposition(
            now=T0 + 200, call_id="call-1", operator_id="op-a", outcome=DispositionOutcome.CONFIRMED
        )
    )
    assert one(late, StoreOutcome).outcome == "confirmed"
    stats = h.engine.statistics(T0 + 201).campaigns["confirm"]
    assert (stats.missing_dispositions, stats.dispositions) == (1, 1)


# -- failed attempts ---------------------------------------------------------------------------


def test_busy_is_retried_after_five_minutes_and_exhausted_orders_are_unreached() -> None:
    h = Harness(max_attempts=2)
    h.ready("op-a", T0)
    h.order("o-1", T0)
    commands = h.send(OriginateResult(now=T0 + 3, call_id="call-1", reason=5))
    assert one(commands, StoreAttempt).outcome == "busy"
    assert one(commands, StoreOutcome).next_attempt_at == T0 + 303
    assert h.state("op-a") is OperatorState.READY
    assert of(h.send(Tick(now=T0 + 302)), Originate) == []
    assert one(h.send(Tick(now=T0 + 303)), Originate).call_id == "call-2"
    commands = h.send(OriginateResult(now=T0 + 330, call_id="call-2", reason=3))
    outcome = one(commands, StoreOutcome)
    assert (outcome.outcome, outcome.final, outcome.details["last_outcome"]) == (
        "unreached",
        True,
        "no_answer",
    )
    assert h.engine.statistics(T0 + 331).campaigns["confirm"].unreached == 1
    assert of(h.send(Tick(now=T0 + 99_999)), Originate) == []


@pytest.mark.parametrize(
    ("reason", "outcome", "delay"),
    [(5, "busy", 300), (3, "no_answer", 900), (8, "congestion", 120), (0, "failed", 600)],
)
def test_each_originate_failure_is_retried_per_plan(
    reason: int, outcome: str, delay: float
) -> None:
    h = Harness()
    h.ready("op-a", T0)
    h.order("o-1", T0)
    stored = one(h.send(OriginateResult(now=T0 + 1, call_id="call-1", reason=reason)), StoreOutcome)
    assert (stored.outcome, stored.next_attempt_at) == (outcome, T0 + 1 + delay)


def test_a_dial_whose_result_never_comes_is_given_up() -> None:
    h = Harness()
    h.ready("op-a", T0)
    h.order("o-1", T0)
    assert of(h.send(Tick(now=T0 + 85)), HangupCall) == []
    commands = h.send(Tick(now=T0 + 86))
    assert one(commands, HangupCall).call_id == "call-1"
    assert one(commands, StoreAttempt).outcome == "failed"


def test_late_pbx_events_are_ignored_and_counted() -> None:
    h = Harness(dial_everything=True)
    h.ready("op-a", T0)
    h.order("o-1", T0)
    h.send(OperatorPause(now=T0 + 1, operator_id="op-a", reason="coffee"))
    h.answer("call-1", T0 + 3)
    h.send(Tick(now=T0 + 5))
    assert h.send(CustomerHungUp(now=T0 + 9, call_id="call-1", cause=16)) == []
    assert h.send(OriginateResult(now=T0 + 9, call_id="call-1", reason=4)) == []
    assert h.engine.statistics(T0 + 10).stale_events == 2


def test_statistics_show_waiting_leads_and_the_oldest_ones_age() -> None:
    h = Harness()
    for i, at in enumerate([T0, T0 + 30, T0 + 60]):
        h.order(f"o-{i}", at)
    stats = h.engine.statistics(T0 + 100).campaigns["confirm"]
    assert (stats.leads_waiting, stats.leads_due, stats.oldest_lead_age_s) == (3, 3, 100.0)
    assert stats.abandon_rate_1h is None
    assert stats.pacer.name == "progressive"


# -- shutting down -----------------------------------------------------------------------------


def test_drain_stops_new_calls_and_lets_live_ones_finish() -> None:
    h = Harness(operators=("op-a", "op-b"))
    h.ready("op-a", T0)
    h.ready("op-b", T0)
    h.order("o-1", T0)
    h.send(Drain(now=T0 + 1))
    assert of(h.order("o-2", T0 + 2), Originate) == []
    assert of(h.send(Tick(now=T0 + 3)), Originate) == []
    assert one(h.answer("call-1", T0 + 4), ConnectToOperator).call_id == "call-1"
    stats = h.engine.statistics(T0 + 5)
    assert stats.draining and stats.live_calls == 1
    h.send(OperatorAnswered(now=T0 + 5, call_id="call-1", operator_id="op-a"))
    h.send(CustomerHungUp(now=T0 + 60, call_id="call-1"))
    h.send(
        Disposition(
            now=T0 + 61, call_id="call-1", operator_id="op-a", outcome=DispositionOutcome.CONFIRMED
        )
    )
    assert h.engine.statistics(T0 + 62).open_calls == 0


# -- never two live attempts for one order -----------------------------------------------------

_ORDERS = ("o-0", "o-1", "o-2")
_OPERATORS = ("op-a", "op-b")
_REASONS = (4, 4, 5, 3, 8, 0)

step = st.tuples(
    st.integers(min_value=0, max_value=13),  # what happens
    st.integers(min_value=0, max_value=7),  # which call or order
    st.integers(min_value=0, max_value=5),  # which operator or reason
    st.sampled_from([0.0, 0.3, 0.3, 1.0, 1.0, 2.5, 30.0, 400.0]),  # time passing
)


def _event(h: Harness, now: float, kind: int, which: int, other: int, calls: list[str]) -> Event:
    # Mostly the newest calls, so that sequences often follow one call through its life.
    call_id = calls[-1 - which % min(len(calls), 3)] if calls else "call-none"
    session = h.engine.call(call_id)
    op = (
        session.operator_id
        if other < 4 and session is not None and session.operator_id is not None
        else _OPERATORS[other % 2]
    )
    match kind:
        case 0:
            lead = Lead(
                order_id=_ORDERS[which % 3],
                phone="79000000000",
                campaign_id="confirm",
                timezone="Europe/Moscow",
                created_at=now,
            )
            return OrderArrived(now=now, lead=lead)
        case 1 | 2:
            return Tick(now=now)
        case 3:
            return OriginateResult(now=now, call_id=call_id, reason=_REASONS[other])
        case 4:
            return CustomerAnswered(now=now, call_id=call_id)
        case 5:
            return AmdResult(now=now, call_id=call_id, status=AmdStatus.MACHINE)
        case 6:
            return ConnectFailed(now=now, call_id=call_id, operator_id=op)
        case 7:
            return OperatorAnswered(now=now, call_id=call_id, operator_id=op)
        case 8:
            return CustomerHungUp(now=now, call_id=call_id, cause=16)
        case 9:
            return OperatorHungUp(now=now, call_id=call_id, operator_id=op)
        case 10:
            callback = which % 2 == 1
            return Disposition(
                now=now,
                call_id=call_id,
                operator_id=op,
                outcome=DispositionOutcome.CALLBACK if callback else DispositionOutcome.CONFIRMED,
                callback_at=now + 60 if callback else None,
                callback_mine=callback and which > 4,
            )
        case 11:
            return OperatorReady(now=now, operator_id=op)
        case 12:
            return OperatorPause(now=now, operator_id=op, reason="break")
        case _:
            return (OperatorLogin if other % 2 else OperatorLogout)(now=now, operator_id=op)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(step, max_size=60), dial_everything=st.booleans())
def test_random_event_sequences_never_dial_an_order_that_has_an_open_call(
    steps: list[tuple[int, int, int, float]], dial_everything: bool
) -> None:
    h = Harness(operators=_OPERATORS, dial_everything=dial_everything, max_attempts=20)
    h.ready("op-a", T0)
    now = T0
    open_call: dict[str, str] = {}
    calls: list[str] = []
    for kind, which, other, elapsed in steps:
        now += elapsed
        event = _event(h, now, kind, which, other, calls)
        try:
            commands = h.send(event)
        except (OperatorActionRejected, UnknownCall):
            continue
        for command in commands:
            if isinstance(command, Originate):
                assert command.order_id not in open_call, "a second call for an open order"
                open_call[command.order_id] = command.call_id
                calls.append(command.call_id)
            elif isinstance(command, StoreOutcome):
                assert open_call.get(command.order_id) == command.call_id
                del open_call[command.order_id]
    stats = h.engine.statistics(now)
    assert stats.open_calls == len(open_call)
