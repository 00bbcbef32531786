"""Calls from the trunk: a customer dials a shop's number.

The channel is created as chan_pjsip creates an incoming one: ``PJSIP/trunk-<seq>``, state Ring,
the caller's number as CallerIDNum, the dialled number as the extension of ``CONTEXT_INBOUND``
(the trunk endpoint's context), priority 1; ``Newchannel``, the trunk device in use, then the
dialplan runs (its ``Answer`` gives ``Newstate`` Up). Like the rest of the simulator it emits no
``Newexten`` / ``VarSet``: obzvon's AMI user does not read the ``dialplan`` class.

The caller hangs up (``HangupRequest`` and ``Hangup``, cause 16) once their patience runs out
unless someone is talking to them by then; once bridged to someone, after their talk time.
"""

from __future__ import annotations

import asyncio
import math

from pbx.dialplan import CONTEXT_INBOUND

from . import dialplan, frames
from .channel import RING, CallerId, Channel
from .hangup import hangup
from .model import FarEnd
from .switch import Switch

TRUNK: str = "trunk"
"""The endpoint incoming calls arrive on (``asterisk-conf/pjsip.conf``)."""


def call_in(
    sw: Switch,
    caller: str,
    number: str,
    *,
    patience_s: float | None,
    talk_s: float | None,
    keypress: str,
) -> Channel:
    """Start one incoming call now and return its channel (already in the dialplan)."""
    for value, what in ((patience_s, "patience_s"), (talk_s, "talk_s")):
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{what} must be a finite number >= 0, not {value!r}")
    if not caller or not number:
        raise ValueError("an incoming call needs the caller's number and the number dialled")
    ch = sw.new_pjsip(TRUNK, context=CONTEXT_INBOUND, uniqueid=None, linkedid=None)
    ch.plan = FarEnd("answer", talk_s=talk_s, patience_s=patience_s, keypress=keypress)
    ch.state = RING
    ch.exten = number
    ch.caller = CallerId(caller)
    sw.calls_in += 1
    sw.emit(frames.newchannel(ch))
    sw.device_state(ch, "INUSE")
    if patience_s is not None or talk_s is not None:
        ch.far_end = sw.spawn(_caller(sw, ch, ch.plan), name=f"caller on {ch.name}")
    dialplan.start(sw, ch, CONTEXT_INBOUND, number)
    return ch


async def _caller(sw: Switch, ch: Channel, plan: FarEnd) -> None:
    bridged = asyncio.Event()
    ch.on_enter.append(bridged.set)
    if plan.patience_s is not None:
        try:
            await asyncio.wait_for(bridged.wait(), plan.patience_s / sw.clock.time_scale)
        except TimeoutError:
            hangup(sw, ch, 16, "remote")
            return
    else:
        await bridged.wait()
    if plan.talk_s is not None:
        await sw.clock.sleep(plan.talk_s)
        hangup(sw, ch, 16, "remote")
