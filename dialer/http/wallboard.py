"""The live wallboard: a page, and the floor as a stream of server-sent events.

Routes (`wallboard_router()`):

- ``GET /``: the page (HTML, script and styles served from `dialer/http/static`, nothing from
  elsewhere). It asks for a supervisor's or admin's bearer token (or takes ``#token=...`` from
  the address) and reads the stream below with it.
- ``GET /api/floor``: one snapshot of the floor (JSON).
- ``GET /api/floor/stream``: ``text/event-stream``. First a ``snapshot`` event (every operator's
  tile, every campaign's figures, every inbound line's queue, today's outcomes, the CRM's sync
  lag, who is watching); then
  ``operator``, ``call``, ``alert`` and ``crm`` events as they happen on the event bus, a
  ``stats`` event (figures without tiles) every `interval_s`, and a full ``snapshot`` again
  every `resync_s` or as soon as the stream fell behind the bus and lost events.

A snapshot is always taken after the bus messages already queued for the stream have been sent,
so a client that applies events in order never shows a state older than one it has seen. Event
data is JSON; every event carries the daemon clock's ``now`` or ``since``, so the page can show
time in state on a scaled clock too.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time, and
# the dependencies are local to wallboard_router().

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response, StreamingResponse

from dialer.bus import BusMessage, EventBus, topic_matches
from dialer.engine.stats import QueueStatistics
from dialer.events_schema import CRM_STATS_TOPIC
from dialer.http.auth import Authenticate, Permission, require
from dialer.http.control import NotFound
from dialer.http.schemas import Principal

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).parent / "static"
ASSETS: Final[Mapping[str, str]] = {
    "wallboard.js": "text/javascript",
    "wallboard.css": "text/css",
    "reports.js": "text/javascript",
}
# Bus messages a stream may hold before it drops the oldest and resyncs with a snapshot.
STREAM_QUEUE: Final = 5000
# Bus messages sent in one write; the rest follow in the next.
BATCH: Final = 500
_PAGE_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


class _Latest:
    """The newest message on one topic, kept by a subscription of size one (bounded, and it
    needs no task of its own: the bus drops the older message when a newer one comes)."""

    def __init__(self, bus: EventBus, topic: str) -> None:
        self._sub = bus.subscribe(topic, maxsize=1)
        self._value: Mapping[str, Any] | None = None

    def get(self) -> Mapping[str, Any] | None:
        while not self._sub.queue.empty():
            self._value = self._sub.queue.get_nowait().payload
        return self._value


class _Cached:
    """An async figure fetched at most once per `ttl_s`, shared by every stream."""

    def __init__(
        self, fetch: Callable[[], Awaitable[Mapping[str, Any]]] | None, ttl_s: float
    ) -> None:
        self._fetch, self._ttl = fetch, ttl_s
        self._value: Mapping[str, Any] | None = None
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> Mapping[str, Any] | None:
        if self._fetch is None:
            return None
        async with self._lock:
            loop_now = asyncio.get_running_loop().time()
            if loop_now - self._at >= self._ttl:
                try:
                    self._value = await self._fetch()
                except Exception:  # the floor keeps streaming without today's figures
                    log.exception("today's figures are unavailable")
                self._at = loop_now
        return self._value


def queue_payload(q: QueueStatistics, *, target: float) -> dict[str, Any]:
    """One inbound line's queue as the wallboard shows it. `sl_warning` compares the service
    level with `target` (the share to answer within `service_level_s`, 0.8 for the usual
    80/20): "below" the target, "near" it (less than 5 points above), else "ok" (also before
    the first caller's wait has ended)."""
    level = q.service_level
    if level is None or round(level - target, 6) >= 0.05:
        warning = "ok"
    else:
        warning = "below" if level < target else "near"
    return {
        "line_id": q.line_id,
        "waiting": q.waiting,
        "longest_wait_s": round(q.longest_wait_s, 1),
        "offered": q.offered,
        "answered": q.answered,
        "abandoned": q.abandoned,
        "callbacks": q.callbacks,
        "service_level": None if level is None else round(level, 4),
        "service_level_s": q.service_level_s,
        "service_level_target": target,
        "sl_warning": warning,
        "asa_s": None if q.asa_s is None else round(q.asa_s, 1),
    }


def sse(event: str, data: Mapping[str, Any]) -> str:
    """One server-sent event; JSON never contains a raw line break, so one data line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


def bus_event(message: BusMessage, now: float) -> str | None:
    """The stream event for a bus message, or None for one the floor does not show.

    Screen pops are never forwarded: they carry the customer's name and address, which the
    wallboard has no need for.
    """
    topic, p = message.topic, message.payload
    if topic_matches("operators/+/state", topic):
        return sse("operator", {**p, "since": now})
    if topic_matches("calls/+", topic):
        return sse("call", {**p, "at": now})
    if topic_matches("operators/+/alerts", topic):
        keep = ("operator_id", "kind", "call_id", "order_id")
        return sse("alert", {"operator_id": topic.split("/")[1], **{k: p.get(k) for k in keep}})
    if topic_matches("campaigns/+/state", topic):  # the engine's pause / resume notice
        return sse("campaign", dict(p))
    if topic == CRM_STATS_TOPIC:
        return sse("crm", dict(p))
    return None


def wallboard_router(
    *,
    bus: EventBus,
    snapshot: Callable[[], Mapping[str, Any]],
    authenticate: Authenticate,
    now: Callable[[], float],
    today: Callable[[], Awaitable[Mapping[str, Any]]] | None = None,
    queues: Callable[[], Mapping[str, QueueStatistics]] | None = None,
    service_level_target: float = 0.8,
    interval_s: float = 2.0,
    resync_s: float = 30.0,
    today_ttl_s: float = 10.0,
) -> APIRouter:
    """The wallboard's routes.

    `snapshot` returns the floor as `dialer.events_schema.floor_snapshot()` builds it (keys
    ``now``, ``operators``, ``campaigns``, ``board``); `now` is the daemon's clock; `today`
    returns today's outcomes by category (`dialer.reports.today_by_category`), fetched at most
    every `today_ttl_s`; `queues` returns the inbound lines' queues (the engine's
    `EngineStatistics.queues`), shown against `service_level_target`. The stream and the
    snapshot need the floor permission (supervisor or admin); the page itself is public and
    holds no data.
    """
    router = APIRouter()
    crm = _Latest(bus, CRM_STATS_TOPIC)
    outcomes = _Cached(today, today_ttl_s)
    Watcher = Annotated[Principal, Depends(require(authenticate, Permission.FLOOR))]

    def lines() -> dict[str, Any]:
        found = queues() if queues is not None else {}
        return {line: queue_payload(q, target=service_level_target) for line, q in found.items()}

    async def full(who: Principal) -> dict[str, Any]:
        return {
            **snapshot(),
            "queues": lines(),
            "crm": crm.get(),
            "today": await outcomes.get(),
            "you": {"id": who.id, "role": who.role},
        }

    async def figures() -> dict[str, Any]:
        data = {k: v for k, v in snapshot().items() if k != "operators"}
        return {**data, "queues": lines(), "crm": crm.get(), "today": await outcomes.get()}

    @router.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)

    @router.get("/wallboard/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media = ASSETS.get(name)
        if media is None:  # a fixed list: no path from the request reaches the file system
            raise NotFound("no such file")
        return FileResponse(STATIC_DIR / name, media_type=media, headers=_PAGE_HEADERS)

    @router.get("/api/floor")
    async def floor(who: Watcher) -> dict[str, Any]:
        return await full(who)

    @router.get("/api/floor/stream")
    async def stream(who: Watcher) -> StreamingResponse:
        return StreamingResponse(
            _events(who),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _events(who: Principal) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        sub = bus.subscribe("#", maxsize=STREAM_QUEUE)
        try:
            yield "retry: 2000\n\n" + sse("snapshot", await full(who))
            lost = sub.dropped
            next_stats = loop.time() + interval_s
            next_resync = loop.time() + resync_s
            while True:
                try:
                    first = await asyncio.wait_for(
                        sub.queue.get(), timeout=max(0.0, next_stats - loop.time())
                    )
                except TimeoutError:
                    first = None
                chunk = _drain(sub.queue, first)
                if chunk:
                    yield chunk
                t = loop.time()
                if sub.dropped != lost:
                    lost, next_resync = sub.dropped, t  # events were lost: start afresh
                if t >= next_stats or t >= next_resync:
                    chunk = _drain(sub.queue, None)  # older than the snapshot: send them first
                    if t >= next_resync:
                        chunk += sse("snapshot", await full(who))
                        next_resync = t + resync_s
                    else:
                        chunk += sse("stats", await figures())
                    yield chunk
                    next_stats = t + interval_s
        finally:
            bus.unsubscribe(sub)

    def _drain(queue: "asyncio.Queue[BusMessage]", first: BusMessage | None) -> str:
        stamp = now()
        parts = []
        message = first
        while True:
            if message is not None:
                event = bus_event(message, stamp)
                if event is not None:
                    parts.append(event)
            if queue.empty() or len(parts) >= BATCH:
                return "".join(parts)
            message = queue.get_nowait()

    return router
