"""AmiTranslator: AMI events of obzvon's calls become engine events; the legs of a call stay
findable until the last one hangs up."""

from __future__ import annotations

from dialer.engine import events as ev
from dialer.telephony import AmiTranslator
from pbx.channels import ChannelTracker
from pbx.events import AmiEvent, parse_event
from pbx.protocol import Frame

CALL = "4f1c2a9e-0000-4000-8000-000000000001"
CUSTOMER = "PJSIP/trunk-00000001"
OPERATOR = "PJSIP/2001-00000002"


def event(name: str, **headers: str) -> AmiEvent:
    return parse_event(Frame((("Event", name), *headers.items())))


def channel(name: str, kind: str, uniqueid: str, **more: str) -> AmiEvent:
    return event(kind, Channel=name, Uniqueid=uniqueid, Linkedid=CALL, **more)


def test_an_operator_leg_left_after_the_customer_hangs_up_can_still_be_found() -> None:
    translator = AmiTranslator(tracker=ChannelTracker(), operators={"PJSIP/2001": "2001"})
    translator.tracker.track(CALL)
    translator.translate(channel(CUSTOMER, "Newchannel", CALL), 1.0)
    translator.translate(channel(OPERATOR, "Newchannel", "1795000000.2"), 2.0)
    assert translator.operator_channel(CALL, "2001") == OPERATOR

    out = translator.translate(channel(CUSTOMER, "Hangup", CALL, Cause="16"), 3.0)
    assert [type(e) for e in out] == [ev.CustomerHungUp]
    # the operator's leg (an attended transfer's, back in its dialplan) is still there to end
    assert translator.operator_channel(CALL, "2001") == OPERATOR

    out = translator.translate(channel(OPERATOR, "Hangup", "1795000000.2", Cause="16"), 4.0)
    assert [type(e) for e in out] == [ev.OperatorHungUp]
    assert CALL not in translator.tracker.tracked()  # forgotten with its last channel


def test_the_dialplans_consultation_event_becomes_consult_ended() -> None:
    translator = AmiTranslator(tracker=ChannelTracker(), operators={"PJSIP/2001": "2001"})
    translator.tracker.track(CALL)
    out = translator.translate(
        event(
            "UserEvent",
            Channel=OPERATOR,
            Uniqueid="1795000000.2",
            Linkedid=CALL,
            UserEvent="ObzvonConsultEnded",
            Call=CALL,
            DialStatus="noanswer",
        ),
        5.0,
    )
    assert out == [ev.ConsultEnded(call_id=CALL, dial_status="NOANSWER", now=5.0)]
