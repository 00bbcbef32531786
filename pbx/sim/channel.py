"""Channels and bridges as the simulator keeps them, and the names and ids Asterisk gives them.

Names follow Asterisk: one hex sequence per channel technology (``Local/1001@sim-agent-00000008;1``
and ``;2``, ``PJSIP/trunk-0000000a``). A channel without a ChannelId gets a Uniqueid of the form
``<epoch>.<counter>``; the ``;2`` half of a Local channel with a ChannelId gets ``<ChannelId>;2``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from .model import FarEnd

DOWN: Final = 0
RING: Final = 4
RINGING: Final = 5
UP: Final = 6
BUSY: Final = 7

STATE_DESC: Final[dict[int, str]] = {
    0: "Down",
    1: "Rsrvd",
    2: "OffHook",
    3: "Dialing",
    4: "Ring",
    5: "Ringing",
    6: "Up",
    7: "Busy",
    8: "Dialing Offhook",
    9: "Pre-ring",
}

CAUSE_TEXT: Final[dict[int, str]] = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    127: "Interworking, unspecified",
}


HEARD_KEPT: Final = 256
"""How many of the latest prompts a channel remembers (`Channel.heard`)."""


def cause_text(cause: int) -> str:
    return CAUSE_TEXT.get(cause, "Unknown")


@dataclass(frozen=True, slots=True)
class CallerId:
    num: str = "<unknown>"
    name: str = "<unknown>"


UNKNOWN: Final = CallerId()


def parse_callerid(text: str) -> CallerId:
    """``"Shop" <74950000000>``, ``Shop <74950000000>`` or ``74950000000``."""
    text = text.strip()
    if "<" in text and text.endswith(">"):
        name, _, num = text[:-1].rpartition("<")
        name = name.strip().strip('"').strip()
        return CallerId(num.strip() or UNKNOWN.num, name or UNKNOWN.name)
    return CallerId(text or UNKNOWN.num, UNKNOWN.name)


@dataclass(eq=False)
class Channel:
    """One live channel: what its events show, and what is running on it.

    `task` is what Asterisk runs on the channel (the originate attempt, then the dialplan);
    `far_end` is the simulated person behind it (a customer's patience, an operator's talk).
    `after_bridge` is set while a ``Dial(...,g)`` placed by the channel is bridged: when that
    bridge ends the channel goes on with its dialplan instead of hanging up. `heard` lists the
    last prompts played to the channel, as (application, data).
    """

    name: str
    uniqueid: str
    linkedid: str
    tech: str
    device: str
    created: float
    context: str
    exten: str
    priority: int = 1
    state: int = DOWN
    caller: CallerId = UNKNOWN
    connected: CallerId = UNKNOWN
    app: str = ""
    appdata: str = ""
    half: int = 0
    peer: Channel | None = None
    plan: FarEnd | None = None
    variables: dict[str, str] = field(default_factory=dict)
    inheritable: dict[str, bool] = field(default_factory=dict)
    bridge: Bridge | None = None
    left_bridge: Bridge | None = None
    task: asyncio.Task[Any] | None = None
    far_end: asyncio.Task[Any] | None = None
    dialing: list[Channel] = field(default_factory=list)
    on_hangup: list[Callable[[], None]] = field(default_factory=list)
    on_enter: list[Callable[[], None]] = field(default_factory=list)
    after_bridge: asyncio.Future[None] | None = None
    heard: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=HEARD_KEPT))
    mixmonitor: bool = False
    hanging: bool = False
    gone: bool = False

    @property
    def is_local(self) -> bool:
        return self.half != 0

    def goto(self, context: str, exten: str, priority: int) -> None:
        self.context, self.exten, self.priority = context, exten, priority

    def at(self, priority: int, app: str, appdata: str = "") -> None:
        """Mark where in its dialplan the channel is (shown by events and CoreShowChannels)."""
        self.priority, self.app, self.appdata = priority, app, appdata

    def set_var(self, name: str, value: str) -> None:
        """Set a variable as ``Set`` and ``Setvar`` do: a ``_NAME`` is inherited by the channels
        this one dials, a ``__NAME`` by theirs too; either is read as ``${NAME}``."""
        bare = name.lstrip("_")
        if not bare:
            return
        self.variables[bare] = value
        if name.startswith("__"):
            self.inheritable[bare] = True
        elif name.startswith("_"):
            self.inheritable[bare] = False
        else:
            self.inheritable.pop(bare, None)

    def inherit_from(self, parent: Channel) -> None:
        """Take the inheritable variables of the channel that dialled this one."""
        for name, forever in parent.inheritable.items():
            if name in parent.variables:
                self.variables[name] = parent.variables[name]
                if forever:
                    self.inheritable[name] = True


@dataclass(eq=False)
class Bridge:
    """A basic two-party bridge. `destroy_after` is the channel whose leaving emptied it:
    Asterisk reports BridgeDestroy once that channel's hangup is done."""

    uniqueid: str
    technology: str = "simple_bridge"
    channels: list[Channel] = field(default_factory=list)
    destroy_after: Channel | None = None


class Naming:
    """Channel names and ids, numbered as Asterisk numbers them."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._seq: dict[str, int] = {}
        self._epoch = int(time.time())
        self._uid = 0

    def _next(self, tech: str) -> str:
        n = self._seq.get(tech, 0)
        self._seq[tech] = n + 1
        return f"{n:08x}"

    def local(self, exten: str, context: str) -> str:
        """The name shared by both halves, without the ``;1`` / ``;2`` suffix."""
        return f"Local/{exten}@{context}-{self._next('Local')}"

    def pjsip(self, endpoint: str) -> str:
        return f"PJSIP/{endpoint}-{self._next('PJSIP')}"

    def uniqueid(self) -> str:
        self._uid += 1
        return f"{self._epoch}.{self._uid}"

    def bridge_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
