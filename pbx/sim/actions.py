"""The AMI actions the simulator answers, with Asterisk 22's responses.

Each handler answers on the session that asked, before any event the action causes, as Asterisk
does (a Redirect's response comes before the redirected channel's first event). List actions
(CoreShowChannels, Hangup by ``/regex/``) send their list items to that session only.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from pbx.protocol import Frame

from . import dialplan, frames
from .channel import UP, Channel
from .hangup import hangup, interrupt, kick
from .originate import OriginateError, OriginateRequest, originate
from .switch import Switch


class Session(Protocol):
    """What an action handler may use of the AMI session that received the action."""

    switch: Switch

    def send(self, frame: Frame) -> None: ...

    def set_events(self, mask: str) -> bool: ...


Handler = Callable[[Session, Frame], Awaitable[None]]


def _ok(session: Session, frame: Frame, message: str | None = None) -> None:
    extra = [("Message", message)] if message is not None else []
    session.send(frames.response("Success", frame.action_id, extra))


def _error(session: Session, frame: Frame, message: str) -> None:
    session.send(frames.response("Error", frame.action_id, [("Message", message)]))


def _channel(session: Session, frame: Frame, header: str = "Channel") -> Channel | None:
    """The live channel a header names; answers the error itself and returns None if none."""
    name = frame.get(header) or ""
    if not name:
        _error(session, frame, f"{header} not specified")
        return None
    ch = session.switch.find(name)
    if ch is None or ch.hanging:
        _error(session, frame, "No such channel")
        return None
    return ch


async def ping(session: Session, frame: Frame) -> None:
    session.send(
        frames.response(
            "Success", frame.action_id, [("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")]
        )
    )


async def events(session: Session, frame: Frame) -> None:
    on = session.set_events(frame.get("EventMask") or "on")
    session.send(frames.response("Success", frame.action_id, [("Events", "On" if on else "Off")]))


async def originate_action(session: Session, frame: Frame) -> None:
    sw = session.switch
    try:
        req = OriginateRequest.from_frame(frame)
    except OriginateError as exc:
        _error(session, frame, str(exc))
        return
    if req.is_async:
        _ok(session, frame, "Originate successfully queued")
        sw.spawn(originate(sw, req, report=True), name=f"originate {req.channel}")
        return
    # a synchronous Originate holds this session until the outcome, as in Asterisk; the call
    # itself runs as the switch's task so a hangup can interrupt it without touching the session
    task = sw.spawn(originate(sw, req, report=False), name=f"originate {req.channel}")
    await asyncio.wait({task})
    answered = not task.cancelled() and task.exception() is None and task.result() == 4
    if answered:
        _ok(session, frame, "Originate successfully queued")
    else:
        _error(session, frame, "Originate failed")


def _target(frame: Frame, prefix: str = "") -> tuple[str, str, int] | None:
    try:
        priority = int(frame.get(f"{prefix}Priority") or "1")
    except ValueError:
        return None
    return frame.get(f"{prefix}Context") or "", frame.get(f"{prefix}Exten") or "", priority


async def redirect(session: Session, frame: Frame) -> None:
    ch = _channel(session, frame)
    if ch is None:
        return
    target = _target(frame)
    if target is None:
        _error(session, frame, "Invalid priority")
        return
    moves = [(ch, *target)]
    if frame.get("ExtraChannel"):
        extra = _channel(session, frame, "ExtraChannel")
        if extra is None:
            return
        extra_target = _target(frame, "Extra")
        if extra_target is None:
            _error(session, frame, "Invalid priority")
            return
        moves.append((extra, *extra_target))
    if any(c.state != UP for c, *_ in moves):
        # the simulator does not move a channel that is still being dialled
        _error(session, frame, "Redirect failed")
        return
    _ok(session, frame, "Dual Redirect successful" if len(moves) > 1 else "Redirect successful")
    dialplan.redirect(session.switch, moves)


async def hangup_action(session: Session, frame: Frame) -> None:
    sw = session.switch
    name = frame.get("Channel") or ""
    try:
        cause = int(frame.get("Cause") or "0")
    except ValueError:
        cause = 0
    if len(name) > 2 and name.startswith("/") and name.endswith("/"):
        try:
            pattern = re.compile(name[1:-1])
        except re.error:
            _error(session, frame, "Invalid regex")
            return
        matched = [c for c in sw.channels.values() if pattern.search(c.name) and not c.hanging]
        _list_start(session, frame, "Channels hung up will follow")
        for match in matched:
            session.send(
                frames.event(
                    "ChannelHungup",
                    None,
                    [("Channel", match.name), *frames.action_id_field(frame.action_id)],
                )
            )
        session.send(
            frames.list_complete("ChannelsHungupListComplete", frame.action_id, len(matched))
        )
        for match in matched:
            hangup(sw, match, cause, "soft")
        return
    ch = _channel(session, frame)
    if ch is None:
        return
    _ok(session, frame, "Channel Hungup")
    hangup(sw, ch, cause, "soft")


def _list_start(session: Session, frame: Frame, message: str) -> None:
    session.send(
        frames.response("Success", frame.action_id, [("EventList", "start"), ("Message", message)])
    )


async def core_show_channels(session: Session, frame: Frame) -> None:
    sw = session.switch
    _list_start(session, frame, "Channels will follow")
    live = [c for c in sw.channels.values() if not c.hanging]
    now = sw.clock.now()
    for ch in live:
        session.send(frames.core_show_channel(ch, frame.action_id, now - ch.created))
    session.send(frames.list_complete("CoreShowChannelsComplete", frame.action_id, len(live)))


async def device_state_list(session: Session, frame: Frame) -> None:
    """Each operator's softphone, as ``DeviceStateList`` reports PJSIP devices: UNAVAILABLE
    when not registered, INUSE on a call, NOT_INUSE otherwise."""
    sw = session.switch
    _list_start(session, frame, "Device State Changes will follow")
    names = [c.name for c in sw.channels.values() if not c.hanging]
    for endpoint, script in sw.operators.items():
        device = f"PJSIP/{endpoint}"
        if not script.registered:
            state = "UNAVAILABLE"
        elif any(n.startswith(device + "-") for n in names):
            state = "INUSE"
        else:
            state = "NOT_INUSE"
        item = frames.device_state(device, state)
        session.send(
            Frame((item.fields[0], *frames.action_id_field(frame.action_id), *item.fields[2:]))
        )
    complete = frames.list_complete("DeviceStateListComplete", frame.action_id, len(sw.operators))
    session.send(complete)


async def mixmonitor(session: Session, frame: Frame) -> None:
    ch = _channel(session, frame)
    if ch is None:
        return
    ch.mixmonitor = True
    # Asterisk's reply to MixMonitor carries no Message header
    session.send(frames.response("Success", frame.action_id))
    session.switch.emit(frames.mixmonitor_start(ch))


async def stop_mixmonitor(session: Session, frame: Frame) -> None:
    ch = _channel(session, frame)
    if ch is None:
        return
    if not ch.mixmonitor:
        _error(session, frame, "Could not stop MixMonitor")
        return
    ch.mixmonitor = False
    session.send(frames.response("Success", frame.action_id))
    session.switch.emit(frames.mixmonitor_stop(ch))


async def bridge(session: Session, frame: Frame) -> None:
    """Bridge two live channels; when either hangs up the other is hung up too. A channel taken
    from another bridge dissolves it: the party left there hangs up, or goes on with its
    dialplan when it dialled with ``g`` (an operator whose consultation ends this way)."""
    sw = session.switch
    one = _channel(session, frame, "Channel1")
    if one is None:
        return
    two = _channel(session, frame, "Channel2")
    if two is None:
        return
    if one is two:
        _error(session, frame, "Unable to bridge a channel to itself")
        return
    _ok(session, frame, "Channels have been bridged")
    for ch in (one, two):
        interrupt(sw, ch)
        left = sw.leave(ch, staying=True)
        if (
            left is not None
            and left.channels
            and not {id(c) for c in left.channels} & {id(one), id(two)}
        ):
            kick(sw, left)
    new = sw.new_bridge()
    sw.enter(new, one)
    sw.enter(new, two)


async def setvar(session: Session, frame: Frame) -> None:
    variable = frame.get("Variable") or ""
    if not variable:
        _error(session, frame, "No variable specified")
        return
    if frame.get("Channel"):
        ch = _channel(session, frame)
        if ch is None:
            return
        ch.set_var(variable, frame.get("Value") or "")
    _ok(session, frame, "Variable Set")


async def getvar(session: Session, frame: Frame) -> None:
    variable = frame.get("Variable") or ""
    if not variable:
        _error(session, frame, "No variable specified")
        return
    value = ""
    if frame.get("Channel"):
        target = _channel(session, frame)
        if target is None:
            return
        value = dialplan.substitute(f"${{{variable}}}", target)
    session.send(
        frames.response("Success", frame.action_id, [("Variable", variable), ("Value", value)])
    )


HANDLERS: Final[dict[str, Handler]] = {
    "ping": ping,
    "events": events,
    "originate": originate_action,
    "redirect": redirect,
    "hangup": hangup_action,
    "coreshowchannels": core_show_channels,
    "devicestatelist": device_state_list,
    "mixmonitor": mixmonitor,
    "stopmixmonitor": stop_mixmonitor,
    "bridge": bridge,
    "setvar": setvar,
    "getvar": getvar,
}


async def dispatch(session: Session, frame: Frame) -> None:
    """Answer one action from a logged-in session."""
    handler = HANDLERS.get(frame.name.lower())
    if handler is None:
        _error(session, frame, "Invalid/unknown command")
        return
    await handler(session, frame)
