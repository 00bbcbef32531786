"""The engine's book of open calls: sessions and the indexes the engine decides by.

A session is open from its Originate until the order's outcome for that attempt is known: a
terminal state, or a disposition (a call in wrap-up or with an overdue disposition is still
open). The book keeps the invariant the whole dialer rests on: at most one open session per
order, so an order is never dialled twice at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Final

from dialer.engine.errors import EngineError
from dialer.engine.session import TERMINAL_STATES, CallSession, CallState

__all__ = ["CallBook"]

# How many finished calls are remembered, to tell a late PBX event or a repeated disposition
# from a call the engine never had.
FINISHED_MEMORY: Final = 10_000


class CallBook:
    """Open sessions by call id, the one open call per order and per operator, the waiting line.

    `waiting(campaign_id)` lists the answered calls waiting for an operator in the order they
    joined the line (first come, first offered).
    """

    def __init__(self) -> None:
        self._calls: dict[str, CallSession] = {}
        self._by_order: dict[str, str] = {}
        self._by_operator: dict[str, str] = {}
        self._waiting: dict[str, dict[str, None]] = {}
        self._finished: OrderedDict[str, tuple[str | None, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[CallSession]:
        return iter(list(self._calls.values()))

    def get(self, call_id: str) -> CallSession | None:
        """The open session `call_id`, or None."""
        return self._calls.get(call_id)

    def known(self, call_id: str) -> bool:
        """Whether `call_id` is open or was finished recently."""
        return call_id in self._calls or call_id in self._finished

    def finished(self, call_id: str) -> tuple[str | None, str] | None:
        """(operator id, outcome) of a recently finished call, or None."""
        return self._finished.get(call_id)

    def order_open(self, order_id: str) -> bool:
        """Whether the order has an open session."""
        return order_id in self._by_order

    def open(self, session: CallSession) -> None:
        """Add a new session; refuses a second open session for the same order."""
        if session.call_id in self._calls or session.call_id in self._finished:
            raise EngineError(f"call id {session.call_id!r} was already used")
        order_id = session.lead.order_id
        if order_id in self._by_order:
            raise EngineError(f"order {order_id!r} already has a call: {self._by_order[order_id]}")
        self._calls[session.call_id] = session
        self._by_order[order_id] = session.call_id

    def open_unindexed(self, session: CallSession) -> None:
        """Add a session that holds no order to confirm (an inbound caller without an open
        order): it does not stop the order's own calls."""
        if session.call_id in self._calls or session.call_id in self._finished:
            raise EngineError(f"call id {session.call_id!r} was already used")
        self._calls[session.call_id] = session

    def close(self, session: CallSession, outcome: str) -> None:
        """Forget an open session, remembering how it ended."""
        self._calls.pop(session.call_id, None)
        if self._by_order.get(session.lead.order_id) == session.call_id:
            del self._by_order[session.lead.order_id]
        self.unassign(session)
        self.leave_line(session)
        self._finished[session.call_id] = (session.operator_id, outcome)
        while len(self._finished) > FINISHED_MEMORY:
            self._finished.popitem(last=False)

    # -- operators ---------------------------------------------------------------------------

    def assign(self, session: CallSession, operator_id: str) -> None:
        """Record that the operator is reserved for, rung by, talking on or wrapping up the call."""
        self._by_operator[operator_id] = session.call_id

    def unassign(self, session: CallSession, operator_id: str | None = None) -> None:
        """Forget the operator's tie to the call (all of the call's ties without `operator_id`)."""
        for op, call_id in list(self._by_operator.items()):
            if call_id == session.call_id and operator_id in (None, op):
                del self._by_operator[op]

    def of_operator(self, operator_id: str) -> CallSession | None:
        """The open session the operator is tied to, or None."""
        call_id = self._by_operator.get(operator_id)
        return self._calls.get(call_id) if call_id is not None else None

    # -- the line of answered calls waiting for an operator -----------------------------------

    def join_line(self, session: CallSession) -> None:
        """Put an answered call at the end of its campaign's line (no-op if already in it)."""
        self._waiting.setdefault(session.campaign_id, {})[session.call_id] = None

    def leave_line(self, session: CallSession) -> None:
        """Take the call out of its campaign's line, if it is in it."""
        self._waiting.get(session.campaign_id, {}).pop(session.call_id, None)

    def waiting(self, campaign_id: str) -> list[CallSession]:
        """The campaign's line, first come first; a copy, safe to change the book while using."""
        line = self._waiting.get(campaign_id, {})
        return [self._calls[call_id] for call_id in line]

    def counts(self, campaign_id: str) -> dict[CallState, int]:
        """Open sessions of the campaign by state (every state a session can be open in)."""
        counts = {state: 0 for state in CallState if state not in TERMINAL_STATES}
        for session in self._calls.values():
            if session.campaign_id == campaign_id:
                counts[session.state] += 1
        return counts
