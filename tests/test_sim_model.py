"""The simulator's call model over real TCP: seeded draws, scripts, patience, operators, time.

`AmiTestClient` is a deliberately small AMI client (pbx.protocol only) so these tests do not
depend on obzvon's own client; tests/test_sim_dialplan.py uses it too.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable

import pytest

from pbx.dialplan import CONTEXT_CONNECT, CONTEXT_OUTBOUND, EXTEN_ANSWERED, VAR_CALL
from pbx.protocol import AmiParser, Frame, encode
from pbx.sim import AsteriskSim, CallModel, NumberScript, OperatorScript
from pbx.sim.model import seeded_rng

SCALE = 100.0


class AmiTestClient:
    """Logs in, sends actions, and finds messages among everything received so far."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.messages: list[Frame] = []
        self._writer = writer
        self._reader = reader
        self._arrived = asyncio.Event()
        self._taken: set[int] = set()
        self._ids = itertools.count(1)
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, sim: AsteriskSim, *, events: str | None = None, secret: str = "obzvon"
    ) -> AmiTestClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        client = cls(reader, writer)
        extra = [("Events", events)] if events is not None else []
        reply = await client.action("Login", ("Username", "obzvon"), ("Secret", secret), *extra)
        assert reply.name == "Success", reply
        return client

    async def _read(self) -> None:
        parser = AmiParser()
        while data := await self._reader.read(65536):
            self.messages.extend(m for m in parser.feed(data) if isinstance(m, Frame))
            self._arrived.set()
        self._arrived.set()

    async def action(self, name: str, *pairs: tuple[str, str], within: float = 5.0) -> Frame:
        action_id = f"t-{next(self._ids)}"
        self._writer.write(encode([("Action", name), *pairs, ("ActionID", action_id)]))
        return await self.wait(
            lambda f: f.kind == "response" and f.action_id == action_id, within=within
        )

    async def wait(self, match: Callable[[Frame], bool], *, within: float = 5.0) -> Frame:
        """The first message not yet returned that `match`es, waiting `within` real seconds."""
        async with asyncio.timeout(within):
            while True:
                for index, frame in enumerate(self.messages):
                    if index not in self._taken and match(frame):
                        self._taken.add(index)
                        return frame
                self._arrived.clear()
                await self._arrived.wait()

    async def event(self, name: str, *, within: float = 5.0, **fields: str) -> Frame:
        return await self.wait(
            lambda f: (
                f.kind == "event"
                and f.name == name
                and all(f.get(k.replace("_", "-")) == v for k, v in fields.items())
            ),
            within=within,
        )

    def events(self, name: str | None = None) -> list[Frame]:
        return [f for f in self.messages if f.kind == "event" and name in (None, f.name)]

    async def originate(
        self,
        channel: str,
        *,
        context: str = CONTEXT_OUTBOUND,
        exten: str = EXTEN_ANSWERED,
        timeout_ms: int = 30000,
        variables: tuple[str, ...] = (),
    ) -> str:
        """An async Originate as obzvon sends it; returns the ChannelId."""
        call = str(uuid.uuid4())
        reply = await self.action(
            "Originate",
            ("Channel", channel),
            ("Context", context),
            ("Exten", exten),
            ("Priority", "1"),
            ("Async", "true"),
            ("Timeout", str(timeout_ms)),
            ("ChannelId", call),
            ("CallerID", '"Shop" <74950000000>'),
            ("Variable", f"{VAR_CALL}={call}"),
            *(("Variable", v) for v in variables),
        )
        assert reply.get("Message") == "Originate successfully queued"
        return call

    async def close(self) -> None:
        self._writer.close()
        await self._task


def _scaled(sim: AsteriskSim, real_seconds: float) -> float:
    return real_seconds * sim.time_scale


