"""Hanging channels up as Asterisk does, with everything that goes down with them.

A hangup starts in one of three ways, which decides its first event:

- ``"soft"``: the channel's own dialplan ends (``Hangup()``, a Dial whose peer left) or an AMI
  ``Hangup`` asks for it: ``SoftHangupRequest`` (always Cause 16), then the rest;
- ``"remote"``: the far end of a SIP channel hung up: ``HangupRequest`` with the cause;
- ``"direct"``: Dial or Originate drops a leg it placed: no request event, just the hangup.

Then it spreads: to the other half of a Local channel, and out of a bridge to the channel on the
other side (a Dial bridge ends when either party leaves it). The orders below are the ones the
golden captures show: ``answer.ami`` (the far half of a Local pair hangs up), ``abandon.ami`` and
``coreshowchannels.ami`` (the near half), ``connect.ami`` (a Local agent in a bridge) and
``connect-sip.ami`` (a SIP operator in a bridge).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from . import frames
from .channel import Bridge, Channel
from .switch import Switch

How = Literal["soft", "remote", "direct"]


def hangup(sw: Switch, ch: Channel, cause: int = 16, how: How = "soft") -> None:
    """Hang `ch` up now, emitting every event; a channel already going is left alone."""
    if ch.hanging or ch.gone:
        return
    ch.hanging = True
    if how == "soft":
        sw.emit(frames.soft_hangup_request(ch, 16))
    elif how == "remote":
        sw.emit(frames.hangup_request(ch, cause))
    stop(sw, ch)
    peer = ch.peer if ch.peer is not None and not ch.peer.hanging else None
    if peer is None:
        bridge = sw.leave(ch)
        if bridge is not None:
            kick(sw, bridge, cause)
        finish(sw, ch, cause)
        return
    peer.hanging = True
    if ch.half == 2 and peer.bridge is None:
        # answer.ami: the far half ends its dialplan while the near half waits in its own
        sw.emit(frames.hangup_request(peer, cause))
        sw.emit(frames.soft_hangup_request(peer, 16))
        stop(sw, peer)
        bridge = sw.leave(ch)  # only a Bridge action puts a far half into a bridge
        if bridge is not None:
            kick(sw, bridge, cause)
        finish(sw, ch, cause)
        finish(sw, peer, cause)
    elif ch.half == 2:
        # connect.ami: the agent's far half hangs up; its near half leaves the bridge and goes,
        # then the bridge ends for the channel on the other side
        sw.emit(frames.hangup_request(peer, cause))
        stop(sw, peer)
        finish(sw, ch, cause)
        bridge = sw.leave(peer)
        finish(sw, peer, cause)
        _pair_idle(sw, ch)
        if bridge is not None:
            kick(sw, bridge, cause)
        return
    else:
        # abandon.ami / coreshowchannels.ami: the near half goes first, the far half follows
        bridge = sw.leave(ch)
        if bridge is not None:
            kick(sw, bridge, cause)
        sw.emit(frames.hangup_request(peer, cause))
        finish(sw, ch, cause)
        sw.emit(frames.soft_hangup_request(peer, 16))
        stop(sw, peer)
        bridge = sw.leave(peer)
        if bridge is not None:
            kick(sw, bridge, cause)
        finish(sw, peer, cause)
    _pair_idle(sw, ch)


def _pair_idle(sw: Switch, ch: Channel) -> None:
    # a Local device reports its state once per half
    sw.device_state(ch, "NOT_INUSE")
    sw.device_state(ch, "NOT_INUSE")


def stop(sw: Switch, ch: Channel) -> None:
    """Stop what runs on `ch` (its dialplan, the person behind it) and any Dial it is placing."""
    current = asyncio.current_task()
    for task in (ch.task, ch.far_end):
        if task is not None and task is not current:
            task.cancel()
    ch.task = ch.far_end = None
    ch.after_bridge = None
    abort_dial(sw, ch)
    hooks, ch.on_hangup = ch.on_hangup, []
    for hook in hooks:
        hook()


def interrupt(sw: Switch, ch: Channel) -> None:
    """A Redirect or a Bridge takes `ch` elsewhere: what its dialplan runs stops, with any Dial it
    is placing; the person behind it carries on."""
    if ch.task is not None:
        ch.task.cancel()
        ch.task = None
    ch.after_bridge = None
    abort_dial(sw, ch)


def abort_dial(sw: Switch, ch: Channel) -> None:
    """`ch` stops dialling (it hung up or was redirected): every leg still ringing is dropped."""
    callees, ch.dialing = ch.dialing, []
    for callee in callees:
        if not callee.hanging:
            sw.emit(frames.dial_end(ch, callee, "CANCEL"))
            hangup(sw, callee, 0, "direct")


def kick(sw: Switch, bridge: Bridge, cause: int = 16) -> None:
    """The bridge lost a party (hung up, redirected, taken by a Bridge action): it dissolves.
    Whoever is left leaves it and hangs up, as after a Dial, unless their Dial had the ``g``
    option: then their dialplan goes on after the Dial."""
    for other in list(bridge.channels):
        resume, other.after_bridge = other.after_bridge, None
        if resume is not None and not resume.done():
            sw.leave(other, staying=True)
            resume.set_result(None)
        else:
            sw.leave(other)
            hangup(sw, other, cause, "soft")


def finish(sw: Switch, ch: Channel, cause: int) -> None:
    """The final ``Hangup`` event; the channel is forgotten. A SIP device reports idle here, a
    Local pair's device once both halves are gone."""
    ch.hanging = True
    stop(sw, ch)
    sw.emit(frames.hangup(ch, cause))
    sw.forget(ch)
    sw.bridge_gone(ch)
    if not ch.is_local:
        sw.device_state(ch, "NOT_INUSE")
