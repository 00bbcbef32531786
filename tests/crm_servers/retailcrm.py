"""A RetailCRM API v5 stand-in, built from the API documentation and the official clients.

What it reproduces:

- ``X-API-KEY`` authentication; 401 with ``errorMsg`` for a missing or wrong key;
- GET parameters in bracket form; POST bodies form-encoded with JSON-string values;
- ``{"success": true, ...}`` answers, and ``{"success": false, "errorMsg": ...,
  "errors": {...}}`` with 400/404 for refusals;
- ``GET /api/v5/orders/history``: entries with increasing ``id``, ``created`` entries carrying
  the whole order, ``filter[sinceId]``/``filter[startDate]``, ``limit`` in {20, 50, 100},
  a ``pagination`` block and ``generatedAt``;
- ``GET /api/v5/orders`` by ``filter[extendedStatus][]``, ``filter[sites][]``,
  ``filter[customer]`` (a customer's name, e-mail or phone: a query of digits matches every
  order whose phone, additional phone or customer's phone holds those digits, however the
  number was typed), ``limit``, ``page``; orders oldest first;
- ``POST /api/v5/orders/{id}/edit`` with ``by=id|externalId``; edits add history entries;
- ``POST /api/v5/telephony/calls/upload``: at most 50 calls, each validated, a refused
  request stores nothing, calls with a known ``externalId`` come back in ``duplicateCalls``;
- ``POST /api/v5/telephony/call/event``;
- 503 past 10 requests a second per API key (40 for /telephony), counted over the last
  second.

Switches for tests: `down` (503 to everything), `lose_answers` (process the next N POSTs,
then answer 503 as a proxy that lost the answer would), `hang_s` (hold every answer that
long, or until `release()`, as an overloaded CRM does), and stopping the server itself
(connection refused; see `serve.LoopbackServer`).

Guards that are ours, not the CRM's: ``page`` together with ``filter[sinceId]`` is refused
and recorded in `violations`, because a client doing that can skip entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DATE = "%Y-%m-%d %H:%M:%S"
CALL_RESULTS = {"answered", "busy", "failed", "no answer", "not allowed", "unknown"}
# The standard status codes of a new account.
STATUSES = set(
    "new availability-confirmed offer-analog client-confirmed prepayed send-to-assembling "
    "assembling assembled send-to-delivery delivering redirect complete no-call "
    "cancel-other".split()
)


@dataclass
class RetailCrmState:
    api_key: str = "test-key"
    site: str = "shop1"
    timezone: str = "Europe/Moscow"  # the account's zone: every Y-m-d H:i:s is in it
    limit_per_s: int = 10
    telephony_limit_per_s: int = 40
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    call_events: list[dict[str, Any]] = field(default_factory=list)
    upload_sizes: list[int] = field(default_factory=list)
    rate_limited: int = 0
    down: bool = False
    retry_after: str | None = None
    lose_answers: int = 0
    hang_s: float = 0.0
    violations: list[str] = field(default_factory=list)
    requests: int = 0
    _windows: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Answer the requests `hang_s` holds now."""
        self._released.set()

    def add_order(
        self,
        phone: str,
        *,
        created_at: datetime,
        status: str = "new",
        region: str = "Свердловская область",
        category: str | None = None,
        total: int = 990,
    ) -> int:
        """Create an order as a shop's checkout would; returns its id. `category` becomes
        the item's ``category`` property, as a catalogue export with that property sets it."""
        order_id = len(self.orders) + 1
        item: dict[str, Any] = {
            "id": order_id * 10,
            "initialPrice": total,
            "quantity": 1.0,
            "offer": {"id": 7, "externalId": "CR-1", "name": "Крем", "displayName": "Крем"},
        }
        if category is not None:
            item["properties"] = {
                "category": {"code": "category", "name": "Категория", "value": category}
            }
        order = {
            "id": order_id,
            "number": f"{order_id}A",
            "site": self.site,
            "status": status,
            "createdAt": self.local(created_at),
            "firstName": "Иван",
            "lastName": "Петров",
            "phone": phone,
            "countryIso": "RU",
            "items": [item],
            "delivery": {"address": {"region": region, "text": "ул. Ленина, 1"}},
            "totalSumm": total,
        }
        self.orders[order_id] = order
        self._record(order, created=True, when=created_at)
        return order_id

    def change_status(self, order_id: int, status: str, *, when: datetime) -> None:
        old = self.orders[order_id]["status"]
        self.orders[order_id]["status"] = status
        self._record(self.orders[order_id], when=when, field="status", old=old, new=status)

    def _record(
        self,
        order: Mapping[str, Any],
        *,
        when: datetime,
        created: bool = False,
        field: str | None = None,
        old: Any = None,
        new: Any = None,
    ) -> None:
        entry: dict[str, Any] = {
            "id": len(self.history) + 1,
            "createdAt": self.local(when),
            "source": "api",
            "order": json.loads(json.dumps(order)) if created else {"id": order["id"]},
        }
        if created:
            entry["created"] = True
        else:
            entry.update(field=field, oldValue=old, newValue=new)
        self.history.append(entry)

    def local(self, when: datetime) -> str:
        return when.astimezone(ZoneInfo(self.timezone)).strftime(DATE)

    def allow(self, key: str, bucket: str) -> bool:
        limit = self.telephony_limit_per_s if bucket == "telephony" else self.limit_per_s
        window = self._windows.setdefault((key, bucket), deque())
        now = time.monotonic()
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limit:
            self.rate_limited += 1
            return False
        window.append(now)
        return True


