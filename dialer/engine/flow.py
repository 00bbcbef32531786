"""The call flow: what the engine does with each event about one call.

`CallFlow` drives call sessions through their table (`session.TRANSITIONS`), keeps the
operator board in step, feeds pacers and abandon ledgers, and emits the commands. It is the
engine's inner half; `DialerEngine` owns it and decides when to dial.

PBX events that no longer fit their call (AMI reorders and repeats; a hang-up may follow the
engine's own abandon) are ignored and counted in `stale`. Operator actions that do not fit are
refused with `OperatorActionRejected` before anything changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from acd.board import OperatorBoard
from acd.routing import RoutingPolicy
from acd.states import OperatorState
from dialer.engine.abandon import AbandonLedger
from dialer.engine.book import CallBook
from dialer.engine.campaign import AttemptOutcome, CampaignRules
from dialer.engine.commands import (
    Command,
    HangupCall,
    HangupOperatorLeg,
    MissingDisposition,
    PlayAbandon,
)
from dialer.engine.connect import HOLDING, Connector
from dialer.engine.consult import Consultations
from dialer.engine.errors import OperatorActionRejected, UnknownCall
from dialer.engine.events import (
    ORIGINATE_ANSWERED,
    ORIGINATE_BUSY,
    ORIGINATE_CONGESTION,
    ORIGINATE_NO_ANSWER,
    AmdResult,
    AmdStatus,
    ConnectFailed,
    CustomerAnswered,
    CustomerHungUp,
    CustomerRinging,
    Disposition,
    DispositionOutcome,
    OperatorAnswered,
    OperatorHungUp,
    OriginateResult,
)
from dialer.engine.hopper import Hopper
from dialer.engine.inbound import InboundDesk
from dialer.engine.pacing import Pacer
from dialer.engine.records import attempt_record, call_published, operator_published, order_outcome
from dialer.engine.scheduling import after_attempt, not_before, with_callback
from dialer.engine.session import INBOUND, CallSession, CallState, Trigger
from dialer.engine.stats import CampaignCounters

__all__ = ["CallFlow"]

# A dial with no OriginateResponse this long after its ring timeout is lost (an AMI link that
# dropped with the action in flight); likewise a line that stays in screening this long.
LOST_DIAL_GRACE_S: Final = 60.0
SCREENING_LIMIT_S: Final = 30.0

_DIAL_FAILURES: Final[Mapping[int, tuple[Trigger, AttemptOutcome]]] = {
    ORIGINATE_BUSY: (Trigger.BUSY, AttemptOutcome.BUSY),
    ORIGINATE_NO_ANSWER: (Trigger.NO_ANSWER, AttemptOutcome.NO_ANSWER),
    ORIGINATE_CONGESTION: (Trigger.CONGESTION, AttemptOutcome.CONGESTION),
}


def hour_of_day(rules: CampaignRules, now: float) -> int:
    """The hour at `now` in the campaign's home time zone (what pacers learn by)."""
    return datetime.fromtimestamp(now, ZoneInfo(rules.timezone)).hour


