"""ChannelTracker: calls are found by the ChannelId obzvon set, never by anything else."""

from __future__ import annotations

from pbx.channels import ChannelTracker
from pbx.events import (
    AmiEvent,
    CoreShowChannel,
    DialBegin,
    Hangup,
    Newchannel,
    OriginateResponse,
    UserEvent,
    parse_event,
)
from pbx.protocol import AmiParser, Frame
from tests import golden

ANSWER_CALL = "c088094c-4c00-44ed-97d7-1ea0348f24c5"  # the ChannelId in answer.ami
CONNECT_CALL = "94e86dd3-cc0b-4310-bf4a-e89fbf40cfcd"  # connect.ami
SHOW_CALL = "9add0637-07c3-4c34-9ecc-1a5ddb34fd66"  # coreshowchannels.ami


def events_of(name: str) -> list[AmiEvent]:
    frames = AmiParser().feed(golden.received(name))
    return [parse_event(f) for f in frames if isinstance(f, Frame) and f.kind == "event"]


def test_both_halves_of_the_local_channel_belong_to_the_call() -> None:
    tracker = ChannelTracker()
    tracker.track(ANSWER_CALL)
    created = [e for e in events_of("answer") if isinstance(e, Newchannel)]
    assert [tracker.on_event(e) for e in created] == [ANSWER_CALL, ANSWER_CALL]
    assert tracker.channels_of(ANSWER_CALL) == {
        "Local/79001234560@sim-customer-00000006;1",
        "Local/79001234560@sim-customer-00000006;2",
    }


def test_operator_leg_is_attributed_by_linkedid() -> None:
    tracker = ChannelTracker()
    tracker.track(CONNECT_CALL)
    for ev in events_of("connect"):
        if isinstance(ev, Newchannel) and "sim-agent" in ev.channel:
            assert ev.uniqueid.startswith("1795435040.")  # Asterisk's own id, not ours
            assert tracker.on_event(ev) == CONNECT_CALL
            break
    else:
        raise AssertionError("connect.ami has no operator leg")
    assert any("sim-agent" in name for name in tracker.channels_of(CONNECT_CALL))


def test_dial_events_of_an_originate_are_found_by_the_dialled_side() -> None:
    tracker = ChannelTracker()
    tracker.track(ANSWER_CALL)
    begin = next(e for e in events_of("answer") if isinstance(e, DialBegin))
    assert tracker.call_of(begin) == ANSWER_CALL


def test_a_whole_call_leaves_no_live_channel() -> None:
    tracker = ChannelTracker()
    tracker.track(CONNECT_CALL)
    seen = {tracker.on_event(e) for e in events_of("connect")}
    assert seen == {CONNECT_CALL, None}  # None: DeviceStateChange, FullyBooted
    assert tracker.live_calls() == frozenset()
    assert tracker.channels_of(CONNECT_CALL) == frozenset()
    # still known until forgotten, so late events (an OriginateResponse) find their call
    late = next(e for e in events_of("connect") if isinstance(e, OriginateResponse))
    assert tracker.call_of(late) == CONNECT_CALL
    tracker.forget(CONNECT_CALL)
    assert tracker.call_of(late) is None


def test_events_of_untracked_calls_are_ignored() -> None:
    tracker = ChannelTracker()
    tracker.track(ANSWER_CALL)
    for ev in events_of("busy"):
        assert tracker.on_event(ev) is None
    assert tracker.live_calls() == frozenset()


def test_failed_originate_response_does_not_create_a_channel() -> None:
    tracker = ChannelTracker()
    busy_call = "47dc6442-cfbe-4782-a43d-ad5424ce6954"
    tracker.track(busy_call)
    response = next(e for e in events_of("busy") if isinstance(e, OriginateResponse))
    assert tracker.on_event(response) == busy_call
    assert tracker.channels_of(busy_call) == frozenset()


def test_user_event_of_the_answered_call_is_attributed() -> None:
    tracker = ChannelTracker()
    tracker.track(ANSWER_CALL)
    answered = next(e for e in events_of("answer") if isinstance(e, UserEvent))
    assert tracker.call_of(answered) == ANSWER_CALL


def snapshot() -> list[CoreShowChannel]:
    return [e for e in events_of("coreshowchannels") if isinstance(e, CoreShowChannel)]


def test_resync_reports_survived_and_lost_calls() -> None:
    tracker = ChannelTracker()
    for call in (SHOW_CALL, ANSWER_CALL, "pending-call"):
        tracker.track(call)
    for ev in events_of("coreshowchannels") + events_of("answer"):
        if isinstance(ev, Newchannel):
            tracker.on_event(ev)
    assert tracker.live_calls() == {SHOW_CALL, ANSWER_CALL}

    report = tracker.resync(snapshot())

    assert report.survived == {SHOW_CALL}
    assert report.lost == {ANSWER_CALL}  # it ended while the link was down
    assert tracker.live_calls() == {SHOW_CALL}
    assert len(tracker.channels_of(SHOW_CALL)) == 2
    # a call whose Originate had produced nothing yet is neither: its caller still waits
    assert "pending-call" in tracker.tracked()


def test_resync_adopts_channels_whose_newchannel_was_missed() -> None:
    tracker = ChannelTracker()
    tracker.track(SHOW_CALL)
    report = tracker.resync(snapshot())
    assert report.survived == {SHOW_CALL} and report.lost == frozenset()
    # and a Hangup after the resync ends the call as usual
    for ev in events_of("coreshowchannels"):
        if isinstance(ev, Hangup):
            tracker.on_event(ev)
    assert tracker.live_calls() == frozenset()


def test_the_customers_channel_is_told_apart_from_the_operator_leg_that_joined_it() -> None:
    # Acting on "a channel of the call" once an operator is bridged would move the operator
    # (a transfer redirecting the wrong leg): the customer's is the one with the call's id.
    tracker = ChannelTracker()
    tracker.track(CONNECT_CALL)
    for ev in events_of("connect"):
        tracker.on_event(ev)
        if isinstance(ev, Newchannel) and "sim-agent" in ev.channel:
            break
    customer = tracker.customer_channel(CONNECT_CALL)
    assert customer is not None and "sim-agent" not in customer
    assert len(tracker.channels_of(CONNECT_CALL)) > 1


def test_an_inbound_call_is_tracked_from_its_channel() -> None:
    tracker = ChannelTracker()
    tracker.track("1795453481.3", "PJSIP/trunk-00000003")
    assert tracker.customer_channel("1795453481.3") == "PJSIP/trunk-00000003"
    assert tracker.customer_channel("other") is None
