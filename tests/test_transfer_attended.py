"""Attended transfers in the engine: the operator consults a colleague while the customer holds,
then hands the customer over or takes them back. Driven purely by events."""

from __future__ import annotations

import pytest

from acd.states import OperatorState
from dialer.engine.commands import (
    BridgeToOperator,
    ConnectToOperator,
    Consult,
    HangupCall,
    HangupOperatorLeg,
    ScreenPop,
    StoreOutcome,
    StoreTransfer,
)
from dialer.engine.errors import OperatorActionRejected
from dialer.engine.events import (
    ConsultEnded,
    CustomerHungUp,
    Disposition,
    DispositionOutcome,
    OperatorAnswered,
    OperatorHungUp,
    Tick,
    TransferDecision,
    TransferRequested,
)
from tests.test_inbound import Desk, _connected_outbound, of, ops


def _consulting(d: Desk, *, supervisor: bool = True, category: str | None = None) -> str:
    """Operator a's connected call, with an attended transfer under way."""
    d.ready("a")
    call = _connected_outbound(d, "a")
    d.ready("b", "lead")
    out = d.engine.handle(
        TransferRequested(
            call_id=call,
            operator_id="a",
            supervisor=supervisor,
            category=category,
            reason="qualification insufficient",
            mode="attended",
            now=d.at(60),
        )
    )
    (consult,) = of(Consult, out)
    assert (consult.operator_id, consult.colleague_id) == ("a", "lead" if supervisor else "b")
    assert consult.endpoint == f"PJSIP/{consult.colleague_id}"
    assert of(ConnectToOperator, out) == []  # the customer is not put through: they hold
    (pop,) = of(ScreenPop, out)
    assert (pop.operator_id, pop.transfer_from) == (consult.colleague_id, "a")
    return call


def _state(d: Desk, call: str) -> str:
    session = d.engine.call(call)
    assert session is not None
    return session.state.value


def test_a_completed_consultation_hands_the_customer_to_the_supervisor() -> None:
    d = Desk(ops("a:confirm", "b:confirm", "lead:confirm:sup"))
    call = _consulting(d)
    assert _state(d, call) == "consulting"
    assert d.board.get("a").state is OperatorState.TALKING  # still on the call, consulting
    assert d.board.get("lead").state is OperatorState.RINGING
    with pytest.raises(OperatorActionRejected, match="not answered"):
        d.engine.handle(
            TransferDecision(call_id=call, operator_id="a", complete=True, now=d.at(61))
        )
    d.engine.handle(OperatorAnswered(call_id=call, operator_id="lead", now=d.at(63)))
    assert d.board.get("lead").state is OperatorState.TALKING
    with pytest.raises(OperatorActionRejected):  # only the consulting operator decides
        d.engine.handle(
            TransferDecision(call_id=call, operator_id="lead", complete=True, now=d.at(70))
        )
    out = d.engine.handle(
        TransferDecision(call_id=call, operator_id="a", complete=True, now=d.at(80))
    )
    (bridge,) = of(BridgeToOperator, out)
    assert bridge.operator_id == "lead"
    (record,) = of(StoreTransfer, out)
    assert (record.from_operator_id, record.to_operator_id, record.mode, record.target) == (
        "a",
        "lead",
        "attended",
        "supervisor",
    )
    assert _state(d, call) == "connected"
    assert d.board.get("a").state is OperatorState.WRAPUP
    # the operator's consultation leg is hung up once the dialplan says the colleague left it
    out = d.engine.handle(ConsultEnded(call_id=call, dial_status="ANSWER", now=d.at(80)))
    assert [(h.operator_id) for h in of(HangupOperatorLeg, out)] == ["a"]
    d.engine.handle(OperatorHungUp(call_id=call, operator_id="a", now=d.at(80)))
    assert _state(d, call) == "connected"  # a's leg going is not the supervisor's call ending
    with pytest.raises(OperatorActionRejected):  # the outcome is the supervisor's now
        d.engine.handle(
            Disposition(
                call_id=call, operator_id="a", outcome=DispositionOutcome.CONFIRMED, now=d.at(81)
            )
        )
    out = d.engine.handle(CustomerHungUp(call_id=call, now=d.at(200)))
    # parties the PBX bridged on our word are hung up, not left in their dialplan
    assert of(HangupCall, out) and [h.operator_id for h in of(HangupOperatorLeg, out)] == ["lead"]
    out = d.engine.handle(
        Disposition(
            call_id=call, operator_id="lead", outcome=DispositionOutcome.CONFIRMED, now=d.at(205)
        )
    )
    (outcome,) = of(StoreOutcome, out)
    assert outcome.details["operator_id"] == "lead"


