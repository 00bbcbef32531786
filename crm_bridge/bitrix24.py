"""Bitrix24 adapter, through an inbound webhook (``https://<portal>/rest/<user>/<key>/``).

The REST API as documented (dev.1c-bitrix.ru, apidocs.bitrix24.com): one URL per method
(``<webhook>/<method>.json``), JSON bodies, ``{"result": ...}`` on success and
``{"error": CODE, "error_description": ...}`` with a 4xx on failure, and about 2 requests a
second per portal (503 ``QUERY_LIMIT_EXCEEDED`` past it).

Orders are deals: `pull_orders` lists deals with ids above the cursor, oldest first, and reads
their contacts' phones. A finished call is three requests:

1. ``telephony.externalcall.register`` (``USER_ID``, ``PHONE_NUMBER``, ``CALL_START_DATE``,
   ``TYPE`` 1 outgoing / 2 incoming, ``SHOW=0``, ``CRM_CREATE=0``, the deal when known) gives
   the portal's ``CALL_ID``. Registering the same call again before it is finished returns the
   same ``CALL_ID`` (for 30 minutes), so a retry after a crash here does not make a second
   call;
2. ``telephony.externalcall.finish`` (``CALL_ID``, ``USER_ID``, ``DURATION``,
   ``STATUS_CODE`` as a SIP code) records it on the CRM entity's timeline;
3. ``telephony.externalcall.attachRecord`` (``CALL_ID``, ``FILENAME``, ``RECORD_URL``) when
   there is a recording.

Bitrix24 keeps no external id of ours on a finished call, so a call whose last answer was lost
may be recorded twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from crm_bridge.adapter import (
    CallDirection,
    CallRecord,
    CallResult,
    CrmOrder,
    OrderBatch,
    OrderUpdate,
    RejectedCall,
    UploadResult,
)
from crm_bridge.errors import CrmAuthError, CrmProtocolError, CrmRejected
from crm_bridge.http import CrmHttp, RateLimit, Reply, RetryPolicy, Sleep

NAME = "bitrix24"
PAGE = 50  # what every Bitrix24 list method returns at most
# SIP codes for telephony.externalcall.finish's STATUS_CODE.
STATUS_CODES = {
    CallResult.ANSWERED: "200",
    CallResult.BUSY: "486",
    CallResult.NO_ANSWER: "304",
    CallResult.FAILED: "503",
    CallResult.NOT_ALLOWED: "403",
    CallResult.UNKNOWN: "603",
}
_AUTH_ERRORS = {"NO_AUTH_FOUND", "INVALID_CREDENTIALS", "expired_token", "invalid_token"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Bitrix24Settings:
    """`webhook_url` is the inbound webhook (it carries the key); `user_id` the portal user
    calls are registered for when a call has no operator id; `stages` maps obzvon's status
    names to deal ``STAGE_ID`` values."""

    webhook_url: str
    user_id: int
    stages: Mapping[str, str] = field(default_factory=dict)
    rate_per_s: float = 2.0
    timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class Bitrix24Adapter:
    """`CrmAdapter` for Bitrix24. Use as ``async with`` or call `aclose`."""

    name = NAME

    def __init__(
        self,
        settings: Bitrix24Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.http = CrmHttp(
            crm=NAME,
            base_url=settings.webhook_url.rstrip("/"),
            headers={},
            limits={"default": RateLimit(per_second=settings.rate_per_s)},
            retry=settings.retry,
            timeout_s=settings.timeout_s,
            transport=transport,
            sleep=sleep,
        )

    async def __aenter__(self) -> Bitrix24Adapter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, params: Mapping[str, Any]) -> Any:
        """One REST method; returns its ``result``. Raises `CrmRejected` with the portal's
        ``error_description``, `CrmAuthError` for a refused webhook."""
        reply = await self.http.request("POST", f"/{method}.json", json=dict(params))
        return _result(reply)

    async def pull_orders(self, cursor: str | None) -> OrderBatch:
        """Deals with ids above `cursor` (``"id:<last deal id>"``), oldest first."""
        last = 0
        if cursor is not None:
            kind, _, value = cursor.partition(":")
            if kind != "id" or not value.isdigit():
                raise ValueError(f"not a Bitrix24 cursor: {cursor!r}")
            last = int(value)
        deals = await self.call(
            "crm.deal.list",
            {
                "order": {"ID": "ASC"},
                "filter": {">ID": last},
                "select": ["ID", "TITLE", "OPPORTUNITY", "CONTACT_ID", "DATE_CREATE"],
                # start=-1 skips counting the total: the documented fast way to page by ID.
                "start": -1,
            },
        )
        if not isinstance(deals, list):
            raise CrmProtocolError("crm.deal.list did not return a list", crm=NAME)
        deals = [d for d in deals if isinstance(d, Mapping) and str(d.get("ID", "")).isdigit()]
        if not deals:
            return OrderBatch(orders=(), cursor=cursor, more=False)
        contacts = await self._contacts(deals)
        orders = tuple(self._order(d, contacts) for d in deals)
        return OrderBatch(
            orders=orders, cursor=f"id:{max(int(d['ID']) for d in deals)}", more=len(deals) == PAGE
        )

    async def _contacts(self, deals: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
        ids = sorted({str(d["CONTACT_ID"]) for d in deals if d.get("CONTACT_ID")})
        if not ids:
            return {}
        found = await self.call(
            "crm.contact.list",
            {"filter": {"ID": ids}, "select": ["ID", "NAME", "LAST_NAME", "PHONE"], "start": -1},
        )
        if not isinstance(found, list):
            raise CrmProtocolError("crm.contact.list did not return a list", crm=NAME)
        return {str(c["ID"]): c for c in found if isinstance(c, Mapping) and "ID" in c}

    def _order(
        self, deal: Mapping[str, Any], contacts: Mapping[str, Mapping[str, Any]]
    ) -> CrmOrder:
        contact = contacts.get(str(deal.get("CONTACT_ID")), {})
        phones = contact.get("PHONE")
        raw: dict[str, Any] = {
            "external_id": str(deal["ID"]),
            "crm": NAME,
            "customer_name": " ".join(
                str(contact[k]) for k in ("LAST_NAME", "NAME") if contact.get(k)
            ),
            "items": [
                {
                    "sku": f"deal-{deal['ID']}",
                    "name": str(deal.get("TITLE") or f"Deal {deal['ID']}"),
                    "quantity": 1,
                    "price": deal.get("OPPORTUNITY") or 0,
                }
            ],
        }
        if deal.get("DATE_CREATE"):
            raw["created_at"] = deal["DATE_CREATE"]  # ISO 8601 with the portal's offset
        if isinstance(phones, list) and phones and isinstance(phones[0], Mapping):
            raw["phone"] = phones[0].get("VALUE")
        return CrmOrder(crm=NAME, external_id=str(deal["ID"]), number=None, data=raw)

    async def update_order(self, update: OrderUpdate) -> None:
        """Move the deal to the mapped stage; a manager comment goes on its timeline."""
        if update.status is not None:
            if update.status not in self.settings.stages:
                raise CrmRejected(f"no Bitrix24 stage configured for {update.status!r}", crm=NAME)
            await self.call(
                "crm.deal.update",
                {
                    "id": update.external_id,
                    "fields": {"STAGE_ID": self.settings.stages[update.status]},
                },
            )
        if update.manager_comment:
            await self.call(
                "crm.timeline.comment.add",
                {
                    "fields": {
                        "ENTITY_ID": update.external_id,
                        "ENTITY_TYPE": "deal",
                        "COMMENT": update.manager_comment,
                    }
                },
            )

    async def upload_calls(self, calls: Sequence[CallRecord]) -> UploadResult:
        """Register, finish and attach the recording of each call, one call at a time."""
        delivered: list[str] = []
        rejected: list[RejectedCall] = []
        for record in calls:
            try:
                await self._one(record)
            except CrmRejected as exc:
                rejected.append(RejectedCall(record.external_id, exc))
            else:
                delivered.append(record.external_id)
        return UploadResult(delivered=tuple(delivered), rejected=tuple(rejected))

    async def _one(self, record: CallRecord) -> None:
        user = record.operator_id if record.operator_id is not None else self.settings.user_id
        register: dict[str, Any] = {
            "USER_ID": user,
            "PHONE_NUMBER": record.phone,
            "CALL_START_DATE": _iso(record.started_at),
            "TYPE": 1 if record.direction is CallDirection.OUT else 2,
            "SHOW": 0,
            "CRM_CREATE": 0,
        }
        if record.order_external_id is not None:
            register.update(CRM_ENTITY_TYPE="DEAL", CRM_ENTITY_ID=record.order_external_id)
        registered = await self.call("telephony.externalcall.register", register)
        call_id = registered.get("CALL_ID") if isinstance(registered, Mapping) else None
        if not call_id:
            raise CrmProtocolError("register returned no CALL_ID", crm=NAME)
        await self.call(
            "telephony.externalcall.finish",
            {
                "CALL_ID": call_id,
                "USER_ID": user,
                "DURATION": record.duration_s,
                "STATUS_CODE": STATUS_CODES[record.result],
                "ADD_TO_CHAT": 0,
            },
        )
        if record.record_url is not None:
            await self.call(
                "telephony.externalcall.attachRecord",
                {
                    "CALL_ID": call_id,
                    "FILENAME": f"{record.external_id}.mp3",
                    "RECORD_URL": record.record_url,
                },
            )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _result(reply: Reply) -> Any:
    body = reply.body
    if 200 <= reply.status < 300 and body is not None and "result" in body:
        return body["result"]
    code = str(body.get("error") or "") if body is not None else ""
    message = str(body.get("error_description") or code) if body is not None else ""
    if reply.status == 401 or code in _AUTH_ERRORS:
        raise CrmAuthError(message or f"HTTP {reply.status}", crm=NAME)
    if body is None or 200 <= reply.status < 300:
        raise CrmProtocolError(f"unexpected answer: {reply.text[:200]!r}", crm=NAME)
    raise CrmRejected(
        message or f"HTTP {reply.status}", [code] if code else [], crm=NAME, status=reply.status
    )
