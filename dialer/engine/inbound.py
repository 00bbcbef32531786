"""Inbound calls and transfers: callers who wait for an operator without a connect budget.

A caller to one of the shop's numbers (an inbound line: a campaign with `InboundRules`) starts
answered, on music on hold, and joins the line's queue. The desk

- identifies what it can: a caller whose order is still to be confirmed takes that order out of
  the hopper for the length of the call (nobody dials a customer who is on the line with us),
  and gets it back if they leave without a disposition;
- orders the queue by priority (the line's rules over the caller's tags), first come first
  within a priority, and tells callers their place when it changes;
- widens the operators who may answer as the wait grows (overflow to other lines);
- offers a callback once after the line's wait; a caller who accepts leaves the queue and is
  called back as soon as an operator is free (their open order, or a new callback request);
- counts what a supervisor watches: waiting, longest wait, service level, average speed of
  answer.

A transfer puts a connected customer (inbound or outbound) back in line for a colleague of a
given skill or a supervisor: the operator leaves the call for wrap-up, the customer hears music
on hold, and the same routing policy picks the colleague. The disposition and the outcome are
the colleague's: an operator's record counts the calls they closed (see docs/acd.md).

The connector (`connect.Connector`) still does the offering; the desk tells it which request a
waiting session makes (`request_for`) and in which order a line is served (`waiting`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from acd.board import OperatorBoard
from acd.routing import RoutingRequest
from dialer.engine.book import CallBook
from dialer.engine.campaign import CampaignRules
from dialer.engine.commands import (
    Command,
    OfferCallback,
    RequestCallback,
    SetQueuePosition,
    StoreInbound,
    StoreOutcome,
    StoreTransfer,
)
from dialer.engine.errors import OperatorActionRejected, UnknownCampaign
from dialer.engine.events import CallbackChoice, InboundCall, TransferRequested
from dialer.engine.hopper import Hopper
from dialer.engine.records import call_published, operator_published
from dialer.engine.scheduling import Lead, with_callback
from dialer.engine.session import INBOUND, CallSession, CallState, Transfer, Trigger
from dialer.engine.stats import QueueStatistics

__all__ = ["InboundDesk", "QueueCounters"]

# An order id for a caller the engine has no open order for: never a stored order's id.
_NO_ORDER_PREFIX: Final = "inbound:"


@dataclass(slots=True)
class QueueCounters:
    """Running totals of one inbound line (mutable, engine-internal)."""

    offered: int = 0
    answered: int = 0
    answered_within_sl: int = 0
    abandoned: int = 0
    callbacks: int = 0
    answer_wait_s: float = 0.0


class InboundDesk:
    """The inbound side of the engine; see the module docstring."""

    def __init__(
        self,
        *,
        rules: Mapping[str, CampaignRules],
        board: OperatorBoard,
        book: CallBook,
        hoppers: Mapping[str, Hopper],
    ) -> None:
        self._rules = rules
        self._board = board
        self._book = book
        self._hoppers = hoppers
        self._counters = {cid: QueueCounters() for cid, r in rules.items() if r.inbound}
        self._positions: dict[str, dict[str, int]] = {}  # line → call → place announced

    # -- callers ----------------------------------------------------------------------------

    def arrive(self, ev: InboundCall, out: list[Command]) -> CallSession | None:
        """A caller joins the line's queue; returns the session to offer, or None if the call
        is already known (the same UserEvent twice)."""
        line = self._line(ev.line_id)
        if self._book.known(ev.call_id):
            return None
        assert line.inbound is not None
        lead, order_open = self._lead_for(ev)
        session = CallSession(call_id=ev.call_id, lead=lead, now=ev.now)
        session.campaign_id = line.id
        session.direction = INBOUND
        session.order_open = order_open
        session.priority = line.inbound.priority(ev.tags)
        session.line_since = ev.now
        if order_open:
            self._book.open(session)
        else:
            self._book.open_unindexed(session)
        session.apply(Trigger.INBOUND, ev.now)
        self._book.join_line(session)
        self._counters[line.id].offered += 1
        out.append(call_published(session))
        return session

    def _lead_for(self, ev: InboundCall) -> tuple[Lead, bool]:
        """The caller's open order (taken out of its hopper), else a lead naming the caller."""
        if ev.order_id is not None and not self._book.order_open(ev.order_id):
            for hopper in self._hoppers.values():
                if ev.order_id in hopper:
                    lead = hopper.discard(ev.order_id)
                    assert lead is not None
                    return lead, True
        lead = Lead(
            order_id=ev.order_id or f"{_NO_ORDER_PREFIX}{ev.call_id}",
            phone=ev.caller,
            campaign_id=ev.line_id,
            timezone=ev.timezone,
            created_at=ev.now,
            category=ev.category,
            region=ev.region,
            language=ev.language,
            amount=ev.amount,
        )
        return lead, False

    def callback_choice(self, ev: CallbackChoice, out: list[Command]) -> bool:
        """The caller's answer to the callback offer; True if the event fitted the call."""
        session = self._book.get(ev.call_id)
        if session is None or session.direction != INBOUND:
            return False
        if not ev.accepted:
            return True
        if not session.can(Trigger.CALLBACK):
            return False  # already on their way to an operator: that wins
        session.apply(Trigger.CALLBACK, ev.now)
        self._counters[session.campaign_id].callbacks += 1
        out.append(self.record(session, "callback", ev.now))
        if session.order_open:
            lead = with_callback(session.lead, ev.now, None)
            self._hoppers[lead.campaign_id].put(lead, ev.now)
            out.append(
                StoreOutcome(
                    order_id=lead.order_id,
                    call_id=session.call_id,
                    campaign_id=lead.campaign_id,
                    outcome="callback-requested",
                    final=False,
                    next_attempt_at=ev.now,
                    lead=lead,
                    details={"line_id": session.campaign_id},
                )
            )
        else:
            out.append(
                RequestCallback(
                    call_id=session.call_id,
                    line_id=session.campaign_id,
                    caller=session.lead.phone,
                    order_id=_order_id(session),
                )
            )
        self._book.close(session, "callback-requested")
        out.append(call_published(session))
        self.announce(session.campaign_id, out)
        return True

    def left(self, session: CallSession, now: float, out: list[Command]) -> None:
        """An inbound caller hung up before an operator took them: abandoned-inbound."""
        self._counters[session.campaign_id].abandoned += 1
        out.append(self.record(session, "abandoned", now))
        self.give_back(session, now)

    def give_back(self, session: CallSession, now: float) -> None:
        """Put the caller's open order back where it was, untouched, when the call ends
        without a disposition."""
        if session.direction == INBOUND and session.order_open:
            self._hoppers[session.lead.campaign_id].put(session.lead, now)

    def connected(self, session: CallSession, now: float) -> None:
        """An operator answered a waiting inbound caller (the first time: transfers later do
        not count again)."""
        if session.direction != INBOUND or session.connected_at is not None:
            return
        line = self._rules[session.campaign_id].inbound
        assert line is not None
        counters = self._counters[session.campaign_id]
        waited = now - (session.answered_at if session.answered_at is not None else now)
        counters.answered += 1
        counters.answer_wait_s += waited
        if waited <= line.service_level_s:
            counters.answered_within_sl += 1

    def record(
        self, session: CallSession, outcome: str, now: float, *, disposition: str | None = None
    ) -> StoreInbound:
        """The inbound call's record (stored once at its end, again with the disposition)."""
        return StoreInbound(
            call_id=session.call_id,
            line_id=session.campaign_id,
            caller=session.lead.phone,
            order_id=_order_id(session),
            priority=session.priority,
            entered_at=session.queued_at,
            connected_at=session.connected_at,
            ended_at=session.ended_at if session.ended_at is not None else now,
            outcome=outcome,
            operator_id=session.operator_id,
            hangup_cause=session.hangup_cause,
            disposition=disposition,
        )

    # -- transfers --------------------------------------------------------------------------

    def transferable(self, ev: TransferRequested) -> CallSession:
        """The operator's connected call that `ev` hands on; refused (`OperatorActionRejected`,
        nothing changed) unless the call is theirs and connected."""
        session = self._book.get(ev.call_id)
        if session is None or session.operator_id != ev.operator_id:
            raise OperatorActionRejected(f"call {ev.call_id} is not operator {ev.operator_id}'s")
        if session.state is not CallState.CONNECTED:
            raise OperatorActionRejected(
                f"call {ev.call_id} is {session.state}: only a connected call can be transferred"
            )
        if ev.supervisor and not any(v.profile.supervisor for v in self._board.all()):
            raise OperatorActionRejected("no supervisor is on the floor to take the call")
        return session

    @staticmethod
    def pending(ev: TransferRequested) -> Transfer:
        """The transfer `ev` asks for, before anyone takes the customer."""
        return Transfer(
            from_operator_id=ev.operator_id,
            requested_at=ev.now,
            mode=ev.mode,
            category=ev.category,
            supervisor=ev.supervisor,
            reason=ev.reason,
        )

    def transfer(self, ev: TransferRequested, out: list[Command]) -> CallSession:
        """The operator's customer goes back in line for the target; the operator to wrap-up.
        Refused (nothing changed) unless the call is the operator's and connected. The caller
        offers the session at once and puts the customer on hold only if nobody took it."""
        session = self.transferable(ev)
        session.apply(Trigger.TRANSFER, ev.now)
        session.transfer = self.pending(ev)
        self.requeue(session, ev.operator_id, ev.now, out)
        return session

    def requeue(
        self, session: CallSession, operator_id: str, now: float, out: list[Command]
    ) -> None:
        """The customer of a transfer joins the line; the operator who handed them on leaves
        the call for wrap-up."""
        session.line_since = now
        session.operators_tried.clear()
        view = self._board.get(operator_id)
        if view.call_id == session.call_id:
            self._board.hung_up(operator_id, now)
        self._book.unassign(session, operator_id)
        session.operator_id = None
        out.append(operator_published(self._board.get(operator_id)))
        self._book.join_line(session)
        out.append(call_published(session))

    def transfer_done(self, session: CallSession, operator_id: str | None, now: float) -> Command:
        """The colleague answered (or, with None, the customer left first): the record."""
        pending = session.transfer
        assert pending is not None
        done = dataclasses.replace(pending, to_operator_id=operator_id)
        session.transfers.append(done)
        session.transfer = None
        return StoreTransfer(
            call_id=session.call_id,
            order_id=_order_id(session),
            from_operator_id=done.from_operator_id,
            to_operator_id=operator_id,
            mode=done.mode,
            target=_target(done),
            reason=done.reason,
            requested_at=done.requested_at,
            at=now,
        )

    # -- what the connector asks ------------------------------------------------------------

    def request_for(self, session: CallSession, now: float) -> RoutingRequest:
        """The routing request a waiting session makes now (its overflow, its transfer)."""
        lead = session.lead
        category = lead.category
        supervisor = False
        pending = session.transfer
        if pending is not None:
            category = pending.category if pending.category is not None else category
            supervisor = pending.supervisor
        also: frozenset[str] = frozenset()
        line = self._rules[session.campaign_id].inbound
        if line is not None and session.line_since is not None:
            also = line.widened_to(now - session.line_since) - {session.campaign_id}
        return RoutingRequest(
            call_id=session.call_id,
            campaign_id=session.campaign_id,
            category=category,
            region=lead.region,
            language=lead.language,
            amount=lead.amount,
            also_campaigns=also,
            supervisor_only=supervisor,
        )

    def waiting(self, campaign_id: str) -> list[CallSession]:
        """The line's waiting callers in the order they are served."""
        line = self._book.waiting(campaign_id)
        if self._rules[campaign_id].inbound is None:
            return line
        return sorted(line, key=lambda s: (-s.priority, s.line_since or s.queued_at))

    # -- time and positions -----------------------------------------------------------------

    def tick(self, now: float, out: list[Command]) -> None:
        """Offer callbacks to callers who waited long enough; tell callers their places."""
        for cid, rules in self._rules.items():
            line = rules.inbound
            if line is None:
                continue
            offer = line.callback_offer_after_s
            for session in self._book.waiting(cid):
                if (
                    offer is not None
                    and not session.callback_offered
                    and session.state is CallState.ANSWERED_WAITING
                    and session.line_since is not None
                    and now - session.line_since >= offer
                ):
                    session.callback_offered = True
                    out.append(OfferCallback(call_id=session.call_id))
            self.announce(cid, out)

    def announce(self, campaign_id: str, out: list[Command]) -> None:
        """Emit the place in line of every waiting caller of the line whose place changed."""
        if self._rules[campaign_id].inbound is None:
            return
        before = self._positions.get(campaign_id, {})
        now_at: dict[str, int] = {}
        for position, session in enumerate(self.waiting(campaign_id), start=1):
            if session.state is not CallState.ANSWERED_WAITING:
                continue  # being put through: no announcement would be heard
            now_at[session.call_id] = position
            if before.get(session.call_id) != position:
                out.append(SetQueuePosition(call_id=session.call_id, position=position))
        self._positions[campaign_id] = now_at

    def statistics(self, now: float) -> dict[str, QueueStatistics]:
        queues: dict[str, QueueStatistics] = {}
        for cid, counters in self._counters.items():
            line = self._rules[cid].inbound
            assert line is not None
            waits = [
                now - s.line_since
                for s in self._book.waiting(cid)
                if s.line_since is not None and s.direction == INBOUND
            ]
            ended = counters.answered + counters.abandoned + counters.callbacks
            queues[cid] = QueueStatistics(
                line_id=cid,
                waiting=len(waits),
                longest_wait_s=max(waits, default=0.0),
                offered=counters.offered,
                answered=counters.answered,
                answered_within_sl=counters.answered_within_sl,
                abandoned=counters.abandoned,
                callbacks=counters.callbacks,
                service_level_s=line.service_level_s,
                service_level=counters.answered_within_sl / ended if ended else None,
                asa_s=counters.answer_wait_s / counters.answered if counters.answered else None,
            )
        return queues

    def _line(self, line_id: str) -> CampaignRules:
        rules = self._rules.get(line_id)
        if rules is None or rules.inbound is None:
            raise UnknownCampaign(line_id)
        return rules


def _target(transfer: Transfer) -> str:
    if transfer.supervisor:
        return "supervisor"
    if transfer.category is not None:
        return f"category:{transfer.category}"
    return "line"


def _order_id(session: CallSession) -> str | None:
    """The stored order the call is about, or None for a caller without one."""
    order_id = session.lead.order_id
    return None if order_id.startswith(_NO_ORDER_PREFIX) else order_id
