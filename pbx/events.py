"""Typed AMI events: each frame Asterisk sends is converted once, here, into a frozen object.

`parse_event()` is total: it never raises, whatever the frame holds. A header the event class
names becomes an attribute (a missing one is ``""``, or ``None`` for numbers; a number that does
not parse is ``None``); every other header is kept, in wire order, in the read-only `extra`
mapping. An event obzvon has no class for becomes a `GenericEvent`, which still carries the
common channel attributes when the frame has them. Raw AMI frames do not leave `pbx/`: code
outside works with these classes only.

`LinkLost` and `LinkRestored` are not sent by Asterisk: `AmiClient` puts them on its event
stream when the link drops and when it is back (with the channels alive at that moment).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

from .protocol import Frame


class Headers(Mapping[str, str]):
    """An immutable, hashable mapping of header names to values, in insertion order."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        self._data: dict[str, str] = dict(data) if data else {}

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        # Mapping.get goes through __getitem__ and KeyError: this runs once per event
        return self._data.get(key, default)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return f"Headers({self._data!r})"


EMPTY_HEADERS = Headers()


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _h(header: str, default: str | None = "") -> Any:
    """A field filled from AMI header `header`; a ``None`` default makes it an int field."""
    return field(default=default, metadata={"ami": header})


@dataclass(frozen=True, slots=True, kw_only=True)
class AmiEvent:
    """Base of every event. `name` is the event name as Asterisk spelled it."""

    name: str
    extra: Headers = field(default=EMPTY_HEADERS, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEvent(AmiEvent):
    """An event about one channel, with Asterisk's channel snapshot as attributes."""

    channel: str = _h("Channel")
    channel_state: int | None = _h("ChannelState", None)
    channel_state_desc: str = _h("ChannelStateDesc")
    caller_id_num: str = _h("CallerIDNum")
    caller_id_name: str = _h("CallerIDName")
    connected_line_num: str = _h("ConnectedLineNum")
    connected_line_name: str = _h("ConnectedLineName")
    language: str = _h("Language")
    account_code: str = _h("AccountCode")
    context: str = _h("Context")
    exten: str = _h("Exten")
    priority: str = _h("Priority")
    uniqueid: str = _h("Uniqueid")
    linkedid: str = _h("Linkedid")


@dataclass(frozen=True, slots=True, kw_only=True)
class Newchannel(ChannelEvent):
    """A channel was created."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Newstate(ChannelEvent):
    """A channel changed state (``channel_state``: 5 Ringing, 6 Up, 7 Busy, ...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DialEvent(ChannelEvent):
    """Base of the Dial* events. The calling side (`channel`, ...) is empty when Asterisk
    dials on behalf of an Originate; the dialled side is in the ``dest_*`` attributes."""

    dest_channel: str = _h("DestChannel")
    dest_channel_state: int | None = _h("DestChannelState", None)
    dest_context: str = _h("DestContext")
    dest_exten: str = _h("DestExten")
    dest_uniqueid: str = _h("DestUniqueid")
    dest_linkedid: str = _h("DestLinkedid")


@dataclass(frozen=True, slots=True, kw_only=True)
class DialBegin(DialEvent):
    dial_string: str = _h("DialString")


@dataclass(frozen=True, slots=True, kw_only=True)
class DialState(DialEvent):
    dial_status: str = _h("DialStatus")


@dataclass(frozen=True, slots=True, kw_only=True)
class DialEnd(DialEvent):
    """The dial finished with `dial_status` (ANSWER, BUSY, ...). A no-answer timeout of an
    Originate sends no DialEnd: the OriginateResponse is the only word on it."""

    dial_status: str = _h("DialStatus")


class OriginateReason(IntEnum):
    """The `Reason` codes of an OriginateResponse that obzvon acts on."""

    FAILURE = 0
    NO_ANSWER = 3
    ANSWERED = 4
    BUSY = 5
    CONGESTION = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginateResponse(AmiEvent):
    """The outcome of an ``Async: true`` Originate.

    `response` is ``"Success"`` or ``"Failure"``; `reason` is Asterisk's code (see
    `OriginateReason`), ``None`` when absent or not a number. On failure `channel` is the
    channel string that was requested, not a real channel. `uniqueid` is the ChannelId set in
    the Originate.
    """

    response: str = _h("Response")
    reason: int | None = _h("Reason", None)
    channel: str = _h("Channel")
    context: str = _h("Context")
    exten: str = _h("Exten")
    uniqueid: str = _h("Uniqueid")
    action_id: str = _h("ActionID")
    caller_id_num: str = _h("CallerIDNum")
    caller_id_name: str = _h("CallerIDName")

    @property
    def answered(self) -> bool:
        return self.response.lower() == "success" and self.reason == OriginateReason.ANSWERED

    @property
    def outcome(self) -> OriginateReason | None:
        """`reason` as an `OriginateReason`, or ``None`` for a code obzvon has no name for."""
        if self.reason is None:
            return None
        try:
            return OriginateReason(self.reason)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup(ChannelEvent):
    """A channel is gone. `cause` is the Q.850 cause (16 normal, 17 busy, 19 no answer)."""

    cause: int | None = _h("Cause", None)
    cause_txt: str = _h("Cause-txt")


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeEvent(ChannelEvent):
    """Base of the Bridge* events. The channel attributes are empty for Create and Destroy."""

    bridge_uniqueid: str = _h("BridgeUniqueid")
    bridge_type: str = _h("BridgeType")
    bridge_technology: str = _h("BridgeTechnology")
    bridge_num_channels: int | None = _h("BridgeNumChannels", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeCreate(BridgeEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeEnter(BridgeEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeLeave(BridgeEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeDestroy(BridgeEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class UserEvent(ChannelEvent):
    """A ``UserEvent()`` from the dialplan: `user_event` is its name, `headers` the headers
    the dialplan added (``Lead: order-42``)."""

    user_event: str = _h("UserEvent")

    @property
    def headers(self) -> Mapping[str, str]:
        return Headers({k: v for k, v in self.extra.items() if k != "Privilege"})


@dataclass(frozen=True, slots=True, kw_only=True)
class MixMonitorStart(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class MixMonitorStop(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStateChange(AmiEvent):
    device: str = _h("Device")
    state: str = _h("State")


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreShowChannel(ChannelEvent):
    """One live channel in the answer to ``CoreShowChannels``."""

    action_id: str = _h("ActionID")
    application: str = _h("Application")
    application_data: str = _h("ApplicationData")
    duration: str = _h("Duration")
    bridge_id: str = _h("BridgeId")


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreShowChannelsComplete(AmiEvent):
    action_id: str = _h("ActionID")
    list_items: int | None = _h("ListItems", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class FullyBooted(AmiEvent):
    status: str = _h("Status")


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericEvent(ChannelEvent):
    """Any event without a class of its own (HangupRequest, NewCallerid, ...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkLost(AmiEvent):
    """Synthetic: the AMI link dropped. Events may be missing until the next `LinkRestored`."""

    name: str = "LinkLost"
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkRestored(AmiEvent):
    """Synthetic: the client is logged in again; `channels` is what ``CoreShowChannels``
    listed right after the login, before any action of the caller was sent."""

    name: str = "LinkRestored"
    channels: tuple[CoreShowChannel, ...] = ()


_CLASSES: tuple[type[AmiEvent], ...] = (
    Newchannel,
    Newstate,
    DialBegin,
    DialState,
    DialEnd,
    OriginateResponse,
    Hangup,
    BridgeCreate,
    BridgeEnter,
    BridgeLeave,
    BridgeDestroy,
    UserEvent,
    MixMonitorStart,
    MixMonitorStop,
    DeviceStateChange,
    CoreShowChannel,
    CoreShowChannelsComplete,
    FullyBooted,
)


# header -> (attribute, converter or None for text as is); None: the header goes to `extra`
_Slot = tuple[str, Callable[[str], Any] | None] | None
_MEMO_LIMIT = 512  # header spellings remembered per class; junk headers beyond are looked up


class _Spec:
    """How to build one event class from headers; remembers each spelling it has seen."""

    __slots__ = ("by_lower", "cls", "known")

    def __init__(self, cls: type[AmiEvent]) -> None:
        self.cls = cls
        self.by_lower: dict[str, _Slot] = {
            f.metadata["ami"].lower(): (f.name, _int if f.default is None else None)
            for f in fields(cls)
            if "ami" in f.metadata
        }
        self.known: dict[str, _Slot] = {}

    def slot(self, key: str) -> _Slot:
        # headers come in Asterisk's own spelling nearly always: one dict lookup per header,
        # and a different spelling of a known header still lands in its attribute
        slot = self.by_lower.get(key.lower())
        if len(self.known) < _MEMO_LIMIT:
            self.known[key] = slot
        return slot


_SPECS: dict[str, _Spec] = {cls.__name__.lower(): _Spec(cls) for cls in _CLASSES}
_GENERIC = _Spec(GenericEvent)
_MISSING = ("", None)


def parse_event(frame: Frame) -> AmiEvent:
    """Convert one frame into its typed event. Never raises."""
    pairs = frame.fields
    name = pairs[0][1] if pairs else ""
    spec = _SPECS.get(name.lower(), _GENERIC)
    known = spec.known
    kwargs: dict[str, Any] = {}
    extra: dict[str, str] = {}
    try:
        for key, value in pairs[1:]:
            slot = known.get(key, _MISSING)
            if slot is _MISSING:
                slot = spec.slot(key)
            if slot is None or slot[0] in kwargs:
                # a repeated header keeps its first value, like Frame.get()
                if key not in extra:
                    extra[key] = value
            else:
                attr, conv = slot
                kwargs[attr] = value if conv is None else conv(value)
        return spec.cls(name=name, extra=Headers(extra), **kwargs)
    except Exception:  # a converter that was not total; the event must still get through
        return GenericEvent(name=name, extra=Headers(dict(pairs[1:])))
