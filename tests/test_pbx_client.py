"""AmiClient over real TCP against a scripted AMI server that replays the golden captures.

Each trap of DESIGN.md section 3 has a test here named after the behaviour that avoids it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from pbx import (
    AmiAuthenticationError,
    AmiClient,
    AmiConnectionError,
    AmiDisconnected,
    AmiEvent,
    AmiLocalError,
    AmiRemoteError,
    AmiTimeout,
    FullyBooted,
    Hangup,
    HangupEvent,
    LinkLost,
    LinkRestored,
    MixMonitor,
    Originate,
    OriginateReason,
    Redirect,
    UserEvent,
)
from pbx.protocol import AmiParser, Frame, encode
from tests import golden

SECRET = "dialer-secret"
E = TypeVar("E", bound=AmiEvent)


def golden_answer(name: str, action: str, action_id: str, *, events: bool = True) -> bytes:
    """What Asterisk sent after the client's `action` in transcript `name`, with the
    transcript's ActionID replaced by `action_id`: the frames carrying that ActionID, and with
    `events` also every other frame up to the client's next action."""
    steps = golden.load(name)
    start = next(
        i
        for i, s in enumerate(steps)
        if s.direction == ">>>" and s.raw.startswith(f"Action: {action}\r\n".encode())
    )
    (sent,) = AmiParser(expect_banner=False).feed(steps[start].raw)
    assert isinstance(sent, Frame)
    old = f"ActionID: {sent.action_id}\r\n".encode()
    out: list[bytes] = []
    mine = True
    for step in steps[start + 1 :]:
        if step.direction == ">>>":
            mine = False
        elif old in step.raw or (events and mine):
            out.append(step.raw)
    return b"".join(out).replace(old, f"ActionID: {action_id}\r\n".encode())


FULLY_BOOTED = next(s.raw for s in golden.load("answer") if b"Event: FullyBooted" in s.raw)

Handler = Callable[[Frame, asyncio.StreamWriter], Awaitable[None]]


class ScriptedAmi:
    """A tiny AMI server: greets like Asterisk 22, answers Login and Ping as in the captures,
    and every other action with the handler registered for it (none: no answer at all)."""

    def __init__(self) -> None:
        self.received: list[Frame] = []
        self.connections = 0
        self.silent = False  # read actions but answer nothing, not even Ping
        self.handlers: dict[str, Handler] = {}
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.kick()
        await asyncio.sleep(0)

    def kick(self) -> None:
        """Drop every AMI connection (the listener stays)."""
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()

    def actions(self, name: str) -> list[Frame]:
        return [f for f in self.received if f.name.lower() == name.lower()]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        writer.write(golden.load("answer")[0].raw)  # the banner
        parser = AmiParser(expect_banner=False)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                for frame in parser.feed(data):
                    assert isinstance(frame, Frame)
                    self.received.append(frame)
                    if not self.silent:
                        await self._answer(frame, writer)
        writer.close()

    async def _answer(self, frame: Frame, writer: asyncio.StreamWriter) -> None:
        aid = frame.action_id or ""
        name = frame.name.lower()
        if name == "login":
            good = frame.get("Secret") == SECRET
            writer.write(golden_answer("answer" if good else "badlogin", "Login", aid))
            if good:
                writer.write(FULLY_BOOTED)
        elif name == "ping":
            writer.write(encode([("Response", "Success"), ("ActionID", aid), ("Ping", "Pong")]))
        elif name in self.handlers:
            await self.handlers[name](frame, writer)
        elif name == "coreshowchannels":
            writer.write(golden_answer("coreshowchannels", "CoreShowChannels", aid, events=False))


def replay(name: str, action: str, *, events: bool = True) -> Handler:
    async def handler(frame: Frame, writer: asyncio.StreamWriter) -> None:
        writer.write(golden_answer(name, action, frame.action_id or "", events=events))

    return handler


@pytest.fixture
async def server() -> AsyncIterator[ScriptedAmi]:
    srv = ScriptedAmi()
    await srv.start()
    yield srv
    await srv.stop()


def client(srv: ScriptedAmi, **kw: Any) -> AmiClient:
    opts: dict[str, Any] = {
        "ping_interval": 1.0,
        "action_timeout": 2.0,
        "originate_margin": 1.0,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
    }
    opts.update(kw)
    return AmiClient(host="127.0.0.1", port=srv.port, username="dialer", secret=SECRET, **opts)


