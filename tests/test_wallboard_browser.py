"""The wallboard in headless Chromium, against a whole runtime and the Asterisk simulator.

Chromium is driven over the DevTools protocol on a websocket (no downloaded browser, no driver
binary). The page loads, a simulated call shows on its operator's tile within a second of the
operator's state event, and a supervisor clicking *Pause* on another operator's tile pauses
that operator in the engine; an inbound line's queue shows its service level in the warning
colour below target, and today's confirmations by category fill their table. Skipped where
Chromium is not installed, except when CI=true.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from acd.states import OperatorState
from dialer.app import Runtime, background_jobs, open_runtime
from dialer.bus import EventBus
from dialer.clock import ScaledClock
from dialer.config import CampaignSettings, OperatorSettings, Settings
from dialer.config.models import DatabaseSettings, HttpSettings
from dialer.engine import events as ev
from dialer.engine.stats import QueueStatistics
from dialer.telephony import DialSettings
from pbx.sim import AsteriskSim, CallModel, NumberScript, OperatorScript
from tests.test_wallboard import floor, free_port, serve, wallboard_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("CI") == "true":
        pytest.fail("Chromium is not installed: apt-get install -y chromium", pytrace=False)
    pytest.skip("Chromium is not installed", allow_module_level=True)

SCALE = 10.0
START = datetime(2026, 6, 15, 9, 0, tzinfo=UTC).timestamp()  # noon in Moscow
FIRST, SECOND, SUPERVISOR = "2001", "2002", "9001"
IDLE_OPERATORS = 150  # offline, for a floor of realistic size
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)


class Page:
    """One browser tab spoken to over the DevTools protocol (flattened session)."""

    def __init__(self, ws: ClientConnection, session: str) -> None:
        self._ws, self._session = ws, session
        self._ids = itertools.count(1000)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)

    def dispatch(self, message: dict[str, Any]) -> None:
        future = self._pending.pop(message.get("id", -1), None)
        if future is not None and not future.done():
            future.set_result(message)
        elif "method" in message and not self.events.full():
            self.events.put_nowait(message)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        message = {"id": number, "method": method, "params": params, "sessionId": self._session}
        await self._ws.send(json.dumps(message))
        async with asyncio.timeout(10):
            reply = await future
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def js(self, expression: str) -> Any:
        reply = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(
        self, expression: str, *, within_s: float = 5.0, every_s: float = 0.02
    ) -> Any:
        """The first truthy value of `expression`, tried every `every_s` for `within_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while loop.time() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(every_s)
        raise AssertionError(f"not within {within_s} s: {expression}")

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element `selector`."""
        box = await self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
            "return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )


@asynccontextmanager
async def chromium(tmp: Path) -> AsyncIterator[Page]:
    """A fresh headless Chromium with one blank tab."""
    assert CHROMIUM is not None
    profile = Path(tempfile.mkdtemp(dir=tmp, prefix="chromium-"))
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(400):  # at most 20 s
            if port_file.exists() and len(port_file.read_text().splitlines()) >= 2:
                break
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        async with connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as ws:
            await ws.send(
                json.dumps(
                    {"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}}
                )
            )
            target = await _reply(ws, 1)
            await ws.send(
                json.dumps(
                    {
                        "id": 2,
                        "method": "Target.attachToTarget",
                        "params": {"targetId": target["targetId"], "flatten": True},
                    }
                )
            )
            session = (await _reply(ws, 2))["sessionId"]
            page = Page(ws, session)

            async def read() -> None:
                async for raw in ws:
                    page.dispatch(json.loads(raw))

            reader = asyncio.create_task(read(), name="cdp-reader")
            try:
                await page.send("Page.enable")
                await page.send("Runtime.enable")
                # a wall screen, not a phone
                await page.send(
                    "Emulation.setDeviceMetricsOverride",
                    width=1600,
                    height=1000,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
            finally:
                reader.cancel()
                with suppress(asyncio.CancelledError):
                    await reader
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def _reply(ws: ClientConnection, number: int) -> dict[str, Any]:
    async with asyncio.timeout(10):
        async for raw in ws:
            message = json.loads(raw)
            if message.get("id") == number:
                result: dict[str, Any] = message["result"]
                return result
    raise AssertionError("the browser closed the connection")


def settings_for(tmp_path: Path) -> Settings:
    ops = [
        OperatorSettings(id=FIRST),
        OperatorSettings(id=SECOND),
        OperatorSettings(id=SUPERVISOR, role="supervisor", token="sup-token"),  # type: ignore[arg-type]
        *(OperatorSettings(id=str(3000 + i)) for i in range(IDLE_OPERATORS)),
    ]
    return Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'board.db'}"),
        http=HttpSettings(listen=f"127.0.0.1:{free_port()}"),
        campaigns=(CampaignSettings(id="confirm", shop_name="Shop", pacing="progressive"),),
        operators=tuple(ops),
    )


async def add_order(rt: Runtime, phone: str) -> None:
    await rt.add_order(
        crm="test",
        external_id=f"browser-{phone}",
        phone_e164=f"+{phone}",
        campaign_id="confirm",
        timezone="Europe/Moscow",
        category="cosmetics",
        amount=Decimal(1990),
    )


async def test_the_floor_in_a_browser_shows_calls_live_and_pauses_an_operator(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    clock = ScaledClock(scale=SCALE, start=START)
    model = CallModel(patience_median_s=None, machine_rate=0.0, notsure_rate=0.0)
    report: dict[str, Any] = {}
    async with AsteriskSim(time_scale=SCALE, seed=9, model=model) as sim:
        for op in (FIRST, SECOND):
            sim.add_operator(op, OperatorScript(ring_s=0.2, talk_s=60.0))
        sim.script_number("79005550001", NumberScript("answer", ring_s=1.0, talk_s=60.0))
        dial = DialSettings(dial_template="PJSIP/{digits}@trunk", recordings_dir=str(tmp_path))
        async with open_runtime(settings, clock=clock, ami_port=sim.port, dial=dial) as rt:

            async def scenario() -> None:
                try:
                    async with chromium(tmp_path) as page:
                        await in_the_browser(rt, page, report)
                finally:
                    rt.daemon.stop()

            async with asyncio.timeout(60):
                await rt.daemon.run(extra=[*background_jobs(rt), scenario])

    assert report["tiles"] == IDLE_OPERATORS + 3
    assert report["call_on_tile_after_s"] < 1.0
    assert report["same_tile_node"] is True
    assert report["paused"] == (OperatorState.PAUSED, "supervisor")
    assert report["report_header"] == "campaign id"


async def in_the_browser(rt: Runtime, page: Page, report: dict[str, Any]) -> None:
    base = f"http://{rt.settings.http.listen}"
    loaded = asyncio.create_task(_event(page, "Page.loadEventFired"))
    await page.send("Page.navigate", url=f"{base}/#token=sup-token")
    await loaded
    assert await page.js("document.title") == "obzvon — floor"
    count = "document.querySelectorAll('.tile').length"
    report["tiles"] = await page.wait_for(f"{count} > {IDLE_OPERATORS} && {count}")
    assert await page.wait_for("document.getElementById('conn').textContent === 'live'")
    await page.js(f"document.getElementById('op-{FIRST}').dataset.marker = 'kept'")

    # a call: the first operator is ready, an order arrives, the simulator answers
    now = rt.clock.now()
    await rt.daemon.submit(ev.OperatorLogin(operator_id=FIRST, now=now))
    await rt.daemon.submit(ev.OperatorReady(operator_id=FIRST, now=now))
    states = rt.bus.subscribe(f"operators/{FIRST}/state", maxsize=100)
    loop = asyncio.get_running_loop()
    await add_order(rt, "79005550001")
    async with asyncio.timeout(10):
        while True:
            message = await states.queue.get()
            if message.payload.get("call_id"):
                call_id, published = message.payload["call_id"], loop.time()
                break
    rt.bus.unsubscribe(states)
    tile = f"document.getElementById('op-{FIRST}')"
    await page.wait_for(f"{tile}.dataset.call === {json.dumps(call_id)}", within_s=2.0)
    report["call_on_tile_after_s"] = loop.time() - published
    report["same_tile_node"] = await page.js(f"{tile}.dataset.marker === 'kept'")

    # a supervisor action from the page: pause the second operator from their tile's menu
    now = rt.clock.now()
    await rt.daemon.submit(ev.OperatorLogin(operator_id=SECOND, now=now))
    await rt.daemon.submit(ev.OperatorReady(operator_id=SECOND, now=now))
    await page.wait_for(f"document.getElementById('op-{SECOND}').dataset.state === 'ready'")
    await page.click(f"#op-{SECOND}")
    await page.wait_for("!document.getElementById('menu').hidden")
    await page.click("#menu [data-action=pause]")
    for _ in range(250):  # at most 5 s
        if rt.board.get(SECOND).state is OperatorState.PAUSED:
            break
        await asyncio.sleep(0.02)
    view = rt.board.get(SECOND)
    report["paused"] = (view.state, view.pause_reason)
    await page.wait_for(f"document.getElementById('op-{SECOND}').dataset.state === 'paused'")

    # the Reports tab reads a report with the same token
    await page.click("[data-tab=reports]")
    await page.js("document.getElementById('report-name').value = 'abandons'")
    await page.click("#report-form button[type=submit]")
    report["report_header"] = await page.wait_for(
        "document.querySelector('#report-table th')?.textContent"
    )


async def _event(page: Page, method: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            message = await page.events.get()
            if message.get("method") == method:
                return message


async def test_the_page_shows_inbound_lines_and_todays_categories(tmp_path: Path) -> None:
    board, engine = floor()
    line = QueueStatistics(
        line_id="delivery", waiting=2, longest_wait_s=75.0, offered=30, answered=24,
        answered_within_sl=15, abandoned=4, callbacks=1, service_level_s=20.0,
        service_level=15 / 29, asa_s=22.5,
    )  # fmt: skip

    async def today() -> dict[str, Any]:
        return {
            "day": "2026-06-15",
            "categories": {"cosmetics": {"confirmed": 12, "upsells": 9, "upsell_amount": 13450.0}},
        }

    app = wallboard_app(board, engine, EventBus(), queues=lambda: {"delivery": line}, today=today)
    async with serve(app) as base, chromium(tmp_path) as page:
        loaded = asyncio.create_task(_event(page, "Page.loadEventFired"))
        await page.send("Page.navigate", url=f"{base}/#token=sup-token")
        await loaded
        level = "document.querySelector('#line-delivery .level')"
        assert await page.wait_for(f"{level} && {level}.textContent") == "51.7%"
        assert await page.js(f"{level}.className") == "level over"  # below the 80 % target
        assert not await page.js("document.getElementById('queues').hidden")
        fields = await page.js(
            "[...document.querySelectorAll('#line-delivery dd')].map((d) => d.textContent)"
        )
        assert fields[:3] == ["2", "1:15", "22.5 s"]
        row = "document.querySelector('#today tbody tr')"
        cells = await page.wait_for(
            f"{row} && {row}.cells.length === 4 && [...{row}.cells].map((c) => c.textContent)"
        )
        assert cells == ["cosmetics", "12", "9", "13450"]