def test_the_same_seed_draws_the_same_customers() -> None:
    model = CallModel()
    first = [model.customer(seeded_rng(7, "customer", str(n))) for n in range(50)]
    again = [model.customer(seeded_rng(7, "customer", str(n))) for n in range(50)]
    other = [model.customer(seeded_rng(8, "customer", str(n))) for n in range(50)]
    assert first == again
    assert first != other
    assert {p.outcome for p in first} >= {"answer", "busy", "no_answer"}


async def _reasons(seed: int, numbers: list[str]) -> dict[str, str]:
    async with AsteriskSim(time_scale=400.0, seed=seed) as sim:
        client = await AmiTestClient.connect(sim)
        calls = {await client.originate(f"PJSIP/{n}@trunk"): n for n in numbers}
        out = {}
        for _ in numbers:
            ev = await client.event("OriginateResponse")
            out[calls[ev.get("Uniqueid") or ""]] = ev.get("Reason") or ""
        await client.close()
        return out


async def test_a_seeded_simulator_gives_each_number_the_same_outcome_in_any_call_order() -> None:
    numbers = [f"7900555{n:04d}" for n in range(16)]
    first = await _reasons(11, numbers)
    reversed_order = await _reasons(11, numbers[::-1])
    assert first == reversed_order
    assert len(set(first.values())) > 1


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [("answer", "4"), ("busy", "5"), ("no_answer", "3"), ("congestion", "8"), ("fail", "0")],
)
@pytest.mark.parametrize("channel", ["Local/{}@sim-customer", "PJSIP/{}@trunk"])
async def test_a_scripted_number_gets_its_outcome(channel: str, outcome: str, reason: str) -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.script_number("79001234567", NumberScript(outcome, ring_s=1.0))  # type: ignore[arg-type]
        client = await AmiTestClient.connect(sim)
        call = await client.originate(channel.format("79001234567"), timeout_ms=5000)
        ev = await client.event("OriginateResponse", Uniqueid=call)
        assert ev.get("Reason") == reason
        assert ev.get("Response") == ("Success" if reason == "4" else "Failure")
        assert sim.statistics().outcomes == {outcome: 1}
        await client.close()


async def test_a_customer_hangs_up_while_waiting_for_an_operator() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.script_number(
            "79001234567", NumberScript("answer", ring_s=1.0, hangup_while_waiting_s=5.0)
        )
        client = await AmiTestClient.connect(sim)
        loop = asyncio.get_running_loop()
        call = await client.originate("PJSIP/79001234567@trunk")
        await client.event("UserEvent", UserEvent="ObzvonAnswered", Call=call)
        answered = loop.time()
        hung = await client.event("Hangup", Uniqueid=call)
        waited = _scaled(sim, loop.time() - answered)
        assert hung.get("Cause") == "16"
        assert 4.0 <= waited <= 5.0 + 0.5 * SCALE
        assert sim.statistics().live_channels == 0
        await client.close()


async def test_a_customer_talking_to_an_operator_no_longer_runs_out_of_patience() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.script_number(
            "79001234567", NumberScript("answer", ring_s=1.0, hangup_while_waiting_s=20.0)
        )
        sim.add_operator("1001", OperatorScript(ring_s=0.5, talk_s=40.0))
        client = await AmiTestClient.connect(sim)
        call = await client.originate("PJSIP/79001234567@trunk")
        answered = await client.event("UserEvent", UserEvent="ObzvonAnswered", Call=call)
        channel = answered.get("Channel") or ""
        await client.action(
            "Redirect", ("Channel", channel), ("Context", CONTEXT_CONNECT), ("Exten", "1001")
        )
        await client.event("BridgeEnter", Channel=channel)
        await asyncio.sleep(25.0 / SCALE)  # past the customer's patience
        assert sim.statistics().bridges == 1
        first = await client.event("HangupRequest")
        assert (first.get("Channel") or "").startswith("PJSIP/1001-")  # the operator ended it
        await client.event("Hangup", Uniqueid=call, Cause="16")
        await client.close()


