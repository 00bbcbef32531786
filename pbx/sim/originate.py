"""The Originate action: place a call, report the outcome, start the answered channel's dialplan.

``Local/<number>@sim-customer`` and ``PJSIP/<number>@<trunk>`` reach customers,
``Local/<exten>@sim-agent`` the golden agent, ``PJSIP/<endpoint>`` an operator's or supervisor's
softphone. Anything else fails with Reason 0. The OriginateResponse ``Reason`` is 4 answered,
5 busy, 3 no answer (the Originate's ``Timeout`` ran out), 8 congestion, 0 failure and 1 when the
channel was hung up before it answered. The event orders are the golden captures' (busy,
noanswer, congestion, answer, connect-sip).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from pbx.protocol import Frame

from . import dialplan, frames
from .channel import BUSY, UP, CallerId, Channel, parse_callerid
from .hangup import finish
from .legs import Leg, open_local, open_pjsip, ring, start_far_end
from .switch import GOLDEN_AGENT_CONTEXT, GOLDEN_CUSTOMER_CONTEXT, Switch

ANSWERED: Final = 4
OUTCOME_OF_REASON: Final[dict[int, str]] = {
    0: "fail",
    1: "cancelled",
    3: "no_answer",
    4: "answer",
    5: "busy",
    8: "congestion",
}


class OriginateError(ValueError):
    """The Originate action is malformed; the message is the one Asterisk answers with."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginateRequest:
    """An Originate action, parsed."""

    channel: str
    context: str = ""
    exten: str = ""
    priority: int = 1
    application: str = ""
    data: str = ""
    timeout_s: float = 30.0
    caller: CallerId | None = None
    variables: tuple[tuple[str, str], ...] = ()
    channel_id: str | None = None
    other_channel_id: str | None = None
    action_id: str | None = None
    is_async: bool = False

    @classmethod
    def from_frame(cls, frame: Frame) -> OriginateRequest:
        channel = frame.get("Channel") or ""
        if not channel:
            raise OriginateError("Channel not specified")
        if "/" not in channel:
            raise OriginateError("Invalid channel")
        application = frame.get("Application") or ""
        exten = frame.get("Exten") or ""
        if not application and not exten:
            raise OriginateError("Exten not specified")
        try:
            priority = int(frame.get("Priority") or "1")
        except ValueError:
            raise OriginateError("Invalid priority") from None
        try:
            timeout_s = int(frame.get("Timeout") or "30000") / 1000
        except ValueError:
            raise OriginateError("Invalid timeout") from None
        variables = []
        for header in frame.getall("Variable"):
            for item in header.split(","):
                key, sep, value = item.partition("=")
                if sep and key.strip():
                    variables.append((key.strip(), value))
        cid = frame.get("CallerID")
        return cls(
            channel=channel,
            context=frame.get("Context") or ("" if application else "default"),
            exten=exten,
            priority=priority,
            application=application,
            data=frame.get("Data") or "",
            timeout_s=timeout_s if timeout_s > 0 else 30.0,
            caller=parse_callerid(cid) if cid else None,
            variables=tuple(variables),
            channel_id=frame.get("ChannelId") or None,
            other_channel_id=frame.get("OtherChannelId") or None,
            action_id=frame.action_id,
            is_async=(frame.get("Async") or "").lower() in ("true", "yes", "1", "on"),
        )


class _Report:
    """Sends the one OriginateResponse of an Originate (when asked to) and counts the outcome."""

    def __init__(self, sw: Switch, req: OriginateRequest, send: bool) -> None:
        self.sw, self.req, self.send = sw, req, send
        self.reason: int | None = None

    def __call__(self, reason: int, chan: Channel | None = None) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        self.sw.outcomes[OUTCOME_OF_REASON[reason]] += 1
        if not self.send:
            return
        req = self.req
        if req.application:
            target = [("Application", req.application), ("Data", req.data)]
        else:
            target = [("Context", req.context), ("Exten", req.exten)]
        cid = req.caller or CallerId()
        self.sw.emit(
            frames.originate_response(
                action_id=req.action_id,
                success=reason == ANSWERED,
                channel=chan.name if chan is not None else req.channel,
                target=target,
                reason=reason,
                uniqueid=chan.uniqueid if chan is not None else (req.channel_id or "<null>"),
                caller_num=cid.num,
                caller_name=cid.name,
            )
        )


def _open(sw: Switch, req: OriginateRequest) -> Leg | None:
    tech, _, resource = req.channel.partition("/")
    if tech.lower() == "local":
        exten, _, context = resource.split("/")[0].partition("@")
        if context == GOLDEN_CUSTOMER_CONTEXT:
            plan = sw.customer_plan(exten, golden=True)
        elif context == GOLDEN_AGENT_CONTEXT:
            plan = sw.agent_plan(exten)
        else:
            return None
        if plan.outcome == "fail":
            return None
        return open_local(
            sw,
            exten,
            context,
            plan,
            cid=req.caller,
            uniqueid=req.channel_id,
            uniqueid2=req.other_channel_id,
        )
    if tech.upper() != "PJSIP" or not resource:
        return None
    number, at, endpoint = resource.partition("@")
    if at:
        plan = sw.customer_plan(number, golden=False)
    else:
        endpoint, number = number, ""
        plan = sw.softphone_plan(endpoint)
    if plan.outcome == "fail":
        return None
    return open_pjsip(
        sw, endpoint, plan, number=number or None, cid=req.caller, uniqueid=req.channel_id
    )


