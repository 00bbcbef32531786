"""RetailCRM (API v5) adapter.

The API, as documented and as the official clients (api-client-php, api-client-python) use it:

- authentication by the ``X-API-KEY`` header; ``site`` names the shop when a key serves
  several;
- GET parameters in PHP's bracket form (``filter[sinceId]=5``); POST bodies form-encoded,
  with nested values (``order``, ``calls``, ``event``) as JSON strings;
- answers ``{"success": true, ...}`` or ``{"success": false, "errorMsg": ..., "errors": ...}``
  with a 4xx status;
- about 10 requests a second per account, 40 for ``/telephony`` methods; past that, 503.

New orders come from ``GET /api/v5/orders/history`` by ``filter[sinceId]``: each call reads
the changes after the last history id stored, and the next call starts after the last id
returned. ``page`` is never sent with ``sinceId`` (paging a moving list skips entries); the
cursor moves instead. For the very first run ``cursor_since(moment)`` starts at a date
(``filter[startDate]``), and `list_orders` reads existing orders by status.

An inbound caller the database does not know is looked up by ``GET /api/v5/orders`` with
``filter[customer]`` (the customer's name or phone; the official clients' ``OrderFilter``
field ``customer``) set to the bare national number, digits every stored form of the number
contains: see `RetailCrmAdapter.lookup_phone`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx

from crm_bridge.adapter import (
    CallRecord,
    CrmOrder,
    OrderBatch,
    OrderPage,
    OrderUpdate,
    RejectedCall,
    UploadResult,
)
from crm_bridge.errors import CrmAuthError, CrmProtocolError, CrmRejected
from crm_bridge.http import CrmHttp, RateLimit, Reply, RetryPolicy, Sleep
from crm_bridge.intake.regions import RegionDirectory
from crm_bridge.lookup import (
    DELIVERY_DAYS,
    CallerLookup,
    FoundOrder,
    Standing,
    national_digits,
    same_phone,
)
from crm_bridge.masking import mask_phone

log = logging.getLogger(__name__)

NAME = "retailcrm"
HISTORY_LIMITS = frozenset({20, 50, 100})
LIST_LIMITS = frozenset({20, 50, 100, 250})
CALLS_PER_UPLOAD = 50
_DATE = "%Y-%m-%d %H:%M:%S"
# RetailCRM's standard status codes: still to be confirmed with the customer ("new" group and
# the approval steps before the customer's word), and confirmed up to the parcel's delivery.
OPEN_STATUSES = frozenset({"new", "availability-confirmed", "offer-analog"})
DELIVERY_STATUSES = frozenset(
    {
        "client-confirmed",
        "prepayed",
        "send-to-assembling",
        "assembling",
        "assembled",
        "send-to-delivery",
        "delivering",
        "redirect",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetailCrmSettings:
    """Connection settings. `timezone` is the account's zone: RetailCRM reads and writes
    ``Y-m-d H:i:s`` times in it."""

    url: str
    api_key: str
    site: str | None = None
    timezone: str = "Europe/Moscow"
    history_limit: int = 100
    list_limit: int = 100
    rate_per_s: float = 10.0
    telephony_rate_per_s: float = 40.0
    timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Which id `OrderUpdate.external_id` is: RetailCRM's own ("id", what pull_orders
    # returns) or the shop's ("externalId").
    edit_by: Literal["id", "externalId"] = "id"
    # For an inbound caller: the status codes of an order still to be confirmed and of one
    # confirmed and on its way ("in-delivery" when created within `delivery_days`).
    open_statuses: frozenset[str] = OPEN_STATUSES
    delivery_statuses: frozenset[str] = DELIVERY_STATUSES
    delivery_days: int = DELIVERY_DAYS
    # An order item carries no product group: the item property with this code, where the
    # shop sets one, gives the item's category.
    category_property: str = "category"

    def __post_init__(self) -> None:
        if self.history_limit not in HISTORY_LIMITS:
            raise ValueError(f"history_limit must be one of {sorted(HISTORY_LIMITS)}")
        if self.list_limit not in LIST_LIMITS:
            raise ValueError(f"list_limit must be one of {sorted(LIST_LIMITS)}")


class RetailCrmAdapter:
    """`CrmAdapter` for RetailCRM. Use as ``async with`` or call `aclose`."""

    name = NAME

    def __init__(
        self,
        settings: RetailCrmSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        now: Callable[[], float] = time.time,
        regions: RegionDirectory | None = None,
    ) -> None:
        """`now` is the clock a caller's "recent" order is judged by (epoch seconds)."""
        self.settings = settings
        self._tz = ZoneInfo(settings.timezone)
        self._callers = CallerLookup(now=now, delivery_days=settings.delivery_days, regions=regions)
        self.http = CrmHttp(
            crm=NAME,
            base_url=settings.url.rstrip("/") + "/api/v5",
            headers={"X-API-KEY": settings.api_key},
            limits={
                "default": RateLimit(per_second=settings.rate_per_s),
                "telephony": RateLimit(per_second=settings.telephony_rate_per_s),
            },
            retry=settings.retry,
            timeout_s=settings.timeout_s,
            transport=transport,
            sleep=sleep,
        )

    async def __aenter__(self) -> RetailCrmAdapter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- orders in ---------------------------------------------------------------------

    def cursor_since(self, moment: datetime) -> str:
        """A cursor for history from `moment` on: for the first run, taken just before
        `list_orders` so that nothing created during the full sync is missed."""
        return "date:" + moment.astimezone(self._tz).strftime(_DATE)

    async def pull_orders(self, cursor: str | None) -> OrderBatch:
        """Orders created after `cursor` (None: from the start of the account's history).

        Orders appear once per batch even if the history has several entries for them; a
        batch without new orders still moves the cursor past the changes it read.
        """
        params: dict[str, str | int] = {"limit": self.settings.history_limit}
        if cursor is not None:
            kind, _, value = cursor.partition(":")
            if kind == "id" and value.isdigit():
                params["filter[sinceId]"] = int(value)
            elif kind == "date" and value:
                params["filter[startDate]"] = value
            else:
                raise ValueError(f"not a RetailCRM cursor: {cursor!r}")
        if self.settings.site:
            params["site"] = self.settings.site
        body = self._ok(await self.http.request("GET", "/orders/history", params=params))
        history = _list(body, "history")
        orders: dict[str, CrmOrder] = {}
        last_id: int | None = None
        for entry in history:
            entry_id = entry.get("id")
            if not isinstance(entry_id, int):
                raise CrmProtocolError(f"history entry without an id: {entry!r:.200}", crm=NAME)
            last_id = entry_id if last_id is None else max(last_id, entry_id)
            order = entry.get("order")
            if entry.get("created") and isinstance(order, Mapping) and "id" in order:
                parsed = self._order(order)
                orders.setdefault(parsed.external_id, parsed)
        next_cursor = f"id:{last_id}" if last_id is not None else cursor
        return OrderBatch(
            orders=tuple(orders.values()),
            cursor=next_cursor,
            more=bool(history) and _pages(body) > 1,
        )

    async def list_orders(self, statuses: Sequence[str], page: int = 1) -> OrderPage:
        """One page of existing orders in `statuses`, for the first sync."""
        params: list[tuple[str, str | int]] = [
            ("limit", self.settings.list_limit),
            ("page", page),
        ]
        params += [("filter[extendedStatus][]", s) for s in statuses]
        if self.settings.site:
            params.append(("filter[sites][]", self.settings.site))
        body = self._ok(await self.http.request("GET", "/orders", params=params))
        return OrderPage(
            orders=tuple(self._order(o) for o in _list(body, "orders")),
            page=page,
            total_pages=_pages(body),
        )

    def _order(self, order: Mapping[str, Any]) -> CrmOrder:
        return CrmOrder(
            crm=NAME,
            external_id=str(order["id"]),
            number=str(order["number"]) if order.get("number") is not None else None,
            data=self._intake(order),
        )

    def _intake(self, order: Mapping[str, Any]) -> dict[str, Any]:
        return order_to_intake(
            order, timezone=self._tz, category_property=self.settings.category_property
        )

    # -- inbound callers ---------------------------------------------------------------

    async def lookup_phone(self, phone_e164: str) -> dict[str, Any] | None:
        """What RetailCRM knows of the caller at `phone_e164`: their latest order still to be
        confirmed, else their latest order, as `crm_bridge.lookup` describes; None when no
        order has this number.

        ``GET /orders?filter[customer]=<national number>``; of what it finds, only orders
        whose phone (the order's, its additional one or the customer's) is the caller's
        count. The API does not say in which order the list comes, so when there are
        several pages the first and the last are read: the newest orders are on one of them.
        """
        params: list[tuple[str, str | int]] = [
            ("filter[customer]", national_digits(phone_e164)),
            ("limit", self.settings.list_limit),
        ]
        if self.settings.site:
            params.append(("filter[sites][]", self.settings.site))
        orders: dict[object, Mapping[str, Any]] = {}
        page, pages = 1, 1
        while page <= pages:
            reply = await self.http.request("GET", "/orders", params=[*params, ("page", page)])
            body = self._ok(reply)
            orders |= {o.get("id"): o for o in _list(body, "orders")}
            pages = _pages(body)
            page = pages if page < pages else page + 1  # the first page, then the last
        found = [
            FoundOrder(self._intake(o), self._standing(o))
            for key, o in orders.items()
            if key is not None and any(same_phone(p, phone_e164) for p in _phones(o))
        ]
        answer = self._callers.answer(found)
        log.info("RetailCRM has %d orders from caller %s", len(found), mask_phone(phone_e164))
        return answer

    def _standing(self, order: Mapping[str, Any]) -> Standing:
        status = order.get("status")
        if status in self.settings.delivery_statuses:
            return Standing.DELIVERY
        if status in self.settings.open_statuses:
            return Standing.OPEN
        return Standing.CLOSED

    # -- outcomes out ------------------------------------------------------------------

    async def update_order(self, update: OrderUpdate) -> None:
        """``POST /orders/{id}/edit``; raises `CrmRejected` with the CRM's message."""
        order: dict[str, Any] = {}
        if update.status is not None:
            order["status"] = update.status
        if update.manager_comment is not None:
            order["managerComment"] = update.manager_comment
        if update.custom_fields:
            order["customFields"] = dict(update.custom_fields)
        form = {"by": self.settings.edit_by, "order": json.dumps(order, ensure_ascii=False)}
        if self.settings.site:
            form["site"] = self.settings.site
        path = f"/orders/{quote(update.external_id, safe='')}/edit"
        self._ok(await self.http.request("POST", path, data=form))

    async def upload_calls(self, calls: Sequence[CallRecord]) -> UploadResult:
        """Upload in batches of at most 50. A refused batch is split in halves until the
        refused calls are found, so one bad call does not hold back 49 good ones."""
        delivered: list[str] = []
        duplicates: list[str] = []
        rejected: list[RejectedCall] = []
        for start in range(0, len(calls), CALLS_PER_UPLOAD):
            await self._upload(
                list(calls[start : start + CALLS_PER_UPLOAD]), delivered, duplicates, rejected
            )
        return UploadResult(
            delivered=tuple(delivered), duplicates=tuple(duplicates), rejected=tuple(rejected)
        )

    async def _upload(
        self,
        batch: list[CallRecord],
        delivered: list[str],
        duplicates: list[str],
        rejected: list[RejectedCall],
    ) -> None:
        form = {"calls": json.dumps([self._call(c) for c in batch], ensure_ascii=False)}
        reply = await self.http.request(
            "POST", "/telephony/calls/upload", bucket="telephony", data=form
        )
        try:
            body = self._ok(reply)
        except CrmRejected as exc:
            if len(batch) == 1:
                log.warning(
                    "RetailCRM refused call %s to %s: %s",
                    batch[0].external_id,
                    mask_phone(batch[0].phone),
                    exc,
                )
                rejected.append(RejectedCall(batch[0].external_id, exc))
                return
            half = len(batch) // 2
            await self._upload(batch[:half], delivered, duplicates, rejected)
            await self._upload(batch[half:], delivered, duplicates, rejected)
            return
        known = {str(d) for d in body.get("duplicateCalls") or ()}
        for call in batch:
            (duplicates if call.external_id in known else delivered).append(call.external_id)

    def _call(self, call: CallRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "date": call.started_at.astimezone(self._tz).strftime(_DATE),
            "type": call.direction.value,
            "phone": call.phone,
            "result": call.result.value,
            "duration": call.duration_s,
            "durationWaiting": call.waiting_s,
            "externalId": call.external_id,
        }
        if call.operator_code is not None:
            out["code"] = call.operator_code
        if call.operator_id is not None:
            out["userId"] = call.operator_id
        if call.record_url is not None:
            out["recordUrl"] = call.record_url
        if self.settings.site:
            out["site"] = self.settings.site
        return out

    async def call_event(
        self,
        *,
        phone: str,
        event: Literal["in", "out", "hangup"],
        operator_codes: Sequence[str] = (),
        call_external_id: str | None = None,
        hangup_status: str | None = None,
    ) -> None:
        """``POST /telephony/call/event``: a live event (the CRM shows the customer card)."""
        payload: dict[str, Any] = {"phone": phone, "type": event}
        if operator_codes:
            payload["codes"] = list(operator_codes)
        if call_external_id is not None:
            payload["callExternalId"] = call_external_id
        if hangup_status is not None:
            payload["hangupStatus"] = hangup_status
        if self.settings.site:
            payload["site"] = self.settings.site
        form = {"event": json.dumps(payload, ensure_ascii=False)}
        self._ok(
            await self.http.request("POST", "/telephony/call/event", bucket="telephony", data=form)
        )

    def _ok(self, reply: Reply) -> Mapping[str, Any]:
        body = reply.body
        if 200 <= reply.status < 300 and body is not None and body.get("success") is True:
            return body
        message = str(body.get("errorMsg") or "") if body is not None else ""
        if reply.status in (401, 403):
            raise CrmAuthError(message or f"HTTP {reply.status}", crm=NAME)
        if body is None:
            if 200 <= reply.status < 300:
                raise CrmProtocolError(f"answer is not JSON: {reply.text[:200]!r}", crm=NAME)
            raise CrmRejected(
                reply.text[:500] or f"HTTP {reply.status}", crm=NAME, status=reply.status
            )
        errors = body.get("errors")
        detail: Mapping[str, str] | list[str]
        if isinstance(errors, Mapping):
            detail = {str(k): str(v) for k, v in errors.items()}
        elif isinstance(errors, list):
            detail = [str(e) for e in errors]
        else:
            detail = {}
        raise CrmRejected(message or f"HTTP {reply.status}", detail, crm=NAME, status=reply.status)