def ok(status: int = 200, **data: Any) -> JSONResponse:
    return JSONResponse({"success": True, **data}, status_code=status)


def fail(status: int, message: str, errors: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"success": False, "errorMsg": message}
    if errors:
        body["errors"] = dict(errors)
    return JSONResponse(body, status_code=status)


def create_app(state: RetailCrmState) -> Starlette:
    async def gate(request: Request, bucket: str) -> JSONResponse | None:
        state.requests += 1
        if state.hang_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state._released.wait(), state.hang_s)
        if state.down:
            response = fail(503, "Service temporarily unavailable")
            if state.retry_after is not None:
                response.headers["Retry-After"] = state.retry_after
            return response
        key = request.headers.get("X-API-KEY") or request.query_params.get("apiKey")
        if not key:
            return fail(401, '"apiKey" is missing.')
        if key != state.api_key:
            return fail(401, 'Wrong "apiKey" value.')
        if not state.allow(key, bucket):
            return fail(503, "Too many requests")
        return None

    async def form(request: Request) -> dict[str, str]:
        if request.headers.get("content-type", "").split(";")[0] != (
            "application/x-www-form-urlencoded"
        ):
            state.violations.append(f"{request.url.path}: body is not form-encoded")
            return {}
        parsed = parse_qs((await request.body()).decode(), keep_blank_values=True)
        return {k: v[-1] for k, v in parsed.items()}

    def answered(response: JSONResponse) -> JSONResponse:
        if state.lose_answers > 0 and response.status_code < 300:
            state.lose_answers -= 1
            return fail(503, "Service temporarily unavailable")
        return response

    def limit_of(request: Request, allowed: set[int]) -> int | JSONResponse:
        raw = request.query_params.get("limit", "20")
        if not raw.isdigit() or int(raw) not in allowed:
            return fail(
                400,
                "Errors in the input parameters",
                {"limit": "The value you selected is not a valid choice."},
            )
        return int(raw)

    async def history(request: Request) -> JSONResponse:
        if (refused := await gate(request, "default")) is not None:
            return refused
        q = request.query_params
        limit = limit_of(request, {20, 50, 100})
        if isinstance(limit, JSONResponse):
            return limit
        since = q.get("filter[sinceId]")
        if since is not None and "page" in q:
            state.violations.append("page sent together with filter[sinceId]")
            return fail(400, "Parameter 'page' cannot be used with 'filter[sinceId]'")
        entries = state.history
        if since is not None:
            entries = [e for e in entries if e["id"] > int(since)]
        if (start := q.get("filter[startDate]")) is not None:
            entries = [e for e in entries if e["createdAt"] >= start]
        page = int(q.get("page", "1"))
        chunk = entries[(page - 1) * limit : page * limit]
        return ok(
            generatedAt=state.local(datetime.now().astimezone()),
            history=chunk,
            pagination={
                "limit": limit,
                "totalCount": len(entries),
                "currentPage": page,
                "totalPageCount": math.ceil(len(entries) / limit),
            },
        )

    async def orders(request: Request) -> JSONResponse:
        if (refused := await gate(request, "default")) is not None:
            return refused
        limit = limit_of(request, {20, 50, 100, 250})
        if isinstance(limit, JSONResponse):
            return limit
        q = request.query_params
        statuses = set(q.getlist("filter[extendedStatus][]"))
        sites = set(q.getlist("filter[sites][]"))
        customer = q.get("filter[customer]", "")
        found = [
            o
            for o in state.orders.values()
            if (not statuses or o["status"] in statuses)
            and (not sites or o["site"] in sites)
            and (not customer or _customer_matches(o, customer))
        ]
        page = int(request.query_params.get("page", "1"))
        return ok(
            orders=found[(page - 1) * limit : page * limit],
            pagination={
                "limit": limit,
                "totalCount": len(found),
                "currentPage": page,
                "totalPageCount": math.ceil(len(found) / limit),
            },
        )

    async def edit(request: Request) -> JSONResponse:
        if (refused := await gate(request, "default")) is not None:
            return refused
        data = await form(request)
        if "order" not in data:
            return fail(400, "Parameter 'order' is missing")
        try:
            changes = json.loads(data["order"])
        except ValueError:
            return fail(400, "Errors in the entity format", {"order": "Invalid JSON"})
        ident = request.path_params["ident"]
        by = data.get("by", "externalId")
        target = None
        for order in state.orders.values():
            if (by == "id" and str(order["id"]) == ident) or (
                by == "externalId" and order.get("externalId") == ident
            ):
                target = order
        if target is None:
            return fail(404, "Not found")
        if "status" in changes and changes["status"] not in STATUSES:
            return fail(
                400,
                "Errors in the entity format",
                {"status": f'Status "{changes["status"]}" does not exist.'},
            )
        for key, value in changes.items():
            if key == "status":
                state.change_status(target["id"], value, when=datetime.now().astimezone())
            elif key == "customFields":
                target.setdefault("customFields", {}).update(value)
            else:
                target[key] = value
        return answered(ok(id=target["id"], order=target))

    async def upload(request: Request) -> JSONResponse:
        if (refused := await gate(request, "telephony")) is not None:
            return refused
        data = await form(request)
        try:
            calls = json.loads(data["calls"])
        except (KeyError, ValueError):
            return fail(400, "Parameter 'calls' is missing")
        if not isinstance(calls, list) or not calls:
            return fail(400, "Errors in the entity format", {"calls": "Should not be blank."})
        if len(calls) > 50:
            return fail(
                400,
                "Errors in the entity format",
                {"calls": "This collection should contain 50 elements or less."},
            )
        errors = {}
        for i, call in enumerate(calls):
            errors.update(_call_errors(i, call))
        if errors:
            return fail(400, "Errors in the entity format", errors)
        state.upload_sizes.append(len(calls))
        duplicates = [c["externalId"] for c in calls if c.get("externalId") in state.calls]
        for call in calls:
            state.calls.setdefault(call.get("externalId") or f"anon-{len(state.calls)}", call)
        return answered(
            ok(processedCallsCount=len(calls) - len(duplicates), duplicateCalls=duplicates)
        )

    async def call_event(request: Request) -> JSONResponse:
        if (refused := await gate(request, "telephony")) is not None:
            return refused
        data = await form(request)
        try:
            event = json.loads(data["event"])
        except (KeyError, ValueError):
            return fail(400, "Parameter 'event' is missing")
        if not event.get("phone") or event.get("type") not in {"in", "out", "hangup"}:
            return fail(400, "Errors in the entity format", {"type": "Invalid value."})
        state.call_events.append(event)
        return ok()

    return Starlette(
        routes=[
            Route("/api/v5/orders/history", history, methods=["GET"]),
            Route("/api/v5/orders", orders, methods=["GET"]),
            Route("/api/v5/orders/{ident}/edit", edit, methods=["POST"]),
            Route("/api/v5/telephony/calls/upload", upload, methods=["POST"]),
            Route("/api/v5/telephony/call/event", call_event, methods=["POST"]),
        ]
    )


