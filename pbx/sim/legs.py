"""Outgoing legs: the channels Originate and Dial create, and the people behind them.

`open_local` / `open_pjsip` create the channel(s) of one leg and emit what Asterisk emits up to
``DialBegin``; `ring` the ringing events; `far_end` is the simulated person once answered: hangs
up after their talk time, or while still waiting for an operator when their patience runs out.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import frames
from .channel import RINGING, CallerId, Channel
from .hangup import hangup
from .model import FarEnd
from .switch import ENDPOINT_CONTEXT, GOLDEN_CUSTOMER_CONTEXT, TRUNK_CONTEXT, Switch

ANSWER_SETTLE_S = 0.5
"""Answer() on a Local channel waits up to 500 ms for media before its next priority runs."""


@dataclass(frozen=True, slots=True)
class FarSteps:
    """Where the far half of a Local channel is in its context at each stage (priorities)."""

    ringing: int
    unanswered: int
    answer: int
    wait: int
    hangup: int
    busy: int
    congestion: int


CUSTOMER_STEPS = FarSteps(
    ringing=6, unanswered=12, answer=7, wait=8, hangup=9, busy=10, congestion=13
)
"""``sim-customer``: 5 Ringing(), 6 Wait(2), 7 Answer(), 8 Wait(20), 9 Hangup(), 10 Busy(5),
11 Ringing(), 12 Wait(60), 13 Congestion(5)."""
AGENT_STEPS = FarSteps(ringing=1, unanswered=1, answer=1, wait=2, hangup=3, busy=1, congestion=1)
"""``sim-agent``: 1 Answer(), 2 Wait(15), 3 Hangup()."""


@dataclass(eq=False, slots=True)
class Leg:
    """One outgoing call attempt: the channel Asterisk dials (a Local ``;1`` or a PJSIP channel),
    the far half of a Local channel, who dials it (None for Originate) and what the far end does."""

    chan: Channel
    far: Channel | None
    plan: FarEnd
    caller: Channel | None
    steps: FarSteps = AGENT_STEPS


def open_local(
    sw: Switch,
    exten: str,
    context: str,
    plan: FarEnd,
    *,
    caller: Channel | None = None,
    cid: CallerId | None = None,
    uniqueid: str | None = None,
    uniqueid2: str | None = None,
) -> Leg:
    """``Local/<exten>@<context>``: both halves, caller ids, LocalBridge, DialBegin."""
    one, two = sw.new_local(
        exten,
        context,
        uniqueid=uniqueid,
        uniqueid2=uniqueid2,
        linkedid=caller.linkedid if caller else None,
    )
    one.plan = two.plan = plan
    sw.emit(frames.newchannel(one))
    sw.emit(frames.newchannel(two))
    if caller is not None:
        one.caller, one.connected = CallerId(exten, caller.caller.name), caller.caller
        _caller_ids(sw, one)
        two.caller, two.connected = caller.caller, CallerId(exten, caller.caller.name)
        _caller_ids(sw, two)
    elif cid is not None:
        one.caller = cid
        sw.emit(frames.newcallerid(one))
        one.connected = cid
        sw.emit(frames.newconnectedline(one))
        two.caller = two.connected = cid
        _caller_ids(sw, two)
    sw.emit(frames.local_bridge(one, two))
    sw.emit(frames.dial_begin(caller, one, f"{exten}@{context}"))
    steps = CUSTOMER_STEPS if context == GOLDEN_CUSTOMER_CONTEXT else AGENT_STEPS
    return Leg(one, two, plan, caller, steps)


def _caller_ids(sw: Switch, ch: Channel) -> None:
    sw.emit(frames.newcallerid(ch))
    sw.emit(frames.newconnectedline(ch))


def open_pjsip(
    sw: Switch,
    endpoint: str,
    plan: FarEnd,
    *,
    number: str | None = None,
    caller: Channel | None = None,
    cid: CallerId | None = None,
    uniqueid: str | None = None,
) -> Leg:
    """``PJSIP/<number>@<trunk>`` (a customer) or ``PJSIP/<endpoint>`` (an operator's phone)."""
    ch = sw.new_pjsip(
        endpoint,
        context=TRUNK_CONTEXT if number is not None else ENDPOINT_CONTEXT,
        uniqueid=uniqueid,
        linkedid=caller.linkedid if caller else None,
    )
    ch.plan = plan
    sw.emit(frames.newchannel(ch))
    dialstring = f"{number}@{endpoint}" if number is not None else endpoint
    if caller is not None:
        ch.exten = number or endpoint
        ch.caller, ch.connected = CallerId(ch.exten, caller.caller.name), caller.caller
        sw.emit(frames.newcallerid(ch))
        sw.emit(frames.newconnectedline(ch))
        sw.emit(frames.dial_begin(caller, ch, dialstring))
        caller.connected = ch.caller
        sw.emit(frames.newconnectedline(caller))
    else:
        if cid is not None:
            ch.caller = cid
            sw.emit(frames.newcallerid(ch))
            ch.connected = cid
            sw.emit(frames.newconnectedline(ch))
        sw.emit(frames.dial_begin(None, ch, dialstring))
    return Leg(ch, None, plan, caller)


def ring(sw: Switch, leg: Leg) -> None:
    """The far end rings: the dialled channel goes Ringing, DialState, the device reports."""
    sw.set_state(leg.chan, RINGING)
    sw.emit(frames.dial_state(leg.caller, leg.chan, "RINGING"))
    sw.device_state(leg.chan, "INUSE" if leg.far is not None else "RINGING")


def start_far_end(sw: Switch, leg: Leg) -> None:
    """Once answered, let the person behind the leg act (talk, patience) on their own."""
    if leg.far is not None:
        leg.far.at(leg.steps.answer, "Answer")
        leg.far.task = sw.spawn(far_end(sw, leg), name=f"far end of {leg.chan.name}")
    elif leg.plan.talk_s is not None or leg.plan.patience_s is not None:
        leg.chan.far_end = sw.spawn(far_end(sw, leg), name=f"far end of {leg.chan.name}")


async def far_end(sw: Switch, leg: Leg) -> None:
    plan, far, steps = leg.plan, leg.far, leg.steps
    if far is not None:
        await sw.clock.sleep(ANSWER_SETTLE_S)
        far.at(steps.wait, "Wait", _seconds(plan.talk_s))
    start = sw.clock.now()
    deadlines = [(plan.talk_s, False), (plan.patience_s, True)]
    for offset, only_while_waiting in sorted((d, w) for d, w in deadlines if d is not None):
        await sw.clock.sleep_until(start + offset)
        if only_while_waiting and leg.chan.bridge is not None:
            continue  # talking to an operator by now: patience no longer matters
        if far is not None:
            far.at(steps.hangup, "Hangup")
            hangup(sw, far, 16, "soft")
        else:
            hangup(sw, leg.chan, 16, "remote")
        return


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:g}"
