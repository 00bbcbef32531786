"""The shared HTTP plumbing: what is retried, how long it waits, what is final."""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from crm_bridge.errors import CrmUnavailable
from crm_bridge.http import CrmHttp, RateLimit, RetryPolicy
from tests.crm_servers.serve import LoopbackServer

RETRY_AFTER: dict[str, str] = {}


async def busy(request: Request) -> Response:
    return PlainTextResponse("busy", status_code=429, headers=dict(RETRY_AFTER))


async def html(request: Request) -> Response:
    return PlainTextResponse("<html>maintenance</html>", status_code=200)


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    app = Starlette(routes=[Route("/busy", busy), Route("/html", html)])
    running = LoopbackServer(app)
    await running.start()
    yield running
    await running.stop()


class Waits(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(server: LoopbackServer, waits: Waits) -> CrmHttp:
    return CrmHttp(
        crm="test",
        base_url=server.url,
        headers={},
        limits={"default": RateLimit(per_second=1000)},
        retry=RetryPolicy(attempts=3, backoff_initial_s=0.5, backoff_max_s=4, retry_after_max_s=60),
        sleep=waits,
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        ("3600", 60.0),  # capped: a CRM asking for an hour is down for now
        (email.utils.format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True), 60.0),
        (email.utils.format_datetime(datetime.now(UTC) - timedelta(hours=2), usegmt=True), 0.0),
    ],
)
async def test_retry_after_in_seconds_or_as_a_date_sets_the_wait(
    server: LoopbackServer, header: str, expected: float
) -> None:
    RETRY_AFTER["Retry-After"] = header
    waits = Waits()
    http = client(server, waits)
    with pytest.raises(CrmUnavailable, match="HTTP 429"):
        await http.request("GET", "/busy")
    await http.aclose()
    assert waits == [expected, expected]
    assert http.requests_sent == 3


async def test_without_retry_after_the_wait_backs_off_within_bounds(
    server: LoopbackServer,
) -> None:
    RETRY_AFTER.clear()
    waits = Waits()
    http = client(server, waits)
    with pytest.raises(CrmUnavailable):
        await http.request("GET", "/busy")
    await http.aclose()
    assert len(waits) == 2
    assert all(0 < w <= 4 for w in waits)


async def test_a_crm_that_cannot_be_reached_is_unavailable(server: LoopbackServer) -> None:
    waits = Waits()
    http = client(server, waits)
    await server.stop()
    with pytest.raises(CrmUnavailable, match="ConnectError"):
        await http.request("GET", "/busy")
    await http.aclose()
    await server.start()
    assert len(waits) == 2


async def test_a_reply_that_is_not_json_is_handed_back_for_the_adapter_to_judge(
    server: LoopbackServer,
) -> None:
    http = client(server, Waits())
    reply = await http.request("GET", "/html")
    await http.aclose()
    assert (reply.status, reply.body, reply.text) == (200, None, "<html>maintenance</html>")
