"""Typed events from real Asterisk traffic, and the commands obzvon sends back."""

from __future__ import annotations

import uuid

import pytest

from pbx.commands import (
    Bridge,
    CoreShowChannels,
    Hangup,
    MixMonitor,
    Originate,
    Ping,
    Redirect,
    Spy,
    StopMixMonitor,
)
from pbx.errors import AmiLocalError
from pbx.events import (
    AmiEvent,
    BridgeCreate,
    BridgeEnter,
    CoreShowChannel,
    CoreShowChannelsComplete,
    DeviceStateChange,
    DialBegin,
    DialEnd,
    GenericEvent,
    Newchannel,
    OriginateReason,
    OriginateResponse,
    UserEvent,
    parse_event,
)
from pbx.events import Hangup as HangupEvent
from pbx.protocol import AmiParser, Frame
from tests import golden

# events obzvon has no class for: they must come through as GenericEvent, nothing else may
GENERIC_NAMES = {
    "PeerStatus",  # a live Asterisk sends these for PJSIP endpoints at boot
    "ContactStatus",
    "NewCallerid",
    "NewConnectedLine",
    "LocalBridge",
    "HangupRequest",
    "SoftHangupRequest",
    "ChannelHungup",
    "ChannelsHungupListComplete",
}


def events_of(name: str) -> list[AmiEvent]:
    frames = AmiParser().feed(golden.received(name))
    return [parse_event(f) for f in frames if isinstance(f, Frame) and f.kind == "event"]


@pytest.mark.parametrize("name", golden.SCENARIOS)
def test_every_golden_event_is_typed(name: str) -> None:
    for ev in events_of(name):
        if isinstance(ev, GenericEvent):
            assert ev.name in GENERIC_NAMES, ev.name
        else:
            assert type(ev).__name__ == ev.name
        assert "Event" not in ev.extra  # the name is not repeated among the leftovers
        hash(ev)  # frozen all the way down


@pytest.mark.parametrize(
    ("name", "response", "reason", "outcome"),
    [
        ("busy", "Failure", 5, OriginateReason.BUSY),
        ("noanswer", "Failure", 3, OriginateReason.NO_ANSWER),
        ("congestion", "Failure", 8, OriginateReason.CONGESTION),
        ("answer", "Success", 4, OriginateReason.ANSWERED),
        ("connect-sip", "Success", 4, OriginateReason.ANSWERED),
    ],
)
def test_originate_response_reason_is_parsed(
    name: str, response: str, reason: int, outcome: OriginateReason
) -> None:
    (ev,) = [e for e in events_of(name) if isinstance(e, OriginateResponse)]
    assert (ev.response, ev.reason, ev.outcome, ev.action_id) == (
        response,
        reason,
        outcome,
        "orig-1",
    )
    assert ev.answered is (reason == 4)
    assert ev.uniqueid  # the ChannelId of the Originate


def test_failed_originate_names_the_requested_channel() -> None:
    (ev,) = [e for e in events_of("busy") if isinstance(e, OriginateResponse)]
    assert ev.channel == "Local/79001234561@sim-customer"


@pytest.mark.parametrize(
    ("name", "causes"),
    [("busy", [0, 17]), ("noanswer", [19, 19]), ("answer", [16, 16]), ("congestion", [0, 34])],
)
def test_hangup_causes_are_parsed(name: str, causes: list[int]) -> None:
    hangups = [e for e in events_of(name) if isinstance(e, HangupEvent)]
    assert [h.cause for h in hangups] == causes
    assert all(h.cause_txt for h in hangups)


def test_noanswer_timeout_sends_no_dial_end() -> None:
    assert not [e for e in events_of("noanswer") if isinstance(e, DialEnd)]


def test_channel_snapshot_headers_become_attributes() -> None:
    first = next(e for e in events_of("answer") if isinstance(e, Newchannel))
    assert first.channel == "Local/79001234560@sim-customer-00000006;1"
    assert first.uniqueid == first.linkedid == "c088094c-4c00-44ed-97d7-1ea0348f24c5"
    assert (first.channel_state, first.channel_state_desc) == (0, "Down")
    assert dict(first.extra) == {"Privilege": "call,all"}


def test_dial_begin_of_an_originate_has_only_the_dialled_side() -> None:
    begin = next(e for e in events_of("answer") if isinstance(e, DialBegin))
    assert begin.channel == "" and begin.uniqueid == ""
    assert begin.dest_uniqueid == "c088094c-4c00-44ed-97d7-1ea0348f24c5"
    assert begin.dial_string == "79001234560@sim-customer"


def test_user_event_keeps_the_dialplan_headers() -> None:
    ev = next(e for e in events_of("answer") if isinstance(e, UserEvent))
    assert ev.user_event == "DialerAnswered"
    assert dict(ev.headers) == {"Lead": "order-42"}


def test_bridge_and_device_events_are_typed() -> None:
    evs = events_of("connect")
    create = next(e for e in evs if isinstance(e, BridgeCreate))
    enter = next(e for e in evs if isinstance(e, BridgeEnter))
    assert create.bridge_uniqueid == enter.bridge_uniqueid
    assert enter.channel and enter.bridge_num_channels == 1
    device = next(e for e in evs if isinstance(e, DeviceStateChange))
    assert device.state == "INUSE"


