"""The dialplan applications the simulated contexts use.

Synchronous applications (UserEvent, Goto, GotoIf, Set, NoOp, Hangup...) run at once, in the
caller's turn, so their events follow whatever triggered them without a gap; blocking ones (Wait,
Dial, AMD, Playback, SayNumber, Read, MusicOnHold, ChanSpy) run in the channel's task. Each
returns where the channel goes next: None for the next priority, a `Jump`, or `STOP` to hang up.

What a channel hears (Playback, SayNumber, a Read prompt, MusicOnHold) is noted in its `heard`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from . import frames
from .channel import UP, Channel
from .dial import dial
from .expr import truthy
from .switch import Switch


@dataclass(frozen=True, slots=True)
class Jump:
    """Continue at another place; None keeps the channel's current context / extension. The
    priority is a number or a label (``n(loop)`` in extensions.conf)."""

    context: str | None
    exten: str | None
    priority: int | str


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


STOP: Final = _Stop()

Result = Jump | _Stop | None
SyncApp = Callable[[Switch, Channel, str], Result]
BlockingApp = Callable[[Switch, Channel, str], Awaitable[Result]]

PLAYBACK_S: Final = 1.0
"""How long the simulator's sound files play (the abandon message, say)."""
KEYPRESS_S: Final = 1.0
"""How long after a prompt ends a person who means to press a key presses it."""
READ_TIMEOUT_S: Final = 10.0
"""How long Read waits for a key when its own timeout is not given."""


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
        ch.set_var(key.strip(), value)
    return None


def _goto(sw: Switch, ch: Channel, data: str) -> Result:
    return _target(data)


def _goto_if(sw: Switch, ch: Channel, data: str) -> Result:
    """``GotoIf(condition?where[:where_else])``; no place for the outcome: the next priority."""
    condition, _, places = data.partition("?")
    yes, _, no = places.partition(":")
    place = yes if truthy(condition) else no
    return _target(place) if place.strip() else None


def _target(data: str) -> Result:
    """``priority``, ``exten,priority`` or ``context,exten,priority``; a priority may be a label."""
    parts = [p.strip() for p in data.split(",")]
    if len(parts) > 3 or not parts[-1]:
        return STOP
    priority: int | str = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
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
    ch.heard.append(("Playback", data))
    await _play(sw, data.split(",")[0])
    return None


async def _play(sw: Switch, files: str) -> None:
    await sw.clock.sleep(PLAYBACK_S * max(1, len([f for f in files.split("&") if f])))


async def _say_number(sw: Switch, ch: Channel, data: str) -> Result:
    ch.heard.append(("SayNumber", data))
    await sw.clock.sleep(PLAYBACK_S)
    return None


async def _read(sw: Switch, ch: Channel, data: str) -> Result:
    """``Read(variable,prompt,maxdigits,options,attempts,timeout)``: the prompt plays, then the
    person behind the channel keys in their `FarEnd.keypress`, or nothing until the timeout."""
    variable, prompt, maxdigits, _, _, timeout, *_ = [*data.split(","), "", "", "", "", ""]
    ch.heard.append(("Read", prompt))
    await _play(sw, prompt)
    keys = ch.plan.keypress if ch.plan is not None else ""
    limit = int(maxdigits) if maxdigits.strip().isdigit() else 0
    if limit > 0:
        keys = keys[:limit]
    if keys:
        await sw.clock.sleep(KEYPRESS_S)
        status = "OK"
    else:
        await sw.clock.sleep(_seconds(timeout) or READ_TIMEOUT_S)
        status = "TIMEOUT"
    ch.set_var(variable.strip(), keys)
    ch.variables["READSTATUS"] = status
    return None


async def _music_on_hold(sw: Switch, ch: Channel, data: str) -> Result:
    """``MusicOnHold(class,duration)``: for `duration` seconds, or until hung up without one."""
    ch.heard.append(("MusicOnHold", data))
    seconds = _seconds(data.partition(",")[2])
    if seconds <= 0:
        await _forever()
    await sw.clock.sleep(seconds)
    return None


def _seconds(text: str) -> float:
    """An application's duration argument; 0 when empty or not a number."""
    try:
        return max(0.0, float(text)) if text.strip() else 0.0
    except ValueError:
        return 0.0


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
    "GotoIf": _goto_if,
    "Hangup": _hangup,
}

BLOCKING_APPS: Final[dict[str, BlockingApp]] = {
    "Wait": _wait,
    "Playback": _playback,
    "SayNumber": _say_number,
    "Read": _read,
    "AMD": _amd,
    "Dial": _dial,
    "ChanSpy": _chanspy,
    "MusicOnHold": _music_on_hold,
    "Echo": _forever_app,
}


def blocking_app(name: str) -> BlockingApp:
    """The application `name`; an application the simulator does not model holds the channel
    until it is hung up (as Echo or MusicOnHold would)."""
    return BLOCKING_APPS.get(name, _forever_app)
