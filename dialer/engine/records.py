"""Builders of the commands that record and publish a call: pure functions of a session.

Kept apart from the decisions so that what is stored and published about a call is written
once, the same whichever path through the call flow produced it.
"""

from __future__ import annotations

from collections.abc import Mapping

from acd.board import OperatorView
from dialer.engine.commands import Publish, ScreenPop, StoreAttempt, StoreOutcome
from dialer.engine.scheduling import Lead
from dialer.engine.session import INBOUND, CallSession

__all__ = [
    "attempt_record",
    "call_published",
    "operator_published",
    "order_outcome",
    "screen_pop",
]


def attempt_record(session: CallSession, outcome: str, now: float) -> StoreAttempt:
    """The record of the session's attempt; `ended_at` falls back to `now`."""
    return StoreAttempt(
        call_id=session.call_id,
        order_id=session.lead.order_id,
        campaign_id=session.campaign_id,
        outcome=str(outcome),
        queued_at=session.queued_at,
        originated_at=session.originated_at,
        answered_at=session.answered_at,
        connected_at=session.connected_at,
        ended_at=session.ended_at if session.ended_at is not None else now,
        hangup_cause=session.hangup_cause,
        operator_id=session.operator_id,
    )


def order_outcome(
    session: CallSession,
    outcome: str,
    *,
    details: Mapping[str, object],
    next_attempt_at: float | None = None,
    lead: Lead | None = None,
) -> StoreOutcome:
    """The order's new status after the session; final unless a next attempt is given."""
    return StoreOutcome(
        order_id=session.lead.order_id,
        call_id=session.call_id,
        campaign_id=session.campaign_id,
        outcome=str(outcome),
        final=next_attempt_at is None,
        next_attempt_at=next_attempt_at,
        lead=lead,
        details=details,
    )


def call_published(session: CallSession) -> Publish:
    """The live-state event for the call's current state."""
    return Publish(
        kind="call",
        payload={
            "call_id": session.call_id,
            "order_id": session.lead.order_id,
            "campaign_id": session.campaign_id,
            "state": session.state.value,
            "operator_id": session.operator_id,
        },
    )


def operator_published(view: OperatorView) -> Publish:
    """The live-state event for an operator's current state."""
    return Publish(
        kind="operator",
        payload={
            "operator_id": view.id,
            "state": view.state.value,
            "call_id": view.call_id,
            "pause_reason": view.pause_reason,
        },
    )


def screen_pop(session: CallSession, operator_id: str, transfer_from: str | None) -> ScreenPop:
    """The card an operator's screen shows for the call (an inbound caller's number included;
    `transfer_from`: the colleague handing the customer over, if any)."""
    return ScreenPop(
        operator_id=operator_id,
        call_id=session.call_id,
        order_id=session.lead.order_id,
        campaign_id=session.campaign_id,
        caller=session.lead.phone if session.direction == INBOUND else "",
        transfer_from=transfer_from,
    )