class CallFlow:
    """Moves calls along on PBX events and operator dispositions; see the module docstring."""

    def __init__(
        self,
        *,
        rules: Mapping[str, CampaignRules],
        board: OperatorBoard,
        router: RoutingPolicy,
        book: CallBook,
        hoppers: Mapping[str, Hopper],
        pacers: Mapping[str, Pacer],
        ledgers: Mapping[str, AbandonLedger],
        counters: Mapping[str, CampaignCounters],
    ) -> None:
        self._rules = rules
        self._board = board
        self._book = book
        self._hoppers = hoppers
        self._pacers = pacers
        self._ledgers = ledgers
        self._counters = counters
        self._desk = InboundDesk(rules=rules, board=board, book=book, hoppers=hoppers)
        self._connector = Connector(
            rules=rules, board=board, router=router, book=book, desk=self._desk
        )
        self._consults = Consultations(
            board=board, book=book, desk=self._desk, connector=self._connector
        )
        self.stale = 0

    @property
    def desk(self) -> InboundDesk:
        """The part that queues inbound callers and transferred customers."""
        return self._desk

    @property
    def consults(self) -> Consultations:
        """The part that runs attended transfers."""
        return self._consults

    @property
    def connector(self) -> Connector:
        """The part that puts waiting customers through to operators."""
        return self._connector

    # -- the customer's leg ------------------------------------------------------------------

    def ringing(self, ev: CustomerRinging, out: list[Command]) -> None:
        session = self._fits(ev.call_id, Trigger.RING)
        if session is not None:
            session.apply(Trigger.RING, ev.now)
            self._publish_call(session, out)

    def originate_result(self, ev: OriginateResult, out: list[Command]) -> None:
        if ev.reason == ORIGINATE_ANSWERED:
            session = self._fits(ev.call_id, Trigger.LINE_UP)
            if session is not None:
                session.apply(Trigger.LINE_UP, ev.now)
                self._publish_call(session, out)
            return
        trigger, outcome = _DIAL_FAILURES.get(ev.reason, (Trigger.FAIL, AttemptOutcome.FAILED))
        session = self._fits(ev.call_id, trigger)
        if session is not None:
            session.apply(trigger, ev.now)
            self._attempt_result(session, answered=False, now=ev.now)
            self._finish_attempt(session, outcome, ev.now, out)

    def amd(self, ev: AmdResult, out: list[Command]) -> None:
        if ev.status is not AmdStatus.MACHINE:
            # HUMAN and NOTSURE are followed by the dialplan's answered event: act on that one.
            # The check only counts the event when the call is gone or past answering.
            self._fits(ev.call_id, Trigger.HUMAN)
            return
        session = self._fits(ev.call_id, Trigger.MACHINE)
        if session is not None:
            session.apply(Trigger.MACHINE, ev.now)
            out.append(HangupCall(call_id=session.call_id))
            self._attempt_result(session, answered=False, now=ev.now)
            self._counters[session.campaign_id].machines += 1
            self._finish_attempt(session, AttemptOutcome.MACHINE, ev.now, out)

    def answered(self, ev: CustomerAnswered, out: list[Command]) -> None:
        session = self._fits(ev.call_id, Trigger.HUMAN)
        if session is None:
            return
        session.apply(Trigger.HUMAN, ev.now)
        self._ledgers[session.campaign_id].record_live_answer(ev.now)
        self._counters[session.campaign_id].live_answers += 1
        self._attempt_result(session, answered=True, now=ev.now)
        self._book.join_line(session)
        self._publish_call(session, out)
        self._connector.offer(session, ev.now, out)

    def customer_hung_up(self, ev: CustomerHungUp, out: list[Command]) -> None:
        session = self._fits(ev.call_id, Trigger.CUSTOMER_HUNG_UP)
        if session is None:
            return
        session.hangup_cause = ev.cause
        if session.state is CallState.CONSULTING:
            self._consults.customer_left(session, ev.now, out)
        if session.state in (CallState.CONNECTED, CallState.CONSULTING):
            self._end_talk(session, Trigger.CUSTOMER_HUNG_UP, ev.now, out)
            return
        if session.direction == INBOUND or session.transfer is not None:
            self._left_waiting(session, ev.now, out)
            return
        if session.state is CallState.SCREENING:
            self._attempt_result(session, answered=False, now=ev.now)
        session.apply(Trigger.CUSTOMER_HUNG_UP, ev.now)
        self._finish_attempt(session, AttemptOutcome.HUNG_UP, ev.now, out)

    # -- the operator's leg ------------------------------------------------------------------

    def connect_failed(self, ev: ConnectFailed, out: list[Command]) -> None:
        session = self._fits(ev.call_id, Trigger.OPERATOR_NO_ANSWER, ev.operator_id)
        if session is None:
            return
        session.apply(Trigger.OPERATOR_NO_ANSWER, ev.now)
        self._book.unassign(session, ev.operator_id)
        if self._connector.holds(ev.operator_id, session, HOLDING):
            self._board.not_answered(ev.operator_id, ev.now)
        self.publish_operator(ev.operator_id, out)
        self._book.join_line(session)
        self._publish_call(session, out)
        connector = self._connector
        if not connector.offer(session, ev.now, out) and connector.overdue(session, ev.now):
            self._abandon(session, ev.now, out)
        # The operator who missed may be free again for the other customers in line.
        connector.serve_waiting(ev.now, out)

    def operator_answered(self, ev: OperatorAnswered, out: list[Command]) -> None:
        consulting = self._book.get(ev.call_id)
        if consulting is not None and consulting.state is CallState.CONSULTING:
            if not self._consults.answered(consulting, ev.operator_id, ev.now, out):
                self.stale += 1
            return
        session = self._fits(ev.call_id, Trigger.OPERATOR_ANSWERED, ev.operator_id)
        if session is None:
            return
        self._desk.connected(session, ev.now)
        if session.transfer is not None:
            out.append(self._desk.transfer_done(session, ev.operator_id, ev.now))
        session.apply(Trigger.OPERATOR_ANSWERED, ev.now)
        if self._connector.holds(ev.operator_id, session, HOLDING):
            self._board.answered(ev.operator_id, ev.now)
        self._counters[session.campaign_id].connected += 1
        self.publish_operator(ev.operator_id, out)
        self._publish_call(session, out)

    def operator_hung_up(self, ev: OperatorHungUp, out: list[Command]) -> None:
        consulting = self._book.get(ev.call_id)
        if (
            consulting is not None
            and consulting.state is CallState.CONSULTING
            and consulting.operator_id == ev.operator_id
        ):
            self._consults.operator_left(consulting, ev.operator_id, ev.now, out)
            return
        session = self._fits(ev.call_id, Trigger.OPERATOR_HUNG_UP, ev.operator_id)
        if session is not None:
            self._end_talk(session, Trigger.OPERATOR_HUNG_UP, ev.now, out)

    def disposition(self, ev: Disposition, out: list[Command]) -> None:
        """Store the operator's disposition; refused (nothing changed) if it does not fit."""
        session = self._book.get(ev.call_id)
        if session is None:
            prior = self._book.finished(ev.call_id)
            if prior is None:
                raise UnknownCall(ev.call_id)
            if prior == (ev.operator_id, ev.outcome):
                return  # the same disposition sent twice (an HTTP retry): already stored
            raise OperatorActionRejected(f"call {ev.call_id} is already closed ({prior[1]})")
        if session.operator_id != ev.operator_id:
            raise OperatorActionRejected(
                f"call {ev.call_id} is not operator {ev.operator_id}'s call"
            )
        if not session.can(Trigger.DISPOSITION):
            raise OperatorActionRejected(
                f"call {ev.call_id} is {session.state}: a disposition comes after the call"
            )
        in_wrapup = session.state is CallState.WRAP_UP
        session.apply(Trigger.DISPOSITION, ev.now)
        if in_wrapup:
            self._call_finished(session, ev.now)
        if self._connector.holds(ev.operator_id, session, frozenset({OperatorState.WRAPUP})):
            self._board.wrapup_done(ev.operator_id, ev.now)
        self.publish_operator(ev.operator_id, out)
        self._counters[session.campaign_id].dispositions += 1
        details: dict[str, object] = {
            "operator_id": ev.operator_id,
            "reason": ev.reason,
            "upsell_items": ev.upsell_items,
            "upsell_amount": ev.upsell_amount,
            "attempts": session.lead.attempts,
        }
        if session.direction == INBOUND:
            out.append(self._desk.record(session, "connected", ev.now, disposition=ev.outcome))
        # a caller without an open order: the call's record above holds the disposition
        if session.order_open:
            self._order_disposition(session, ev, details, out)
        self._book.close(session, ev.outcome)
        self._publish_call(session, out)
        self._connector.serve_waiting(ev.now, out)

    def _order_disposition(
        self, session: CallSession, ev: Disposition, details: dict[str, object], out: list[Command]
    ) -> None:
        """The order's outcome from the disposition: final, or a callback back in its hopper."""
        if ev.outcome is not DispositionOutcome.CALLBACK or ev.callback_at is None:
            out.append(order_outcome(session, ev.outcome, details=details))
            return
        mine = ev.operator_id if ev.callback_mine else None
        lead = with_callback(session.lead, ev.callback_at, mine)
        self._hoppers[lead.campaign_id].put(lead, ev.now)
        details["callback_mine"] = ev.callback_mine
        rules = self._rules[lead.campaign_id]
        at = not_before(lead, ev.now, rules)
        out.append(
            order_outcome(session, ev.outcome, next_attempt_at=at, lead=lead, details=details)
        )

    # -- time-driven work --------------------------------------------------------------------

    def expire_wrapups(self, now: float, out: list[Command]) -> None:
        """Operators whose wrap-up ran out are ready again; their calls are flagged."""
        for operator_id in self._board.expire_wrapups(now):
            self.publish_operator(operator_id, out)
            session = self._book.of_operator(operator_id)
            if session is None or not session.can(Trigger.WRAPUP_EXPIRED):
                continue
            session.apply(Trigger.WRAPUP_EXPIRED, now)
            self._book.unassign(session, operator_id)
            self._call_finished(session, now)
            self._counters[session.campaign_id].missing_dispositions += 1
            out.append(
                MissingDisposition(
                    operator_id=operator_id,
                    call_id=session.call_id,
                    order_id=session.lead.order_id,
                )
            )
            self._publish_call(session, out)

    def abandon_overdue(self, now: float, out: list[Command]) -> None:
        """Answered customers who waited the whole connect budget hear the abandon message."""
        for campaign_id in self._rules:
            for session in self._book.waiting(campaign_id):
                if self._connector.overdue(session, now):
                    self._abandon(session, now, out)

    def fail_lost(self, now: float, out: list[Command]) -> None:
        """Give up on dials whose result never came, so their orders can be dialled again."""
        for session in self._book:
            rules = self._rules[session.campaign_id]
            started = session.originated_at if session.originated_at is not None else now
            lost = (
                session.state in (CallState.DIALING, CallState.RINGING)
                and now - started > rules.ring_timeout_s + LOST_DIAL_GRACE_S
            ) or (
                session.state is CallState.SCREENING
                and now - (session.line_up_at or now) > SCREENING_LIMIT_S
            )
            if lost:
                session.apply(Trigger.FAIL, now)
                out.append(HangupCall(call_id=session.call_id))
                self._attempt_result(session, answered=False, now=now)
                self._finish_attempt(session, AttemptOutcome.FAILED, now, out)

    # -- internals ---------------------------------------------------------------------------

    def _fits(
        self, call_id: str, trigger: Trigger, operator_id: str | None = None
    ) -> CallSession | None:
        """The open session if `trigger` fits it now (and it is with `operator_id`), else None
        after counting the event as stale."""
        session = self._book.get(call_id)
        if (
            session is None
            or not session.can(trigger)
            or (operator_id is not None and session.operator_id != operator_id)
        ):
            self.stale += 1
            return None
        return session

    def _abandon(self, session: CallSession, now: float, out: list[Command]) -> None:
        session.apply(Trigger.ABANDON, now)
        out.append(PlayAbandon(call_id=session.call_id))
        self._ledgers[session.campaign_id].record_abandon(now)
        self._pacers[session.campaign_id].on_abandon(now=now)
        self._counters[session.campaign_id].abandons += 1
        self._finish_attempt(session, AttemptOutcome.ABANDONED, now, out, abandoned=True)

    def _end_talk(
        self, session: CallSession, trigger: Trigger, now: float, out: list[Command]
    ) -> None:
        operator_id = session.operator_id
        session.apply(trigger, now)
        if operator_id is not None:
            if self._connector.holds(operator_id, session, frozenset({OperatorState.TALKING})):
                self._board.hung_up(operator_id, now)
            self.publish_operator(operator_id, out)
        if any(t.mode == "attended" for t in session.transfers):
            # A party the PBX bridged on our word goes back to its dialplan when the bridge
            # ends (music on hold, a consultation's wait): nobody is left on a dead line.
            out.append(HangupCall(call_id=session.call_id))
            if operator_id is not None:
                out.append(HangupOperatorLeg(call_id=session.call_id, operator_id=operator_id))
        if session.direction == INBOUND:
            out.append(self._desk.record(session, "connected", now))
        else:
            out.append(attempt_record(session, AttemptOutcome.CONNECTED, now))
        self._publish_call(session, out)

    def _left_waiting(self, session: CallSession, now: float, out: list[Command]) -> None:
        """An inbound caller, or a customer waiting for a transfer, hung up before an
        operator took them."""
        if session.transfer is not None:
            out.append(self._desk.transfer_done(session, None, now))
        if session.direction != INBOUND:
            # a transferred outbound customer: the attempt ends as a hang-up, to be called again
            session.apply(Trigger.CUSTOMER_HUNG_UP, now)
            self._finish_attempt(session, AttemptOutcome.HUNG_UP, now, out)
            return
        released = self._release(session, now, out)
        session.apply(Trigger.CUSTOMER_HUNG_UP, now)
        self._desk.left(session, now, out)
        self._book.close(session, "abandoned-inbound")
        self._publish_call(session, out)
        self._desk.announce(session.campaign_id, out)
        if released:
            self._connector.serve_waiting(now, out)

    def _release(self, session: CallSession, now: float, out: list[Command]) -> bool:
        """Free the operators the call holds without talking (reserved or ringing)."""
        released = False
        ties = (session.reserved_operator_id, session.operator_id)
        for operator_id in dict.fromkeys(op for op in ties if op is not None):
            if self._connector.holds(operator_id, session, HOLDING):
                self._board.release(operator_id, now)
                self.publish_operator(operator_id, out)
                released = True
        return released

    def _finish_attempt(
        self,
        session: CallSession,
        outcome: AttemptOutcome,
        now: float,
        out: list[Command],
        *,
        abandoned: bool = False,
    ) -> None:
        """Close a failed attempt: release operators, store it, reschedule or give up."""
        released = self._release(session, now, out)
        rules = self._rules[session.campaign_id]
        out.append(attempt_record(session, outcome, now))
        lead = after_attempt(session.lead, outcome, now, rules, abandoned=abandoned)
        details: dict[str, object] = {"attempts": session.lead.attempts, "last_outcome": outcome}
        if lead is None:
            self._counters[session.campaign_id].unreached += 1
            out.append(order_outcome(session, "unreached", details=details))
        else:
            self._hoppers[session.campaign_id].put(lead, now)
            at = not_before(lead, now, rules)
            out.append(
                order_outcome(session, outcome, next_attempt_at=at, lead=lead, details=details)
            )
        self._book.close(session, outcome)
        self._publish_call(session, out)
        if released:
            self._connector.serve_waiting(now, out)

    def _attempt_result(self, session: CallSession, *, answered: bool, now: float) -> None:
        started = session.originated_at if session.originated_at is not None else now
        rang_until = session.line_up_at if session.line_up_at is not None else now
        rules = self._rules[session.campaign_id]
        self._pacers[session.campaign_id].on_attempt_result(
            now=now,
            hour_of_day=hour_of_day(rules, now),
            answered=answered,
            ring_s=max(0.0, rang_until - started),
        )

    def _call_finished(self, session: CallSession, now: float) -> None:
        ended = session.ended_at if session.ended_at is not None else now
        connected = session.connected_at if session.connected_at is not None else ended
        self._pacers[session.campaign_id].on_call_finished(
            now=now, talk_s=max(0.0, ended - connected), wrapup_s=max(0.0, now - ended)
        )

    def _publish_call(self, session: CallSession, out: list[Command]) -> None:
        out.append(call_published(session))

    def publish_operator(self, operator_id: str, out: list[Command]) -> None:
        """Emit the operator's current state for wallboards and desktops."""
        out.append(operator_published(self._board.get(operator_id)))