def test_a_cancelled_consultation_brings_the_operator_back_and_frees_the_colleague() -> None:
    d = Desk(ops("a:confirm", "b:confirm", "lead:confirm:sup"))
    call = _consulting(d)
    d.engine.handle(OperatorAnswered(call_id=call, operator_id="lead", now=d.at(63)))
    out = d.engine.handle(
        TransferDecision(call_id=call, operator_id="a", complete=False, now=d.at(70))
    )
    assert [b.operator_id for b in of(BridgeToOperator, out)] == ["a"]
    assert [h.operator_id for h in of(HangupOperatorLeg, out)] == ["lead"]
    (record,) = of(StoreTransfer, out)
    assert record.to_operator_id is None and record.mode == "attended"
    assert _state(d, call) == "connected"
    assert d.board.get("lead").state is OperatorState.READY  # nothing to wrap up
    assert d.board.get("a").state is OperatorState.TALKING
    # the dialplan's report of the ended consultation changes nothing now
    out = d.engine.handle(ConsultEnded(call_id=call, dial_status="ANSWER", now=d.at(70)))
    assert of(BridgeToOperator, out) == [] and of(HangupOperatorLeg, out) == []
    d.engine.handle(OperatorHungUp(call_id=call, operator_id="lead", now=d.at(70)))
    assert _state(d, call) == "connected"
    d.engine.handle(OperatorHungUp(call_id=call, operator_id="a", now=d.at(90)))
    assert _state(d, call) == "wrap-up"
    out = d.engine.handle(
        Disposition(
            call_id=call, operator_id="a", outcome=DispositionOutcome.CONFIRMED, now=d.at(95)
        )
    )
    assert of(StoreOutcome, out)[0].details["operator_id"] == "a"


def test_a_colleague_who_does_not_answer_sends_the_customer_back_and_counts_a_miss() -> None:
    d = Desk(ops("a:confirm", "b:confirm", "lead:confirm:sup"))
    call = _consulting(d, supervisor=False)  # b, the only free colleague
    out = d.engine.handle(ConsultEnded(call_id=call, dial_status="NOANSWER", now=d.at(75)))
    assert [b.operator_id for b in of(BridgeToOperator, out)] == ["a"]
    assert of(HangupOperatorLeg, out) == []  # b never picked up: no leg of theirs to end
    assert _state(d, call) == "connected"
    assert d.board.get("b").state is OperatorState.READY
    assert d.board.get("b").consecutive_misses == 1  # as for any routed call let ring out


def test_the_customer_hanging_up_on_hold_ends_the_call_with_the_operator() -> None:
    d = Desk(ops("a:confirm", "b:confirm", "lead:confirm:sup"))
    call = _consulting(d)
    d.engine.handle(OperatorAnswered(call_id=call, operator_id="lead", now=d.at(63)))
    out = d.engine.handle(CustomerHungUp(call_id=call, now=d.at(70)))
    assert sorted(h.operator_id for h in of(HangupOperatorLeg, out)) == ["a", "lead"]
    (record,) = of(StoreTransfer, out)
    assert record.to_operator_id is None
    assert _state(d, call) == "wrap-up"
    assert d.board.get("a").state is OperatorState.WRAPUP  # a gives the outcome
    assert d.board.get("lead").state is OperatorState.READY


def test_an_operator_who_leaves_while_consulting_leaves_the_customer_in_line() -> None:
    d = Desk(ops("a:confirm", "b:confirm", "lead:confirm:sup"))
    call = _consulting(d)
    out = d.engine.handle(OperatorHungUp(call_id=call, operator_id="a", now=d.at(62)))
    # the ringing supervisor (a's Dial is gone with a) is free, and is offered the customer
    (connect,) = of(ConnectToOperator, out)
    assert connect.operator_id == "lead" and connect.on_hold
    assert d.board.get("a").state is OperatorState.WRAPUP
    out = d.engine.handle(OperatorAnswered(call_id=call, operator_id="lead", now=d.at(65)))
    (record,) = of(StoreTransfer, out)
    assert (record.from_operator_id, record.to_operator_id) == ("a", "lead")


def test_an_attended_transfer_needs_a_colleague_free_now() -> None:
    d = Desk(ops("a:confirm", "lead:confirm:sup"))
    d.ready("a")
    call = _connected_outbound(d, "a")
    with pytest.raises(OperatorActionRejected, match="free to consult"):
        d.engine.handle(
            TransferRequested(
                call_id=call, operator_id="a", supervisor=True, mode="attended", now=d.at(30)
            )
        )
    assert _state(d, call) == "connected"  # nothing changed
    session = d.engine.call(call)
    assert session is not None and session.transfer is None


def test_a_consultation_to_a_category_goes_to_a_qualified_colleague() -> None:
    d = Desk(ops("a:confirm", "b:confirm:only=health", "lead:confirm:sup:only=gadgets"))
    _consulting(d, supervisor=False, category="health")


def test_a_consultation_nobody_reports_on_is_called_off_after_a_minute() -> None:
    d = Desk(ops("a:confirm", "b:confirm", "lead:confirm:sup"))
    call = _consulting(d)  # consulting since 60 s
    d.engine.handle(Tick(now=d.at(100)))
    assert _state(d, call) == "consulting"
    out = d.engine.handle(Tick(now=d.at(121)))
    assert [b.operator_id for b in of(BridgeToOperator, out)] == ["a"]
    assert _state(d, call) == "connected"
    assert d.board.get("lead").state is OperatorState.READY
