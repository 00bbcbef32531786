"""The wallboard's page and its event stream, over a real uvicorn server on 127.0.0.1.

The floor is a real `OperatorBoard` and `DialerEngine` (no PBX: nothing is dialled), the events
come from a real `EventBus`; the stream is read the way the page reads it, as server-sent events.
`serve()` and `EventReader` are shared with the other HTTP tests of the wallboard's family.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from acd.board import OperatorBoard
from acd.profile import OperatorProfile
from acd.routing import LongestIdle
from dialer.bus import EventBus
from dialer.engine.campaign import CampaignRules
from dialer.engine.engine import DialerEngine
from dialer.engine.stats import QueueStatistics
from dialer.events_schema import floor_snapshot
from dialer.http import wallboard
from dialer.http.app import create_app
from dialer.http.schemas import DispositionIn, OperatorStatus, OrderCard, Principal
from dialer.http.wallboard import wallboard_router

T0 = 1_781_510_400.0  # 2026-06-15 08:00 UTC

TOKENS = {
    "sup-token": Principal(id="9001", role="supervisor"),
    "adm-token": Principal(id="9002", role="admin"),
    "op-token": Principal(id="1001", role="operator"),
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TokenControl:
    """The part of `Control` the wallboard's family uses: authentication by a fixed table."""

    def __init__(self, tokens: Mapping[str, Principal] = TOKENS) -> None:
        self._tokens = dict(tokens)

    def authenticate(self, token: str) -> Principal | None:
        return self._tokens.get(token)

    async def operator_action(self, *_: Any, **__: Any) -> OperatorStatus:
        raise NotImplementedError

    def operator_status(self, operator_id: str) -> OperatorStatus:
        raise NotImplementedError

    async def current_call(self, operator_id: str) -> OrderCard | None:
        return None

    async def dispose(self, operator_id: str, call_id: str, disposition: DispositionIn) -> None:
        raise NotImplementedError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """`app` on a real socket; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    config.timeout_graceful_shutdown = 1
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):  # at most 10 s
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "the HTTP server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class EventReader:
    """Reads server-sent events from a streaming response, across several calls."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def read(
        self, *, until: str | None = None, count: int = 1000, within_s: float = 5
    ) -> list[tuple[str, dict[str, Any]]]:
        """Up to `count` events, or up to and including the first `until` event."""
        events: list[tuple[str, dict[str, Any]]] = []
        name, data = "message", []
        async with asyncio.timeout(within_s):
            async for line in self._lines:
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    events.append((name, json.loads("\n".join(data))))
                    if name == until or len(events) >= count:
                        return events
                    name, data = "message", []
        return events


def floor(operators: int = 3) -> tuple[OperatorBoard, DialerEngine]:
    board = OperatorBoard()
    for i in range(operators):
        board.add(
            OperatorProfile(
                id=str(1001 + i), endpoint=f"PJSIP/{1001 + i}", campaigns=frozenset({"confirm"})
            ),
            T0,
        )
    engine = DialerEngine(
        campaigns=[CampaignRules(id="confirm", shop_name="Shop")],
        board=board,
        router=LongestIdle(),
        id_factory=lambda: str(uuid.uuid4()),
    )
    return board, engine


def wallboard_app(
    board: OperatorBoard, engine: DialerEngine, bus: EventBus, **options: Any
) -> FastAPI:
    app = create_app(TokenControl())
    app.include_router(
        wallboard_router(
            bus=bus,
            snapshot=lambda: floor_snapshot(
                engine=engine, board=board, now=T0 + 60, abandon_targets={"confirm": 0.03}
            ),
            authenticate=TokenControl().authenticate,
            now=lambda: T0 + 60,
            **options,
        )
    )
    return app


async def test_page_and_its_assets_are_served_locally_without_a_token() -> None:
    board, engine = floor()
    async with serve(wallboard_app(board, engine, EventBus())) as base, httpx.AsyncClient() as c:
        page = await c.get(f"{base}/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/wallboard/wallboard.js" in page.text and "http" not in page.text.split("<body")[0]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = await c.get(f"{base}/wallboard/wallboard.js")
        assert script.status_code == 200 and "text/javascript" in script.headers["content-type"]
        assert (await c.get(f"{base}/wallboard/wallboard.css")).status_code == 200
        assert (await c.get(f"{base}/wallboard/..%2Fapp.py")).status_code == 404
        assert (await c.get(f"{base}/wallboard/index.py")).status_code == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (bearer("nobody"), 401), (bearer("op-token"), 403), (bearer("sup-token"), 200)],
)
async def test_the_floor_is_for_supervisors_and_admins(
    headers: dict[str, str], status: int
) -> None:
    board, engine = floor()
    async with serve(wallboard_app(board, engine, EventBus())) as base, httpx.AsyncClient() as c:
        r = await c.get(f"{base}/api/floor", headers=headers)
        assert r.status_code == status
        if status != 200:
            assert "error" in r.json()


