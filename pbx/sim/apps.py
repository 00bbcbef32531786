"""The dialplan applications the simulated contexts use.

Synchronous applications (UserEvent, Goto, Set, NoOp, Hangup...) run at once, in the caller's
turn, so their events follow whatever triggered them without a gap; blocking ones (Wait, Dial,
AMD, Playback, ChanSpy) run in the channel's task. Each returns where the channel goes next:
None for the next priority, a `Jump`, or `STOP` to hang up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from . import frames
from .channel import UP, Channel
from .dial import dial
from .switch import Switch


@dataclass(frozen=True, slots=True)
class Jump:
    """Continue at another place; None keeps the channel's current context / extension."""

    context: str | None
    exten: str | None
    priority: int


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


STOP: Final = _Stop()

Result = Jump | _Stop | None
SyncApp = Callable[[Switch, Channel, str], Result]
BlockingApp = Callable[[Switch, Channel, str], Awaitable[Result]]

PLAYBACK_S: Final = 1.0
"""How long the simulator's sound files play (the abandon message, say)."""


def _noop(sw: Switch, ch: Channel, data: str) -> Result:
    return None


def _answer(sw: Switch, ch: Channel, data: str) -> Result:
    if ch.state != UP:
        sw.set_state(ch, UP)
    return None


def _user_event(sw: Switch, ch: Channel, data: str) -> Result:
    name, *items = data.split(",")
    headers = []
    for item in items:
        key, sep, value = item.partition(":")
        if sep:
            headers.append((key.strip(), value.strip()))
    sw.emit(frames.user_event(ch, name.strip(), headers))
    return None


def _set(sw: Switch, ch: Channel, data: str) -> Result:
    key, sep, value = data.partition("=")
    if sep:
        ch.variables[key.strip()] = value
    return None


def _goto(sw: Switch, ch: Channel, data: str) -> Result:
    parts = [p.strip() for p in data.split(",")]
    try:
        priority = int(parts[-1])
    except ValueError:
        return STOP
    if len(parts) == 1:
        return Jump(None, None, priority)
    if len(parts) == 2:
        return Jump(None, parts[0], priority)
    return Jump(parts[0], parts[1], priority)


def _hangup(sw: Switch, ch: Channel, data: str) -> Result:
    return STOP


async def _wait(sw: Switch, ch: Channel, data: str) -> Result:
    try:
        seconds = float(data or "0")
    except ValueError:
        seconds = 0.0
    await sw.clock.sleep(seconds)
    return None


async def _playback(sw: Switch, ch: Channel, data: str) -> Result:
    files = [f for f in data.split(",")[0].split("&") if f]
    await sw.clock.sleep(PLAYBACK_S * max(1, len(files)))
    return None


async def _amd(sw: Switch, ch: Channel, data: str) -> Result:
    await sw.clock.sleep(sw.model.amd_s)
    status = ch.plan.amd if ch.plan is not None else "HUMAN"
    ch.variables["AMDSTATUS"] = status
    ch.variables["AMDCAUSE"] = {"HUMAN": "HUMAN-1-1", "MACHINE": "LONGGREETING-1500-1500"}.get(
        status, "TOOLONG-5000"
    )
    return None


async def _dial(sw: Switch, ch: Channel, data: str) -> Result:
    await dial(sw, ch, data)
    return None


async def _chanspy(sw: Switch, ch: Channel, data: str) -> Result:
    """Listen to the first channel whose name starts with the target; stay until hung up."""
    target = data.split(",")[0]
    spyee = next(
        (c for c in sw.channels.values() if c is not ch and target and c.name.startswith(target)),
        None,
    )
    if spyee is not None:
        sw.emit(frames.chanspy_start(ch, spyee))
        done = False

        def stopped() -> None:
            nonlocal done
            if not done:
                done = True
                sw.emit(frames.chanspy_stop(ch, spyee))

        spyee.on_hangup.append(stopped)
        ch.on_hangup.append(stopped)
    await _forever()
    return None


async def _forever_app(sw: Switch, ch: Channel, data: str) -> Result:
    await _forever()
    return None


async def _forever() -> None:
    await asyncio.get_running_loop().create_future()


SYNC_APPS: Final[dict[str, SyncApp]] = {
    "NoOp": _noop,
    "Answer": _answer,
    "Ringing": _noop,
    "UserEvent": _user_event,
    "Set": _set,
    "Goto": _goto,
    "Hangup": _hangup,
}

BLOCKING_APPS: Final[dict[str, BlockingApp]] = {
    "Wait": _wait,
    "Playback": _playback,
    "AMD": _amd,
    "Dial": _dial,
    "ChanSpy": _chanspy,
    "MusicOnHold": _forever_app,
    "Echo": _forever_app,
}


def blocking_app(name: str) -> BlockingApp:
    """The application `name`; an application the simulator does not model holds the channel
    until it is hung up (as Echo or MusicOnHold would)."""
    return BLOCKING_APPS.get(name, _forever_app)
