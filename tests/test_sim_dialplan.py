"""obzvon's own dialplan contexts in the simulator, and the AMI actions around them."""

from __future__ import annotations

import asyncio
import uuid

from pbx.dialplan import (
    CONTEXT_ABANDON,
    CONTEXT_CONNECT,
    CONTEXT_OUTBOUND,
    EXTEN_ABANDON,
    EXTEN_AMD,
    VAR_CALL,
)
from pbx.sim import AsteriskSim, NumberScript, OperatorScript
from tests.test_sim_model import SCALE, AmiTestClient

NUMBER = "79001234567"


async def _answered(sim: AsteriskSim, client: AmiTestClient, **script: float) -> tuple[str, str]:
    """A PJSIP customer that answers after 1 s and waits; returns (ChannelId, channel name)."""
    sim.script_number(NUMBER, NumberScript("answer", ring_s=1.0, **script))  # type: ignore[arg-type]
    call = await client.originate(f"PJSIP/{NUMBER}@trunk")
    ev = await client.event("UserEvent", UserEvent="ObzvonAnswered", Call=call)
    return call, ev.get("Channel") or ""


async def test_an_answered_customer_is_announced_with_the_call_id_and_waits() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        client = await AmiTestClient.connect(sim)
        call, channel = await _answered(sim, client)
        assert channel.startswith("PJSIP/trunk-")
        response = await client.event("OriginateResponse", Uniqueid=call)
        assert (response.get("Reason"), response.get("Channel")) == ("4", channel)
        await client.action("CoreShowChannels")
        shown = await client.event("CoreShowChannel", Channel=channel)
        assert (shown.get("Context"), shown.get("Exten"), shown.get("Application")) == (
            CONTEXT_OUTBOUND,
            "wait",
            "Wait",
        )
        await client.close()


async def test_answering_machine_detection_reports_before_the_answered_event() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.script_number(NUMBER, NumberScript("answer", ring_s=1.0, amd="MACHINE"))
        client = await AmiTestClient.connect(sim)
        call = await client.originate(f"PJSIP/{NUMBER}@trunk", exten=EXTEN_AMD)
        amd = await client.event("UserEvent", UserEvent="ObzvonAmd")
        answered = await client.event("UserEvent", UserEvent="ObzvonAnswered")
        assert (amd.get("Call"), amd.get("Status")) == (call, "MACHINE")
        assert answered.get("Call") == call
        assert client.messages.index(amd) < client.messages.index(answered)
        await client.close()


async def test_connecting_bridges_customer_and_operator_until_the_operator_hangs_up() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.add_operator("1001", OperatorScript(ring_s=1.0, talk_s=10.0))
        client = await AmiTestClient.connect(sim)
        call, channel = await _answered(sim, client)
        await client.action(
            "Redirect", ("Channel", channel), ("Context", CONTEXT_CONNECT), ("Exten", "1001")
        )
        operator = await client.event("Newchannel", Context="from-operators")
        assert operator.get("Linkedid") == call
        await client.event("DialEnd", DialStatus="ANSWER")
        create = await client.event("BridgeCreate")
        bridge = create.get("BridgeUniqueid")
        first = await client.event("BridgeEnter", BridgeUniqueid=bridge or "")
        second = await client.event("BridgeEnter", BridgeUniqueid=bridge or "")
        assert first.get("Channel") == operator.get("Channel")
        assert second.get("Channel") == channel
        await client.event("Hangup", Channel=operator.get("Channel") or "", Cause="16")
        await client.event("Hangup", Channel=channel, Cause="16")
        await client.event("BridgeDestroy", BridgeUniqueid=bridge or "")
        assert sim.statistics().live_channels == 0
        await client.close()


async def test_a_customer_hanging_up_mid_conversation_hangs_up_the_operator() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.add_operator("1001", OperatorScript(ring_s=0.5, talk_s=60.0))
        client = await AmiTestClient.connect(sim)
        _, channel = await _answered(sim, client, talk_s=30.0)
        await client.action(
            "Redirect", ("Channel", channel), ("Context", CONTEXT_CONNECT), ("Exten", "1001")
        )
        await client.event("BridgeEnter", Channel=channel)
        request = await client.event("HangupRequest")
        assert request.get("Channel") == channel
        operator_gone = await client.event("Hangup", Context="from-operators")
        assert operator_gone.get("Cause") == "16"
        assert sim.statistics().live_channels == 0
        await client.close()


async def test_a_busy_operator_fails_the_connect_with_busy() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.add_operator("1001", OperatorScript(ring_s=0.5, talk_s=60.0))
        client = await AmiTestClient.connect(sim)
        _, first = await _answered(sim, client)
        sim.script_number("79001234568", NumberScript("answer", ring_s=1.0))
        second_call = await client.originate("PJSIP/79001234568@trunk")
        second = await client.event("UserEvent", UserEvent="ObzvonAnswered", Call=second_call)
        for channel in (first, second.get("Channel") or ""):
            await client.action(
                "Redirect", ("Channel", channel), ("Context", CONTEXT_CONNECT), ("Exten", "1001")
            )
            await asyncio.sleep(2.0 / SCALE)
        failed = await client.event("UserEvent", UserEvent="ObzvonConnectFailed")
        assert (failed.get("Call"), failed.get("DialStatus")) == (second_call, "BUSY")
        await client.close()


async def test_the_abandon_context_hangs_up_after_its_message() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        client = await AmiTestClient.connect(sim)
        call, channel = await _answered(sim, client)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await client.action(
            "Redirect",
            ("Channel", channel),
            ("Context", CONTEXT_ABANDON),
            ("Exten", EXTEN_ABANDON),
        )
        await client.event("SoftHangupRequest", Channel=channel)
        await client.event("Hangup", Uniqueid=call, Cause="16")
        assert 0.9 <= (loop.time() - sent) * SCALE <= 1.0 + 0.5 * SCALE
        await client.close()


