"""The engine's outputs: frozen, keyword-only values, validated when built.

The engine returns commands; it never performs them. The daemon turns them into AMI actions
(through the names in `pbx/dialplan.py`), database writes, MQTT messages and CRM calls; the
simulator into simulated customers and operators. Commands are abstract: `ConnectToOperator`
says what must happen, not which AMI action does it.

Persistence is split in two commands with distinct jobs:

- `StoreAttempt` is the record of one call attempt (its stage timestamps and how the telephone
  part ended), emitted once per call when the line part is over;
- `StoreOutcome` is the order's new status. It also carries the retry: a non-final outcome has
  `next_attempt_at` and the rescheduled `lead`, so the order's status, its next attempt and the
  outbox row for the CRM are written by the daemon in one transaction (there is no separate
  ScheduleRetry command, so a retry can never be stored without its cause, or the reverse).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dialer.engine.errors import InvalidCommand
from dialer.engine.scheduling import Lead

__all__ = [
    "BridgeToOperator",
    "Command",
    "ConnectToOperator",
    "Consult",
    "HangupCall",
    "HangupOperatorLeg",
    "HoldCustomer",
    "MissingDisposition",
    "OfferCallback",
    "Originate",
    "PlayAbandon",
    "Publish",
    "RequestCallback",
    "ScreenPop",
    "SetQueuePosition",
    "StartRecording",
    "StoreAttempt",
    "StoreInbound",
    "StoreOutcome",
    "StoreTransfer",
]

# Q.850 "normal clearing": what a hang-up the engine asks for reports to the other side.
NORMAL_CLEARING = 16


def _need(command: object, *names: str) -> None:
    for name in names:
        if not getattr(command, name):
            raise InvalidCommand(f"{type(command).__name__}: {name} must be non-empty")


def _positive(command: object, *names: str) -> None:
    for name in names:
        value = getattr(command, name)
        if not (math.isfinite(value) and value > 0):
            raise InvalidCommand(f"{type(command).__name__}: {name} must be > 0, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Base of every output."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Originate(Command):
    """Place a call to the customer; `call_id` is the ChannelId to set (store it first).

    `timeout_s` is how long the customer's phone may ring; with `amd` the call enters the
    dialplan through AMD; `shop_name` is for the abandon message.
    """

    call_id: str
    order_id: str
    campaign_id: str
    phone: str
    timeout_s: float
    amd: bool
    caller_id: str = ""
    shop_name: str = ""
    operator_id: str | None = None

    def __post_init__(self) -> None:
        _need(self, "call_id", "order_id", "campaign_id", "phone")
        _positive(self, "timeout_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectToOperator(Command):
    """Put the waiting customer through to the operator's endpoint (ring at most the timeout).

    With `on_hold` the customer waits on music on hold if the operator does not answer (an
    inbound caller, a transferred customer), not in the silence of the connect budget.
    """

    call_id: str
    operator_id: str
    endpoint: str
    ring_timeout_s: float
    on_hold: bool = False

    def __post_init__(self) -> None:
        _need(self, "call_id", "operator_id", "endpoint")
        _positive(self, "ring_timeout_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayAbandon(Command):
    """No operator in time: play the short message naming the shop, then hang up."""

    call_id: str

    def __post_init__(self) -> None:
        _need(self, "call_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class StartRecording(Command):
    """Record the call into `filename` (named by the call id)."""

    call_id: str
    filename: str

    def __post_init__(self) -> None:
        _need(self, "call_id", "filename")


@dataclass(frozen=True, slots=True, kw_only=True)
class HangupCall(Command):
    """Hang up the customer's channel with the Q.850 `cause`."""

    call_id: str
    cause: int = NORMAL_CLEARING

    def __post_init__(self) -> None:
        _need(self, "call_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreAttempt(Command):
    """The record of one call attempt, emitted once when its telephone part is over.

    `outcome` is an `AttemptOutcome` value; the stage timestamps are None for stages the call
    never reached.
    """

    call_id: str
    order_id: str
    campaign_id: str
    outcome: str
    queued_at: float
    originated_at: float | None
    answered_at: float | None
    connected_at: float | None
    ended_at: float
    hangup_cause: int | None = None
    operator_id: str | None = None

    def __post_init__(self) -> None:
        _need(self, "call_id", "order_id", "campaign_id", "outcome")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreOutcome(Command):
    """The order's new status; the daemon writes it and its outbox row in one transaction.

    `final` outcomes (a disposition other than callback, or "unreached") close the order and
    have no `next_attempt_at` and no `lead`. A non-final one carries the next attempt's time
    and the lead as it is now scheduled (what to restore into the hopper after a restart).
    `details` holds the disposition's reason, upsell, operator and attempt counts.
    """

    order_id: str
    call_id: str
    campaign_id: str
    outcome: str
    final: bool
    next_attempt_at: float | None = None
    lead: Lead | None = None
    # Excluded from the hash: a mapping is not hashable.
    details: Mapping[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _need(self, "order_id", "call_id", "campaign_id", "outcome")
        if self.final and (self.next_attempt_at is not None or self.lead is not None):
            raise InvalidCommand("a final outcome has no next attempt")
        if not self.final and (self.next_attempt_at is None or self.lead is None):
            raise InvalidCommand("an outcome that is not final needs its next attempt and lead")
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenPop(Command):
    """Show the order on the operator's desktop: a call for it is ringing their phone.

    For an inbound call `caller` is the caller's number (their history is shown with it) and
    `order_id` may name no stored order; `transfer_from` names the colleague who handed the
    customer on, if one did.
    """

    operator_id: str
    call_id: str
    order_id: str
    campaign_id: str
    caller: str = ""
    transfer_from: str | None = None

    def __post_init__(self) -> None:
        _need(self, "operator_id", "call_id", "order_id", "campaign_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingDisposition(Command):
    """The operator's wrap-up ended without a disposition: flag it to them and a supervisor.

    The call stays open in the engine (state disposition-overdue): a late disposition is still
    accepted and stored, nothing is lost.
    """

    operator_id: str
    call_id: str
    order_id: str

    def __post_init__(self) -> None:
        _need(self, "operator_id", "call_id", "order_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish(Command):
    """A live-state event for wallboards and desktops: `kind` "call" or "operator".

    A "call" payload has call_id, order_id, campaign_id, state and operator_id; an
    "operator" payload has operator_id, state, call_id and pause_reason.
    """

    kind: str
    # Excluded from the hash: a mapping is not hashable.
    payload: Mapping[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _need(self, "kind")
        object.__setattr__(self, "payload", MappingProxyType(dict(self.payload)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SetQueuePosition(Command):
    """Tell a waiting inbound caller their place in line (1 = next), for the announcements."""

    call_id: str
    position: int

    def __post_init__(self) -> None:
        _need(self, "call_id")
        if self.position < 1:
            raise InvalidCommand(f"SetQueuePosition: position must be >= 1, got {self.position}")


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferCallback(Command):
    """Offer a waiting caller to be called back instead of waiting (press 1)."""

    call_id: str

    def __post_init__(self) -> None:
        _need(self, "call_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class Consult(Command):
    """An attended transfer: the customer to music on hold and, at the same time, the
    operator's own leg to ring the colleague's `endpoint` (the dialplan's consult context)."""

    call_id: str
    operator_id: str
    colleague_id: str
    endpoint: str

    def __post_init__(self) -> None:
        _need(self, "call_id", "operator_id", "colleague_id", "endpoint")


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeToOperator(Command):
    """Bridge the customer with the operator's leg of the call (the colleague an attended
    transfer hands them to, or the operator who called the consultation off)."""

    call_id: str
    operator_id: str

    def __post_init__(self) -> None:
        _need(self, "call_id", "operator_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class HangupOperatorLeg(Command):
    """Hang up the operator's leg of the call (an operator an attended transfer is done with)."""

    call_id: str
    operator_id: str

    def __post_init__(self) -> None:
        _need(self, "call_id", "operator_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldCustomer(Command):
    """Put the customer on music on hold (a transfer: their operator leaves the call)."""

    call_id: str

    def __post_init__(self) -> None:
        _need(self, "call_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreInbound(Command):
    """The record of one inbound call, emitted once when its telephone part is over.

    `outcome` is ``connected`` (an operator took it), ``abandoned`` (the caller hung up while
    waiting) or ``callback`` (the caller took the callback offer). `order_id` is the caller's
    order when known. It is emitted again with the operator's `disposition` once given (the
    record is keyed by `call_id`).
    """

    call_id: str
    line_id: str
    caller: str
    order_id: str | None
    priority: int
    entered_at: float
    connected_at: float | None
    ended_at: float
    outcome: str
    operator_id: str | None = None
    hangup_cause: int | None = None
    disposition: str | None = None

    def __post_init__(self) -> None:
        _need(self, "call_id", "line_id", "caller", "outcome")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreTransfer(Command):
    """The record of one transfer on a call: who handed the customer to whom, and why.

    Emitted when the colleague answers (`to_operator_id` set) or when the transfer failed
    because the customer hung up first (`to_operator_id` None).
    """

    call_id: str
    order_id: str | None
    from_operator_id: str
    to_operator_id: str | None
    mode: str
    target: str  # "category:<name>", "supervisor" or "line"
    reason: str
    requested_at: float
    at: float

    def __post_init__(self) -> None:
        _need(self, "call_id", "from_operator_id", "mode", "target")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestCallback(Command):
    """An inbound caller with no open order took the callback offer: make a callback order
    for them (`order_id` names their latest order, if any, to copy what is known)."""

    call_id: str
    line_id: str
    caller: str
    order_id: str | None = None

    def __post_init__(self) -> None:
        _need(self, "call_id", "line_id", "caller")
