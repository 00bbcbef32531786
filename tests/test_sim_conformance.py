"""The simulator replays every golden capture as the live Asterisk 22 did.

For each transcript in tests/fixtures/ami-golden the client's actions (``>>>``) are sent to a fresh
`AsteriskSim` over TCP, each at its moment in the capture (scaled by the simulator's time scale)
and not before the client has seen the messages that preceded it. What the simulator sends is
compared message by message with the capture's ``<<<`` messages: the kind (event name or
response), the order, the field names and their order, and every value except those that differ
between any two runs of Asterisk itself:

- Uniqueid / Linkedid / BridgeUniqueid values not set by the client, and channel names' sequence
  numbers, must map one-to-one onto the capture's (so "this event is about the same channel as
  that one" is checked, the numbers themselves are not); the ChannelId the client set must come
  back unchanged;
- Uptime, LastReload, Timestamp and Duration only need the same shape.

Tolerances, where Asterisk's own order depends on thread timing. Messages are grouped into
*moments*: runs of capture messages less than 100 ms apart. Within one moment:

1. DeviceStateChange and OriginateResponse may come anywhere: Asterisk publishes device states
   from a task-processor thread and the OriginateResponse from the originate thread, racing the
   channel's own events (compare answer.ami, connect.ami, abandon.ami and mixmonitor-hangup.ami:
   the same call, four different positions);
2. in a run of consecutive SoftHangupRequest / HangupRequest / Hangup events, the events of
   different channels may interleave differently as long as each channel's own events keep
   their order (mixmonitor-hangup.ami and coreshowchannels.ami hang up the same Local pair
   with the two halves interleaved differently).

Everything else must match exactly.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from pbx.protocol import AmiParser, Banner, Frame
from pbx.sim import AsteriskSim, NumberScript, OperatorScript
from tests import golden

FLOATING = frozenset({"DeviceStateChange", "OriginateResponse"})
HANGUPS = frozenset({"SoftHangupRequest", "HangupRequest", "Hangup"})
MOMENT_GAP = 0.1
SHAPE_ONLY = frozenset({"Uptime", "LastReload", "Timestamp", "Duration"})
# scenarios whose actions must land within Asterisk's 500 ms Answer() settling run slower
TIME_SCALE = {"mixmonitor-hangup": 5.0, "coreshowchannels": 5.0}
DEFAULT_TIME_SCALE = 40.0

_SEQ = re.compile(r"-[0-9a-f]{8}(?=;[12]$|$)")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _is_channel_field(key: str) -> bool:
    return key.endswith("Channel")


def _is_id_field(key: str) -> bool:
    return key.endswith(("Uniqueid", "Linkedid")) or key == "BridgeId"


def _channel_key(name: str) -> str:
    return _SEQ.sub("-*", name)


def _shape(value: str) -> str:
    return re.sub(r"[0-9]+", "9", value)


@dataclass
class Renaming:
    """Values that must correspond one-to-one between the capture and the simulator."""

    exact: frozenset[str]
    forward: dict[str, str] = field(default_factory=dict)
    backward: dict[str, str] = field(default_factory=dict)

    def same(self, key: str, want: str, got: str) -> bool:
        if not want or not got or want == "<unknown>":
            return want == got
        if _is_channel_field(key) and _channel_key(want) != _channel_key(got):
            return False
        if _is_id_field(key) and _UUID.match(want) and want.split(";")[0] in self.exact:
            return want == got
        if self.forward.get(want, got) != got or self.backward.get(got, want) != want:
            return False
        self.forward[want], self.backward[got] = got, want
        return True

    def copy(self) -> Renaming:
        return Renaming(self.exact, dict(self.forward), dict(self.backward))


def _differences(want: Frame, got: Frame, names: Renaming) -> list[str]:
    if [k for k, _ in want.fields] != [k for k, _ in got.fields]:
        return [f"fields {[k for k, _ in got.fields]} != {[k for k, _ in want.fields]}"]
    problems = []
    for (key, w), (_, g) in zip(want.fields, got.fields, strict=True):
        if key in SHAPE_ONLY:
            ok = _shape(w) == _shape(g)
        elif _is_channel_field(key) or _is_id_field(key) or key == "BridgeUniqueid":
            ok = names.same(key, w, g)
        else:
            ok = w == g
        if not ok:
            problems.append(f"{key}: {g!r} != {w!r}")
    return problems


def _canonical(frames: list[Frame]) -> list[Frame]:
    """Tolerance 2: order each run of hangup events by channel, keeping each channel's order."""
    out: list[Frame] = []
    run: list[Frame] = []
    for frame in [*frames, None]:
        if frame is not None and frame.name in HANGUPS:
            run.append(frame)
            continue
        out.extend(sorted(run, key=lambda f: _channel_key(f.get("Channel") or "")))
        run = []
        if frame is not None:
            out.append(frame)
    return out


