"""The call session: one attempt to reach a customer and put them through to an operator.

Everything that decides whether a call may move from one state to another lives here, as data:
`TRANSITIONS[state][trigger] -> new_state`. `CallSession.apply` consults the table before it
changes anything, so a trigger missing from the table raises `IllegalTransition` and leaves the
session as it was. `docs/engine.md` embeds `transition_table_markdown()` verbatim.

The happy path: queued → dialing → (ringing) → (screening: the line is up, AMD or the
dialplan's "answered" event pending) → answered-waiting (a live person, the connect budget
running) → connecting (redirected to an operator whose phone rings) → connected → wrap-up →
done. An operator who does not answer sends the call back to answered-waiting. The failure
branches end in their own terminal states: busy, no-answer, congestion, failed, machine,
abandoned (no operator within the budget) and hung-up-waiting (the customer left before an
operator took the call).

An inbound call starts answered: queued → answered-waiting (the caller hears music on hold; no
connect budget, the line's queue rules apply) and then runs the same path; a caller who takes
the callback offer ends in callback-requested. A transfer sends a connected customer back to
answered-waiting, now waiting for the colleague the ACD chooses. An attended transfer first
consults: the customer holds while their operator talks to the colleague the ACD chose
(consulting); completing it or calling it off (or a colleague who does not answer) brings the
call back to connected, with the colleague or with the operator again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from dialer.engine.errors import IllegalTransition
from dialer.engine.scheduling import Lead

__all__ = [
    "INBOUND",
    "LIVE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "CallSession",
    "CallState",
    "Consultation",
    "Step",
    "Transfer",
    "Trigger",
    "transition_table_markdown",
]


INBOUND: Final = "inbound"  # `CallSession.direction` of a customer who called us


class CallState(StrEnum):
    QUEUED = "queued"
    DIALING = "dialing"
    RINGING = "ringing"
    SCREENING = "screening"
    ANSWERED_WAITING = "answered-waiting"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CONSULTING = "consulting"
    WRAP_UP = "wrap-up"
    DISPOSITION_OVERDUE = "disposition-overdue"
    DONE = "done"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CONGESTION = "congestion"
    FAILED = "failed"
    MACHINE = "machine"
    ABANDONED = "abandoned"
    HUNG_UP_WAITING = "hung-up-waiting"
    CALLBACK_REQUESTED = "callback-requested"


class Trigger(StrEnum):
    """What happens to a call; the engine maps each input event to one of these."""

    ORIGINATE = "originate"
    RING = "ring"
    LINE_UP = "line-up"
    HUMAN = "human"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CONGESTION = "congestion"
    FAIL = "fail"
    MACHINE = "machine"
    OFFER = "offer"
    OPERATOR_NO_ANSWER = "operator-no-answer"
    OPERATOR_ANSWERED = "operator-answered"
    ABANDON = "abandon"
    CUSTOMER_HUNG_UP = "customer-hung-up"
    OPERATOR_HUNG_UP = "operator-hung-up"
    WRAPUP_EXPIRED = "wrapup-expired"
    DISPOSITION = "disposition"
    INBOUND = "inbound"
    TRANSFER = "transfer"
    CALLBACK = "callback"
    CONSULT = "consult"
    CONSULT_DONE = "consult-done"


_S = CallState
_T = Trigger

# Before the customer is reached: the originate's result or a lost dial ends the attempt.
_DIAL_FAILURES: Final = {
    _T.BUSY: _S.BUSY,
    _T.NO_ANSWER: _S.NO_ANSWER,
    _T.CONGESTION: _S.CONGESTION,
    _T.FAIL: _S.FAILED,
    _T.MACHINE: _S.MACHINE,
}

TRANSITIONS: Final[Mapping[CallState, Mapping[Trigger, CallState]]] = MappingProxyType(
    {
        _S.QUEUED: MappingProxyType(
            {_T.ORIGINATE: _S.DIALING, _T.FAIL: _S.FAILED, _T.INBOUND: _S.ANSWERED_WAITING}
        ),
        _S.DIALING: MappingProxyType(
            {_T.RING: _S.RINGING, _T.LINE_UP: _S.SCREENING, _T.HUMAN: _S.ANSWERED_WAITING}
            | _DIAL_FAILURES
        ),
        _S.RINGING: MappingProxyType(
            {_T.LINE_UP: _S.SCREENING, _T.HUMAN: _S.ANSWERED_WAITING} | _DIAL_FAILURES
        ),
        _S.SCREENING: MappingProxyType(
            {
                _T.HUMAN: _S.ANSWERED_WAITING,
                _T.MACHINE: _S.MACHINE,
                _T.FAIL: _S.FAILED,
                _T.CUSTOMER_HUNG_UP: _S.HUNG_UP_WAITING,
            }
        ),
        _S.ANSWERED_WAITING: MappingProxyType(
            {
                _T.OFFER: _S.CONNECTING,
                _T.ABANDON: _S.ABANDONED,
                _T.CUSTOMER_HUNG_UP: _S.HUNG_UP_WAITING,
                _T.CALLBACK: _S.CALLBACK_REQUESTED,
            }
        ),
        _S.CONNECTING: MappingProxyType(
            {
                _T.OPERATOR_ANSWERED: _S.CONNECTED,
                _T.OPERATOR_NO_ANSWER: _S.ANSWERED_WAITING,
                _T.CUSTOMER_HUNG_UP: _S.HUNG_UP_WAITING,
            }
        ),
        _S.CONNECTED: MappingProxyType(
            {
                _T.CUSTOMER_HUNG_UP: _S.WRAP_UP,
                _T.OPERATOR_HUNG_UP: _S.WRAP_UP,
                _T.TRANSFER: _S.ANSWERED_WAITING,
                _T.CONSULT: _S.CONSULTING,
            }
        ),
        _S.CONSULTING: MappingProxyType(
            {
                _T.CONSULT_DONE: _S.CONNECTED,
                _T.CUSTOMER_HUNG_UP: _S.WRAP_UP,
                # the operator left while consulting: the customer waits for a colleague
                _T.TRANSFER: _S.ANSWERED_WAITING,
            }
        ),
        _S.WRAP_UP: MappingProxyType(
            {_T.DISPOSITION: _S.DONE, _T.WRAPUP_EXPIRED: _S.DISPOSITION_OVERDUE}
        ),
        _S.DISPOSITION_OVERDUE: MappingProxyType({_T.DISPOSITION: _S.DONE}),
    }
)
"""`TRANSITIONS[state][trigger]` is the state after `trigger`; a missing key means illegal."""

TERMINAL_STATES: Final = frozenset(set(CallState) - set(TRANSITIONS))
"""States a session never leaves; every one but DONE is a failed attempt."""

LIVE_STATES: Final = frozenset(
    {
        _S.DIALING,
        _S.RINGING,
        _S.SCREENING,
        _S.ANSWERED_WAITING,
        _S.CONNECTING,
        _S.CONNECTED,
        _S.CONSULTING,
    }
)
"""States in which the call holds a channel on the PBX."""

# The stage a trigger stamps, when it is the first to reach that stage.
_STAMPS: Final[Mapping[Trigger, str]] = MappingProxyType(
    {
        _T.ORIGINATE: "originated_at",
        _T.LINE_UP: "line_up_at",
        _T.HUMAN: "answered_at",
        _T.INBOUND: "answered_at",
        _T.OPERATOR_ANSWERED: "connected_at",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    """An operator handing the customer on: to a colleague qualified for `category` (None:
    any colleague of the line) or to a supervisor; `to_operator_id` is filled in when the
    colleague answers."""

    from_operator_id: str
    requested_at: float
    mode: str = "blind"
    category: str | None = None
    supervisor: bool = False
    reason: str = ""
    to_operator_id: str | None = None


@dataclass(slots=True)
class Consultation:
    """An attended transfer under way: the colleague the ACD chose, and whether they picked up."""

    colleague_id: str
    started_at: float
    answered: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One transition a session made, for its history."""

    at: float
    trigger: Trigger
    state: CallState