def test_core_show_channels_list_is_typed() -> None:
    evs = events_of("coreshowchannels")
    channels = [e for e in evs if isinstance(e, CoreShowChannel)]
    (done,) = [e for e in evs if isinstance(e, CoreShowChannelsComplete)]
    assert done.list_items == len(channels) == 2
    assert channels[0].application == "Wait" and channels[0].action_id == "show-1"


def test_bad_input_never_raises() -> None:
    odd = [
        Frame(()),
        Frame.of(("Event", "Hangup"), ("Cause", "sixteen")),
        Frame.of(("Event", "OriginateResponse"), ("Reason", ""), ("Reason", "4")),
        Frame.of(("Event", "NoSuchEvent"), ("Weird Key", "x")),
        Frame.of(("Response", "Success")),
    ]
    parsed = [parse_event(f) for f in odd]
    assert isinstance(parsed[1], HangupEvent) and parsed[1].cause is None
    assert parsed[1].channel == ""
    assert isinstance(parsed[2], OriginateResponse)
    assert parsed[2].reason is None and parsed[2].extra["Reason"] == "4"
    assert isinstance(parsed[3], GenericEvent) and parsed[3].extra["Weird Key"] == "x"


def test_extra_is_read_only() -> None:
    ev = parse_event(Frame.of(("Event", "Foo"), ("Bar", "1")))
    with pytest.raises(TypeError):
        ev.extra["Bar"] = "2"  # type: ignore[index]


# -- commands ------------------------------------------------------------------------------

CALL = str(uuid.uuid4())


def test_originate_always_asks_for_async_and_carries_the_channel_id() -> None:
    cmd = Originate(
        channel="PJSIP/79001234560@trunk",
        context="obzvon-outbound",
        exten="answered",
        channel_id=CALL,
        variables={"OBZVON_CALL": CALL, "LEAD": "order-42"},
        caller_id='"Shop" <74950000000>',
        timeout_ms=25_000,
    )
    fields = cmd.to_fields()
    assert ("Async", "true") in fields
    assert ("ChannelId", CALL) in fields and ("Timeout", "25000") in fields
    assert [v for k, v in fields if k == "Variable"] == [f"OBZVON_CALL={CALL}", "LEAD=order-42"]
    assert fields[0] == ("Action", "Originate")


@pytest.mark.parametrize(
    "bad",
    [
        {"channel": ""},
        {"channel_id": "not-a-uuid"},
        {"timeout_ms": 0},
        {"priority": 0},
        {"caller_id": "Shop\r\nAction: Hangup"},
        {"variables": {"A=B": "1"}},
    ],
)
def test_invalid_originate_is_refused_when_built(bad: dict[str, object]) -> None:
    base: dict[str, object] = {
        "channel": "PJSIP/1@trunk",
        "context": "c",
        "exten": "e",
        "channel_id": CALL,
    }
    with pytest.raises(AmiLocalError):
        Originate(**{**base, **bad})  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "options"), [("listen", "q"), ("whisper", "qw"), ("barge", "qB")])
def test_spy_originates_the_supervisor_into_chanspy(mode: str, options: str) -> None:
    cmd = Spy(
        supervisor_channel="PJSIP/2001",
        target_channel="PJSIP/1001-00000001",
        mode=mode,  # type: ignore[arg-type]
        channel_id=CALL,
    )
    fields = dict(cmd.to_fields())
    assert fields["Application"] == "ChanSpy"
    assert fields["Data"] == f"PJSIP/1001-00000001,{options}"
    assert fields["Async"] == "true" and fields["Channel"] == "PJSIP/2001"


def test_spy_refuses_an_unknown_mode() -> None:
    with pytest.raises(AmiLocalError):
        Spy(supervisor_channel="a", target_channel="b", mode="shout", channel_id=CALL)  # type: ignore[arg-type]


def test_hangup_by_regex_and_by_name() -> None:
    assert Hangup(channel="/^Local\\/7900.*;1$/").is_regex
    assert Hangup(channel="PJSIP/x-1", cause=16).to_fields()[-1] == ("Cause", "16")
    for bad in ("", "/", "/(/", "/abc"):
        with pytest.raises(AmiLocalError):
            Hangup(channel=bad)


def test_redirect_with_a_second_channel() -> None:
    fields = Redirect(
        channel="a", context="obzvon-connect", exten="1001", extra_channel="b"
    ).to_fields()
    assert ("ExtraChannel", "b") in fields and ("ExtraContext", "obzvon-connect") in fields
    with pytest.raises(AmiLocalError):
        Redirect(channel="a", context="c", exten="e", extra_context="x")


def test_other_commands_build_their_actions() -> None:
    assert Bridge(channel1="a", channel2="b").to_fields()[:3] == (
        ("Action", "Bridge"),
        ("Channel1", "a"),
        ("Channel2", "b"),
    )
    assert ("Options", "b") in MixMonitor(channel="a", file="x.wav", options="b").to_fields()
    assert StopMixMonitor(channel="a").to_fields() == (
        ("Action", "StopMixMonitor"),
        ("Channel", "a"),
    )
    assert CoreShowChannels().to_fields() == (("Action", "CoreShowChannels"),)
    assert Ping().to_fields() == (("Action", "Ping"),)
    with pytest.raises(AmiLocalError):
        Bridge(channel1="a", channel2="a")
    with pytest.raises(AmiLocalError):
        MixMonitor(channel="a", file="")
