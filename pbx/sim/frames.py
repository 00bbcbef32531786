"""The messages the simulator sends, with Asterisk 22's field names in Asterisk 22's order.

One function per message kind; each reads the channel's current state, so an event shows the
channel as it is at the moment it is sent. Field order is copied from the golden captures.
"""

from __future__ import annotations

from collections.abc import Iterable

from pbx.protocol import Frame

from .channel import STATE_DESC, Bridge, Channel, cause_text

Fields = list[tuple[str, str]]

CALL = "call,all"
USER = "user,all"
SYSTEM = "system,all"


def channel_fields(ch: Channel, prefix: str = "") -> Fields:
    """The channel snapshot every channel event carries (``Dest``, ``LocalOne``... prefixed)."""
    p = prefix
    return [
        (f"{p}Channel", ch.name),
        (f"{p}ChannelState", str(ch.state)),
        (f"{p}ChannelStateDesc", STATE_DESC.get(ch.state, "Unknown")),
        (f"{p}CallerIDNum", ch.caller.num),
        (f"{p}CallerIDName", ch.caller.name),
        (f"{p}ConnectedLineNum", ch.connected.num),
        (f"{p}ConnectedLineName", ch.connected.name),
        (f"{p}Language", "en"),
        (f"{p}AccountCode", ""),
        (f"{p}Context", ch.context),
        (f"{p}Exten", ch.exten),
        (f"{p}Priority", str(ch.priority)),
        (f"{p}Uniqueid", ch.uniqueid),
        (f"{p}Linkedid", ch.linkedid),
    ]


def event(name: str, privilege: str | None, fields: Iterable[tuple[str, str]] = ()) -> Frame:
    head = [("Event", name)] + ([("Privilege", privilege)] if privilege else [])
    return Frame(tuple(head + list(fields)))


def response(status: str, action_id: str | None, fields: Iterable[tuple[str, str]] = ()) -> Frame:
    """``Response: <status>``, the ActionID when the action had one, then `fields`."""
    head = [("Response", status), *action_id_field(action_id)]
    return Frame(tuple(head + list(fields)))


def action_id_field(action_id: str | None) -> Fields:
    return [("ActionID", action_id)] if action_id is not None else []


def channel_event(name: str, ch: Channel, extra: Iterable[tuple[str, str]] = ()) -> Frame:
    return event(name, CALL, channel_fields(ch) + list(extra))


def newchannel(ch: Channel) -> Frame:
    return channel_event("Newchannel", ch)


def newstate(ch: Channel) -> Frame:
    return channel_event("Newstate", ch)


def newcallerid(ch: Channel) -> Frame:
    return channel_event(
        "NewCallerid", ch, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")]
    )


def newconnectedline(ch: Channel) -> Frame:
    return channel_event("NewConnectedLine", ch)


def local_bridge(one: Channel, two: Channel) -> Frame:
    return event(
        "LocalBridge",
        CALL,
        channel_fields(one, "LocalOne")
        + channel_fields(two, "LocalTwo")
        + [("Context", two.context), ("Exten", two.exten), ("LocalOptimization", "Yes")],
    )


def _dial(name: str, caller: Channel | None, dest: Channel, last: tuple[str, str]) -> Frame:
    fields = channel_fields(caller) if caller is not None else []
    return event(name, CALL, fields + channel_fields(dest, "Dest") + [last])


def dial_begin(caller: Channel | None, dest: Channel, dialstring: str) -> Frame:
    return _dial("DialBegin", caller, dest, ("DialString", dialstring))


def dial_state(caller: Channel | None, dest: Channel, status: str) -> Frame:
    return _dial("DialState", caller, dest, ("DialStatus", status))


def dial_end(caller: Channel | None, dest: Channel, status: str) -> Frame:
    return _dial("DialEnd", caller, dest, ("DialStatus", status))


def hangup_request(ch: Channel, cause: int) -> Frame:
    return channel_event("HangupRequest", ch, [("Cause", str(cause))])


