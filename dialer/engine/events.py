"""The engine's inputs: frozen, keyword-only values, validated when built.

Every event carries `now`, the epoch time (possibly virtual) at which it happened; the engine
never reads a clock. Drivers translate AMI events, timers and HTTP requests into these once, at
the boundary; nothing deeper sees a raw AMI dict. A malformed event raises `InvalidEvent` when
it is built, so a bug in a driver shows up where it is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from dialer.engine.errors import InvalidEvent
from dialer.engine.scheduling import Lead

__all__ = [
    "ORIGINATE_ANSWERED",
    "ORIGINATE_BUSY",
    "ORIGINATE_CONGESTION",
    "ORIGINATE_FAILURE",
    "ORIGINATE_NO_ANSWER",
    "AmdResult",
    "AmdStatus",
    "CallbackChoice",
    "CampaignConfigured",
    "CampaignPaused",
    "CampaignResumed",
    "ConnectFailed",
    "ConsultEnded",
    "CustomerAnswered",
    "CustomerHungUp",
    "CustomerRinging",
    "Disposition",
    "DispositionOutcome",
    "Drain",
    "EndpointRegistration",
    "Event",
    "InboundCall",
    "OperatorAnswered",
    "OperatorHungUp",
    "OperatorLogin",
    "OperatorLogout",
    "OperatorPause",
    "OperatorReady",
    "OrderArrived",
    "OrdersArrived",
    "OriginateResult",
    "Tick",
    "TransferDecision",
    "TransferRequested",
]

# OriginateResponse `Reason` values (Asterisk's AST_CONTROL_* codes); any other is a failure.
ORIGINATE_FAILURE: Final = 0
ORIGINATE_NO_ANSWER: Final = 3
ORIGINATE_ANSWERED: Final = 4
ORIGINATE_BUSY: Final = 5
ORIGINATE_CONGESTION: Final = 8


def _need(value: str, name: str) -> None:
    if not value:
        raise InvalidEvent(f"{name} must be a non-empty string")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every input: `now` is when it happened, finite epoch seconds."""

    now: float

    def __post_init__(self) -> None:
        if isinstance(self.now, bool) or not math.isfinite(self.now) or self.now < 0:
            raise InvalidEvent(f"{type(self).__name__}: now must be finite and >= 0")
        self._check()

    def _check(self) -> None:
        """Validate the subclass's own fields (raise `InvalidEvent`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEvent(Event):
    """An event about one call, named by the ChannelId obzvon chose for it."""

    call_id: str

    def _check(self) -> None:
        _need(self.call_id, "call_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorEvent(Event):
    """An operator's own action (from their desktop, through the HTTP API)."""

    operator_id: str

    def _check(self) -> None:
        _need(self.operator_id, "operator_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderArrived(Event):
    """A new order (or, at start-up, a pending one) whose customer is to be called."""

    lead: Lead


@dataclass(frozen=True, slots=True, kw_only=True)
class OrdersArrived(Event):
    """Several `OrderArrived` handled as one, `now` the last one's: each lead goes in its
    hopper as at its own arrival, then one dialling decision is taken per campaign, as after
    the last. A driver that finds arrivals queued up behind one another while the engine was
    busy hands them over this way (one decision instead of one per order)."""

    arrivals: tuple[OrderArrived, ...]

    def __post_init__(self) -> None:
        Event.__post_init__(self)
        if not self.arrivals:
            raise InvalidEvent("OrdersArrived needs at least one arrival")


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(Event):
    """Time passed: the engine expires wrap-ups, abandons overdue calls and dials."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerRinging(CallEvent):
    """The customer's phone is ringing (DialState / Newstate Ringing); optional."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginateResult(CallEvent):
    """Asterisk's OriginateResponse: `reason` 4 answered, 5 busy, 3 no answer, 8 congestion,
    0 (or anything else) failure."""

    reason: int

    def _check(self) -> None:
        _need(self.call_id, "call_id")
        if isinstance(self.reason, bool) or not isinstance(self.reason, int) or self.reason < 0:
            raise InvalidEvent(f"reason must be a non-negative int, got {self.reason!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerAnswered(CallEvent):
    """The dialplan's answered UserEvent: a person (or AMD's NOTSURE) is on the line."""


class AmdStatus(StrEnum):
    HUMAN = "HUMAN"
    MACHINE = "MACHINE"
    NOTSURE = "NOTSURE"


@dataclass(frozen=True, slots=True, kw_only=True)
class AmdResult(CallEvent):
    """The dialplan's AMD UserEvent, sent before the answered one when AMD is on."""

    status: AmdStatus

    def _check(self) -> None:
        _need(self.call_id, "call_id")
        try:
            object.__setattr__(self, "status", AmdStatus(self.status))
        except ValueError:
            raise InvalidEvent(f"unknown AMD status {self.status!r}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorAnswered(CallEvent):
    """The operator picked up: the customer and the operator are bridged."""

    operator_id: str

    def _check(self) -> None:
        _need(self.call_id, "call_id")
        _need(self.operator_id, "operator_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectFailed(CallEvent):
    """The operator's phone did not answer (the dialplan's connect-failed UserEvent)."""

    operator_id: str
    dial_status: str = ""

    def _check(self) -> None:
        _need(self.call_id, "call_id")
        _need(self.operator_id, "operator_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerHungUp(CallEvent):
    """The customer's channel hung up; `cause` is the Q.850 cause when known."""

    cause: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorHungUp(CallEvent):
    """The operator's leg of a connected call hung up."""

    operator_id: str

    def _check(self) -> None:
        _need(self.call_id, "call_id")
        _need(self.operator_id, "operator_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorLogin(OperatorEvent):
    """The operator logged in (they start paused, as on the board)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorReady(OperatorEvent):
    """The operator is ready for calls."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorPause(OperatorEvent):
    """The operator paused, with a reason."""

    reason: str

    def _check(self) -> None:
        _need(self.operator_id, "operator_id")
        _need(self.reason, "reason")


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorLogout(OperatorEvent):
    """The operator logged out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointRegistration(Event):
    """A SIP endpoint registered or went away (from device state / ContactStatus)."""

    endpoint: str
    registered: bool

    def _check(self) -> None:
        _need(self.endpoint, "endpoint")


class DispositionOutcome(StrEnum):
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CALLBACK = "callback"
    INVALID = "invalid"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True, kw_only=True)
class Disposition(CallEvent):
    """What the operator concluded about the order after talking to the customer.

    A callback needs `callback_at`; `callback_mine` keeps the callback for this operator.
    `upsell_items` are item codes the customer added; `upsell_amount` their total value.
    """

    operator_id: str
    outcome: DispositionOutcome
    reason: str = ""
    upsell_items: tuple[str, ...] = ()
    upsell_amount: float = 0.0
    callback_at: float | None = None
    callback_mine: bool = False

    def _check(self) -> None:
        _need(self.call_id, "call_id")
        _need(self.operator_id, "operator_id")
        try:
            object.__setattr__(self, "outcome", DispositionOutcome(self.outcome))
        except ValueError:
            raise InvalidEvent(f"unknown disposition {self.outcome!r}") from None
        object.__setattr__(self, "upsell_items", tuple(self.upsell_items))
        if not (math.isfinite(self.upsell_amount) and self.upsell_amount >= 0):
            raise InvalidEvent("upsell_amount must be finite and >= 0")
        if self.outcome is DispositionOutcome.CALLBACK:
            if self.callback_at is None or not math.isfinite(self.callback_at):
                raise InvalidEvent("a callback needs a finite callback_at")
        elif self.callback_at is not None or self.callback_mine:
            raise InvalidEvent("callback_at and callback_mine belong to a callback only")


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignPaused(Event):
    """A supervisor paused the campaign: no new calls; live ones continue."""

    campaign_id: str

    def _check(self) -> None:
        _need(self.campaign_id, "campaign_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignResumed(Event):
    """A supervisor resumed the campaign."""

    campaign_id: str

    def _check(self) -> None:
        _need(self.campaign_id, "campaign_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignConfigured(Event):
    """An admin changed the campaign's abandon target and/or pacing mode (None: unchanged).

    Calls already placed go on; the next pacing decision follows the new rules. A new pacing
    mode starts a new pacer (it learns again from the campaign's next attempts).
    """

    campaign_id: str
    abandon_target: float | None = None
    pacing: str | None = None

    def _check(self) -> None:
        _need(self.campaign_id, "campaign_id")
        if self.abandon_target is None and self.pacing is None:
            raise InvalidEvent("give abandon_target, pacing or both")


@dataclass(frozen=True, slots=True, kw_only=True)
class Drain(Event):
    """Shut-down requested (SIGTERM): no new calls are placed; live calls finish."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundCall(CallEvent):
    """A customer called the shop's line `line_id` and hears music on hold.

    The driver identified the caller before sending this: `order_id` is their latest order if
    one is known (with its category, region, amount and time zone); `tags` are what the line's
    priority rules match (``known``, ``open-order``, ``in-delivery``, ...). `call_id` is the
    caller's channel's Uniqueid.
    """

    line_id: str
    caller: str
    timezone: str = "Europe/Moscow"
    order_id: str | None = None
    category: str | None = None
    region: str | None = None
    language: str | None = None
    amount: float = 0.0
    tags: frozenset[str] = frozenset()

    def _check(self) -> None:
        _need(self.call_id, "call_id")
        _need(self.line_id, "line_id")
        _need(self.caller, "caller")
        if self.order_id is not None:
            _need(self.order_id, "order_id")
        object.__setattr__(self, "tags", frozenset(self.tags))


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackChoice(CallEvent):
    """A waiting caller answered the callback offer: `accepted` (pressed 1) or not."""

    accepted: bool


TRANSFER_MODES: Final = ("blind", "attended")


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferRequested(CallEvent):
    """An operator hands their customer on: to a colleague qualified for `category` (None:
    anyone on the line) or, with `supervisor`, to a supervisor; `reason` is kept on the call
    (e.g. "qualification insufficient"). ``mode="blind"`` puts the customer in line for the
    colleague at once; ``"attended"`` first connects the operator to a colleague free now while
    the customer holds (`TransferDecision` then completes or calls it off)."""

    operator_id: str
    category: str | None = None
    supervisor: bool = False
    reason: str = ""
    mode: str = "blind"

    def _check(self) -> None:
        _need(self.call_id, "call_id")
        _need(self.operator_id, "operator_id")
        if self.mode not in TRANSFER_MODES:
            modes = ", ".join(TRANSFER_MODES)
            raise InvalidEvent(f"mode must be one of {modes}, not {self.mode!r}")
        if self.category is not None:
            _need(self.category, "category")


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferDecision(CallEvent):
    """The operator consulting a colleague (an attended transfer) hands the customer over
    (`complete`) or takes them back."""

    operator_id: str
    complete: bool

    def _check(self) -> None:
        _need(self.call_id, "call_id")
        _need(self.operator_id, "operator_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsultEnded(CallEvent):
    """The operator's consultation leg is over (the dialplan's consult event): the colleague
    did not answer (`dial_status` NOANSWER, BUSY, CHANUNAVAIL...) or, with ANSWER, the
    colleague's side ended (they hung up, or were handed the customer)."""

    dial_status: str