async def test_stream_opens_with_every_operator_of_a_large_floor() -> None:
    board, engine = floor(operators=400)
    board.login("1001", T0 + 1)
    async with (
        serve(wallboard_app(board, engine, EventBus())) as base,
        httpx.AsyncClient() as c,
        c.stream("GET", f"{base}/api/floor/stream", headers=bearer("adm-token")) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        [(name, data)] = await EventReader(r).read(count=1)
    assert name == "snapshot"
    assert len(data["operators"]) == 400
    first = data["operators"][0]
    assert first["operator_id"] == "1001" and first["state"] == "paused"
    assert first["since"] == T0 + 1
    assert data["you"] == {"id": "9002", "role": "admin"}
    confirm = data["campaigns"]["confirm"]
    assert confirm["abandon_target"] == 0.03 and confirm["abandon_warning"] == "ok"
    assert data["crm"] is None  # the page shows "–" until the CRM bridge reports


async def test_bus_events_reach_the_stream_and_screen_pops_do_not() -> None:
    board, engine = floor()
    bus = EventBus()
    async with (
        serve(wallboard_app(board, engine, bus)) as base,
        httpx.AsyncClient() as c,
        c.stream("GET", f"{base}/api/floor/stream", headers=bearer("sup-token")) as r,
    ):
        sse = EventReader(r)
        await sse.read(until="snapshot")
        bus.publish("operators/1002/screenpop", {"customer_name": "Ирина", "address": "Moscow"})
        bus.publish(
            "operators/1002/state",
            {"operator_id": "1002", "state": "talking", "call_id": "c-1", "pause_reason": None},
        )
        bus.publish(
            "calls/c-1",
            {"call_id": "c-1", "order_id": "7", "campaign_id": "confirm", "state": "connected"},
        )
        bus.publish("crm/stats", {"sync_lag_s": 4.2, "backlog": 3})
        events = await sse.read(until="crm")
    names = [n for n, _ in events]
    assert names == ["operator", "call", "crm"]
    assert events[0][1]["state"] == "talking" and events[0][1]["since"] == T0 + 60
    assert not any("customer_name" in d for _, d in events)


async def test_periodic_figures_follow_and_a_late_watcher_sees_the_crm_lag() -> None:
    board, engine = floor()
    bus = EventBus()
    app = wallboard_app(board, engine, bus, interval_s=0.1)
    async with (
        serve(app) as base,
        httpx.AsyncClient() as c,
        c.stream("GET", f"{base}/api/floor/stream", headers=bearer("sup-token")) as r,
    ):
        sse = EventReader(r)
        await sse.read(until="snapshot")
        bus.publish("crm/stats", {"sync_lag_s": 12.0})
        events = await sse.read(until="stats")
        stats = events[-1][1]
        assert "operators" not in stats and stats["crm"] == {"sync_lag_s": 12.0}
        late = await c.get(f"{base}/api/floor", headers=bearer("sup-token"))
        assert late.json()["crm"] == {"sync_lag_s": 12.0}


async def test_a_stream_that_lost_events_starts_afresh_from_a_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wallboard, "STREAM_QUEUE", 5)
    board, engine = floor()
    bus = EventBus()
    async with (
        serve(wallboard_app(board, engine, bus, interval_s=30)) as base,
        httpx.AsyncClient() as c,
        c.stream("GET", f"{base}/api/floor/stream", headers=bearer("sup-token")) as r,
    ):
        sse = EventReader(r)
        await sse.read(until="snapshot")
        for i in range(50):  # no await in between: the stream's queue overflows
            bus.publish(f"calls/c-{i}", {"call_id": f"c-{i}", "state": "dialing"})
        events = await sse.read(until="snapshot")
    assert events[-1][0] == "snapshot"
    assert [d["call_id"] for n, d in events if n == "call"] == [f"c-{i}" for i in range(45, 50)]


async def test_inbound_lines_show_waiting_callers_and_service_level_against_its_target() -> None:
    board, engine = floor()
    line = QueueStatistics(
        line_id="delivery",
        waiting=4,
        longest_wait_s=37.26,
        offered=50,
        answered=40,
        answered_within_sl=30,
        abandoned=6,
        callbacks=2,
        service_level_s=20.0,
        service_level=30 / 48,
        asa_s=14.04,
    )
    app = wallboard_app(board, engine, EventBus(), queues=lambda: {"delivery": line})
    async with (
        serve(app) as base,
        httpx.AsyncClient() as c,
        c.stream("GET", f"{base}/api/floor/stream", headers=bearer("sup-token")) as r,
    ):
        [(_, snapshot)] = await EventReader(r).read(count=1)
    assert snapshot["queues"] == {
        "delivery": {
            "line_id": "delivery",
            "waiting": 4,
            "longest_wait_s": 37.3,
            "offered": 50,
            "answered": 40,
            "abandoned": 6,
            "callbacks": 2,
            "service_level": 0.625,
            "service_level_s": 20.0,
            "service_level_target": 0.8,
            "sl_warning": "below",
            "asa_s": 14.0,
        }
    }


@pytest.mark.parametrize(
    ("level", "warning"),
    [(None, "ok"), (0.79, "below"), (0.8, "near"), (0.849, "near"), (0.85, "ok")],
)
def test_the_service_level_warning(level: float | None, warning: str) -> None:
    line = QueueStatistics(
        line_id="l", waiting=0, longest_wait_s=0.0, offered=0, answered=0, answered_within_sl=0,
        abandoned=0, callbacks=0, service_level_s=20.0, service_level=level, asa_s=None,
    )  # fmt: skip
    assert wallboard.queue_payload(line, target=0.8)["sl_warning"] == warning
