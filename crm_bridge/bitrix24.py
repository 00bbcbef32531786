"""Bitrix24 adapter, through an inbound webhook (``https://<portal>/rest/<user>/<key>/``).

The REST API as documented (dev.1c-bitrix.ru, apidocs.bitrix24.com): one URL per method
(``<webhook>/<method>.json``), JSON bodies, ``{"result": ...}`` on success and
``{"error": CODE, "error_description": ...}`` with a 4xx on failure, and about 2 requests a
second per portal (503 ``QUERY_LIMIT_EXCEEDED`` past it).

Orders are deals: `pull_orders` lists deals with ids above the cursor, oldest first, and reads
their contacts' phones. A finished call is three requests:

1. ``telephony.externalCall.register`` (``USER_ID``, ``PHONE_NUMBER``, ``CALL_START_DATE``,
   ``TYPE`` 1 outgoing / 2 incoming, ``SHOW=0``, ``ADD_TO_CHAT=0``, ``CRM_CREATE=0``, the deal
   when known, ``EXTERNAL_CALL_ID`` = the ChannelId) gives the portal's ``CALL_ID``. Registering
   a call with the same ``EXTERNAL_CALL_ID`` again while it is not finished returns the same
   ``CALL_ID`` (for 30 minutes); once it is finished, registering makes a new call;
2. ``telephony.externalCall.finish`` (``CALL_ID``, ``USER_ID``, ``DURATION``, ``STATUS_CODE``
   as a SIP code) records the call in the statistics and on the CRM entity's timeline. A
   second finish of the same ``CALL_ID`` is refused: "Call is not found";
3. ``telephony.externalCall.attachRecord`` (``CALL_ID``, ``FILENAME``, ``RECORD_URL``) when
   there is a recording; attaching again replaces the record.

So that a call sent again is not recorded twice, the adapter keeps each call's ``CALL_ID``
and step (`crm_bridge.redelivery.CallLedger`) and resumes where it stopped, and before sending
a call that may be in the portal already it looks it up in the call statistics
(``voximplant.statistic.get`` by ``EXTERNAL_CALL_ID``, which needs the "Call statistics: view"
permission): a finished call found there only gets its record attached if it lacks one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
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
from crm_bridge.redelivery import CHECK_AFTER_S, CallLedger, CallProgress

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
    calls are registered for when a call has no operator id; `stages` maps the status an
    `OrderUpdate` names to a deal ``STAGE_ID``; `unmapped` says, per status without a stage,
    what to configure (it goes into the refusal an admin reads)."""

    webhook_url: str
    user_id: int
    stages: Mapping[str, str] = field(default_factory=dict)
    unmapped: Mapping[str, str] = field(default_factory=dict)
    rate_per_s: float = 2.0
    timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    check_after_s: float = CHECK_AFTER_S


