"""Inbound calls in the simulator, driven by obzvon's AmiClient over loopback TCP: the caller is
announced, waits on music with their place in line, gives up, is offered a call back, is
connected to an operator, and is transferred after the operator consults a colleague."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest

from pbx import (
    AmiClient,
    AmiEvent,
    AmiLocalError,
    Bridge,
    BridgeEnter,
    DialBegin,
    DialEnd,
    Hangup,
    HangupEvent,
    Newchannel,
    Newstate,
    Redirect,
    UserEvent,
)
from pbx.commands import Setvar
from pbx.dialplan import (
    ANNOUNCE_EVERY_S,
    CONTEXT_ABANDON,
    CONTEXT_CONNECT,
    CONTEXT_CONSULT,
    CONTEXT_INBOUND,
    EXTEN_CALLBACK_OFFER,
    EXTEN_HOLD,
    EXTEN_WAIT,
    USEREVENT_CALLBACK,
    USEREVENT_CONNECT_FAILED,
    USEREVENT_CONSULT_ENDED,
    USEREVENT_INBOUND,
    VAR_POSITION,
)
from pbx.sim import AsteriskSim, OperatorScript
from pbx.sim.dialplan import CONTEXTS
from tests.test_asterisk_conf import raw_lines

E = TypeVar("E", bound=AmiEvent)
TIME_SCALE = 50.0  # simulated seconds per real second
CALLER = "79001234567"
SHOP = "74950000000"
LONG = 10_000.0  # simulated seconds: longer than any test


@pytest.fixture
async def sim() -> AsyncIterator[AsteriskSim]:
    async with AsteriskSim(time_scale=TIME_SCALE, seed=1, login_failure_delay=0.05) as s:
        yield s


def connect(sim: AsteriskSim) -> AmiClient:
    return AmiClient(
        host="127.0.0.1",
        port=sim.port,
        username="obzvon",
        secret="obzvon",
        ping_interval=1.0,
        action_timeout=2.0,
    )


async def until(
    events: AsyncIterator[AmiEvent], kind: type[E], within: float = 5.0, **attrs: Any
) -> E:
    """The next event of `kind` whose attributes equal `attrs`; others are skipped."""
    async with asyncio.timeout(within):
        async for ev in events:
            if isinstance(ev, kind) and all(getattr(ev, k) == v for k, v in attrs.items()):
                return ev
    raise AssertionError(f"the event stream ended before a {kind.__name__}")


async def user_event(events: AsyncIterator[AmiEvent], name: str, within: float = 5.0) -> UserEvent:
    async with asyncio.timeout(within):
        async for ev in events:
            if isinstance(ev, UserEvent) and ev.user_event == name:
                return ev
    raise AssertionError(f"the event stream ended before UserEvent {name}")


async def sim_sleep(seconds: float) -> None:
    """Let `seconds` of simulated time pass."""
    await asyncio.sleep(seconds / TIME_SCALE)


async def where(ami: AmiClient, channel: str) -> tuple[str, str, str]:
    """Context, extension and application of a live channel, as CoreShowChannels shows it."""
    (shown,) = [c for c in await ami.core_show_channels() if c.channel == channel]
    return shown.context, shown.exten, shown.application


async def incoming(
    sim: AsteriskSim, events: AsyncIterator[AmiEvent], **behaviour: Any
) -> UserEvent:
    """A call to the shop that the dialplan has announced."""
    sim.call_in(CALLER, SHOP, **behaviour)
    return await user_event(events, USEREVENT_INBOUND)


async def connected(
    ami: AmiClient, events: AsyncIterator[AmiEvent], channel: str, endpoint: str
) -> str:
    """Redirect `channel` to `endpoint`'s phone; returns the operator's channel once bridged."""
    await ami.redirect(Redirect(channel=channel, context=CONTEXT_CONNECT, exten=endpoint))
    begin = await until(events, DialBegin, channel=channel)
    await until(events, BridgeEnter, channel=channel)
    return begin.dest_channel


# --- the contexts --------------------------------------------------------------------------------


@pytest.mark.parametrize("exten", ["_X.", "_+X.", EXTEN_WAIT, EXTEN_HOLD, EXTEN_CALLBACK_OFFER])
def test_the_simulated_inbound_context_is_the_one_in_extensions_conf(exten: str) -> None:
    simulated = [
        f"{f'n({step.label})' if step.label else 'n'},{step.app}({step.data})"
        for step in CONTEXTS[CONTEXT_INBOUND][exten]
    ]
    written = raw_lines(CONTEXT_INBOUND, exten)
    assert simulated == ["n," + written[0].partition(",")[2], *written[1:]]


# --- arriving and waiting ------------------------------------------------------------------------


async def test_an_incoming_call_is_announced_with_caller_number_and_its_uniqueid(
    sim: AsteriskSim,
) -> None:
    async with connect(sim) as ami:
        events = ami.events()
        uniqueid = sim.call_in(CALLER, SHOP)
        new = await until(events, Newchannel, uniqueid=uniqueid)
        assert new.channel.startswith("PJSIP/trunk-")
        assert (new.channel_state_desc, new.caller_id_num) == ("Ring", CALLER)
        assert (new.context, new.exten, new.priority) == (CONTEXT_INBOUND, SHOP, "1")
        up = await until(events, Newstate, uniqueid=uniqueid)
        assert up.channel_state_desc == "Up"
        announced = await user_event(events, USEREVENT_INBOUND)
        assert announced.channel == new.channel
        assert dict(announced.headers) == {"Call": uniqueid, "Caller": CALLER, "Number": SHOP}
        assert await where(ami, new.channel) == (CONTEXT_INBOUND, EXTEN_WAIT, "MusicOnHold")
    assert sim.statistics().calls_in == 1


async def test_a_number_dialled_with_a_plus_is_reported_without_it(sim: AsteriskSim) -> None:
    async with connect(sim) as ami:
        events = ami.events()
        sim.call_in(CALLER, f"+{SHOP}")
        announced = await user_event(events, USEREVENT_INBOUND)
        assert announced.headers["Number"] == SHOP


async def test_a_caller_out_of_patience_hangs_up_while_waiting(sim: AsteriskSim) -> None:
    loop = asyncio.get_running_loop()
    async with connect(sim) as ami:
        events = ami.events()
        started = loop.time()
        uniqueid = sim.call_in(CALLER, SHOP, patience_s=5.0)
        gone = await until(events, HangupEvent, uniqueid=uniqueid)
        assert (gone.cause, gone.context) == (16, CONTEXT_INBOUND)
        assert (loop.time() - started) * TIME_SCALE >= 5.0
    assert sim.statistics().live_channels == 0


async def test_a_caller_nobody_answers_for_15_minutes_hears_the_abandon_message() -> None:
    # the dialer is gone: the loop ends by itself instead of holding the caller for ever
    # a modest scale: at thousands of simulated seconds per real one, a loaded machine's pause
    # of a fraction of a second would show up as minutes
    scale = 500.0
    async with AsteriskSim(time_scale=scale, seed=1) as sim, connect(sim) as ami:
        events = ami.events()
        started = sim.clock.now()
        uniqueid = sim.call_in(CALLER, SHOP)
        gone = await until(events, HangupEvent, within=10.0, uniqueid=uniqueid)
        assert gone.context == CONTEXT_ABANDON
        assert 15 * 60 <= sim.clock.now() - started <= 20 * 60


@pytest.mark.parametrize(
    ("position", "announcement"),
    [
        (
            "3",
            [
                ("Playback", "queue-thereare"),
                ("SayNumber", "3"),
                ("Playback", "queue-callswaiting"),
            ],
        ),
        ("1", [("Playback", "queue-youarenext")]),
    ],
)
async def test_the_place_in_line_set_by_the_dialer_is_announced_between_music(
    sim: AsteriskSim, position: str, announcement: list[tuple[str, str]]
) -> None:
    async with connect(sim) as ami:
        events = ami.events()
        announced = await incoming(sim, events)
        uniqueid = announced.uniqueid
        await ami.setvar(Setvar(channel=announced.channel, variable=VAR_POSITION, value=position))
        await sim_sleep(ANNOUNCE_EVERY_S * 1.5)
        music = ("MusicOnHold", f"default,{ANNOUNCE_EVERY_S}")
        expected = [music, *announcement, music]
        assert list(sim.heard(uniqueid))[: len(expected)] == expected


async def test_without_a_place_in_line_the_caller_only_hears_music(sim: AsteriskSim) -> None:
    async with connect(sim) as ami:
        events = ami.events()
        uniqueid = (await incoming(sim, events)).uniqueid
        await sim_sleep(ANNOUNCE_EVERY_S * 2.5)
        heard = sim.heard(uniqueid)
        assert len(heard) >= 2
        assert {app for app, _ in heard} == {"MusicOnHold"}


# --- the callback offer --------------------------------------------------------------------------


@pytest.mark.parametrize(("accept", "answer"), [(True, "yes"), (False, "no"), (None, "no")])
async def test_the_callback_offer_reports_the_callers_answer(
    sim: AsteriskSim, accept: bool | None, answer: str
) -> None:
    async with connect(sim) as ami:
        events = ami.events()
        announced = await incoming(sim, events, accept_callback=accept)
        channel, uniqueid = announced.channel, announced.uniqueid
        await ami.redirect(
            Redirect(channel=channel, context=CONTEXT_INBOUND, exten=EXTEN_CALLBACK_OFFER)
        )
        offer = await user_event(events, USEREVENT_CALLBACK, within=10.0)
        assert dict(offer.headers) == {"Call": uniqueid, "Accepted": answer}
        assert ("Read", "obzvon/callback-offer") in sim.heard(uniqueid)
        if answer == "yes":
            gone = await until(events, HangupEvent, uniqueid=uniqueid)
            assert gone.cause == 16
        else:
            assert await where(ami, channel) == (CONTEXT_INBOUND, EXTEN_WAIT, "MusicOnHold")


# --- connecting and transferring -----------------------------------------------------------------


async def test_redirecting_a_caller_to_an_operator_rings_and_bridges_them(
    sim: AsteriskSim,
) -> None:
    sim.add_operator("1001", OperatorScript(ring_s=1.0, talk_s=LONG))
    async with connect(sim) as ami:
        events = ami.events()
        announced = await incoming(sim, events)
        await ami.redirect(
            Redirect(channel=announced.channel, context=CONTEXT_CONNECT, exten="1001")
        )
        begin = await until(events, DialBegin, channel=announced.channel)
        assert begin.dest_channel.startswith("PJSIP/1001-")
        assert begin.dest_linkedid == announced.uniqueid
        operator = await until(events, BridgeEnter, channel=begin.dest_channel)
        customer = await until(events, BridgeEnter, channel=announced.channel)
        assert operator.bridge_uniqueid == customer.bridge_uniqueid


async def test_a_bridged_caller_no_longer_runs_out_of_patience_and_hangs_up_after_talking(
    sim: AsteriskSim,
) -> None:
    sim.add_operator("1001", OperatorScript(ring_s=1.0, talk_s=LONG))
    loop = asyncio.get_running_loop()
    async with connect(sim) as ami:
        events = ami.events()
        announced = await incoming(sim, events, patience_s=5.0, talk_s=20.0)
        operator = await connected(ami, events, announced.channel, "1001")
        bridged = loop.time()
        causes: dict[str, int | None] = {}
        while len(causes) < 2:
            gone = await until(events, HangupEvent)
            causes[gone.channel] = gone.cause
        assert (loop.time() - bridged) * TIME_SCALE >= 20.0 - 1.0
        assert causes == {announced.channel: 16, operator: 16}


async def test_a_failed_connect_returns_an_inbound_caller_to_the_music(sim: AsteriskSim) -> None:
    sim.add_operator("1001", OperatorScript(registered=False))
    async with connect(sim) as ami:
        events = ami.events()
        announced = await incoming(sim, events)
        await ami.redirect(
            Redirect(channel=announced.channel, context=CONTEXT_CONNECT, exten="1001")
        )
        failed = await user_event(events, USEREVENT_CONNECT_FAILED)
        assert failed.headers["DialStatus"] == "CHANUNAVAIL"
        assert await where(ami, announced.channel) == (CONTEXT_INBOUND, EXTEN_WAIT, "MusicOnHold")


async def consulting(
    sim: AsteriskSim, ami: AmiClient, events: AsyncIterator[AmiEvent]
) -> tuple[UserEvent, str]:
    """A caller talking to operator 1001, who then puts them on hold and calls 1002; returns
    the caller's announcement and the operator's channel once 1002's phone was dialled."""
    announced = await incoming(sim, events)
    operator = await connected(ami, events, announced.channel, "1001")
    await ami.redirect(
        Redirect(
            channel=announced.channel,
            context=CONTEXT_INBOUND,
            exten=EXTEN_HOLD,
            extra_channel=operator,
            extra_context=CONTEXT_CONSULT,
            extra_exten="1002",
        )
    )
    return announced, operator


