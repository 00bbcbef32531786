"""obzvon against a live Asterisk: the real runtime over real AMI, operators on real PJSIP.

Runs where an ``asterisk`` binary is installed (``OBZVON_ASTERISK`` names one, else the PATH
or the usual install locations); skips where there is none, or where it was built without PJSIP.

The test writes a private configuration under its temporary directory and starts
``asterisk -f -C <dir>/asterisk.conf`` on free ports:

- AMI: ``asterisk-conf/manager.conf`` as shipped, on another port and with a known secret;
- the dialplan: ``asterisk-conf/extensions.conf`` as shipped, plus two contexts of this test:
  the customers, dialled as ``Local/<number>@obzvon-test-customer`` (a number ending in 1 is
  busy, 2 rings without an answer, 3 meets congestion, 4 answers and hangs up at once, any
  other answers after a second and stays on the line), and the operators' softphones;
- PJSIP: operators 2001 and 2002, whose contacts are a second transport of the same Asterisk,
  where ``obzvon-test-phone`` rings, answers, talks for a few seconds and hangs up. The shipped
  ``obzvon-connect`` reaches them with ``Dial(PJSIP/<endpoint>)``, as in production.

Ten orders go through `dialer.app.open_runtime` on a live clock, with two operators driving the
HTTP API. Checked: each number's scripted outcome, every order ended or rescheduled by its
plan, dispositions stored with their attempts, the identities obzvon relies on (the ChannelId
as Uniqueid and Linkedid, ``;2`` halves, operator legs named after their endpoint), and that
every AMI event Asterisk sent, read by obzvon's own parser, is typed: only events obzvon does
not act on come through as generic. A second AMI session keeps the transcript in ``ami.log``
beside Asterisk's own log in the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from dialer.app import background_jobs, open_runtime
from dialer.clock import LiveClock
from dialer.config import CampaignSettings
from dialer.config.models import AmiServer
from dialer.storage.models import CallAttempt, Disposition, Order, OrderStatus
from dialer.telephony import DialSettings
from pbx import dialplan
from pbx.events import (
    AmiEvent,
    DialEnd,
    GenericEvent,
    Hangup,
    Newchannel,
    OriginateResponse,
    UserEvent,
    parse_event,
)
from pbx.protocol import AmiParser, Frame, encode
from tests.floor import Floor, floor_settings, free_port

CONF = Path(__file__).parent.parent / "asterisk-conf"
CUSTOMERS = "obzvon-test-customer"
PHONES = "obzvon-test-phone"
SECRET = secrets.token_urlsafe(16)
ORDERS = 10
OPERATORS = 2
TALK_S = 3
RETRY = {"busy": 300, "no_answer": 900, "congestion": 120, "machine": 3600, "failed": 600}
# by the last digit of the number: what the attempt must end as, and the Originate's Reason
SCRIPT = {"1": ("busy", 5), "2": ("no_answer", 3), "3": ("congestion", 8)}
# events obzvon has no class for and does not act on: they come through as GenericEvent
GENERIC_NAMES = {
    "NewCallerid",
    "NewConnectedLine",
    "LocalBridge",
    "HangupRequest",
    "SoftHangupRequest",
    # PJSIP's own word on endpoints and contacts; obzvon follows DeviceStateChange instead
    "PeerStatus",
    "ContactStatus",
}


def _find_asterisk() -> str | None:
    named = os.environ.get("OBZVON_ASTERISK")
    if named:
        return named if os.access(named, os.X_OK) else None
    for candidate in (
        shutil.which("asterisk"),
        "/usr/sbin/asterisk",
        "/usr/local/sbin/asterisk",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


ASTERISK = _find_asterisk()

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.slow,
    pytest.mark.skipif(ASTERISK is None, reason="no asterisk binary (set OBZVON_ASTERISK)"),
]


# -- the configuration --------------------------------------------------------------------

TEST_DIALPLAN = f"""

; ---- for tests/test_live_asterisk.py only ---------------------------------------------------

; A customer's phone, by the last digit of the number: 1 busy, 2 rings and is never answered,
; 3 congestion, 4 answers and hangs up at once; any other answers after a second, speaks (a
; tone) and stays on the line until the call is ended from the other side.
[{CUSTOMERS}]
exten => _X.,1,GotoIf($["${{EXTEN:-1}}" = "1"]?busy)
 same => n,GotoIf($["${{EXTEN:-1}}" = "2"]?noanswer)
 same => n,GotoIf($["${{EXTEN:-1}}" = "3"]?congestion)
 same => n,Ringing()
 same => n,Wait(1)
 same => n,Answer()
 same => n,GotoIf($["${{EXTEN:-1}}" = "4"]?leave)
 same => n,Playtones(425)
 same => n,Wait(120)
 same => n(leave),Hangup()
 same => n(busy),Busy(10)
 same => n(noanswer),Ringing()
 same => n,Wait(120)
 same => n(congestion),Congestion(10)