async def next_of(stream: AsyncIterator[AmiEvent], kind: type[E], within: float = 5.0) -> E:
    async with asyncio.timeout(within):
        async for ev in stream:
            if isinstance(ev, kind):
                return ev
    raise AssertionError(f"the event stream ended before a {kind.__name__}")


def originate(number: str = "79001234560", timeout_ms: int = 3000) -> Originate:
    return Originate(
        channel=f"Local/{number}@sim-customer",
        context="dialer",
        exten="answered",
        channel_id=str(uuid.uuid4()),
        caller_id='"Shop" <74950000000>',
        variables={"LEAD": "order-42"},
        timeout_ms=timeout_ms,
    )


# -- login ---------------------------------------------------------------------------------


async def test_login_succeeds_and_the_link_reports_connected(server: ScriptedAmi) -> None:
    async with client(server) as ami:
        stats = ami.statistics()
        assert stats.connected and stats.reconnects == 0
        assert await next_of(ami.events(), FullyBooted)
    (login,) = server.actions("Login")
    assert login.get("Username") == "dialer" and login.action_id


async def test_bad_secret_raises_without_reconnecting(server: ScriptedAmi) -> None:
    ami = AmiClient(host="127.0.0.1", port=server.port, username="dialer", secret="wrong")
    with pytest.raises(AmiAuthenticationError, match="Authentication failed"):
        async with ami:
            pytest.fail("entered with a wrong secret")
    await asyncio.sleep(0.2)
    assert server.connections == 1 and len(server.actions("Login")) == 1


async def test_unreachable_asterisk_raises_connection_error(server: ScriptedAmi) -> None:
    await server.stop()
    with pytest.raises(AmiConnectionError):
        async with client(server):
            pytest.fail("entered without a server")


async def test_client_is_entered_once(server: ScriptedAmi) -> None:
    async with client(server) as ami:
        with pytest.raises(AmiLocalError):
            await ami.__aenter__()


# -- trap: Async Originate, resolved by its own OriginateResponse -------------------------


async def test_originate_sends_async_true_and_waits_for_its_own_originate_response(
    server: ScriptedAmi,
) -> None:
    async def queued_then_answered(frame: Frame, writer: asyncio.StreamWriter) -> None:
        aid = frame.action_id or ""
        answer = golden_answer("answer", "Originate", aid, events=False)
        queued, outcome = answer.split(b"\r\n\r\n", 1)
        writer.write(queued + b"\r\n\r\n")
        # another call's outcome first: it must not resolve this Originate
        writer.write(golden_answer("busy", "Originate", "someone-else", events=False))
        await asyncio.sleep(0.2)
        writer.write(outcome)

    server.handlers["originate"] = queued_then_answered
    async with client(server) as ami:
        cmd = originate()
        response = await ami.originate(cmd)
    assert response.answered and response.action_id == server.actions("Originate")[0].action_id
    (sent,) = server.actions("Originate")
    assert sent.get("Async") == "true"
    assert sent.get("ChannelId") == cmd.channel_id
    assert sent.getall("Variable") == ["LEAD=order-42"]


@pytest.mark.parametrize(
    ("scenario", "reason", "outcome"),
    [
        ("answer", 4, OriginateReason.ANSWERED),
        ("busy", 5, OriginateReason.BUSY),
        ("noanswer", 3, OriginateReason.NO_ANSWER),
        ("congestion", 8, OriginateReason.CONGESTION),
        ("failure", 0, OriginateReason.FAILURE),
    ],
)
async def test_originate_response_reason_maps_to_its_outcome(
    server: ScriptedAmi, scenario: str, reason: int, outcome: OriginateReason
) -> None:
    async def answer(frame: Frame, writer: asyncio.StreamWriter) -> None:
        capture = "busy" if scenario == "failure" else scenario
        data = golden_answer(capture, "Originate", frame.action_id or "")
        writer.write(
            data.replace(b"Reason: 5\r\n", b"Reason: 0\r\n") if capture != scenario else data
        )

    server.handlers["originate"] = answer
    async with client(server) as ami:
        response = await ami.originate(originate())
        assert (response.reason, response.outcome) == (reason, outcome)
        assert response.answered is (reason == 4)
        # the outcome is on the event stream too, for whoever follows calls from events
        streamed = await next_of(ami.events(), type(response))
        assert streamed == response


async def test_originate_refuses_raw_fields_without_async(server: ScriptedAmi) -> None:
    async with client(server) as ami:
        fields = [(k, v) for k, v in originate().to_fields() if k != "Async"]
        with pytest.raises(AmiLocalError, match="Async"):
            await ami.send(fields)
    assert not server.actions("Originate")


