"""Outcomes and calls posted back to a shop's own URL, against a shop served on loopback.

The shop stand-in checks the signature as docs/crm.md tells a shop to, keeps each message once
by its ``Idempotency-Key``, and answers what a test asks for. The end-to-end test goes the
whole way: the shop posts an order to ``POST /orders``, an operator's outcome and the call are
stored, and the outbox relay posts them back to the shop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from crm_bridge.adapter import CallDirection, CallRecord, CallResult, OrderUpdate
from crm_bridge.errors import CrmAuthError, CrmRejected, CrmUnavailable
from crm_bridge.http import RetryPolicy
from crm_bridge.intake.order import IntakeRules
from crm_bridge.webhook import (
    EVENT_HEADER,
    KEY_HEADER,
    SIGNATURE_HEADER,
    WebhookAdapter,
    WebhookSettings,
    sign,
)
from dialer.config.models import CrmSettings
from dialer.crm_factory import make_adapter
from dialer.http import webhook as inbound
from dialer.intake import IntakeService
from dialer.outbox_admin import dead_letters
from dialer.recordings import RecordingLinks
from dialer.relay import OutboxRelay, RelayPolicy
from dialer.storage import repo
from dialer.storage.db import Database
from dialer.storage.models import OutboxEntry
from tests.crm_servers.lossy import LossyLink
from tests.crm_servers.serve import LoopbackServer, serving

SECRET = "shop-and-obzvon-share-this-secret"
T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@dataclass
class ShopState:
    """What the shop received, by idempotency key, and the answers it is told to give."""

    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts: int = 0
    forged: int = 0
    answers: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


def shop_app(state: ShopState) -> Starlette:
    async def hook(request: Request) -> Response:
        state.posts += 1
        body = await request.body()
        if request.headers.get(SIGNATURE_HEADER) != sign(SECRET, body):
            state.forged += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        if state.answers:
            status, answer, headers = state.answers.pop(0)
            if isinstance(answer, str):
                return PlainTextResponse(answer, status_code=status, headers=headers)
            return JSONResponse(answer, status_code=status, headers=headers)
        key = request.headers[KEY_HEADER]
        state.events.append(request.headers[EVENT_HEADER])
        state.received.setdefault(key, json.loads(body))  # a key seen before: done already
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/hooks/obzvon", hook, methods=["POST"])])


class Waits(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def shop() -> ShopState:
    return ShopState()


@pytest.fixture
async def server(shop: ShopState) -> AsyncIterator[LoopbackServer]:
    async with serving(shop_app(shop)) as running:
        yield running


def adapter(url: str, waits: Waits | None = None, secret: str = SECRET) -> WebhookAdapter:
    settings = WebhookSettings(
        url=f"{url}/hooks/obzvon",
        secret=secret,
        rate_per_s=1000.0,
        retry=RetryPolicy(attempts=4, backoff_initial_s=0.5),
    )
    return WebhookAdapter(settings, sleep=waits if waits is not None else Waits())


def a_call(n: int = 1, **changes: Any) -> CallRecord:
    fields: dict[str, Any] = {
        "external_id": f"chan-{n}",
        "started_at": T0,
        "direction": CallDirection.OUT,
        "phone": "+79127654321",
        "result": CallResult.ANSWERED,
        "duration_s": 95,
        "waiting_s": 1,
        "operator_code": "1001",
        "record_url": f"https://obzvon.example/recordings/chan-{n}?expires=1&sig=x",
        "order_external_id": "L-1001",
    }
    fields.update(changes)
    return CallRecord(**fields)


async def test_an_outcome_and_a_call_arrive_signed_versioned_and_keyed(
    shop: ShopState, server: LoopbackServer
) -> None:
    async with adapter(server.url) as hook:
        await hook.update_order(
            OrderUpdate(external_id="L-1001", status="client-confirmed", manager_comment="ok")
        )
        result = await hook.upload_calls([a_call()])

    assert result.delivered == ("chan-1",) and shop.forged == 0
    [(outcome_key, outcome), (call_key, call)] = shop.received.items()
    assert outcome == {
        "version": 1,
        "type": "outcome",
        "id": outcome_key,
        "order": {"external_id": "L-1001"},
        "status": "client-confirmed",
        "comment": "ok",
        "custom_fields": {},
    }
    assert outcome_key.startswith("outcome-")
    assert call_key == "call-chan-1" and call["id"] == call_key and call["type"] == "call"
    assert call["call"] == {
        "id": "chan-1",
        "started_at": "2026-01-10T12:00:00+00:00",
        "direction": "out",
        "phone": "+79127654321",
        "result": "answered",
        "duration_s": 95,
        "waiting_s": 1,
        "operator": "1001",
        "recording_url": "https://obzvon.example/recordings/chan-1?expires=1&sig=x",
    }
    assert shop.events == ["outcome", "call"]


def test_outbound_messages_are_signed_as_orders_posted_to_us_are() -> None:
    body = b'{"version": 1}'
    assert sign(SECRET, body) == inbound.sign(SECRET, body)
    assert SIGNATURE_HEADER == inbound.SIGNATURE_HEADER


async def test_the_same_outcome_sent_again_has_the_same_key_and_body(
    shop: ShopState, server: LoopbackServer
) -> None:
    update = OrderUpdate(external_id="L-1001", status="no-call", manager_comment="6 calls")
    async with adapter(server.url) as hook:
        await hook.update_order(update)
        await hook.update_order(update)
        await hook.update_order(OrderUpdate(external_id="L-1001", status="no-call", key="77"))
    assert list(shop.received)[-1] == "outcome-77"
    assert len(shop.received) == 2 and shop.posts == 3


async def test_5xx_429_and_in_progress_are_retried_with_backoff(
    shop: ShopState, server: LoopbackServer
) -> None:
    shop.answers = [
        (503, "maintenance", {}),
        (429, {"error": "slow down"}, {"Retry-After": "7"}),
        (409, {"error": "this key is being processed"}, {}),
    ]
    waits = Waits()
    async with adapter(server.url, waits) as hook:
        result = await hook.upload_calls([a_call()])
    assert result.delivered == ("chan-1",)
    assert len(waits) == 3 and waits[1] == 7.0  # exactly the Retry-After the shop asked for
    assert list(shop.received) == ["call-chan-1"]


async def test_a_shop_that_stays_down_leaves_the_message_for_later(
    shop: ShopState, server: LoopbackServer
) -> None:
    shop.answers = [(502, "bad gateway", {})] * 4
    async with adapter(server.url) as hook:
        with pytest.raises(CrmUnavailable):
            await hook.update_order(OrderUpdate(external_id="L-1001", status="cancel-other"))
    assert shop.received == {}


async def test_a_refusal_is_final_and_carries_the_shops_words(
    shop: ShopState, server: LoopbackServer
) -> None:
    shop.answers = [
        (422, {"error": "order L-1001 is unknown here"}, {}),
        (404, "no such order", {}),
    ]
    async with adapter(server.url) as hook:
        with pytest.raises(CrmRejected, match="order L-1001 is unknown here") as refused:
            await hook.update_order(OrderUpdate(external_id="L-1001", status="cancel-other"))
        result = await hook.upload_calls([a_call(1), a_call(2)])
    assert refused.value.status == 422 and shop.posts == 3  # never tried again
    [call] = result.rejected
    assert call.external_id == "chan-1" and str(call.error) == "HTTP 404: no such order"
    assert result.delivered == ("chan-2",)


async def test_a_refused_signature_is_an_auth_error(server: LoopbackServer) -> None:
    async with adapter(server.url, secret="not-the-shops-secret-at-all") as hook:
        with pytest.raises(CrmAuthError, match="bad signature"):
            await hook.update_order(OrderUpdate(external_id="L-1001", status="cancel-other"))


async def test_a_lost_answer_is_sent_again_under_the_same_key(
    shop: ShopState, server: LoopbackServer
) -> None:
    link = LossyLink(server.port)
    await link.start()
    try:
        link.lose_next(2, b"X-Obzvon-Event: call")
        async with adapter(link.url) as hook:
            result = await hook.upload_calls([a_call()])
    finally:
        await link.stop()
    assert result.delivered == ("chan-1",) and link.budget == 0
    assert shop.posts == 3 and list(shop.received) == ["call-chan-1"]


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        WebhookSettings(url="https://shop.example/hook", secret="short")


async def test_the_settings_build_the_webhook_adapter() -> None:
    crm = CrmSettings(
        adapter="webhook", url="https://shop.example/hook", webhook_secret=SecretStr(SECRET)
    )
    hook = make_adapter(crm)
    try:
        assert isinstance(hook, WebhookAdapter) and hook.name == inbound.WEBHOOK_CRM
        assert hook.settings.url == "https://shop.example/hook"
        batch = await hook.pull_orders("anything")
        assert (batch.orders, batch.cursor, batch.more) == ((), "anything", False)
    finally:
        if hook is not None:
            await hook.aclose()


# -- end to end ---------------------------------------------------------------------------------


class VirtualClock:
    def __init__(self) -> None:
        self.t = T0.timestamp()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


@SQLITE_ONLY
async def test_an_order_posted_by_a_shop_gets_its_outcome_and_call_back(
    database: Database, shop: ShopState, server: LoopbackServer
) -> None:
    clock = VirtualClock()

    async def submit(_: object) -> None:
        return None

    intake = IntakeService(
        db=database,
        rules=IntakeRules(),
        campaign_id="confirm",
        submit=submit,
        now=clock.now,
        sleep=clock.sleep,
    )
    app = FastAPI()
    app.include_router(inbound.webhook_router(intake=intake, secret=SECRET, now=clock.now))
    order = {
        "external_id": "L-1001",
        "created_at": "2026-01-10T14:55:00+03:00",
        "customer_name": "Анна",
        "phone": "+7 (912) 765-43-21",
        "items": [{"sku": "G-7", "name": "Наушники", "price": "2490"}],
    }
    body = json.dumps(order).encode()
    async with serving(app) as obzvon, httpx.AsyncClient(base_url=obzvon.url) as http:
        posted = await http.post(
            "/orders",
            content=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(SECRET, body)},
        )
    assert posted.status_code == 202, posted.text
    order_id = posted.json()["order_id"]

    now = datetime.fromtimestamp(clock.now(), UTC)
    async with database.session() as s:
        await repo.add_outbox(
            s,
            kind="call",
            order_id=order_id,
            now=now,
            payload={
                "order_id": order_id,
                "crm": "webhook",
                "external_id": "L-1001",
                "channel_id": "chan-1",
                "phone": "+79127654321",
                "outcome": "connected",
                "operator_id": "1001",
                "started_at": now.isoformat(),
                "duration_s": 95,
                "waiting_s": 1,
                "recorded": True,
            },
        )
        await repo.store_outcome(
            s, order_id=order_id, outcome="confirmed", now=now, operator_id="1001"
        )
        await repo.store_outcome(
            s, order_id=order_id, outcome="rejected", now=now, reason="changed mind"
        )
    links = RecordingLinks(
        secret=b"recording-link-secret", ttl_s=3600, now=clock.now, base_url="https://obz.example"
    )
    shop.answers = [(422, {"message": "order L-1001 was cancelled already"}, {})]
    async with adapter(server.url) as hook:
        relay = OutboxRelay(
            database,
            hook,
            clock.now,
            clock.sleep,
            policy=RelayPolicy(poll_s=1.0),
            record_url=links.url,
        )
        for _ in range(5):
            await relay.deliver_once()

    assert relay.statistics().delivered == 2
    events = {m["type"]: m for m in shop.received.values()}
    assert events["outcome"]["order"] == {"external_id": "L-1001"}
    assert events["outcome"]["status"] == "cancel-other"
    assert events["outcome"]["comment"] == "obzvon: rejected by the customer: changed mind"
    recording = events["call"]["call"]["recording_url"]
    expires, sig = recording.split("?")[1].split("&")
    assert recording.startswith("https://obz.example/recordings/chan-1?")
    assert links.valid("chan-1", int(expires.split("=")[1]), sig.split("=")[1])
    [dead] = await dead_letters(database)
    assert dead.kind == "outcome" and dead.error is not None
    assert "HTTP 422: order L-1001 was cancelled already" in dead.error
    async with database.session() as s:
        assert all(
            e.delivered_at is not None or e.dead for e in await s.scalars(select(OutboxEntry))
        )
