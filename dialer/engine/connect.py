"""Putting answered customers through to operators, within the connect budget.

An answered customer joins the campaign's line and is offered at once: to the operator
reserved for the call (progressive), else to the operator the routing policy picks among the
free ones who have not already let this call ring out. A customer who has waited the whole
connect budget is no longer offered; the call flow abandons them.

The connect budget binds only an outbound customer who has not talked to anyone yet: inbound
callers and transferred customers hear music on hold and wait by their line's rules, in the
order and with the routing request the inbound desk (`inbound.InboundDesk`) gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from acd.board import OperatorBoard, OperatorView
from acd.routing import RoutingPolicy, RoutingRequest, eligible
from acd.states import OperatorState
from dialer.engine.book import CallBook
from dialer.engine.campaign import CampaignRules
from dialer.engine.commands import Command, ConnectToOperator, StartRecording
from dialer.engine.inbound import InboundDesk
from dialer.engine.records import call_published, operator_published, screen_pop
from dialer.engine.session import INBOUND, CallSession, CallState, Trigger

__all__ = ["HOLDING", "Connector"]

HOLDING: Final = frozenset({OperatorState.RESERVED, OperatorState.RINGING})
"""Operator states in which a call holds the operator without talking yet."""


class Connector:
    """Offers waiting customers to operators; never abandons (see `CallFlow`)."""

    def __init__(
        self,
        *,
        rules: Mapping[str, CampaignRules],
        board: OperatorBoard,
        router: RoutingPolicy,
        book: CallBook,
        desk: InboundDesk,
    ) -> None:
        self._rules = rules
        self._board = board
        self._router = router
        self._book = book
        self._desk = desk

    def holds(
        self, operator_id: str, session: CallSession, states: frozenset[OperatorState]
    ) -> bool:
        """Whether the board has the operator in one of `states` for this call."""
        view = self._board.get(operator_id)
        return view.call_id == session.call_id and view.state in states

    def overdue(self, session: CallSession, now: float) -> bool:
        """Whether a waiting customer has used up the connect budget."""
        budget = self._rules[session.campaign_id].connect_budget_s
        return (
            session.state is CallState.ANSWERED_WAITING
            and budgeted(session)
            and session.answered_at is not None
            and now - session.answered_at >= budget
        )

    def serve_waiting(self, now: float, out: list[Command]) -> None:
        """Offer waiting answered calls, first come first served, to operators now free."""
        for campaign_id in self._rules:
            for session in self._desk.waiting(campaign_id):
                self.offer(session, now, out)

    def next_deadline(self) -> float | None:
        """The earliest time a waiting customer's connect budget runs out, if any waits."""
        deadlines = [
            session.answered_at + self._rules[campaign_id].connect_budget_s
            for campaign_id in self._rules
            for session in self._book.waiting(campaign_id)
            if session.answered_at is not None and budgeted(session)
        ]
        return min(deadlines, default=None)

    def offer(self, session: CallSession, now: float, out: list[Command]) -> bool:
        """Put a waiting customer through to an operator if one may take them now."""
        if session.state is not CallState.ANSWERED_WAITING or self.overdue(session, now):
            return False
        reserved = session.reserved_operator_id
        if reserved is not None and self.holds(
            reserved, session, frozenset({OperatorState.RESERVED})
        ):
            self._connect(session, self._board.get(reserved), now, out)
            return True
        request = self._desk.request_for(session, now)
        pool = self.pool(request)
        # Within the 2-second budget nobody is rung twice; a caller on hold may come back to
        # an operator, just not to the one who has just let them ring out.
        tried = session.operators_tried if budgeted(session) else session.operators_tried[-1:]
        candidates = [view for view in pool if view.id not in tried]
        chosen = self._router.choose(request, candidates, now)
        if chosen is None:
            return False
        self._board.reserve(chosen.id, session.call_id, now)
        self._connect(session, chosen, now, out)
        return True

    def pool(self, request: RoutingRequest) -> list[OperatorView]:
        """The operators free to take `request` now (its campaign's, or its widened pool)."""
        if request.widened:
            return [v for v in self._board.all() if eligible(request, v)]
        return self._board.free(request.campaign_id, request.category)

    def choose(
        self, request: RoutingRequest, candidates: list[OperatorView], now: float
    ) -> OperatorView | None:
        """The routing policy's pick among `candidates`."""
        return self._router.choose(request, candidates, now)

    def _connect(
        self, session: CallSession, view: OperatorView, now: float, out: list[Command]
    ) -> None:
        rules = self._rules[session.campaign_id]
        self._board.ringing(view.id, now)
        session.apply(Trigger.OFFER, now, operator_id=view.id)
        self._book.leave_line(session)
        self._book.assign(session, view.id)
        out.append(
            ConnectToOperator(
                call_id=session.call_id,
                operator_id=view.id,
                endpoint=view.profile.endpoint,
                ring_timeout_s=rules.operator_ring_timeout_s,
                on_hold=not budgeted(session),
            )
        )
        pending = session.transfer
        transfer_from = pending.from_operator_id if pending is not None else None
        out.append(screen_pop(session, view.id, transfer_from))
        if rules.record and not session.recording:
            session.recording = True
            out.append(StartRecording(call_id=session.call_id, filename=f"{session.call_id}.wav"))
        out.append(operator_published(self._board.get(view.id)))
        out.append(call_published(session))


def budgeted(session: CallSession) -> bool:
    """Whether the 2-second connect budget binds the session: an outbound customer who has
    not talked to an operator yet."""
    return session.direction != INBOUND and session.connected_at is None