async def test_an_operator_who_does_not_answer_fails_the_connect_and_the_customer_waits_on() -> (
    None
):
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.script_number("79001234567", NumberScript("answer", ring_s=1.0))
        sim.add_operator("1001", OperatorScript(answer=False))
        client = await AmiTestClient.connect(sim)
        call = await client.originate(
            "PJSIP/79001234567@trunk", variables=("OBZVON_RING_TIMEOUT=4",)
        )
        answered = await client.event("UserEvent", UserEvent="ObzvonAnswered", Call=call)
        channel = answered.get("Channel") or ""
        await client.action(
            "Redirect", ("Channel", channel), ("Context", CONTEXT_CONNECT), ("Exten", "1001")
        )
        await client.event("DialState", DialStatus="RINGING")
        await client.event("DialEnd", DialStatus="NOANSWER")
        failed = await client.event("UserEvent", UserEvent="ObzvonConnectFailed")
        assert failed.get("Call") == call
        assert failed.get("DialStatus") == "NOANSWER"
        await client.action("CoreShowChannels")
        shown = await client.event("CoreShowChannel", Uniqueid=call)
        assert (shown.get("Context"), shown.get("Exten")) == (CONTEXT_OUTBOUND, "wait")
        assert sim.statistics().live_channels == 1
        await client.close()


async def test_an_unregistered_operator_cannot_be_dialled() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.script_number("79001234567", NumberScript("answer", ring_s=1.0))
        sim.add_operator("1001", OperatorScript(registered=False))
        client = await AmiTestClient.connect(sim)
        call = await client.originate("PJSIP/79001234567@trunk")
        answered = await client.event("UserEvent", UserEvent="ObzvonAnswered", Call=call)
        await client.action(
            "Redirect",
            ("Channel", answered.get("Channel") or ""),
            ("Context", CONTEXT_CONNECT),
            ("Exten", "1001"),
        )
        failed = await client.event("UserEvent", UserEvent="ObzvonConnectFailed")
        assert failed.get("DialStatus") == "CHANUNAVAIL"
        assert not client.events("DialBegin")[1:]  # only the customer's own leg was dialled
        await client.close()


@pytest.mark.parametrize("scale", [20.0, 200.0])
async def test_time_scale_speeds_up_every_timer(scale: float) -> None:
    async with AsteriskSim(time_scale=scale, seed=1) as sim:
        sim.script_number("79001234567", NumberScript("answer", ring_s=10.0))
        client = await AmiTestClient.connect(sim)
        loop = asyncio.get_running_loop()
        started = loop.time()
        call = await client.originate("PJSIP/79001234567@trunk")
        await client.event("OriginateResponse", Uniqueid=call)
        elapsed = loop.time() - started
        assert 10.0 / scale * 0.9 <= elapsed <= 10.0 / scale + 0.3
        await client.close()


async def test_several_clients_each_receive_every_event() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.script_number("79001234567", NumberScript("answer", ring_s=1.0, talk_s=2.0))
        clients = [await AmiTestClient.connect(sim) for _ in range(3)]
        assert sim.statistics().connections == 3
        call = await clients[0].originate("Local/79001234567@sim-customer")
        for client in clients:
            await client.event("Hangup", Uniqueid=call)
        await asyncio.sleep(0.05)
        seen = [[(f.name, f.get("Channel")) for f in c.events()] for c in clients]
        assert seen[0] == seen[1] == seen[2]
        assert len(seen[0]) > 20
        for client in clients:
            await client.close()


async def test_a_client_that_logs_in_with_events_off_gets_answers_but_no_events() -> None:
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.script_number("79001234567", NumberScript("busy", ring_s=0.0))
        quiet = await AmiTestClient.connect(sim, events="off")
        loud = await AmiTestClient.connect(sim)
        await quiet.originate("Local/79001234567@sim-customer")
        await loud.event("OriginateResponse")
        pong = await quiet.action("Ping")
        assert pong.get("Ping") == "Pong"
        assert quiet.events() == []
        await quiet.close()
        await loud.close()