async def test_completing_a_consultation_bridges_the_caller_with_the_colleague(
    sim: AsteriskSim,
) -> None:
    sim.add_operator("1001", OperatorScript(ring_s=1.0, talk_s=LONG))
    sim.add_operator("1002", OperatorScript(ring_s=1.0, talk_s=LONG))
    async with connect(sim) as ami:
        events = ami.events()
        announced, operator = await consulting(sim, ami, events)
        customer = announced.channel
        consult = await until(events, DialEnd, channel=operator, dial_status="ANSWER")
        colleague = consult.dest_channel
        assert colleague.startswith("PJSIP/1002-")
        await until(events, BridgeEnter, channel=operator)
        assert await where(ami, customer) == (CONTEXT_INBOUND, EXTEN_WAIT, "MusicOnHold")

        await ami.bridge(Bridge(channel1=customer, channel2=colleague))
        joined = await until(events, BridgeEnter, channel=customer)
        other = await until(events, BridgeEnter, channel=colleague)
        assert joined.bridge_uniqueid == other.bridge_uniqueid
        ended = await user_event(events, USEREVENT_CONSULT_ENDED)
        assert ended.channel == operator
        assert dict(ended.headers) == {"Call": announced.uniqueid, "DialStatus": "ANSWER"}
        assert await where(ami, operator) == (CONTEXT_CONSULT, "1002", "Wait")

        await ami.hangup(Hangup(channel=operator, cause=16))
        gone = await until(events, HangupEvent, channel=operator)
        assert gone.cause == 16
        await asyncio.sleep(0.1)
        live = {c.channel for c in await ami.core_show_channels()}
        assert live == {customer, colleague}


