"""Inbound calls and transfers in the engine, driven purely by events."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time
from typing import TypeVar

import pytest

from acd.board import OperatorBoard
from acd.profile import OperatorProfile
from acd.routing import LongestIdle
from acd.states import OperatorState
from dialer.engine.campaign import CallingWindow, CampaignRules, InboundRules, OverflowStep
from dialer.engine.commands import (
    Command,
    ConnectToOperator,
    HoldCustomer,
    OfferCallback,
    RequestCallback,
    ScreenPop,
    SetQueuePosition,
    StoreAttempt,
    StoreInbound,
    StoreOutcome,
    StoreTransfer,
)
from dialer.engine.engine import DialerEngine
from dialer.engine.errors import OperatorActionRejected, UnknownCampaign
from dialer.engine.events import (
    CallbackChoice,
    ConnectFailed,
    CustomerAnswered,
    CustomerHungUp,
    Disposition,
    DispositionOutcome,
    InboundCall,
    OperatorAnswered,
    OperatorHungUp,
    OperatorLogin,
    OperatorReady,
    OrderArrived,
    OriginateResult,
    Tick,
    TransferRequested,
)
from dialer.engine.scheduling import Lead

T0 = datetime(2024, 7, 15, 9, tzinfo=UTC).timestamp()
ALL_DAY = CallingWindow(start=time(0), end=time(0))
C = TypeVar("C", bound=Command)


def of(kind: type[C], commands: Iterable[Command]) -> list[C]:
    return [c for c in commands if isinstance(c, kind)]


class Desk:
    """An engine with an outbound campaign ("confirm") and two inbound lines."""

    def __init__(
        self,
        operators: Sequence[tuple[str, frozenset[str], bool, frozenset[str] | None]],
        *,
        delivery: InboundRules | None = None,
    ) -> None:
        self.confirm = CampaignRules(id="confirm", calling_window=ALL_DAY)
        self.delivery = CampaignRules(
            id="delivery",
            calling_window=ALL_DAY,
            inbound=delivery
            or InboundRules(priorities={"in-delivery": 10, "known": 5}, callback_offer_after_s=60),
        )
        self.complaints = CampaignRules(
            id="complaints", calling_window=ALL_DAY, inbound=InboundRules()
        )
        self.board = OperatorBoard()
        for op, lines, supervisor, only in operators:
            profile = OperatorProfile(
                id=op,
                endpoint=f"PJSIP/{op}",
                campaigns=lines,
                supervisor=supervisor,
                categories_only=only,
                wrapup_s=10,
            )
            self.board.add(profile, T0 - 3600)
        counter = itertools.count(1)
        self.engine = DialerEngine(
            campaigns=[self.confirm, self.delivery, self.complaints],
            board=self.board,
            router=LongestIdle(),
            id_factory=lambda: f"out-{next(counter)}",
        )
        self.now = T0

    def at(self, dt: float) -> float:
        self.now = T0 + dt
        return self.now

    def ready(self, *ops: str) -> None:
        for op in ops:
            self.engine.handle(OperatorLogin(operator_id=op, now=self.now))
            self.engine.handle(OperatorReady(operator_id=op, now=self.now))

    def call_in(self, call_id: str, line: str = "delivery", **kw: object) -> list[Command]:
        return self.engine.handle(
            InboundCall(call_id=call_id, line_id=line, caller="+79001112233", now=self.now, **kw)  # type: ignore[arg-type]
        )


def ops(*specs: str) -> list[tuple[str, frozenset[str], bool, frozenset[str] | None]]:
    """'name:line1,line2[:sup][:only=cat]' → operator specs."""
    out = []
    for spec in specs:
        parts = spec.split(":")
        name, lines = parts[0], frozenset(parts[1].split(","))
        sup = "sup" in parts[2:]
        only = next((frozenset({p[5:]}) for p in parts[2:] if p.startswith("only=")), None)
        out.append((name, lines, sup, only))
    return out


def test_an_inbound_caller_goes_to_a_free_operator_of_the_line_with_a_screen_pop() -> None:
    d = Desk(ops("a:confirm", "b:delivery"))
    d.ready("a", "b")
    out = d.call_in("in-1", order_id=None, category="cosmetics")
    (connect,) = of(ConnectToOperator, out)
    assert connect.operator_id == "b" and connect.call_id == "in-1"
    (pop,) = of(ScreenPop, out)
    assert pop.caller == "+79001112233" and pop.operator_id == "b"
    assert d.engine.call("in-1").state == "connecting"  # type: ignore[union-attr]


def test_the_caller_waits_without_a_connect_budget_and_hears_their_place_in_line() -> None:
    d = Desk(ops("b:delivery"))
    d.ready("b")
    d.call_in("in-1")  # takes b
    out2 = d.call_in("in-2")
    out3 = d.call_in("in-3")
    assert of(ConnectToOperator, out2 + out3) == []
    positions = {p.call_id: p.position for p in of(SetQueuePosition, out2 + out3)}
    assert positions == {"in-2": 1, "in-3": 2}
    d.at(300)  # five minutes on hold: nobody is abandoned, as an outbound customer would be
    tick = d.engine.handle(Tick(now=d.now))
    assert d.engine.call("in-2").state == "answered-waiting"  # type: ignore[union-attr]
    assert of(SetQueuePosition, tick) == []  # places did not change: nothing re-announced
    queue = d.engine.statistics(d.now).queues["delivery"]
    assert queue.waiting == 2 and queue.longest_wait_s == pytest.approx(300)


def test_priorities_serve_callers_with_an_order_in_delivery_first() -> None:
    d = Desk(ops("b:delivery"))
    d.ready("b")
    d.call_in("in-1")  # takes b
    d.call_in("in-2")
    d.call_in("in-3", tags=frozenset({"known"}))
    out = d.call_in("in-4", tags=frozenset({"in-delivery", "known"}))
    positions = {p.call_id: p.position for p in of(SetQueuePosition, out)}
    assert positions == {"in-4": 1, "in-3": 2, "in-2": 3}
    # b finishes in-1: in-4 (priority 10) is next, not in-2 who came first
    d.engine.handle(OperatorAnswered(call_id="in-1", operator_id="b", now=d.at(1)))
    d.engine.handle(OperatorHungUp(call_id="in-1", operator_id="b", now=d.at(30)))
    out = d.engine.handle(
        Disposition(
            call_id="in-1", operator_id="b", outcome=DispositionOutcome.CONFIRMED, now=d.at(35)
        )
    )
    (connect,) = of(ConnectToOperator, out)
    assert connect.call_id == "in-4"


def test_overflow_widens_the_pool_to_another_line_after_the_wait() -> None:
    rules = InboundRules(
        overflow=(OverflowStep(after_s=30, lines=frozenset({"confirm"})),),
        callback_offer_after_s=None,
    )
    d = Desk(ops("a:confirm", "b:delivery"), delivery=rules)
    d.ready("a", "b")
    d.call_in("in-1")  # b
    d.call_in("in-2")
    d.at(29)
    assert of(ConnectToOperator, d.engine.handle(Tick(now=d.now))) == []
    d.at(30)
    (connect,) = of(ConnectToOperator, d.engine.handle(Tick(now=d.now)))
    assert (connect.call_id, connect.operator_id) == ("in-2", "a")


def test_a_caller_who_hangs_up_while_waiting_is_abandoned_inbound() -> None:
    d = Desk(ops("b:delivery"))
    d.ready("b")
    d.call_in("in-1")
    d.call_in("in-2")
    out = d.engine.handle(CustomerHungUp(call_id="in-2", cause=16, now=d.at(40)))
    (record,) = of(StoreInbound, out)
    assert record.outcome == "abandoned" and record.line_id == "delivery"
    assert record.ended_at == pytest.approx(d.now)
    assert of(StoreAttempt, out) == [] and of(StoreOutcome, out) == []
    queue = d.engine.statistics(d.now).queues["delivery"]
    assert (queue.offered, queue.abandoned, queue.waiting) == (2, 1, 0)


def test_a_caller_hanging_up_while_the_operator_rings_frees_the_operator() -> None:
    d = Desk(ops("b:delivery"))
    d.ready("b")
    d.call_in("in-1")
    d.engine.handle(CustomerHungUp(call_id="in-1", cause=16, now=d.at(3)))
    assert d.board.get("b").state is OperatorState.READY


def test_callback_offer_after_the_wait_and_an_accepted_offer_reschedules_the_open_order() -> None:
    d = Desk(ops("b:delivery"))
    d.ready("b")
    lead = Lead(
        order_id="77",
        phone="+79001112233",
        campaign_id="confirm",
        timezone="Europe/Moscow",
        created_at=T0 - 600,
        category="cosmetics",
        next_attempt_at=T0 + 3600,
        attempts=1,
    )
    d.engine.handle(OrderArrived(lead=lead, now=d.now))
    d.call_in("in-0")  # takes b
    d.call_in("in-1", order_id="77", tags=frozenset({"known"}))
    assert d.engine.statistics(d.now).campaigns["confirm"].leads_waiting == 0  # taken out
    d.at(59)
    assert of(OfferCallback, d.engine.handle(Tick(now=d.now))) == []
    d.at(61)
    offers = of(OfferCallback, d.engine.handle(Tick(now=d.now)))
    assert [o.call_id for o in offers] == ["in-1"]  # in-0 is with the operator
    out = d.engine.handle(CallbackChoice(call_id="in-1", accepted=True, now=d.at(65)))
    (record,) = of(StoreInbound, out)
    assert record.outcome == "callback" and record.order_id == "77"
    (outcome,) = of(StoreOutcome, out)
    assert outcome.order_id == "77" and not outcome.final
    assert outcome.lead is not None and outcome.lead.callback_at == pytest.approx(d.now)
    stats = d.engine.statistics(d.now)
    assert stats.campaigns["confirm"].leads_due == 1  # due at once: called back first
    assert stats.queues["delivery"].callbacks == 1
    # offered only once
    d.at(200)
    assert "in-1" not in [o.call_id for o in of(OfferCallback, d.engine.handle(Tick(now=d.now)))]


def test_a_declined_offer_keeps_the_caller_in_line() -> None:
    d = Desk(ops("b:delivery"))
    d.ready("b")
    d.call_in("in-0")
    d.call_in("in-1")
    d.at(61)
    d.engine.handle(Tick(now=d.now))
    out = d.engine.handle(CallbackChoice(call_id="in-1", accepted=False, now=d.at(66)))
    assert of(StoreInbound, out) == []
    assert d.engine.call("in-1").state == "answered-waiting"  # type: ignore[union-attr]


def test_an_unknown_caller_who_accepts_the_callback_gets_a_callback_request() -> None:
    d = Desk(ops("b:delivery"))
    d.ready("b")
    d.call_in("in-0")
    d.call_in("in-1")
    out = d.engine.handle(CallbackChoice(call_id="in-1", accepted=True, now=d.at(70)))
    (request,) = of(RequestCallback, out)
    assert (request.line_id, request.caller, request.order_id) == ("delivery", "+79001112233", None)
    assert of(StoreOutcome, out) == []
    assert d.engine.call("in-1") is None


def test_a_caller_who_leaves_gives_their_open_order_back_untouched() -> None:
    d = Desk(ops("b:delivery"))
    lead = Lead(
        order_id="77",
        phone="+79001112233",
        campaign_id="confirm",
        timezone="Europe/Moscow",
        created_at=T0,
        next_attempt_at=T0 + 3600,
    )
    d.engine.handle(OrderArrived(lead=lead, now=d.now))
    d.call_in("in-1", order_id="77")
    d.engine.handle(CustomerHungUp(call_id="in-1", now=d.at(10)))
    assert d.engine.statistics(d.now).campaigns["confirm"].leads_waiting == 1
    assert d.engine.statistics(d.now).campaigns["confirm"].leads_due == 0  # still at +1 h


def test_the_disposition_of_an_inbound_call_closes_the_callers_open_order() -> None:
    d = Desk(ops("b:delivery"))
    d.ready("b")
    lead = Lead(
        order_id="77", phone="+79001112233", campaign_id="confirm", timezone="UTC", created_at=T0
    )
    d.engine.handle(OrderArrived(lead=lead, now=d.now))
    d.call_in("in-1", order_id="77")
    d.engine.handle(OperatorAnswered(call_id="in-1", operator_id="b", now=d.at(5)))
    out = d.engine.handle(CustomerHungUp(call_id="in-1", now=d.at(60)))
    (record,) = of(StoreInbound, out)
    assert record.outcome == "connected" and record.connected_at == pytest.approx(T0 + 5)
    out = d.engine.handle(
        Disposition(
            call_id="in-1", operator_id="b", outcome=DispositionOutcome.CONFIRMED, now=d.at(70)
        )
    )
    (outcome,) = of(StoreOutcome, out)
    assert (outcome.order_id, outcome.outcome, outcome.final) == ("77", "confirmed", True)
    (record,) = of(StoreInbound, out)
    assert record.disposition == "confirmed"
    queue = d.engine.statistics(d.now).queues["delivery"]
    assert (queue.answered, queue.answered_within_sl, queue.service_level) == (1, 1, 1.0)
    assert queue.asa_s == pytest.approx(5)


def test_a_caller_without_an_open_order_stores_the_disposition_on_the_call_only() -> None:
    d = Desk(ops("b:delivery"))
    d.ready("b")
    d.call_in("in-1", order_id="55")  # a final order: not in any hopper
    d.engine.handle(OperatorAnswered(call_id="in-1", operator_id="b", now=d.at(25)))
    d.engine.handle(OperatorHungUp(call_id="in-1", operator_id="b", now=d.at(60)))
    out = d.engine.handle(
        Disposition(
            call_id="in-1", operator_id="b", outcome=DispositionOutcome.REJECTED, now=d.at(61)
        )
    )
    assert of(StoreOutcome, out) == []
    (record,) = of(StoreInbound, out)
    assert (record.order_id, record.disposition) == ("55", "rejected")
    queue = d.engine.statistics(d.now).queues["delivery"]
    assert (queue.answered, queue.answered_within_sl) == (1, 0)  # 25 s > the 20 s threshold


def test_a_missed_inbound_call_goes_to_the_next_operator_and_may_come_back_later() -> None:
    d = Desk(ops("b:delivery", "c:delivery"))
    d.ready("b", "c")
    (first,) = of(ConnectToOperator, d.call_in("in-1"))
    out = d.engine.handle(ConnectFailed(call_id="in-1", operator_id=first.operator_id, now=d.at(8)))
    (second,) = of(ConnectToOperator, out)
    assert second.operator_id != first.operator_id


def test_an_unknown_line_is_refused() -> None:
    d = Desk(ops("b:delivery"))
    with pytest.raises(UnknownCampaign):
        d.call_in("in-1", line="confirm")  # an outbound campaign is not a line to call


def test_the_engine_never_dials_for_an_inbound_line() -> None:
    d = Desk(ops("b:delivery"))
    d.ready("b")
    lead = Lead(
        order_id="1", phone="+79001112233", campaign_id="delivery", timezone="UTC", created_at=T0
    )
    out = d.engine.handle(OrderArrived(lead=lead, now=d.now))
    assert of(ConnectToOperator, out) == [] and not [
        c for c in out if type(c).__name__ == "Originate"
    ]


# -- transfers ----------------------------------------------------------------------------


def _connected_outbound(d: Desk, op: str) -> str:
    lead = Lead(
        order_id="9",
        phone="+79005556677",
        campaign_id="confirm",
        timezone="UTC",
        created_at=T0,
        category="gadgets",
    )
    out = d.engine.handle(OrderArrived(lead=lead, now=d.now))
    (orig,) = [c for c in out if type(c).__name__ == "Originate"]
    call = orig.call_id  # type: ignore[attr-defined]
    d.engine.handle(OriginateResult(call_id=call, reason=4, now=d.at(5)))
    out = d.engine.handle(CustomerAnswered(call_id=call, now=d.at(5)))
    (connect,) = of(ConnectToOperator, out)
    assert connect.operator_id == op
    d.engine.handle(OperatorAnswered(call_id=call, operator_id=op, now=d.at(6)))
    return call


def test_an_escalation_to_a_supervisor_holds_the_customer_and_routes_to_a_supervisor() -> None:
    d = Desk(ops("a:confirm", "lead:confirm:sup", "c:confirm"))
    d.ready("a")
    call = _connected_outbound(d, "a")
    d.ready("c", "lead")
    out = d.engine.handle(
        TransferRequested(
            call_id=call,
            operator_id="a",
            supervisor=True,
            reason="qualification insufficient",
            now=d.at(60),
        )
    )
    assert of(HoldCustomer, out) == []  # put through at once: no hold in between
    (connect,) = of(ConnectToOperator, out)
    assert connect.operator_id == "lead"  # not c, who is free too
    assert connect.on_hold  # if the supervisor does not answer, the customer hears music
    (pop,) = of(ScreenPop, out)
    assert pop.transfer_from == "a"
    assert d.board.get("a").state is OperatorState.WRAPUP
    # the supervisor answers: the transfer is recorded; the call is theirs now
    out = d.engine.handle(OperatorAnswered(call_id=call, operator_id="lead", now=d.at(65)))
    (record,) = of(StoreTransfer, out)
    assert (record.from_operator_id, record.to_operator_id, record.target) == (
        "a",
        "lead",
        "supervisor",
    )
    assert record.reason == "qualification insufficient"
    # a's hang-up (Asterisk hangs the old leg up) is not the supervisor's call ending
    d.engine.handle(OperatorHungUp(call_id=call, operator_id="a", now=d.at(65)))
    assert d.engine.call(call).state == "connected"  # type: ignore[union-attr]
    # a cannot give the outcome any more; the supervisor does, and it is attributed to them
    with pytest.raises(OperatorActionRejected):
        d.engine.handle(
            Disposition(
                call_id=call, operator_id="a", outcome=DispositionOutcome.CONFIRMED, now=d.at(66)
            )
        )
    d.engine.handle(CustomerHungUp(call_id=call, now=d.at(120)))
    out = d.engine.handle(
        Disposition(
            call_id=call, operator_id="lead", outcome=DispositionOutcome.CONFIRMED, now=d.at(125)
        )
    )
    (outcome,) = of(StoreOutcome, out)
    assert outcome.details["operator_id"] == "lead" and outcome.final


def test_a_transfer_to_a_category_goes_to_a_qualified_colleague() -> None:
    d = Desk(ops("a:confirm", "b:confirm:only=health", "c:confirm:only=gadgets"))
    d.ready("a")
    call = _connected_outbound(d, "a")
    d.ready("b", "c")
    out = d.engine.handle(
        TransferRequested(call_id=call, operator_id="a", category="health", now=d.at(30))
    )
    (connect,) = of(ConnectToOperator, out)
    assert connect.operator_id == "b"


def test_a_transferred_customer_is_not_abandoned_by_the_connect_budget() -> None:
    d = Desk(ops("a:confirm", "lead:confirm:sup"))
    d.ready("a")
    call = _connected_outbound(d, "a")
    out = d.engine.handle(
        TransferRequested(call_id=call, operator_id="a", supervisor=True, now=d.at(30))
    )
    assert [h.call_id for h in of(HoldCustomer, out)] == [call]  # nobody free: on hold
    d.at(90)
    d.engine.handle(Tick(now=d.now))  # no supervisor ready: the customer waits on hold
    assert d.engine.call(call).state == "answered-waiting"  # type: ignore[union-attr]
    out = d.engine.handle(CustomerHungUp(call_id=call, now=d.at(100)))
    (record,) = of(StoreTransfer, out)
    assert record.to_operator_id is None
    (attempt,) = of(StoreAttempt, out)
    assert attempt.outcome == "hung_up"
    (outcome,) = of(StoreOutcome, out)
    assert not outcome.final  # called again


def test_only_the_operator_on_a_connected_call_may_transfer_it() -> None:
    d = Desk(ops("a:confirm", "b:confirm", "lead:confirm:sup"))
    d.ready("a")
    call = _connected_outbound(d, "a")
    with pytest.raises(OperatorActionRejected):
        d.engine.handle(TransferRequested(call_id=call, operator_id="b", now=d.at(30)))
    d.engine.handle(CustomerHungUp(call_id=call, now=d.at(40)))
    with pytest.raises(OperatorActionRejected):  # in wrap-up: nothing to transfer
        d.engine.handle(TransferRequested(call_id=call, operator_id="a", now=d.at(41)))


def test_an_escalation_is_refused_when_no_supervisor_is_on_the_floor() -> None:
    d = Desk(ops("a:confirm"))
    d.ready("a")
    call = _connected_outbound(d, "a")
    with pytest.raises(OperatorActionRejected, match="supervisor"):
        d.engine.handle(
            TransferRequested(call_id=call, operator_id="a", supervisor=True, now=d.at(30))
        )
    assert d.engine.call(call).state == "connected"  # type: ignore[union-attr]