async def test_a_supervisor_spy_call_answers_and_stays_until_hung_up() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.add_operator("2001", OperatorScript(ring_s=1.0))
        client = await AmiTestClient.connect(sim)
        _, customer = await _answered(sim, client)
        spy = str(uuid.uuid4())
        await client.action(
            "Originate",
            ("Channel", "PJSIP/2001"),
            ("Application", "ChanSpy"),
            ("Data", f"{customer},q"),
            ("Async", "true"),
            ("ChannelId", spy),
        )
        response = await client.event("OriginateResponse", Uniqueid=spy)
        assert response.get("Reason") == "4"
        assert response.get("Application") == "ChanSpy"
        started = await client.event("ChanSpyStart")
        assert started.get("SpyeeChannel") == customer
        await asyncio.sleep(20.0 / SCALE)
        supervisor = response.get("Channel") or ""
        await client.action("CoreShowChannels")
        shown = await client.event("CoreShowChannel", Channel=supervisor)
        assert shown.get("Application") == "ChanSpy"
        reply = await client.action("Hangup", ("Channel", supervisor))
        assert reply.get("Message") == "Channel Hungup"
        await client.event("Hangup", Channel=supervisor)
        await client.close()


async def test_hangup_by_regex_lists_and_hangs_up_every_match() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.script_number(NUMBER, NumberScript("answer", ring_s=0.5))
        client = await AmiTestClient.connect(sim)
        calls = [await client.originate(f"Local/{NUMBER}@sim-customer") for _ in range(2)]
        for call in calls:
            await client.event("OriginateResponse", Uniqueid=call)
        reply = await client.action("Hangup", ("Channel", "/^Local/.*;1$/"))
        assert reply.get("EventList") == "start"
        done = await client.event("ChannelsHungupListComplete")
        assert done.get("ListItems") == "2"
        for call in calls:
            await client.event("Hangup", Uniqueid=call, Cause="0")
        await asyncio.sleep(0.02)
        assert sim.statistics().live_channels == 0
        await client.close()


async def test_mixmonitor_starts_and_stops_recording() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        client = await AmiTestClient.connect(sim)
        _, channel = await _answered(sim, client)
        started = await client.action("MixMonitor", ("Channel", channel), ("File", "x.wav"))
        assert [k for k, _ in started.fields] == ["Response", "ActionID"]
        await client.event("MixMonitorStart", Channel=channel)
        stopped = await client.action("StopMixMonitor", ("Channel", channel))
        assert stopped.name == "Success"
        await client.event("MixMonitorStop", Channel=channel)
        again = await client.action("StopMixMonitor", ("Channel", channel))
        assert again.name == "Error"
        await client.close()


async def test_bridge_action_joins_two_waiting_channels() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.add_operator("1001", OperatorScript(ring_s=0.5))
        client = await AmiTestClient.connect(sim)
        _, customer = await _answered(sim, client)
        operator_call = await client.originate("PJSIP/1001", exten="wait")
        answered = await client.event("OriginateResponse", Uniqueid=operator_call)
        operator = answered.get("Channel") or ""
        reply = await client.action("Bridge", ("Channel1", customer), ("Channel2", operator))
        assert reply.name == "Success"
        await client.event("BridgeEnter", Channel=customer)
        await client.action("Hangup", ("Channel", operator), ("Cause", "16"))
        await client.event("Hangup", Channel=customer)
        assert sim.statistics().live_channels == 0
        await client.close()


async def test_unknown_actions_and_actions_before_login_are_refused() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        assert await reader.readline() == b"Asterisk Call Manager/11.0.0\r\n"
        writer.write(b"Action: Ping\r\nActionID: 1\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == (
            b"Response: Error\r\nActionID: 1\r\nMessage: Permission denied\r\n\r\n"
        )
        writer.close()
        client = await AmiTestClient.connect(sim)
        reply = await client.action("NoSuchThing")
        assert (reply.name, reply.get("Message")) == ("Error", "Invalid/unknown command")
        gone = await client.action("Redirect", ("Channel", "PJSIP/x-1"), ("Exten", "1"))
        assert gone.get("Message") == "No such channel"
        await client.close()


async def test_stopping_keeps_calls_and_a_new_listener_shows_them() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        client = await AmiTestClient.connect(sim)
        call, _ = await _answered(sim, client)
        await sim.stop(keep_calls=True)
        await client.close()
        stats = sim.statistics()
        assert (stats.listening, stats.connections, stats.live_channels) == (False, 0, 1)
        await sim.start(port=sim.port)
        again = await AmiTestClient.connect(sim)
        await again.action("CoreShowChannels")
        shown = await again.event("CoreShowChannel")
        assert shown.get("Uniqueid") == call
        await again.close()
        await sim.stop(keep_calls=False)
        assert sim.statistics().live_channels == 0


async def test_the_call_id_variable_reaches_the_dialplan_of_a_local_customer() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.script_number(NUMBER, NumberScript("answer", ring_s=0.5))
        client = await AmiTestClient.connect(sim)
        call = await client.originate(f"Local/{NUMBER}@sim-customer")
        ev = await client.event("UserEvent", UserEvent="ObzvonAnswered")
        assert ev.get("Call") == call
        assert ev.get("Channel", "").endswith(";1")
        value = await client.action(
            "Getvar", ("Channel", ev.get("Channel") or ""), ("Variable", VAR_CALL)
        )
        assert value.get("Value") == call
        await client.close()
