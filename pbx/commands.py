"""Call-control actions obzvon sends to Asterisk, as frozen dataclasses.

Each command validates itself when built (an empty channel, a header with a line break, a
ChannelId that is not a UUID, ... raise `AmiLocalError`), so a bad action fails where it was
made instead of on the wire. `to_fields()` returns the header pairs in the order Asterisk's own
examples use, without ``ActionID``: the client adds that.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol

from .errors import AmiLocalError
from .events import Headers

Fields = tuple[tuple[str, str], ...]
SpyMode = Literal["listen", "whisper", "barge"]

# ChanSpy options: q = no beep/announcement to the spied channel; w = whisper to the target;
# B = barge, talk to both parties
SPY_OPTIONS: Mapping[str, str] = {"listen": "q", "whisper": "qw", "barge": "qB"}


class Command(Protocol):
    """What `AmiClient.send()` accepts besides raw pairs."""

    def to_fields(self) -> Fields: ...


def _text(value: str, what: str, *, required: bool = True) -> None:
    if required and not value:
        raise AmiLocalError(f"{what} must not be empty")
    if "\r" in value or "\n" in value:
        raise AmiLocalError(f"{what} {value[:40]!r} contains a line break")


def _uuid(value: str, what: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise AmiLocalError(f"{what} {value[:40]!r} is not a UUID") from None


def _priority(value: int, what: str = "priority") -> None:
    if value < 1:
        raise AmiLocalError(f"{what} must be 1 or more, not {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Originate:
    """Dial `channel` and, when it answers, send it to `context`/`exten`/`priority`.

    Always sent with ``Async: true``: the action's result is the OriginateResponse event, so a
    slow answer never blocks the AMI link. `channel_id` is the call's identity, chosen by the
    caller before sending: it becomes the Uniqueid of the channel (``;1`` of a Local channel;
    the ``;2`` half gets ``channel_id + ";2"``) and lets the call be found again after a
    reconnect. `timeout_ms` is how long the customer's phone may ring.
    """

    action: ClassVar[str] = "Originate"

    channel: str
    context: str
    exten: str
    priority: int = 1
    channel_id: str
    other_channel_id: str | None = None
    variables: Mapping[str, str] = field(default_factory=Headers)
    timeout_ms: int = 30_000
    caller_id: str = ""

    def __post_init__(self) -> None:
        _text(self.channel, "Originate channel")
        _text(self.context, "Originate context")
        _text(self.exten, "Originate exten")
        _text(self.caller_id, "Originate caller_id", required=False)
        _priority(self.priority)
        _uuid(self.channel_id, "Originate channel_id")
        if self.other_channel_id is not None:
            _uuid(self.other_channel_id, "Originate other_channel_id")
        if self.timeout_ms <= 0:
            raise AmiLocalError(f"Originate timeout_ms must be positive, not {self.timeout_ms}")
        for name, value in self.variables.items():
            if not name or "=" in name:
                raise AmiLocalError(f"Originate variable name {name!r} is empty or has '='")
            _text(name, "variable name")
            _text(value, f"variable {name}", required=False)
        # stored immutable, so the command stays hashable and cannot change after validation
        object.__setattr__(self, "variables", Headers(self.variables))

    def to_fields(self) -> Fields:
        out: list[tuple[str, str]] = [
            ("Action", "Originate"),
            ("Channel", self.channel),
            ("Context", self.context),
            ("Exten", self.exten),
            ("Priority", str(self.priority)),
            ("Async", "true"),
            ("Timeout", str(self.timeout_ms)),
            ("ChannelId", self.channel_id),
        ]
        if self.other_channel_id:
            out.append(("OtherChannelId", self.other_channel_id))
        if self.caller_id:
            out.append(("CallerID", self.caller_id))
        out.extend(("Variable", f"{k}={v}") for k, v in self.variables.items())
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Spy:
    """Ring the supervisor's endpoint and, when answered, run ChanSpy on `target_channel`.

    `mode` is ``listen`` (ChanSpy option ``q``), ``whisper`` (``qw``: the operator hears the
    supervisor, the customer does not) or ``barge`` (``qB``: both hear). Sent as an
    ``Async: true`` Originate, so its result is an OriginateResponse too.
    """

    action: ClassVar[str] = "Originate"

    supervisor_channel: str
    target_channel: str
    mode: SpyMode = "listen"
    channel_id: str
    timeout_ms: int = 20_000
    caller_id: str = ""

    def __post_init__(self) -> None:
        _text(self.supervisor_channel, "Spy supervisor_channel")
        _text(self.target_channel, "Spy target_channel")
        _text(self.caller_id, "Spy caller_id", required=False)
        if "," in self.target_channel:
            raise AmiLocalError("Spy target_channel must not contain ','")
        if self.mode not in SPY_OPTIONS:
            raise AmiLocalError(f"Spy mode must be listen, whisper or barge, not {self.mode!r}")
        _uuid(self.channel_id, "Spy channel_id")
        if self.timeout_ms <= 0:
            raise AmiLocalError(f"Spy timeout_ms must be positive, not {self.timeout_ms}")

    def to_fields(self) -> Fields:
        out: list[tuple[str, str]] = [
            ("Action", "Originate"),
            ("Channel", self.supervisor_channel),
            ("Application", "ChanSpy"),
            ("Data", f"{self.target_channel},{SPY_OPTIONS[self.mode]}"),
            ("Async", "true"),
            ("Timeout", str(self.timeout_ms)),
            ("ChannelId", self.channel_id),
        ]
        if self.caller_id:
            out.append(("CallerID", self.caller_id))
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    """Move `channel` (and optionally a second channel, the ``extra_*`` fields) elsewhere."""

    action: ClassVar[str] = "Redirect"

    channel: str
    context: str
    exten: str
    priority: int = 1
    extra_channel: str = ""
    extra_context: str = ""
    extra_exten: str = ""
    extra_priority: int | None = None

    def __post_init__(self) -> None:
        _text(self.channel, "Redirect channel")
        _text(self.context, "Redirect context")
        _text(self.exten, "Redirect exten")
        _priority(self.priority)
        _text(self.extra_channel, "Redirect extra_channel", required=False)
        _text(self.extra_context, "Redirect extra_context", required=False)
        _text(self.extra_exten, "Redirect extra_exten", required=False)
        if self.extra_priority is not None:
            _priority(self.extra_priority, "extra_priority")
        has_extra = self.extra_context or self.extra_exten or self.extra_priority is not None
        if has_extra and not self.extra_channel:
            raise AmiLocalError("Redirect extra_context/exten/priority need an extra_channel")

    def to_fields(self) -> Fields:
        out: list[tuple[str, str]] = [
            ("Action", "Redirect"),
            ("Channel", self.channel),
            ("Context", self.context),
            ("Exten", self.exten),
            ("Priority", str(self.priority)),
        ]
        if self.extra_channel:
            out.append(("ExtraChannel", self.extra_channel))
            # Asterisk sends the extra channel to the main destination unless told otherwise
            out.append(("ExtraContext", self.extra_context or self.context))
            out.append(("ExtraExten", self.extra_exten or self.exten))
            prio = self.extra_priority if self.extra_priority is not None else self.priority
            out.append(("ExtraPriority", str(prio)))
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bridge:
    """Bridge two existing channels."""

    action: ClassVar[str] = "Bridge"

    channel1: str
    channel2: str

    def __post_init__(self) -> None:
        _text(self.channel1, "Bridge channel1")
        _text(self.channel2, "Bridge channel2")
        if self.channel1 == self.channel2:
            raise AmiLocalError("Bridge needs two different channels")

    def to_fields(self) -> Fields:
        return (
            ("Action", "Bridge"),
            ("Channel1", self.channel1),
            ("Channel2", self.channel2),
            ("Tone", "no"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Setvar:
    """Set `variable` to `value` on `channel` (a caller's place in line, say): the dialplan
    reads the new value the next time it looks. A name starting with ``_`` or ``__`` is
    inherited by the channels `channel` dials, as in the dialplan's ``Set``."""

    action: ClassVar[str] = "Setvar"

    channel: str
    variable: str
    value: str

    def __post_init__(self) -> None:
        _text(self.channel, "Setvar channel")
        _text(self.variable, "Setvar variable")
        _text(self.value, f"Setvar {self.variable}", required=False)
        if "=" in self.variable or "," in self.variable:
            raise AmiLocalError(f"Setvar variable {self.variable!r} has '=' or ','")

    def to_fields(self) -> Fields:
        return (
            ("Action", "Setvar"),
            ("Channel", self.channel),
            ("Variable", self.variable),
            ("Value", self.value),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    """Hang up a channel by name, or every channel matching a regex written ``/.../``.

    `cause` is a Q.850 cause code (16 normal clearing) or ``None`` for Asterisk's default.
    """

    action: ClassVar[str] = "Hangup"

    channel: str
    cause: int | None = None

    def __post_init__(self) -> None:
        _text(self.channel, "Hangup channel")
        if self.channel.startswith("/"):
            if len(self.channel) < 3 or not self.channel.endswith("/"):
                raise AmiLocalError(f"Hangup regex {self.channel!r} must look like /.../")
            try:
                re.compile(self.channel[1:-1])
            except re.error as exc:
                raise AmiLocalError(f"Hangup regex {self.channel!r}: {exc}") from None
        if self.cause is not None and not 0 <= self.cause <= 127:
            raise AmiLocalError(f"Hangup cause must be 0..127, not {self.cause}")

    @property
    def is_regex(self) -> bool:
        return self.channel.startswith("/")

    def to_fields(self) -> Fields:
        out: list[tuple[str, str]] = [("Action", "Hangup"), ("Channel", self.channel)]
        if self.cause is not None:
            out.append(("Cause", str(self.cause)))
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class MixMonitor:
    """Start recording `channel` into `file` (MixMonitor `options`, e.g. ``b``: only while
    bridged)."""

    action: ClassVar[str] = "MixMonitor"

    channel: str
    file: str
    options: str = ""

    def __post_init__(self) -> None:
        _text(self.channel, "MixMonitor channel")
        _text(self.file, "MixMonitor file")
        _text(self.options, "MixMonitor options", required=False)

    def to_fields(self) -> Fields:
        out: list[tuple[str, str]] = [
            ("Action", "MixMonitor"),
            ("Channel", self.channel),
            ("File", self.file),
        ]
        if self.options:
            out.append(("Options", self.options))
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class StopMixMonitor:
    action: ClassVar[str] = "StopMixMonitor"

    channel: str
    mixmonitor_id: str = ""

    def __post_init__(self) -> None:
        _text(self.channel, "StopMixMonitor channel")
        _text(self.mixmonitor_id, "StopMixMonitor mixmonitor_id", required=False)

    def to_fields(self) -> Fields:
        out: list[tuple[str, str]] = [("Action", "StopMixMonitor"), ("Channel", self.channel)]
        if self.mixmonitor_id:
            out.append(("MixMonitorID", self.mixmonitor_id))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class CoreShowChannels:
    """List every live channel (answered as CoreShowChannel events and a Complete event)."""

    action: ClassVar[str] = "CoreShowChannels"

    def to_fields(self) -> Fields:
        return (("Action", "CoreShowChannels"),)


@dataclass(frozen=True, slots=True)
class DeviceStateList:
    """The state of every device (answered as DeviceStateChange events and a Complete event):
    how operators' softphones are found registered or not after a (re)connect, since Asterisk
    reports a device only when it changes."""

    action: ClassVar[str] = "DeviceStateList"

    def to_fields(self) -> Fields:
        return (("Action", "DeviceStateList"),)


@dataclass(frozen=True, slots=True)
class Ping:
    action: ClassVar[str] = "Ping"

    def to_fields(self) -> Fields:
        return (("Action", "Ping"),)
