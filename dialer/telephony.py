"""The seam between `pbx/` and the engine: AMI events in, engine events out, and back.

`AmiTranslator` is pure: it turns typed AMI events into engine events for the calls obzvon
placed (found by ChannelId through `pbx.channels.ChannelTracker`) and the operators it knows (by
SIP endpoint). `ami_action()` turns an engine command into the AMI action that carries it out,
using the dialplan names of `pbx.dialplan`. The daemon does the I/O on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dialer.engine import commands as cmd
from dialer.engine import events as ev
from pbx import commands as ami
from pbx import dialplan
from pbx.channels import ChannelTracker
from pbx.events import (
    AmiEvent,
    DeviceStateChange,
    DialEnd,
    Hangup,
    LinkRestored,
    UserEvent,
)

# Device states in which a SIP endpoint cannot take a call (not registered, or unknown).
UNREACHABLE_DEVICE_STATES = frozenset({"UNAVAILABLE", "INVALID", "UNKNOWN"})


def endpoint_of(channel: str) -> str:
    """``PJSIP/1001-0000000a`` → ``PJSIP/1001`` (the device a channel belongs to)."""
    base, sep, suffix = channel.rpartition("-")
    return base if sep and suffix and all(c in "0123456789abcdef" for c in suffix) else channel


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A caller reached a shop's number (the dialplan's inbound UserEvent): the daemon must
    identify them before the engine hears of it. `call_id` is the channel's Uniqueid."""

    call_id: str
    caller: str
    number: str
    now: float


@dataclass
class AmiTranslator:
    """Typed AMI events → engine events. `operators` maps an endpoint (``PJSIP/1001``) to its
    operator id. Callers reaching a shop's number are not engine events yet: they collect in
    `incoming` for the daemon to identify (`take_incoming`)."""

    tracker: ChannelTracker
    operators: Mapping[str, str]
    connecting: dict[str, str] = field(default_factory=dict)  # call id → operator being rung
    _registered: dict[str, bool] = field(default_factory=dict)
    incoming: list[IncomingCall] = field(default_factory=list)

    def operator_channel(self, call_id: str, operator_id: str) -> str | None:
        """The live channel of `operator_id`'s phone in the call, if any."""
        for channel in sorted(self.tracker.channels_of(call_id)):
            if self.operators.get(endpoint_of(channel)) == operator_id:
                return channel
        return None

    def take_incoming(self) -> list[IncomingCall]:
        """The callers announced since the last call, oldest first."""
        taken, self.incoming = self.incoming, []
        return taken

    def translate(self, event: AmiEvent, now: float) -> list[ev.Event]:
        if isinstance(event, LinkRestored):
            report = self.tracker.resync(event.channels)
            return [ev.CustomerHungUp(call_id=c, cause=None, now=now) for c in sorted(report.lost)]
        if isinstance(event, DeviceStateChange):
            return self._device(event, now)
        call = self.tracker.on_event(event)
        if isinstance(event, UserEvent):
            return self._user_event(event, now)
        if call is None:
            return []
        if isinstance(event, DialEnd) and event.dial_status == "ANSWER":
            op = self.operators.get(endpoint_of(event.dest_channel))
            if op is not None and event.dest_uniqueid != call:
                self.connecting.pop(call, None)
                return [ev.OperatorAnswered(call_id=call, operator_id=op, now=now)]
        if isinstance(event, Hangup):
            # The call is forgotten with its last channel: an operator's leg left behind by the
            # customer's hang-up (an attended transfer's) can still be found and hung up.
            if not self.tracker.channels_of(call):
                self.tracker.forget(call)
            if event.uniqueid == call:
                self.connecting.pop(call, None)
                return [ev.CustomerHungUp(call_id=call, cause=event.cause, now=now)]
            op = self.operators.get(endpoint_of(event.channel))
            if op is not None:
                return [ev.OperatorHungUp(call_id=call, operator_id=op, now=now)]
        return []

    def _user_event(self, event: UserEvent, now: float) -> list[ev.Event]:
        headers = event.headers
        call = headers.get("Call", "")
        if event.user_event == dialplan.USEREVENT_INBOUND and call:
            if call not in self.tracker.tracked():
                self.tracker.track(call, event.channel if event.uniqueid == call else None)
                caller, number = headers.get("Caller", ""), headers.get("Number", "")
                self.incoming.append(IncomingCall(call, caller, number, now))
            return []
        if not call or call not in self.tracker.tracked():
            return []
        if event.user_event == dialplan.USEREVENT_CONSULT_ENDED:
            status = headers.get("DialStatus", "").strip().upper()
            return [ev.ConsultEnded(call_id=call, dial_status=status, now=now)]
        if event.user_event == dialplan.USEREVENT_CALLBACK:
            accepted = headers.get("Accepted", "").strip().lower() == "yes"
            return [ev.CallbackChoice(call_id=call, accepted=accepted, now=now)]
        if event.user_event == dialplan.USEREVENT_ANSWERED:
            return [ev.CustomerAnswered(call_id=call, now=now)]
        if event.user_event == dialplan.USEREVENT_AMD:
            status = headers.get("Status", "NOTSURE").upper()
            if status not in ev.AmdStatus.__members__:
                status = "NOTSURE"
            return [ev.AmdResult(call_id=call, status=ev.AmdStatus(status), now=now)]
        if event.user_event == dialplan.USEREVENT_CONNECT_FAILED:
            op = self.connecting.pop(call, None)
            if op is None:
                return []
            status = headers.get("DialStatus", "")
            out: list[ev.Event] = []
            if status == "CHANUNAVAIL":
                # the softphone is not registered: no call may be offered to it until it is
                endpoint = next((e for e, o in self.operators.items() if o == op), None)
                if endpoint is not None:
                    self._registered[endpoint] = False
                    gone = ev.EndpointRegistration(endpoint=endpoint, registered=False, now=now)
                    out.append(gone)
            out.append(ev.ConnectFailed(call_id=call, operator_id=op, dial_status=status, now=now))
            return out
        return []

    def _device(self, event: DeviceStateChange, now: float) -> list[ev.Event]:
        if event.device not in self.operators:
            return []
        registered = event.state.upper() not in UNREACHABLE_DEVICE_STATES
        if self._registered.get(event.device) == registered:
            return []
        self._registered[event.device] = registered
        return [ev.EndpointRegistration(endpoint=event.device, registered=registered, now=now)]


