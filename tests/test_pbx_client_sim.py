"""AmiClient and ChannelTracker against the Asterisk simulator over loopback TCP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest

from pbx import (
    AmiAuthenticationError,
    AmiClient,
    AmiEvent,
    ChannelTracker,
    LinkLost,
    LinkRestored,
    Originate,
    OriginateReason,
)
from pbx.dialplan import CONTEXT_OUTBOUND, EXTEN_ANSWERED, VAR_CALL

if not hasattr(pytest.importorskip("pbx.sim"), "AsteriskSim"):
    pytest.skip("pbx.sim has no AsteriskSim in this tree", allow_module_level=True)

from pbx.sim import AsteriskSim, NumberScript

E = TypeVar("E", bound=AmiEvent)
TIME_SCALE = 20.0  # simulated seconds per real second


@pytest.fixture
async def sim() -> AsyncIterator[AsteriskSim]:
    s = AsteriskSim(
        user="obzvon", secret="obzvon", time_scale=TIME_SCALE, seed=1, login_failure_delay=0.05
    )
    await s.start(host="127.0.0.1", port=0)
    yield s
    await s.close()


def client(sim: AsteriskSim, **kw: Any) -> AmiClient:
    opts: dict[str, Any] = {
        "ping_interval": 1.0,
        "action_timeout": 2.0,
        "originate_margin": 2.0,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
    }
    opts.update(kw)
    return AmiClient(host="127.0.0.1", port=sim.port, username="obzvon", secret="obzvon", **opts)


def originate(number: str, *, ring_timeout_s: float = 10.0) -> Originate:
    call = str(uuid.uuid4())
    return Originate(
        channel=f"Local/{number}@sim-customer",
        context=CONTEXT_OUTBOUND,
        exten=EXTEN_ANSWERED,
        channel_id=call,
        variables={VAR_CALL: call},
        caller_id='"Shop" <74950000000>',
        timeout_ms=int(ring_timeout_s * 1000),
    )


async def next_of(stream: AsyncIterator[AmiEvent], kind: type[E], within: float = 5.0) -> E:
    async with asyncio.timeout(within):
        async for ev in stream:
            if isinstance(ev, kind):
                return ev
    raise AssertionError(f"the event stream ended before a {kind.__name__}")


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        ("answer", OriginateReason.ANSWERED),
        ("busy", OriginateReason.BUSY),
        ("no_answer", OriginateReason.NO_ANSWER),
        ("congestion", OriginateReason.CONGESTION),
        ("fail", OriginateReason.FAILURE),
    ],
)
async def test_each_originate_outcome_comes_back_as_its_reason(
    sim: AsteriskSim, outcome: str, reason: OriginateReason
) -> None:
    number = "79001234567"
    sim.script_number(number, NumberScript(outcome, ring_s=1.0))  # type: ignore[arg-type]
    async with client(sim) as ami:
        cmd = originate(number)
        response = await ami.originate(cmd)
    assert response.outcome is reason
    assert response.answered is (reason is OriginateReason.ANSWERED)
    assert response.uniqueid == cmd.channel_id


async def test_bad_secret_against_the_simulator_raises_without_reconnecting(
    sim: AsteriskSim,
) -> None:
    ami = AmiClient(host="127.0.0.1", port=sim.port, username="obzvon", secret="wrong")
    with pytest.raises(AmiAuthenticationError):
        async with ami:
            pytest.fail("entered with a wrong secret")
    await asyncio.sleep(0.2)
    assert sim.statistics().connections == 0


async def test_reconnect_resyncs_and_reports_survived_and_lost_calls(sim: AsteriskSim) -> None:
    staying, leaving = "79001234564", "79001234565"
    sim.script_number(staying, NumberScript("answer", ring_s=0.5))
    # talks 1 s of real time after answering: ends while the AMI link is down
    sim.script_number(leaving, NumberScript("answer", ring_s=0.5, talk_s=TIME_SCALE * 1.0))
    tracker = ChannelTracker()
    async with client(sim) as ami:
        events = ami.events()
        calls = {staying: originate(staying), leaving: originate(leaving)}
        for cmd in calls.values():
            tracker.track(cmd.channel_id)
        answers = await asyncio.gather(*(ami.originate(cmd) for cmd in calls.values()))
        assert all(a.answered for a in answers)
        async with asyncio.timeout(5):
            async for ev in events:
                tracker.on_event(ev)
                if len(tracker.live_calls()) == 2:
                    break
        assert tracker.live_calls() == {cmd.channel_id for cmd in calls.values()}

        await sim.stop(keep_calls=True)
        await next_of(events, LinkLost)
        await asyncio.sleep(1.5)  # the leaving customer hangs up meanwhile, unheard
        await sim.start(port=sim.port)
        restored = await next_of(events, LinkRestored, within=10)

        report = tracker.resync(restored.channels)
        assert report.survived == {calls[staying].channel_id}
        assert report.lost == {calls[leaving].channel_id}
        assert ami.statistics().reconnects == 1
        assert tracker.channels_of(calls[staying].channel_id)