# -- trap: every await has a timeout -------------------------------------------------------


async def test_action_without_answer_raises_ami_timeout(server: ScriptedAmi) -> None:
    async with client(server, action_timeout=0.2) as ami:
        with pytest.raises(AmiTimeout):
            await ami.redirect(Redirect(channel="Local/1@x-1;1", context="c", exten="1001"))
        assert ami.statistics().actions_in_flight == 0
        assert ami.statistics().connected


async def test_originate_waits_its_ring_time_plus_margin_not_the_action_timeout(
    server: ScriptedAmi,
) -> None:
    server.handlers["originate"] = _queued_only
    async with client(server, action_timeout=0.05, originate_margin=0.2) as ami:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(AmiTimeout):
            await ami.originate(originate(timeout_ms=300))
        assert loop.time() - started >= 0.45


async def _queued_only(frame: Frame, writer: asyncio.StreamWriter) -> None:
    queued = golden_answer("noanswer", "Originate", frame.action_id or "", events=False)
    writer.write(queued.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")


async def test_error_response_raises_remote_error_with_asterisks_message(
    server: ScriptedAmi,
) -> None:
    async def no_such_channel(frame: Frame, writer: asyncio.StreamWriter) -> None:
        writer.write(
            encode(
                [
                    ("Response", "Error"),
                    ("ActionID", frame.action_id or ""),
                    ("Message", "No such channel"),
                ]
            )
        )

    server.handlers["redirect"] = no_such_channel
    async with client(server) as ami:
        with pytest.raises(AmiRemoteError, match="No such channel") as err:
            await ami.redirect(Redirect(channel="gone", context="c", exten="e"))
        assert err.value.action == "Redirect" and err.value.response == "Error"


# -- trap: panoramisk never reads the Pong: a watchdog of our own -------------------------


async def test_silent_server_is_declared_dead_within_three_ping_intervals_and_client_reconnects(
    server: ScriptedAmi,
) -> None:
    interval = 0.1
    async with client(server, ping_interval=interval) as ami:
        events = ami.events()
        loop = asyncio.get_running_loop()
        server.silent = True
        went_silent = loop.time()
        lost = await next_of(events, LinkLost, within=3 * interval + 2.0)
        assert loop.time() - went_silent >= 3 * interval * 0.9
        assert "no data" in lost.reason
        server.silent = False
        await next_of(events, LinkRestored)
        assert ami.statistics().connected and ami.statistics().reconnects == 1
    assert server.connections == 2
    assert server.actions("Ping")  # it did ping while the link was quiet


async def test_pings_keep_a_quiet_link_alive(server: ScriptedAmi) -> None:
    interval = 0.1
    async with client(server, ping_interval=interval) as ami:
        await asyncio.sleep(interval * 6)
        assert ami.statistics().connected and ami.statistics().reconnects == 0
    assert server.connections == 1 and len(server.actions("Ping")) >= 4


# -- trap: actions in flight at a disconnect may never resolve -----------------------------


async def test_action_in_flight_at_disconnect_raises_disconnected_and_is_never_resent(
    server: ScriptedAmi,
) -> None:
    async def cut_the_line(frame: Frame, writer: asyncio.StreamWriter) -> None:
        server.kick()

    server.handlers["originate"] = cut_the_line
    server.handlers["coreshowchannels"] = replay("coreshowchannels", "CoreShowChannels")
    async with client(server) as ami:
        events = ami.events()
        with pytest.raises(AmiDisconnected):
            await ami.originate(originate())
        await next_of(events, LinkRestored)
        await asyncio.sleep(0.1)
    assert len(server.actions("Originate")) == 1
    assert server.connections == 2


async def test_link_loss_is_followed_by_link_restored_with_the_live_channels(
    server: ScriptedAmi,
) -> None:
    server.handlers["coreshowchannels"] = replay(
        "coreshowchannels", "CoreShowChannels", events=False
    )
    async with client(server) as ami:
        events = ami.events()
        await next_of(events, FullyBooted)
        server.kick()
        lost = await next_of(events, LinkLost)
        restored = await anext(events)
        # events of the new login come after the resync snapshot, never before it
        after = await anext(events)
    assert lost.reason
    assert isinstance(restored, LinkRestored) and isinstance(after, FullyBooted)
    assert [c.uniqueid for c in restored.channels] == [
        "9add0637-07c3-4c34-9ecc-1a5ddb34fd66",
        "9add0637-07c3-4c34-9ecc-1a5ddb34fd66;2",
    ]


async def test_actions_are_refused_while_the_link_is_down(server: ScriptedAmi) -> None:
    async with client(server, backoff_initial=0.5, backoff_max=0.5) as ami:
        events = ami.events()
        server.kick()
        await next_of(events, LinkLost)
        with pytest.raises(AmiConnectionError):
            await ami.originate(originate())
        assert not ami.statistics().connected
    assert not server.actions("Originate")


async def test_reconnect_keeps_trying_while_asterisk_is_away(server: ScriptedAmi) -> None:
    server.handlers["coreshowchannels"] = replay("coreshowchannels", "CoreShowChannels")
    async with client(server) as ami:
        events = ami.events()
        port = server.port
        await server.stop()
        await next_of(events, LinkLost)
        await asyncio.sleep(0.3)  # several refused attempts at the capped backoff
        await server.start(port)
        await next_of(events, LinkRestored)
        assert ami.statistics().reconnects == 1


# -- trap: keep event callbacks short and exception-safe -----------------------------------


async def test_malformed_event_does_not_kill_the_reader(server: ScriptedAmi) -> None:
    async def junk_then_good(frame: Frame, writer: asyncio.StreamWriter) -> None:
        writer.write(b"no colon here\r\n\xff\xfe\x00 junk\r\n\r\n")
        writer.write(b"Event: Hangup\r\nCause: sixteen\r\nUniqueid: x\r\n\r\n")
        writer.write(b"Response\r\n\r\n")  # neither event nor response
        writer.write(b"Event: UserEvent\r\nBlob: " + b"x" * 5000 + b"\r\n\r\n")  # oversize
        writer.write(b"Event: UserEvent\r\nUserEvent: ObzvonAnswered\r\nLead: 42\r\n\r\n")
        writer.write(encode([("Response", "Success"), ("ActionID", frame.action_id or "")]))

    server.handlers["mixmonitor"] = junk_then_good
    async with client(server, max_frame_bytes=4096) as ami:
        events = ami.events()
        await ami.mix_monitor(MixMonitor(channel="PJSIP/x-1", file="x.wav"))
        hangup = await next_of(events, HangupEvent)
        assert hangup.cause is None and hangup.uniqueid == "x"
        user = await next_of(events, UserEvent)
        assert user.user_event == "ObzvonAnswered" and user.headers["Lead"] == "42"
        stats = ami.statistics()
        assert stats.connected and stats.frames_malformed >= 3


async def test_full_event_queue_drops_and_counts_without_blocking_actions(
    server: ScriptedAmi,
) -> None:
    async def flood(frame: Frame, writer: asyncio.StreamWriter) -> None:
        event = golden_answer("answer", "Originate", "x", events=True)
        writer.write(event * 20)  # 20 × the answered call's events, nobody reading
        writer.write(encode([("Response", "Success"), ("ActionID", frame.action_id or "")]))

    server.handlers["mixmonitor"] = flood
    async with client(server, event_queue_size=10) as ami:
        await ami.mix_monitor(MixMonitor(channel="PJSIP/x-1", file="x.wav"))
        stats = ami.statistics()
        assert stats.events_total > 200 and stats.events_per_s > 0
        assert stats.events_dropped == stats.events_total - 10
        # the link notices are never the ones dropped
        server.kick()
        assert await next_of(ami.events(), LinkLost)


async def test_hangup_by_regex_returns_the_channels_hung_up(server: ScriptedAmi) -> None:
    server.handlers["hangup"] = replay("coreshowchannels", "Hangup", events=False)
    server.handlers["coreshowchannels"] = replay(
        "coreshowchannels", "CoreShowChannels", events=False
    )
    async with client(server) as ami:
        channels = await ami.core_show_channels()
        assert [c.application for c in channels] == ["Wait", "Answer"]
        hung = await ami.hangup(Hangup(channel="/^Local\\/79001234560@sim-customer-.*;1$/"))
    assert hung == ("Local/79001234560@sim-customer-0000000c;1",)


async def test_mix_monitor_answer_without_message_is_success(server: ScriptedAmi) -> None:
    server.handlers["mixmonitor"] = replay("mixmonitor-hangup", "MixMonitor", events=False)
    async with client(server) as ami:
        await ami.mix_monitor(MixMonitor(channel="PJSIP/x-1", file="x.wav", options="b"))


async def test_events_end_when_the_client_closes(server: ScriptedAmi) -> None:
    async with client(server) as ami:
        pass
    seen = [ev async for ev in ami.events()]
    assert [type(e) for e in seen] == [FullyBooted]