; The operators' softphones: ring for a second, answer, talk (a tone) and hang up.
[{PHONES}]
exten => _X.,1,Ringing()
 same => n,Wait(1)
 same => n,Answer()
 same => n,Playtones(440)
 same => n,Wait({TALK_S})
 same => n,Hangup()
"""


@dataclass(frozen=True)
class Ports:
    ami: int
    sip: int
    phones: int


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shipped(name: str, replacements: Iterable[tuple[str, str]]) -> str:
    text = (CONF / name).read_text(encoding="utf-8")
    for pattern, value in replacements:
        text, n = re.subn(pattern, value, text, count=1, flags=re.MULTILINE)
        assert n == 1, f"asterisk-conf/{name} no longer has {pattern!r}"
    return text


def _pjsip_conf(ports: Ports, operators: Iterable[str]) -> str:
    media = "disallow = all\nallow = alaw,ulaw\ndirect_media = no\ndtmf_mode = rfc4733\n"
    parts = [
        "[global]\ntype = global\nendpoint_identifier_order = ip,username\n",
        f"[pbx]\ntype = transport\nprotocol = udp\nbind = 127.0.0.1:{ports.sip}\n",
        f"[phones-udp]\ntype = transport\nprotocol = udp\nbind = 127.0.0.1:{ports.phones}\n",
        # the other end of every operator's line: the softphones, answering on their own port
        f"[phones]\ntype = endpoint\ncontext = {PHONES}\ntransport = phones-udp\n{media}",
        "[phones]\ntype = identify\nendpoint = phones\nmatch = 127.0.0.1\n",
    ]
    for name in operators:
        parts.append(
            f"[{name}]\ntype = endpoint\ncontext = softphones\ntransport = pbx\naors = {name}\n"
            f'callerid = "Operator {name}" <{name}>\n{media}'
        )
        parts.append(f"[{name}]\ntype = aor\ncontact = sip:{name}@127.0.0.1:{ports.phones}\n")
    return "\n".join(parts)


def write_config(root: Path, run_dir: Path, ports: Ports, operators: Iterable[str]) -> Path:
    """A complete configuration in `root`/etc; every directory Asterisk writes is private."""
    dirs = {
        "astetcdir": root / "etc",
        "astvarlibdir": root / "lib",
        "astdbdir": root / "lib",
        "astkeydir": root / "lib",
        "astspooldir": root / "spool",
        "astcachedir": root / "cache",
        "astlogdir": root / "log",
        "astrundir": run_dir,
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    etc = dirs["astetcdir"]
    directories = "".join(f"{k} => {v}\n" for k, v in dirs.items())
    files = {
        "asterisk.conf": f"[directories]\n{directories}\n[options]\nverbose = 3\nnocolor = yes\n",
        "modules.conf": "[modules]\nautoload = yes\n",
        "logger.conf": "[general]\n[logfiles]\nmessages.log => notice,warning,error,verbose\n",
        "manager.conf": _shipped(
            "manager.conf",
            [
                (r"^port = 5038$", f"port = {ports.ami}"),
                (r"^secret = CHANGE-ME$", f"secret = {SECRET}"),
            ],
        ),
        "extensions.conf": _shipped("extensions.conf", []) + TEST_DIALPLAN,
        "pjsip.conf": _pjsip_conf(ports, operators),
    }
    for name, text in files.items():
        (etc / name).write_text(text, encoding="utf-8")
    return etc / "asterisk.conf"


# -- a second AMI session that keeps everything Asterisk says ---------------------------------


@dataclass
class AmiTap:
    """Logged in as the dialer's AMI user; keeps every message with its arrival time."""

    heard: list[tuple[float, Frame]] = field(default_factory=list)
    _parser: AmiParser = field(default_factory=AmiParser)
    _waiting: dict[str, asyncio.Future[Frame]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _writer: asyncio.StreamWriter | None = None
    _task: asyncio.Task[None] | None = None
    _t0: float = field(default_factory=time.monotonic)

    async def connect(self, port: int, *, within: float, alive: Callable[[], bool]) -> None:
        deadline = time.monotonic() + within
        while True:
            assert alive(), "asterisk exited while starting (see log/messages.log)"
            try:
                reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                assert time.monotonic() < deadline, f"no AMI on port {port} within {within} s"
                await asyncio.sleep(0.2)
        self._task = asyncio.create_task(self._read(reader))
        login = await self.action(("Action", "Login"), ("Username", "obzvon"), ("Secret", SECRET))
        assert login.name == "Success", login

    async def action(self, *pairs: tuple[str, str]) -> Frame:
        assert self._writer is not None
        action_id = f"tap-{next(self._ids)}"
        answer: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[action_id] = answer
        self._writer.write(encode([*pairs, ("ActionID", action_id)]))
        async with asyncio.timeout(10):
            return await answer

    async def wait_for(self, found: Callable[[Frame], bool], *, within: float) -> Frame:
        async with asyncio.timeout(within):
            while True:
                for _, frame in self.heard:
                    if found(frame):
                        return frame
                await asyncio.sleep(0.05)

    def events(self) -> list[AmiEvent]:
        return [parse_event(f) for _, f in self.heard if f.kind == "event"]

    def transcript(self) -> str:
        return "".join(
            f"# <<< t={at - self._t0:.3f}\n" + "".join(f"{k}: {v}\n" for k, v in f.fields) + "\n"
            for at, f in self.heard
        )

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(1 << 16):
            now = time.monotonic()
            for item in self._parser.feed(data):
                if not isinstance(item, Frame):
                    continue
                self.heard.append((now, item))
                answer = self._waiting.pop(item.action_id or "", None)
                if item.kind == "response" and answer is not None and not answer.done():
                    answer.set_result(item)


@dataclass
class LivePbx:
    ports: Ports
    tap: AmiTap
    version: str


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


@pytest.fixture
async def pbx(tmp_path: Path) -> AsyncIterator[LivePbx]:
    assert ASTERISK is not None
    run_dir = Path(tempfile.mkdtemp(prefix="obzvon-ast-"))  # a short path for the socket
    ports = Ports(ami=free_port(), sip=_free_udp_port(), phones=_free_udp_port())
    operators = [str(2001 + i) for i in range(OPERATORS)]
    conf = write_config(tmp_path / "asterisk", run_dir, ports, operators)
    output = _open_log(tmp_path / "asterisk" / "log" / "stdout.log")
    proc = await asyncio.create_subprocess_exec(
        ASTERISK,
        "-f",
        "-C",
        str(conf),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output,
        stderr=output,
    )
    tap = AmiTap()
    try:
        await tap.connect(ports.ami, within=30, alive=lambda: proc.returncode is None)
        await tap.wait_for(lambda f: f.name == "FullyBooted", within=60)
        for module in ("res_pjsip.so", "chan_pjsip.so"):
            check = await tap.action(("Action", "ModuleCheck"), ("Module", module))
            if check.name != "Success":
                pytest.skip(f"this Asterisk has no {module}")
        settings = await tap.action(("Action", "CoreSettings"))
        yield LivePbx(ports=ports, tap=tap, version=settings.get("AsteriskVersion") or "")
    finally:
        await tap.close()
        (tmp_path / "ami.log").write_text(tap.transcript(), encoding="utf-8")
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        output.close()
        shutil.rmtree(run_dir, ignore_errors=True)


# -- the run ------------------------------------------------------------------------------


async def test_ten_orders_through_a_live_asterisk(tmp_path: Path, pbx: LivePbx) -> None:
    campaign = CampaignSettings(
        id="confirm",
        name="Live check",
        pacing="progressive",
        calling_window="00:00-24:00",  # type: ignore[arg-type]
        wrapup_s=1,
        ring_timeout_s=6,
        retry={k: (v,) for k, v in RETRY.items()},  # type: ignore[arg-type]
        shop_name="Test shop",
    )
    http_port = free_port()
    settings = floor_settings(
        tmp_path, operators=OPERATORS, campaign=campaign, port=http_port, first_id=2001
    ).model_copy(
        update={"ami": (AmiServer(name="live", port=pbx.ports.ami, secret=SecretStr(SECRET)),)}
    )
    dial = DialSettings(
        dial_template=f"Local/{{digits}}@{CUSTOMERS}",
        recordings_dir=str(tmp_path / "recordings"),
        ring_timeout_s=10,
    )
    started = time.monotonic()
    async with open_runtime(settings, clock=LiveClock(), dial=dial) as rt:
        # Floor's order() and bots() need only the runtime: there is no simulator here
        url = f"http://127.0.0.1:{http_port}"
        f = Floor(rt=rt, sim=None, settings=settings, base_url=url)  # type: ignore[arg-type]

        async def settle() -> None:
            for i in range(ORDERS):
                await f.order(i, digits=f"7900000{i:04d}")
            while True:
                await asyncio.sleep(0.5)
                stats = rt.engine.statistics(rt.clock.now())
                if stats.open_calls == 0 and stats.campaigns["confirm"].leads_due == 0:
                    await asyncio.sleep(0.5)  # let the writer finish
                    rt.daemon.stop()
                    return

        bots = f.bots(poll_s=0.1)
        async with asyncio.timeout(90):
            await rt.daemon.run(extra=[*background_jobs(rt), settle, *(b.run for b in bots)])
        stats = rt.engine.statistics(rt.clock.now()).campaigns["confirm"]
        async with rt.db.session() as session:
            orders = list(await session.scalars(select(Order)))
            attempts = list(await session.scalars(select(CallAttempt)))
            dispositions = list(await session.scalars(select(Disposition)))
    elapsed = time.monotonic() - started

    by_order = {o.id: [a for a in attempts if a.order_id == o.id] for o in orders}
    outcomes = {o.phone_e164: [a.outcome for a in by_order[o.id]] for o in orders}
    print(f"Asterisk {pbx.version}: {len(attempts)} attempts in {elapsed:.1f} s: {outcomes}")
    assert len(orders) == ORDERS
    assert [a for a in attempts if a.ended_at is None] == []

    # each number as scripted; every order ended or rescheduled by its plan
    connected: list[CallAttempt] = []
    for o in orders:
        (attempt,) = by_order[o.id]  # nothing was due again within the test
        assert o.status != OrderStatus.CALLING
        last = o.phone_e164[-1]
        if last in SCRIPT:
            assert attempt.outcome == SCRIPT[last][0], (o.phone_e164, attempt.outcome)
            assert o.status == OrderStatus.SCHEDULED and o.next_attempt_at is not None
            due = attempt.ended_at.timestamp() + RETRY[attempt.outcome]  # type: ignore[union-attr]
            assert o.next_attempt_at.timestamp() >= due - 1
        elif last == "4":  # gone while an operator's phone rang
            assert attempt.outcome == "hung_up", attempt.outcome
        else:
            assert attempt.outcome == "connected", (o.phone_e164, attempt.outcome)
        if attempt.outcome == "connected":
            connected.append(attempt)
            assert attempt.connected_at is not None and attempt.answered_at is not None
            # the answered customer reached an operator within the 2-second connect budget
            wait = attempt.connected_at.timestamp() - attempt.answered_at.timestamp()
            assert 0 <= wait <= campaign.connect_budget_s + 1.5, (o.phone_e164, wait)

    # every connected call got its operator's disposition, stored with that attempt
    by_channel = {d.channel_id: d for d in dispositions}
    assert len(connected) == ORDERS - len(SCRIPT) - 1
    for a in connected:
        d = by_channel[a.channel_id]
        assert d.operator_id == a.operator_id
    assert stats.abandons == 0
    assert sum(b.dispositions for b in bots) == len(dispositions)

    # what Asterisk said, read by obzvon's parser
    events = pbx.tap.events()
    surprises = {e.name for e in events if isinstance(e, GenericEvent)} - GENERIC_NAMES
    assert not surprises, f"events obzvon has no class for: {sorted(surprises)}"
    for e in events:
        if not isinstance(e, GenericEvent):
            assert type(e).__name__ == e.name, e.name
    _check_identities(events, attempts, connected)


def _check_identities(
    events: list[AmiEvent], attempts: list[CallAttempt], connected: list[CallAttempt]
) -> None:
    """The ids and names `pbx.channels` and `dialer.telephony` correlate calls by."""
    responses = {e.uniqueid: e for e in events if isinstance(e, OriginateResponse)}
    for a in attempts:
        response = responses[a.channel_id]  # type: ignore[index]
        reason = {o: r for o, r in SCRIPT.values()}.get(a.outcome or "", 4)  # 4: answered
        assert response.reason == reason, (a.outcome, response)

    new = [e for e in events if isinstance(e, Newchannel)]
    for a in attempts:
        halves = {e.channel[-2:]: e for e in new if e.linkedid == a.channel_id}
        assert halves[";1"].uniqueid == a.channel_id
        assert halves[";2"].uniqueid == f"{a.channel_id};2"

    operators = re.compile(r"^PJSIP/(20\d\d)-[0-9a-f]{8}$")
    for a in connected:
        (answer,) = [
            e
            for e in events
            if isinstance(e, DialEnd) and e.uniqueid == a.channel_id and e.dial_status == "ANSWER"
        ]
        match = operators.match(answer.dest_channel)
        assert match and match.group(1) == a.operator_id, answer.dest_channel
        assert answer.dest_linkedid == a.channel_id
        leg = [e for e in events if isinstance(e, Hangup) and e.uniqueid == answer.dest_uniqueid]
        assert len(leg) == 1 and leg[0].linkedid == a.channel_id
        said = [
            e
            for e in events
            if isinstance(e, UserEvent)
            and e.user_event == dialplan.USEREVENT_ANSWERED
            and e.headers.get("Call") == a.channel_id
        ]
        assert len(said) == 1 and said[0].uniqueid == a.channel_id