async def test_a_colleague_who_does_not_answer_ends_the_consultation_and_the_caller_returns(
    sim: AsteriskSim,
) -> None:
    sim.add_operator("1001", OperatorScript(ring_s=1.0, talk_s=LONG))
    sim.add_operator("1002", OperatorScript(ring_s=1.0, answer=False))
    async with connect(sim) as ami:
        events = ami.events()
        announced, operator = await consulting(sim, ami, events)
        ended = await user_event(events, USEREVENT_CONSULT_ENDED, within=10.0)
        assert (ended.channel, ended.headers["DialStatus"]) == (operator, "NOANSWER")

        await ami.bridge(Bridge(channel1=announced.channel, channel2=operator))
        back = await until(events, BridgeEnter, channel=announced.channel)
        again = await until(events, BridgeEnter, channel=operator)
        assert back.bridge_uniqueid == again.bridge_uniqueid


async def test_cancelling_a_consultation_hangs_up_the_colleague_and_reunites_the_call(
    sim: AsteriskSim,
) -> None:
    sim.add_operator("1001", OperatorScript(ring_s=1.0, talk_s=LONG))
    sim.add_operator("1002", OperatorScript(ring_s=1.0, talk_s=LONG))
    async with connect(sim) as ami:
        events = ami.events()
        announced, operator = await consulting(sim, ami, events)
        colleague = (
            await until(events, DialEnd, channel=operator, dial_status="ANSWER")
        ).dest_channel
        await until(events, BridgeEnter, channel=operator)

        await ami.bridge(Bridge(channel1=announced.channel, channel2=operator))
        gone = await until(events, HangupEvent, channel=colleague)
        assert gone.cause == 16
        back = await until(events, BridgeEnter, channel=announced.channel)
        again = await until(events, BridgeEnter, channel=operator)
        assert back.bridge_uniqueid == again.bridge_uniqueid
        await asyncio.sleep(0.1)
        live = {c.channel for c in await ami.core_show_channels()}
        assert live == {announced.channel, operator}


# --- Setvar --------------------------------------------------------------------------------------


def test_setvar_is_sent_as_asterisk_expects_it() -> None:
    cmd = Setvar(channel="PJSIP/trunk-0000002a", variable=VAR_POSITION, value="3")
    assert cmd.to_fields() == (
        ("Action", "Setvar"),
        ("Channel", "PJSIP/trunk-0000002a"),
        ("Variable", VAR_POSITION),
        ("Value", "3"),
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"channel": "", "variable": "X", "value": "1"},
        {"channel": "PJSIP/trunk-1", "variable": "", "value": "1"},
        {"channel": "PJSIP/trunk-1", "variable": "A=B", "value": "1"},
        {"channel": "PJSIP/trunk-1", "variable": "X", "value": "1\r\nAction: Hangup"},
    ],
)
def test_setvar_refuses_what_would_not_reach_asterisk_intact(fields: dict[str, str]) -> None:
    with pytest.raises(AmiLocalError):
        Setvar(**fields)