class CallSession:
    """One call attempt for one order: its state, timestamps and operators.

    A caller may rely on: `state` changes only through `apply`, which either follows
    `TRANSITIONS` or raises `IllegalTransition` and changes nothing; the stage timestamps
    (`queued_at`, `originated_at`, `line_up_at`, `answered_at`, `connected_at`, `ended_at`)
    are set once, when the stage is first reached; `ended_at` is when the telephone part ended
    (a terminal state, or wrap-up); `operator_id` is the operator the call is with or was last
    offered to; `reserved_operator_id` the operator reserved before dialling (progressive).
    """

    __slots__ = (
        "answered_at",
        "call_id",
        "callback_offered",
        "campaign_id",
        "connected_at",
        "consult",
        "direction",
        "ended_at",
        "hangup_cause",
        "history",
        "lead",
        "line_since",
        "line_up_at",
        "operator_id",
        "operators_tried",
        "order_open",
        "originated_at",
        "priority",
        "queued_at",
        "recording",
        "reserved_operator_id",
        "state",
        "transfer",
        "transfers",
        "wrapup_ended_at",
    )

    def __init__(
        self, *, call_id: str, lead: Lead, now: float, reserved_operator_id: str | None = None
    ) -> None:
        self.call_id = call_id
        self.lead = lead
        self.campaign_id = lead.campaign_id
        self.state = CallState.QUEUED
        self.queued_at = now
        self.originated_at: float | None = None
        self.line_up_at: float | None = None
        self.answered_at: float | None = None
        self.connected_at: float | None = None
        self.ended_at: float | None = None
        self.wrapup_ended_at: float | None = None
        self.hangup_cause: int | None = None
        self.operator_id: str | None = reserved_operator_id
        self.reserved_operator_id = reserved_operator_id
        self.operators_tried: list[str] = []
        self.recording = False
        self.history: list[Step] = []
        # inbound calls and transfers (see `dialer.engine.inbound`)
        self.direction = "outbound"
        self.priority = 0
        self.order_open = True  # the lead is an order to confirm: a disposition closes it
        self.line_since: float | None = None  # joined the current line (inbound or transfer)
        self.callback_offered = False
        self.transfer: Transfer | None = None  # the pending transfer, while waiting for it
        self.transfers: list[Transfer] = []  # every transfer made on the call, in order
        self.consult: Consultation | None = None  # an attended transfer's consultation

    @property
    def finished(self) -> bool:
        """True once the session is in a terminal state."""
        return self.state in TERMINAL_STATES

    @property
    def live(self) -> bool:
        """True while the call holds a channel on the PBX."""
        return self.state in LIVE_STATES

    def can(self, trigger: Trigger) -> bool:
        """Whether `apply(trigger, ...)` would succeed now."""
        return trigger in TRANSITIONS.get(self.state, {})

    def apply(self, trigger: Trigger, now: float, *, operator_id: str | None = None) -> CallState:
        """Make the move `trigger` leads to; returns the new state.

        `operator_id` is recorded with OFFER. Raises `IllegalTransition` (changing nothing)
        when the table has no such move from the current state.
        """
        target = TRANSITIONS.get(self.state, {}).get(trigger)
        if target is None:
            raise IllegalTransition(call_id=self.call_id, state=self.state, trigger=trigger)
        stamp = _STAMPS.get(trigger)
        if stamp is not None and getattr(self, stamp) is None:
            setattr(self, stamp, now)
        if trigger is Trigger.OFFER and operator_id is not None:
            self.operator_id = operator_id
            self.operators_tried.append(operator_id)
        if (target in TERMINAL_STATES or target is CallState.WRAP_UP) and self.ended_at is None:
            self.ended_at = now
        if self.state in (CallState.WRAP_UP, CallState.DISPOSITION_OVERDUE):
            self.wrapup_ended_at = self.wrapup_ended_at or now
        self.state = target
        self.history.append(Step(at=now, trigger=trigger, state=target))
        return target


def transition_table_markdown() -> str:
    """The transition table as Markdown: one row per non-terminal state, one column per trigger.

    A cell holds the new state, or "—" where the trigger is illegal; the terminal states are
    listed below the table. `docs/engine.md` embeds this output verbatim.
    """
    header = ["state \\ trigger", *(f"`{t.value}`" for t in Trigger)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
    ]
    for state, row in TRANSITIONS.items():
        cells = [f"**{state.value}**", *(row[t].value if t in row else "—" for t in Trigger)]
        lines.append("| " + " | ".join(cells) + " |")
    terminal = ", ".join(f"**{s.value}**" for s in CallState if s in TERMINAL_STATES)
    lines.append("")
    lines.append(f"Terminal states (no trigger leaves them): {terminal}.")
    return "\n".join(lines) + "\n"
