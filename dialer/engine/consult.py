"""Attended transfers: the operator talks to the colleague before handing the customer over.

An operator asks for an attended transfer (`TransferRequested` with ``mode="attended"``) to a
colleague of a skill or to a supervisor. The ACD chooses, with the same routing policy as for
any call, among the colleagues free *now* (an operator consulting cannot wait in a queue: with
nobody free the request is refused and a blind transfer queues the customer instead). Then
`Consult` puts the customer on music on hold and rings the colleague from the operator's own
leg; the session is *consulting*. From there:

- the colleague answers (`OperatorAnswered` for them): the two talk, the customer still holds;
- the operator completes (`TransferDecision(complete=True)`, only once the colleague answered):
  the customer is bridged with the colleague, who now has the call (and its disposition); the
  operator goes to wrap-up and their leg is hung up once the dialplan reports their
  consultation over (`ConsultEnded`), so it never takes the colleague down with it;
- the operator calls it off (`complete=False`), the colleague hangs up, or does not answer
  (`ConsultEnded` before an answer; a miss for the colleague, as for any routed call they let
  ring): the customer is bridged with the operator again and the colleague is free;
- the customer hangs up: the operator wraps the call up, both legs are hung up;
- nothing is heard of an unanswered colleague for `UNANSWERED_LIMIT_S`: called off, as above;
- the operator's leg goes away: the customer waits in line for the colleague's skill, as in a
  blind transfer.

Every consultation is recorded (`StoreTransfer`, mode "attended"): `to_operator_id` is the
colleague who took the customer, None when it was called off.
"""

from __future__ import annotations

from typing import Final

from acd.board import OperatorBoard
from acd.states import OperatorState
from dialer.engine.book import CallBook
from dialer.engine.commands import BridgeToOperator, Command, Consult, HangupOperatorLeg
from dialer.engine.connect import HOLDING, Connector
from dialer.engine.errors import OperatorActionRejected
from dialer.engine.events import ConsultEnded, TransferDecision, TransferRequested
from dialer.engine.inbound import InboundDesk
from dialer.engine.records import call_published, operator_published, screen_pop
from dialer.engine.session import CallSession, CallState, Consultation, Trigger

__all__ = ["Consultations"]

ANSWERED: Final = "ANSWER"
# The dialplan reports a colleague who does not pick up after their ring timeout (15 s); a
# consultation still unanswered this long lost that report (or its Redirect): called off.
UNANSWERED_LIMIT_S: Final = 60.0