def _label(frame: Frame) -> str:
    return f"{frame.fields[0][0]}: {frame.name} {frame.get('Channel') or ''}".strip()


def compare(steps: list[golden.Step], got: list[Frame], names: Renaming) -> list[str]:
    """Problems found comparing the simulator's frames with the capture's ``<<<`` frames."""
    wanted = [
        (step.t, frame)
        for step in steps
        if step.direction == "<<<"
        for frame in AmiParser().feed(step.raw)
        if isinstance(frame, Frame)
    ]
    moments: list[list[Frame]] = []
    last_t = None
    for t, frame in wanted:
        if last_t is None or t - last_t >= MOMENT_GAP:
            moments.append([])
        moments[-1].append(frame)
        last_t = t
    problems: list[str] = []
    position = 0
    for number, moment in enumerate(moments):
        mine = got[position : position + len(moment)]
        position += len(moment)
        where = f"moment {number} (from {_label(moment[0])})"
        if len(mine) < len(moment):
            return [*problems, f"{where}: got {len(mine)} messages, want {len(moment)}"]
        fixed_want = _canonical([f for f in moment if f.name not in FLOATING])
        fixed_got = _canonical([f for f in mine if f.name not in FLOATING])
        if [_label(f) for f in map(_unnamed, fixed_got)] != [
            _label(f) for f in map(_unnamed, fixed_want)
        ]:
            problems.append(
                f"{where}: order\n  got  {[_label(f) for f in fixed_got]}\n"
                f"  want {[_label(f) for f in fixed_want]}"
            )
            continue
        for want, frame in zip(fixed_want, fixed_got, strict=True):
            for problem in _differences(want, frame, names):
                problems.append(f"{where}, {_label(want)}: {problem}")
        spare = [f for f in mine if f.name in FLOATING]
        for want in (f for f in moment if f.name in FLOATING):
            for candidate in spare:
                trial = names.copy()
                if candidate.name == want.name and not _differences(want, candidate, trial):
                    spare.remove(candidate)
                    names.forward, names.backward = trial.forward, trial.backward
                    break
            else:
                problems.append(f"{where}: no match for {_label(want)} {want.as_dict()}")
    if len(got) > position:
        problems.append(f"unexpected extra messages: {[_label(f) for f in got[position:]]}")
    return problems


def _unnamed(frame: Frame) -> Frame:
    # compare the order by kind and channel pattern, not by sequence numbers
    channel = frame.get("Channel")
    if channel is None:
        return frame
    return Frame.of(frame.fields[0], ("Channel", _channel_key(channel)))


def _setup(name: str, sim: AsteriskSim) -> None:
    if name == "connect-sip":
        # README: a SIP customer that rings 3 s and answers; an operator softphone that rings
        # 1 s, answers, talks 20 s and hangs up
        sim.script_number("79001234560", NumberScript("answer", ring_s=3.0))
        sim.add_operator("1001", OperatorScript(ring_s=1.0, talk_s=20.0))