def _pages(body: Mapping[str, Any]) -> int:
    pagination = body.get("pagination")
    total = pagination.get("totalPageCount", 1) if isinstance(pagination, Mapping) else 1
    return total if isinstance(total, int) and total > 0 else 1


def _list(body: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = body.get(key)
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise CrmProtocolError(f"answer has no list {key!r}", crm=NAME)
    return value


def order_to_intake(
    order: Mapping[str, Any], *, timezone: ZoneInfo, category_property: str = "category"
) -> dict[str, Any]:
    """A RetailCRM order in intake's raw shape. Missing or odd values are passed on as they
    are (or left out) for intake to judge; this never raises for a mapping with an id. An
    item's category is its property `category_property`, when it has one."""
    delivery = _mapping(order.get("delivery"))
    address = _mapping(delivery.get("address"))
    name = " ".join(
        str(order[k]).strip() for k in ("lastName", "firstName", "patronymic") if order.get(k)
    )
    raw: dict[str, Any] = {
        "external_id": str(order["id"]),
        "crm": NAME,
        "customer_name": name,
        "items": [
            _item(i, category_property) for i in order.get("items") or () if isinstance(i, Mapping)
        ],
    }
    created = order.get("createdAt")
    if isinstance(created, str):
        try:
            raw["created_at"] = datetime.strptime(created, _DATE).replace(tzinfo=timezone)
        except ValueError:
            raw["created_at"] = created
    phone = order.get("phone") or _customer_phone(order.get("customer"))
    if phone is not None:
        raw["phone"] = phone
    optional = {
        "site": order.get("site"),
        "delivery_country": address.get("countryIso") or order.get("countryIso"),
        "delivery_region": address.get("region"),
        "delivery_city": address.get("city"),
        "delivery_address": address.get("text"),
        "total": order.get("totalSumm"),
        "comment": order.get("customerComment"),
    }
    raw.update({k: v for k, v in optional.items() if v is not None})
    return raw


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _item(item: Mapping[str, Any], category_property: str) -> dict[str, Any]:
    offer = _mapping(item.get("offer"))
    sku = offer.get("externalId") or offer.get("xmlId") or offer.get("id") or item.get("id")
    out: dict[str, Any] = {
        "sku": str(sku) if sku is not None else "",
        "name": offer.get("displayName") or offer.get("name") or item.get("productName") or "",
        "quantity": item.get("quantity", 1),
        "price": item.get("initialPrice", 0),
    }
    quantity = out["quantity"]
    if isinstance(quantity, float) and quantity.is_integer():
        out["quantity"] = int(quantity)  # RetailCRM sends 1.0 for one piece
    category = _property(item.get("properties"), category_property)
    if category:
        out["category"] = category
    return out


def _property(properties: object, code: str) -> str | None:
    # Item properties come keyed by code ({"color": {"code", "name", "value"}}); a list of
    # the same objects is read too.
    if isinstance(properties, Mapping):
        properties = list(properties.values())
    for prop in properties if isinstance(properties, list) else ():
        if isinstance(prop, Mapping) and prop.get("code") == code:
            value = prop.get("value")
            return str(value).strip() if value is not None else None
    return None


def _phones(order: Mapping[str, Any]) -> list[object]:
    customer = _mapping(order.get("customer"))
    numbers = [p.get("number") for p in customer.get("phones") or () if isinstance(p, Mapping)]
    return [order.get("phone"), order.get("additionalPhone"), *numbers]


def _customer_phone(customer: object) -> str | None:
    if isinstance(customer, Mapping):
        phones = customer.get("phones")
        if isinstance(phones, list) and phones and isinstance(phones[0], Mapping):
            number = phones[0].get("number")
            return str(number) if number is not None else None
    return None