@dataclass(frozen=True)
class DialSettings:
    """How calls leave Asterisk: `dial_template` formats the customer's channel from the
    number (``{digits}`` without the plus, ``{e164}`` with it)."""

    dial_template: str = "PJSIP/{digits}@trunk"
    recordings_dir: str = "recordings"
    ring_timeout_s: float = 15.0


def dial_string(template: str, phone: str) -> str:
    digits = phone.lstrip("+")
    return template.format(digits=digits, e164=phone)


def originate_action(command: cmd.Originate, settings: DialSettings) -> ami.Originate:
    """The AMI Originate for an engine Originate: ChannelId = the call id, async, variables."""
    variables = {
        dialplan.VAR_CALL: command.call_id,
        dialplan.VAR_SHOP: command.shop_name or "shop",
        dialplan.VAR_RING_TIMEOUT: str(max(1, round(settings.ring_timeout_s))),
    }
    caller = f'"{command.shop_name}" <{command.caller_id}>' if command.caller_id else ""
    return ami.Originate(
        channel=dial_string(settings.dial_template, command.phone),
        context=dialplan.CONTEXT_OUTBOUND,
        exten=dialplan.EXTEN_AMD if command.amd else dialplan.EXTEN_ANSWERED,
        priority=1,
        channel_id=command.call_id,
        variables=variables,
        timeout_ms=max(1, round(command.timeout_s * 1000)),
        caller_id=caller,
    )


def endpoint_exten(endpoint: str) -> str:
    """``PJSIP/1001`` → ``1001``: the extension the connect context dials."""
    return endpoint.partition("/")[2] or endpoint
