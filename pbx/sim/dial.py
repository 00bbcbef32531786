"""The Dial application: ring one callee, bridge on answer, or give up with a DIALSTATUS.

``Dial(Local/<exten>@sim-agent)`` reaches the golden agent context (or an operator added under
that extension); ``Dial(PJSIP/<endpoint>,<timeout>)`` an operator's softphone added with
`AsteriskSim.add_operator` (an endpoint never added, or unregistered, is ``CHANUNAVAIL``; one
already on a call is ``BUSY``); ``Dial(PJSIP/<number>@<trunk>)`` a customer.

On answer both parties enter a basic bridge and Dial does not return: when either party hangs
up the other is hung up too (see `hangup`). With the ``g`` option (``Dial(PJSIP/1001,15,g)``)
the caller instead goes on at the next priority with DIALSTATUS ANSWER once the bridge ends
(the callee hung up, or was redirected or bridged elsewhere). Otherwise DIALSTATUS is set
(NOANSWER, BUSY, CONGESTION, CHANUNAVAIL) and the dialplan goes on at the next priority.

The callee's channel inherits the caller's ``_`` / ``__`` variables, as in Asterisk.
"""

from __future__ import annotations

import asyncio

from . import frames
from .channel import UP, Channel
from .hangup import hangup
from .legs import Leg, open_local, open_pjsip, ring, start_far_end
from .model import FarEnd
from .switch import GOLDEN_AGENT_CONTEXT, GOLDEN_CUSTOMER_CONTEXT, Switch


async def dial(sw: Switch, ch: Channel, data: str) -> None:
    target, timeout_text, flags, *_ = [*data.split(","), "", ""]
    try:
        timeout = float(timeout_text) if timeout_text.strip() else None
    except ValueError:
        timeout = None
    leg = _open(sw, ch, target.split("&")[0].strip())
    if leg is None:
        ch.variables["DIALSTATUS"] = "CHANUNAVAIL"
        return
    leg.chan.inherit_from(ch)
    if leg.far is not None:
        leg.far.inherit_from(ch)
    ch.variables["DIALSTATUS"] = await _attempt(
        sw, ch, leg, ring_timeout=timeout, go_on="g" in flags
    )


def _open(sw: Switch, ch: Channel, target: str) -> Leg | None:
    tech, _, resource = target.partition("/")
    if tech == "Local":
        exten, _, context = resource.split("/")[0].partition("@")
        if context == GOLDEN_AGENT_CONTEXT:
            plan = sw.agent_plan(exten)
        elif context == GOLDEN_CUSTOMER_CONTEXT:
            plan = sw.customer_plan(exten, golden=True)
        else:
            return None
        if plan.outcome == "fail":
            return None
        return open_local(sw, exten, context, plan, caller=ch)
    if tech != "PJSIP" or not resource:
        return None
    number, at, trunk = resource.partition("@")
    if at:
        plan = sw.customer_plan(number, golden=False)
        if plan.outcome == "fail":
            return None
        return open_pjsip(sw, trunk, plan, number=number, caller=ch)
    operator = sw.operator_plan(resource)
    if operator is None or operator.outcome == "fail":
        return None
    if sw.endpoint_in_use(resource):
        operator = FarEnd("busy")
    return open_pjsip(sw, resource, operator, caller=ch)


async def _attempt(
    sw: Switch, ch: Channel, leg: Leg, *, ring_timeout: float | None, go_on: bool
) -> str:
    callee, plan = leg.chan, leg.plan
    ch.dialing.append(callee)
    gone = asyncio.Event()
    callee.on_hangup.append(gone.set)
    rings = plan.outcome == "no_answer" or (
        plan.outcome == "answer" and (leg.far is None or plan.ring_s > 0)
    )
    if rings:
        ring(sw, leg)
    if plan.outcome == "no_answer" or (ring_timeout is not None and plan.ring_s > ring_timeout):
        if await _pause(sw, gone, ring_timeout):
            return _lost(ch, callee)
        return _drop(sw, ch, callee, "NOANSWER", 0)
    if plan.ring_s > 0 and await _pause(sw, gone, plan.ring_s):
        return _lost(ch, callee)
    if plan.outcome == "busy":
        return _drop(sw, ch, callee, "BUSY", 17)
    if plan.outcome == "congestion":
        return _drop(sw, ch, callee, "CONGESTION", 34)
    _answer(sw, ch, leg)
    # bridged: the call ends with a hangup, which cancels this task, or with g when the bridge
    # ends (`hangup.kick` settles `after_bridge`)
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if go_on:
        ch.after_bridge = ended
    await ended
    return "ANSWER"


async def _pause(sw: Switch, gone: asyncio.Event, seconds: float | None) -> bool:
    """Wait `seconds` of sim time (None: for ever); true if the callee went away first."""
    delay = None if seconds is None else max(0.0, seconds) / sw.clock.time_scale
    try:
        await asyncio.wait_for(gone.wait(), delay)
    except TimeoutError:
        return False
    return True


def _lost(ch: Channel, callee: Channel) -> str:
    if callee in ch.dialing:
        ch.dialing.remove(callee)
    return "CHANUNAVAIL"


def _drop(sw: Switch, ch: Channel, callee: Channel, status: str, cause: int) -> str:
    ch.dialing.remove(callee)
    sw.emit(frames.dial_end(ch, callee, status))
    hangup(sw, callee, cause, "direct")
    return status


def _answer(sw: Switch, ch: Channel, leg: Leg) -> None:
    callee = leg.chan
    ch.dialing.remove(callee)
    if leg.far is not None:
        # connect.ami: the far half answers first, each half's device reports
        leg.far.at(leg.steps.answer, "Answer")
        sw.set_state(leg.far, UP)
        sw.device_state(callee, "INUSE")
        sw.set_state(callee, UP)
        sw.device_state(callee, "INUSE")
        callee.exten = ""
        callee.app, callee.appdata = "AppDial", "(Outgoing Line)"
        sw.emit(frames.dial_end(ch, callee, "ANSWER"))
        bridge = sw.new_bridge()
    else:
        # connect-sip.ami
        sw.set_state(callee, UP)
        callee.exten = ""
        callee.app, callee.appdata = "AppDial", "(Outgoing Line)"
        sw.emit(frames.dial_end(ch, callee, "ANSWER"))
        bridge = sw.new_bridge()
        sw.device_state(callee, "INUSE")
    sw.enter(bridge, callee)
    sw.enter(bridge, ch)
    start_far_end(sw, leg)