class Consultations:
    """Runs attended transfers; see the module docstring."""

    def __init__(
        self, *, board: OperatorBoard, book: CallBook, desk: InboundDesk, connector: Connector
    ) -> None:
        self._board = board
        self._book = book
        self._desk = desk
        self._connector = connector

    def start(self, ev: TransferRequested, out: list[Command]) -> CallSession:
        """Ring a colleague chosen now for the operator; refused (nothing changed) if the call
        is not theirs and connected, or nobody qualified is free."""
        session = self._desk.transferable(ev)
        session.transfer = self._desk.pending(ev)
        request = self._desk.request_for(session, ev.now)
        candidates = [v for v in self._connector.pool(request) if v.id != ev.operator_id]
        chosen = self._connector.choose(request, candidates, ev.now)
        if chosen is None:
            session.transfer = None
            whom = "supervisor" if ev.supervisor else f"colleague for {ev.category or 'the line'}"
            raise OperatorActionRejected(
                f"no {whom} is free to consult now; a blind transfer queues the customer"
            )
        self._board.reserve(chosen.id, session.call_id, ev.now)
        self._board.ringing(chosen.id, ev.now)
        self._book.assign(session, chosen.id)
        session.apply(Trigger.CONSULT, ev.now)
        session.consult = Consultation(colleague_id=chosen.id, started_at=ev.now)
        out.append(
            Consult(
                call_id=session.call_id,
                operator_id=ev.operator_id,
                colleague_id=chosen.id,
                endpoint=chosen.profile.endpoint,
            )
        )
        out.append(screen_pop(session, chosen.id, transfer_from=ev.operator_id))
        out.append(operator_published(self._board.get(chosen.id)))
        out.append(call_published(session))
        return session

    def answered(
        self, session: CallSession, operator_id: str, now: float, out: list[Command]
    ) -> bool:
        """The colleague picked up the consultation; False if `operator_id` is not them."""
        consult = session.consult
        if consult is None or consult.colleague_id != operator_id or consult.answered:
            return False
        consult.answered = True
        if self._connector.holds(operator_id, session, HOLDING):
            self._board.answered(operator_id, now)
        out.append(operator_published(self._board.get(operator_id)))
        return True

    def decide(self, ev: TransferDecision, out: list[Command]) -> None:
        """The consulting operator hands the customer over or takes them back."""
        session = self._book.get(ev.call_id)
        if session is None or session.operator_id != ev.operator_id:
            raise OperatorActionRejected(f"call {ev.call_id} is not operator {ev.operator_id}'s")
        consult = session.consult
        if session.state is not CallState.CONSULTING or consult is None:
            raise OperatorActionRejected(f"call {ev.call_id} is {session.state}: no consultation")
        if not ev.complete:
            self._take_back(session, ev.now, out, missed=False)
            return
        if not consult.answered:
            raise OperatorActionRejected(
                f"operator {consult.colleague_id} has not answered yet: wait, or call it off"
            )
        self._hand_over(session, consult.colleague_id, ev.now, out)

    def ended(self, ev: ConsultEnded, out: list[Command]) -> bool:
        """The consultation leg ended; False if the event no longer fits the call."""
        session = self._book.get(ev.call_id)
        if session is None:
            return False
        consult = session.consult
        if session.state is CallState.CONSULTING and consult is not None:
            # nobody answered, or the colleague hung up on the operator: back to the operator
            missed = not consult.answered and ev.dial_status != ANSWERED
            self._take_back(session, ev.now, out, missed=missed)
            return True
        handed = session.transfers[-1] if session.transfers else None
        if handed is not None and handed.mode == "attended" and handed.to_operator_id:
            # the handover pulled the colleague out of the consultation: the operator's leg
            # is left alone in the dialplan
            out.append(
                HangupOperatorLeg(call_id=session.call_id, operator_id=handed.from_operator_id)
            )
            return True
        return False

    def tick(self, now: float, out: list[Command]) -> None:
        """Call off consultations whose colleague never answered and never was reported."""
        for session in list(self._book):
            consult = session.consult
            if (
                session.state is CallState.CONSULTING
                and consult is not None
                and not consult.answered
                and now - consult.started_at >= UNANSWERED_LIMIT_S
            ):
                self._take_back(session, now, out, missed=False)

    def customer_left(self, session: CallSession, now: float, out: list[Command]) -> None:
        """The customer hung up while on hold: the operator wraps up, both legs are hung up."""
        consult = session.consult
        assert consult is not None and session.operator_id is not None
        self._free_colleague(session, consult, now, out, missed=False)
        out.append(self._desk.transfer_done(session, None, now))  # the call's end hangs up

    def operator_left(
        self, session: CallSession, operator_id: str, now: float, out: list[Command]
    ) -> None:
        """The consulting operator's leg went away: the customer waits in line for the
        colleague's skill (the pending transfer goes on, as a blind one would)."""
        consult = session.consult
        assert consult is not None
        self._free_colleague(session, consult, now, out, missed=False)
        session.apply(Trigger.TRANSFER, now)
        self._desk.requeue(session, operator_id, now, out)
        self._connector.offer(session, now, out)

    # -- the two ends of a consultation --------------------------------------------------------

    def _hand_over(
        self, session: CallSession, colleague: str, now: float, out: list[Command]
    ) -> None:
        operator_id = session.operator_id
        assert operator_id is not None
        session.consult = None
        session.apply(Trigger.CONSULT_DONE, now)
        out.append(BridgeToOperator(call_id=session.call_id, operator_id=colleague))
        view = self._board.get(operator_id)
        if view.call_id == session.call_id and view.state is OperatorState.TALKING:
            self._board.hung_up(operator_id, now)
        self._book.unassign(session, operator_id)
        session.operator_id = colleague
        out.append(self._desk.transfer_done(session, colleague, now))
        out.append(operator_published(self._board.get(operator_id)))
        out.append(call_published(session))

    def _take_back(
        self, session: CallSession, now: float, out: list[Command], *, missed: bool
    ) -> None:
        consult = session.consult
        assert consult is not None and session.operator_id is not None
        self._free_colleague(session, consult, now, out, missed=missed)
        session.apply(Trigger.CONSULT_DONE, now)
        out.append(BridgeToOperator(call_id=session.call_id, operator_id=session.operator_id))
        out.append(self._desk.transfer_done(session, None, now))
        out.append(call_published(session))
        self._connector.serve_waiting(now, out)  # the colleague may be free for others

    def _free_colleague(
        self,
        session: CallSession,
        consult: Consultation,
        now: float,
        out: list[Command],
        *,
        missed: bool,
    ) -> None:
        """The colleague leaves the call: a miss if they let it ring out, else free at once
        (a consultation leaves them nothing to wrap up)."""
        colleague = consult.colleague_id
        session.consult = None
        self._book.unassign(session, colleague)
        if consult.answered:
            out.append(HangupOperatorLeg(call_id=session.call_id, operator_id=colleague))
        if self._connector.holds(colleague, session, HOLDING):
            if missed:
                self._board.not_answered(colleague, now)
            else:
                self._board.release(colleague, now)
        elif self._connector.holds(colleague, session, frozenset({OperatorState.TALKING})):
            self._board.hung_up(colleague, now)
            self._board.wrapup_done(colleague, now)
        out.append(operator_published(self._board.get(colleague)))
