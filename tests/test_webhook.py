"""``POST /orders`` over real HTTP: signatures, limits, field errors, idempotence, odd names.

The router is served by uvicorn on loopback in a bare FastAPI app (the daemon mounts the
same router on its own), in front of a real `IntakeService` on a real database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from crm_bridge.intake.order import IntakeRules
from dialer.engine import events as ev
from dialer.http.webhook import SIGNATURE_HEADER, sign, webhook_router
from dialer.intake import IntakeService
from dialer.storage.db import Database
from dialer.storage.models import Order
from tests.crm_servers.serve import serving

SECRET = "s3cret-for-the-shop-webhook"
NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_id": "L-1001",
        "created_at": "2026-01-10T14:55:00+03:00",
        "customer_name": "Анна",
        "phone": "+7 (912) 765-43-21",
        "items": [{"sku": "G-7", "name": "Наушники", "category": "gadgets", "price": "2490"}],
        "delivery_region": "Свердловская область",
        "delivery_address": "ул. Мира, 3",
    }
    body.update(changes)
    return body


class Shop:
    """A shop's server posting to the webhook."""

    def __init__(self, http: httpx.AsyncClient, submitted: list[ev.Event]) -> None:
        self.http = http
        self.submitted = submitted

    async def post(
        self, body: bytes | dict[str, Any] | list[Any], *, secret: str = SECRET, **kw: Any
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, raw)}
        headers.update(kw.pop("headers", {}))
        return await self.http.post("/orders", content=raw, headers=headers, **kw)


@pytest.fixture
async def shop(database: Database) -> AsyncIterator[Shop]:
    submitted: list[ev.Event] = []

    async def submit(event: ev.Event) -> None:
        submitted.append(event)

    intake = IntakeService(
        db=database,
        rules=IntakeRules(),
        campaign_id="confirm",
        submit=submit,
        now=lambda: NOW.timestamp(),
        sleep=asyncio.sleep,
    )
    app = FastAPI()
    app.include_router(webhook_router(intake=intake, secret=SECRET, now=lambda: NOW.timestamp()))
    async with serving(app) as server, httpx.AsyncClient(base_url=server.url) as http:
        yield Shop(http, submitted)


async def stored(db: Database) -> list[Order]:
    async with db.session() as s:
        return list(await s.scalars(select(Order).order_by(Order.id)))


async def test_a_signed_order_is_stored_and_called_and_posting_it_again_changes_nothing(
    database: Database, shop: Shop
) -> None:
    first = await shop.post(order())
    assert first.status_code == 202
    answer = first.json()
    assert answer["external_id"] == "L-1001" and answer["status"] == "new" and answer["created"]
    assert answer["flags"] == [] and answer["flag_reasons"] == []

    again = await shop.post(order())
    assert again.status_code == 200
    assert again.json()["order_id"] == answer["order_id"] and not again.json()["created"]
    [row] = await stored(database)
    assert (
        row.id == answer["order_id"] and row.crm == "webhook" and row.phone_e164 == "+79127654321"
    )
    assert len(shop.submitted) == 1


@SQLITE_ONLY
async def test_a_body_cannot_claim_another_crms_namespace(database: Database, shop: Shop) -> None:
    assert (await shop.post(order(crm="retailcrm"))).status_code == 202
    assert [o.crm for o in await stored(database)] == ["webhook"]


@SQLITE_ONLY
@pytest.mark.parametrize(
    "headers",
    [
        {SIGNATURE_HEADER: "sha256=" + "0" * 64},
        {SIGNATURE_HEADER: "md5=abc"},
        {SIGNATURE_HEADER: ""},
    ],
)
async def test_a_bad_signature_is_refused_and_nothing_stored(
    database: Database, shop: Shop, headers: dict[str, str]
) -> None:
    response = await shop.post(order(), headers=headers)
    assert response.status_code == 401
    assert await stored(database) == []


@SQLITE_ONLY
async def test_a_missing_or_foreign_signature_is_refused(database: Database, shop: Shop) -> None:
    body = json.dumps(order()).encode()
    unsigned = await shop.http.post("/orders", content=body)
    other_key = await shop.post(order(), secret="another-shops-secret-key")
    tampered = await shop.http.post(
        "/orders",
        content=body.replace(b"L-1001", b"L-6666"),
        headers={SIGNATURE_HEADER: sign(SECRET, body)},
    )
    assert [r.status_code for r in (unsigned, other_key, tampered)] == [401, 401, 401]
    assert await stored(database) == []


@SQLITE_ONLY
async def test_bad_input_names_every_bad_field(database: Database, shop: Shop) -> None:
    body = order(
        phone=None,
        created_at="yesterday",
        items=[{"sku": "G-7", "name": "Наушники", "quantity": 0}],
        customer_name="Анна\x07",
    )
    response = await shop.post(body)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"phone", "created_at", "items.0.quantity", "customer_name"}
    reasons = {e["field"]: e["reason"] for e in response.json()["errors"]}
    assert "control characters" in reasons["customer_name"]

    for junk in (b"{not json", json.dumps([order()]).encode(), b'{"total": NaN}'):
        answer = await shop.post(junk)
        assert answer.status_code == 422, junk
        assert answer.json()["errors"][0]["field"] == "body"
    assert await stored(database) == []


@SQLITE_ONLY
async def test_a_ten_megabyte_body_is_refused_unread(database: Database, shop: Shop) -> None:
    big = order(comment="x" * (10 * 1024 * 1024))
    declared = await shop.post(big)
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        # no Content-Length: the limit must hold while reading
        for _ in range(160):
            yield b" " * 65536

    streamed = await shop.http.post(
        "/orders", content=chunks(), headers={SIGNATURE_HEADER: "sha256=00"}
    )
    assert streamed.status_code == 413
    assert "65536" in streamed.json()["errors"][0]["reason"]
    assert await stored(database) == []


async def test_names_with_sql_and_quotes_are_stored_verbatim(
    database: Database, shop: Shop
) -> None:
    names = [
        "Robert'); DROP TABLE orders;--",
        'O\'Brien "Bobby" 1=1; --',
        "Иван\\x00 %s {name} <script>",
    ]
    for i, name in enumerate(names):
        response = await shop.post(order(external_id=f"L-{i}", customer_name=name, phone=None))
        assert response.status_code == 422  # no phone at all
        response = await shop.post(
            order(external_id=f"L-{i}", customer_name=name, phone=f"+7912000000{i}")
        )
        assert response.status_code == 202, response.text

    assert [o.customer_name for o in await stored(database)] == names
    async with database.session() as s:
        assert await s.scalar(select(func.count()).select_from(Order)) == 3
        assert await s.scalar(text("SELECT count(*) FROM orders")) == 3


@SQLITE_ONLY
async def test_an_uncallable_number_is_taken_in_and_flagged(database: Database, shop: Shop) -> None:
    response = await shop.post(order(phone="12345"))
    assert response.status_code == 202
    assert response.json()["status"] == "invalid" and response.json()["flags"] == ["invalid"]
    assert shop.submitted == []


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        webhook_router(intake=None, secret="short", now=lambda: 0.0)  # type: ignore[arg-type]