def soft_hangup_request(ch: Channel, cause: int) -> Frame:
    return channel_event("SoftHangupRequest", ch, [("Cause", str(cause))])


def hangup(ch: Channel, cause: int) -> Frame:
    return channel_event("Hangup", ch, [("Cause", str(cause)), ("Cause-txt", cause_text(cause))])


def device_state(device: str, state: str) -> Frame:
    return event("DeviceStateChange", CALL, [("Device", device), ("State", state)])


def user_event(ch: Channel, name: str, headers: Iterable[tuple[str, str]]) -> Frame:
    return event("UserEvent", USER, [*channel_fields(ch), ("UserEvent", name), *headers])


def _bridge_fields(bridge: Bridge) -> Fields:
    return [
        ("BridgeUniqueid", bridge.uniqueid),
        ("BridgeType", "basic"),
        ("BridgeTechnology", bridge.technology),
        ("BridgeCreator", "<unknown>"),
        ("BridgeName", "<unknown>"),
        ("BridgeNumChannels", str(len(bridge.channels))),
        ("BridgeVideoSourceMode", "none"),
    ]


def bridge_create(bridge: Bridge) -> Frame:
    return event("BridgeCreate", CALL, _bridge_fields(bridge))


def bridge_destroy(bridge: Bridge) -> Frame:
    return event("BridgeDestroy", CALL, _bridge_fields(bridge))


def bridge_enter(bridge: Bridge, ch: Channel) -> Frame:
    return event("BridgeEnter", CALL, _bridge_fields(bridge) + channel_fields(ch))


def bridge_leave(bridge: Bridge, ch: Channel) -> Frame:
    return event("BridgeLeave", CALL, _bridge_fields(bridge) + channel_fields(ch))


def mixmonitor_start(ch: Channel) -> Frame:
    return channel_event("MixMonitorStart", ch)


def mixmonitor_stop(ch: Channel) -> Frame:
    return channel_event("MixMonitorStop", ch)


def chanspy_start(spyer: Channel, spyee: Channel) -> Frame:
    return event(
        "ChanSpyStart", CALL, channel_fields(spyer, "Spyer") + channel_fields(spyee, "Spyee")
    )


def chanspy_stop(spyer: Channel, spyee: Channel) -> Frame:
    return event(
        "ChanSpyStop", CALL, channel_fields(spyer, "Spyer") + channel_fields(spyee, "Spyee")
    )


def fully_booted(uptime: int) -> Frame:
    return event(
        "FullyBooted",
        SYSTEM,
        [("Uptime", str(uptime)), ("LastReload", str(uptime)), ("Status", "Fully Booted")],
    )


def originate_response(
    *,
    action_id: str | None,
    success: bool,
    channel: str,
    target: Iterable[tuple[str, str]],
    reason: int,
    uniqueid: str,
    caller_num: str,
    caller_name: str,
) -> Frame:
    """`target` is ``Context``/``Exten`` for a dialplan Originate, ``Application``/``Data``
    for an application one."""
    return event(
        "OriginateResponse",
        CALL,
        [
            *action_id_field(action_id),
            ("Response", "Success" if success else "Failure"),
            ("Channel", channel),
            *list(target),
            ("Reason", str(reason)),
            ("Uniqueid", uniqueid),
            ("CallerIDNum", caller_num),
            ("CallerIDName", caller_name),
        ],
    )


def core_show_channel(ch: Channel, action_id: str | None, duration_s: float) -> Frame:
    secs = max(0, int(duration_s))
    duration = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    return event(
        "CoreShowChannel",
        None,
        action_id_field(action_id)
        + channel_fields(ch)
        + [
            ("Application", ch.app),
            ("ApplicationData", ch.appdata),
            ("Duration", duration),
            ("BridgeId", ch.bridge.uniqueid if ch.bridge else ""),
        ],
    )


def list_complete(name: str, action_id: str | None, items: int) -> Frame:
    return event(
        name,
        None,
        [*action_id_field(action_id), ("EventList", "Complete"), ("ListItems", str(items))],
    )