def _channel_names(frames: list[Frame]) -> dict[str, list[str]]:
    """Channel names in order of first appearance, grouped by name without sequence number."""
    out: dict[str, list[str]] = {}
    for frame in frames:
        for key, value in frame.fields:
            if _is_channel_field(key) and _SEQ.search(value):
                seen = out.setdefault(_channel_key(value), [])
                if value not in seen:
                    seen.append(value)
    return out


def _rename(raw: bytes, before: list[Frame], mine: list[Frame]) -> bytes:
    """The capture's channel names in an action, replaced by the simulator's names."""
    text = raw.decode()
    theirs, ours = _channel_names(before), _channel_names(mine)
    for key, names in theirs.items():
        for index, name in enumerate(names):
            if name in text and index < len(ours.get(key, [])):
                text = text.replace(name, ours[key][index])
    return text.encode()


@dataclass
class Replay:
    banner: Banner | None
    frames: list[Frame]
    closed_by_server: bool
    login_reply_after: float | None
    live_channels: int
    exact_ids: frozenset[str]


async def replay(name: str) -> Replay:
    steps = golden.load(name)
    scale = TIME_SCALE.get(name, DEFAULT_TIME_SCALE)
    sim = AsteriskSim(user="dialer", secret="dialer-secret", time_scale=scale, seed=1)
    _setup(name, sim)
    got: list[Frame] = []
    banner: list[Banner] = []
    arrived = asyncio.Event()
    closed = asyncio.Event()
    async with sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)

        async def read() -> None:
            parser = AmiParser()
            while data := await reader.read(65536):
                for message in parser.feed(data):
                    if isinstance(message, Banner):
                        banner.append(message)
                    else:
                        got.append(message)
                arrived.set()
            closed.set()

        reading = asyncio.create_task(read())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        deadline = t0 + max(s.t for s in steps) / scale + 5.0

        async def until(condition: Callable[[], bool]) -> None:
            while not condition():
                if loop.time() > deadline:
                    return
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), deadline - loop.time())
                except TimeoutError:
                    return

        before: list[Frame] = []
        sent: list[Frame] = []
        login_sent = None
        for step in steps:
            parsed = [f for f in AmiParser().feed(step.raw) if isinstance(f, Frame)]
            if step.direction == "<<<":
                before.extend(parsed)
                continue
            need = sum(1 for f in before if f.name not in FLOATING)
            await until(lambda need=need: sum(1 for f in got if f.name not in FLOATING) >= need)
            await asyncio.sleep(max(0.0, t0 + step.t / scale - loop.time()))
            writer.write(_rename(step.raw, before, got))
            sent.extend(parsed)
            if parsed and parsed[0].name == "Login":
                login_sent = time.monotonic()
        total = len(before)
        await until(lambda: len(got) >= total)
        login_reply_after = time.monotonic() - login_sent if login_sent is not None else None
        # anything more would be a message the capture does not have
        await asyncio.sleep(0.1)
        live = sim.statistics().live_channels
        try:
            await asyncio.wait_for(closed.wait(), 0.05)
        except TimeoutError:
            pass
        writer.close()
        await reading
    exact = frozenset(f.get("ChannelId") or "" for f in sent) - {""}
    return Replay(
        banner[0] if banner else None, got, closed.is_set(), login_reply_after, live, exact
    )


@pytest.mark.parametrize("name", golden.SCENARIOS)
async def test_sim_replays_golden_capture(name: str) -> None:
    steps = golden.load(name)
    result = await replay(name)
    assert result.banner == Banner("11.0.0")
    problems = compare(steps, result.frames, Renaming(result.exact_ids))
    assert not problems, f"{name}:\n" + "\n".join(problems)
    assert result.live_channels == 0
    if name == "badlogin":
        # a wrong secret is refused after Asterisk's one-second delay, then disconnected
        assert result.closed_by_server
        assert result.login_reply_after is not None and result.login_reply_after >= 0.9