class Bitrix24Adapter:
    """`CrmAdapter` for Bitrix24. Use as ``async with`` or call `aclose`."""

    name = NAME

    def __init__(
        self,
        settings: Bitrix24Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        now: Callable[[], float] = time.time,
    ) -> None:
        """`now` is the clock calls' times are compared with (epoch seconds)."""
        self.settings = settings
        self.ledger = CallLedger(now=now, check_after_s=settings.check_after_s)
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
        return _result(await self.http.request("POST", f"/{method}.json", json=dict(params)))

    async def call_list(self, method: str, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Every row of a list method, page by page (50 a page, ``start`` = ``next``)."""
        rows: list[Mapping[str, Any]] = []
        start = 0
        while True:
            reply = await self.http.request(
                "POST", f"/{method}.json", json={**params, "start": start}
            )
            page = _result(reply)
            if not isinstance(page, list):
                raise CrmProtocolError(f"{method} did not return a list", crm=NAME)
            rows += [row for row in page if isinstance(row, Mapping)]
            following = reply.body.get("next") if reply.body is not None else None
            if not isinstance(following, int) or following <= start or not page:
                return rows
            start = following

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
                hint = self.settings.unmapped.get(update.status)
                raise CrmRejected(
                    f"no Bitrix24 stage configured for {update.status!r}"
                    + (f": {hint}" if hint else ""),
                    crm=NAME,
                )
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
        """Register, finish and attach the recording of each call, one call at a time,
        resuming a call sent before where it stopped; a call the portal has finished already
        is a duplicate (see the module docstring)."""
        delivered: list[str] = []
        duplicates: list[str] = []
        rejected: list[RejectedCall] = []
        todo = []
        for record in calls:
            if self.ledger.known(record.external_id):
                duplicates.append(record.external_id)
            else:
                todo.append(record)
        doubtful = [r.external_id for r in todo if self.ledger.needs_check(r)]
        found = await self._statistics("EXTERNAL_CALL_ID", doubtful) if doubtful else {}
        for record in todo:
            try:
                if record.external_id in found:
                    await self._attach_if_missing(record, found[record.external_id])
                else:
                    await self._one(record)
            except CrmRejected as exc:
                self.ledger.refused(record.external_id)
                rejected.append(RejectedCall(record.external_id, exc))
                continue
            self.ledger.acknowledged(record.external_id)
            (duplicates if record.external_id in found else delivered).append(record.external_id)
        return UploadResult(
            delivered=tuple(delivered), duplicates=tuple(duplicates), rejected=tuple(rejected)
        )

    async def _one(self, record: CallRecord) -> None:
        user = record.operator_id if record.operator_id is not None else self.settings.user_id
        progress = self.ledger.sending(record.external_id)
        if not progress.finished:
            if progress.crm_call_id is None:
                progress.crm_call_id = await self._register(record, user)
            try:
                await self._finish(progress.crm_call_id, record, user)
            except CrmRejected as exc:
                if "not found" not in exc.message.lower():
                    raise
                await self._finish_again(progress, record, user)
            progress.finished = True
        if record.record_url is not None:
            assert progress.crm_call_id is not None
            await self._attach(progress.crm_call_id, record)

    async def _finish_again(self, progress: CallProgress, record: CallRecord, user: int) -> None:
        """finish was refused with "Call is not found": an earlier finish whose answer was
        lost went through (the call is in the statistics), or the registration lapsed."""
        assert progress.crm_call_id is not None
        if progress.crm_call_id in await self._statistics("CALL_ID", [progress.crm_call_id]):
            return
        progress.crm_call_id = await self._register(record, user)
        await self._finish(progress.crm_call_id, record, user)

    async def _register(self, record: CallRecord, user: int) -> str:
        register: dict[str, Any] = {
            "USER_ID": user,
            "PHONE_NUMBER": record.phone,
            "CALL_START_DATE": _iso(record.started_at),
            "TYPE": 1 if record.direction is CallDirection.OUT else 2,
            "SHOW": 0,
            "ADD_TO_CHAT": 0,
            "CRM_CREATE": 0,
            "EXTERNAL_CALL_ID": record.external_id,
        }
        if record.order_external_id is not None:
            register.update(CRM_ENTITY_TYPE="DEAL", CRM_ENTITY_ID=record.order_external_id)
        registered = await self.call("telephony.externalCall.register", register)
        call_id = registered.get("CALL_ID") if isinstance(registered, Mapping) else None
        if not call_id:
            raise CrmProtocolError("register returned no CALL_ID", crm=NAME)
        return str(call_id)

    async def _finish(self, call_id: str, record: CallRecord, user: int) -> None:
        await self.call(
            "telephony.externalCall.finish",
            {
                "CALL_ID": call_id,
                "USER_ID": user,
                "DURATION": record.duration_s,
                "STATUS_CODE": STATUS_CODES[record.result],
                "ADD_TO_CHAT": 0,
            },
        )

    async def _attach(self, call_id: str, record: CallRecord) -> None:
        await self.call(
            "telephony.externalCall.attachRecord",
            {
                "CALL_ID": call_id,
                "FILENAME": f"{record.external_id}.mp3",
                "RECORD_URL": record.record_url,
            },
        )

    async def _attach_if_missing(self, record: CallRecord, row: Mapping[str, Any]) -> None:
        progress = self.ledger.sending(record.external_id)
        progress.crm_call_id, progress.finished = str(row.get("CALL_ID") or ""), True
        if record.record_url is not None and not (
            row.get("RECORD_FILE_ID") or row.get("CALL_RECORD_URL")
        ):
            await self._attach(progress.crm_call_id, record)

    async def _statistics(self, key: str, values: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """Finished calls in the portal's statistics whose `key` (``EXTERNAL_CALL_ID`` or
        ``CALL_ID``) is one of `values`, by that value."""
        found: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(values), PAGE):
            chunk = list(values[start : start + PAGE])
            try:
                rows = await self.call_list(
                    "voximplant.statistic.get",
                    {"FILTER": {key: chunk}, "SORT": "ID", "ORDER": "ASC"},
                )
            except CrmRejected as exc:
                if exc.errors == ["ACCESS_DENIED"] or exc.status == 403:
                    raise CrmAuthError(
                        "the webhook's user may not read call statistics (Telephony: "
                        '"Call statistics: view"); obzvon needs it to recognise calls the '
                        f"portal already has ({exc.message})",
                        crm=NAME,
                    ) from exc
                raise
            for row in rows:
                if str(row.get(key) or "") in chunk:
                    found.setdefault(str(row[key]), row)
        return found


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