async def originate(sw: Switch, req: OriginateRequest, *, report: bool) -> int:
    """Place the call and return its Reason; with `report`, send the OriginateResponse event."""
    sw.originated += 1
    respond = _Report(sw, req, report)
    leg = _open(sw, req)
    if leg is None:
        respond(0)
        return 0
    chan, far, plan = leg.chan, leg.far, leg.plan
    for name, value in req.variables:
        chan.set_var(name, value)
    chan.task = asyncio.current_task()
    chan.on_hangup.append(lambda: respond(1))
    try:
        if plan.outcome in ("answer", "no_answer"):
            if far is not None:
                steps = leg.steps
                if plan.outcome == "answer":
                    far.at(steps.ringing, "Wait", f"{plan.ring_s:g}")
                else:
                    far.at(steps.unanswered, "Wait", "60")
            ring(sw, leg)
            if plan.outcome == "answer" and plan.ring_s <= req.timeout_s:
                await sw.clock.sleep(plan.ring_s)
                _answered(sw, leg, req, respond)
            else:
                await sw.clock.sleep(req.timeout_s)
                _unanswered(sw, leg, respond)
        elif plan.ring_s > req.timeout_s:
            await sw.clock.sleep(req.timeout_s)
            _unanswered(sw, leg, respond)
        else:
            if plan.ring_s > 0:
                await sw.clock.sleep(plan.ring_s)
            if plan.outcome == "busy":
                _busy(sw, leg, respond)
            else:
                _congestion(sw, leg, respond)
    except asyncio.CancelledError:
        # hung up (or the simulator closed) before an outcome: the hangup reported it
        if respond.reason is None:
            raise
    return respond.reason if respond.reason is not None else 1


def _answered(sw: Switch, leg: Leg, req: OriginateRequest, respond: _Report) -> None:
    chan, far = leg.chan, leg.far
    if far is not None:
        # answer.ami / connect.ami
        far.at(leg.steps.answer, "Answer")
        sw.set_state(far, UP)
        sw.set_state(chan, UP)
        sw.emit(frames.dial_end(None, chan, "ANSWER"))
        sw.device_state(chan, "INUSE")
        respond(ANSWERED, chan)
        sw.device_state(chan, "INUSE")
        start_far_end(sw, leg)
        _enter_dialplan(sw, chan, req)
    else:
        # connect-sip.ami: the dialplan's first event comes before the OriginateResponse
        sw.set_state(chan, UP)
        sw.emit(frames.dial_end(None, chan, "ANSWER"))
        chan.on_hangup.clear()
        if req.application or dialplan.exists(req.context, req.exten):
            _enter_dialplan(sw, chan, req)
            sw.device_state(chan, "INUSE")
            respond(ANSWERED, chan)
        else:
            # nowhere to go: answered all the same, then hung up by the dialplan
            sw.device_state(chan, "INUSE")
            respond(ANSWERED, chan)
            _enter_dialplan(sw, chan, req)
        if not chan.hanging:
            start_far_end(sw, leg)


def _enter_dialplan(sw: Switch, chan: Channel, req: OriginateRequest) -> None:
    chan.task = None
    if req.application:
        dialplan.run_application(sw, chan, req.application, req.data)
    else:
        dialplan.start(sw, chan, req.context, req.exten, req.priority)


def _unanswered(sw: Switch, leg: Leg, respond: _Report) -> None:
    chan, far = leg.chan, leg.far
    if far is None:
        respond(3)
        finish(sw, chan, 19)
        return
    # noanswer.ami: the Originate's timeout, no DialEnd
    chan.hanging = far.hanging = True
    sw.emit(frames.hangup_request(far, 19))
    respond(3)
    sw.emit(frames.soft_hangup_request(far, 16))
    finish(sw, far, 19)
    finish(sw, chan, 19)
    sw.device_state(chan, "NOT_INUSE")
    sw.device_state(chan, "NOT_INUSE")


def _busy(sw: Switch, leg: Leg, respond: _Report) -> None:
    chan, far = leg.chan, leg.far
    if far is None:
        sw.emit(frames.dial_end(None, chan, "BUSY"))
        respond(5)
        finish(sw, chan, 17)
        return
    # busy.ami
    chan.hanging = far.hanging = True
    far.at(leg.steps.busy, "Busy", "5")
    sw.set_state(far, BUSY)
    sw.emit(frames.dial_end(None, chan, "BUSY"))
    sw.emit(frames.hangup_request(far, 0))
    respond(5)
    finish(sw, chan, 0)
    sw.emit(frames.soft_hangup_request(far, 16))
    finish(sw, far, 17)
    for _ in range(3):
        sw.device_state(chan, "NOT_INUSE")


def _congestion(sw: Switch, leg: Leg, respond: _Report) -> None:
    chan, far = leg.chan, leg.far
    if far is None:
        sw.emit(frames.dial_end(None, chan, "CONGESTION"))
        respond(8)
        finish(sw, chan, 34)
        return
    # congestion.ami
    chan.hanging = far.hanging = True
    respond(8)
    far.at(leg.steps.congestion, "Congestion", "5")
    sw.set_state(far, BUSY)
    sw.emit(frames.dial_end(None, chan, "CONGESTION"))
    sw.emit(frames.hangup_request(far, 0))
    finish(sw, chan, 0)
    sw.device_state(chan, "NOT_INUSE")
    sw.device_state(chan, "NOT_INUSE")
    sw.emit(frames.soft_hangup_request(far, 16))
    finish(sw, far, 34)
    sw.device_state(chan, "NOT_INUSE")