def _customer_matches(order: Mapping[str, Any], query: str) -> bool:
    digits = re.sub(r"\D", "", query)
    if digits and not re.sub(r"[\d\s()+-]", "", query):
        phones = [order.get("phone"), order.get("additionalPhone")]
        phones += [p.get("number") for p in (order.get("customer") or {}).get("phones", [])]
        return any(digits in re.sub(r"\D", "", str(p)) for p in phones if p)
    names = [order.get(k) for k in ("lastName", "firstName", "patronymic", "email")]
    return query.casefold() in " ".join(str(n) for n in names if n).casefold()


def _call_errors(i: int, call: Any) -> dict[str, str]:
    if not isinstance(call, dict):
        return {f"calls[{i}]": "This value should be of type object."}
    errors = {}
    try:
        datetime.strptime(str(call.get("date")), DATE)
    except ValueError:
        errors[f"calls[{i}][date]"] = "This value is not a valid datetime."
    if call.get("type") not in {"in", "out"}:
        errors[f"calls[{i}][type]"] = "The value you selected is not a valid choice."
    if not call.get("phone"):
        errors[f"calls[{i}][phone]"] = "This value should not be blank."
    if call.get("result") not in CALL_RESULTS:
        errors[f"calls[{i}][result]"] = "The value you selected is not a valid choice."
    for key in ("duration", "durationWaiting"):
        if key in call and (not isinstance(call[key], int) or call[key] < 0):
            errors[f"calls[{i}][{key}]"] = "This value should be a positive integer."
    return errors
