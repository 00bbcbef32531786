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

An inbound caller the database does not know is looked up by ``crm.duplicate.findbycomm``
(``entity_type`` CONTACT, ``type`` PHONE), the portal's duplicate index of normalised numbers
(``crm.contact.list`` filters phones only by the exact string, as its method page warns). The
number goes in every form a portal may hold it in (``+7…``, ``7…``, ``8…``, the bare national
number), then ``crm.deal.list`` by ``@CONTACT_ID`` (the deal's primary contact), newest
first, gives the deals: see `Bitrix24Adapter.lookup_phone`. A deal has no line items or
address of its own; a shop that keeps the product category and the delivery region in deal
fields names them in `Bitrix24Settings.category_field` and `region_field`.
"""

from __future__ import annotations

import asyncio
import logging
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
from crm_bridge.intake.regions import RegionDirectory
from crm_bridge.lookup import (
    DELIVERY_DAYS,
    CallerLookup,
    FoundOrder,
    Standing,
    search_forms,
    standing,
)
from crm_bridge.masking import mask_phone
from crm_bridge.redelivery import CHECK_AFTER_S, CallLedger, CallProgress

log = logging.getLogger(__name__)

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
_DEAL_FIELDS = ("ID", "TITLE", "OPPORTUNITY", "CONTACT_ID", "DATE_CREATE")
# A stage's semantics: P in progress, S won, F lost.
_FINAL_SEMANTICS = frozenset({"S", "F"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Bitrix24Settings:
    """`webhook_url` is the inbound webhook (it carries the key); `user_id` the portal user
    calls are registered for when a call has no operator id; `stages` maps the status an
    `OrderUpdate` names to a deal ``STAGE_ID``; `unmapped` says, per status without a stage,
    what to configure (it goes into the refusal an admin reads).

    For an inbound caller, a deal is on its way in the stages `stages` gives a confirmation
    and in `delivery_stages` ("in-delivery" when created within `delivery_days`); closed in
    a won or lost stage and in the stages of obzvon's other outcomes; else still to be
    confirmed. `category_field` and `region_field` name the deal fields (``UF_CRM_…``) that
    hold the product category and the delivery region, if the portal has them."""

    webhook_url: str
    user_id: int
    stages: Mapping[str, str] = field(default_factory=dict)
    unmapped: Mapping[str, str] = field(default_factory=dict)
    rate_per_s: float = 2.0
    timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    check_after_s: float = CHECK_AFTER_S
    delivery_stages: frozenset[str] = frozenset()
    delivery_days: int = DELIVERY_DAYS
    category_field: str | None = None
    region_field: str | None = None


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
        regions: RegionDirectory | None = None,
    ) -> None:
        """`now` is the clock calls' times and a caller's "recent" deal are judged by (epoch
        seconds)."""
        self.settings = settings
        self.ledger = CallLedger(now=now, check_after_s=settings.check_after_s)
        self._callers = CallerLookup(now=now, delivery_days=settings.delivery_days, regions=regions)
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
                "select": self._select(),
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

    def _select(self, *extra: str) -> list[str]:
        fields = (self.settings.category_field, self.settings.region_field)
        return [*_DEAL_FIELDS, *extra, *(f for f in fields if f)]

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
        item: dict[str, Any] = {
            "sku": f"deal-{deal['ID']}",
            "name": str(deal.get("TITLE") or f"Deal {deal['ID']}"),
            "quantity": 1,
            "price": deal.get("OPPORTUNITY") or 0,
        }
        raw: dict[str, Any] = {
            "external_id": str(deal["ID"]),
            "crm": NAME,
            "customer_name": " ".join(
                str(contact[k]) for k in ("LAST_NAME", "NAME") if contact.get(k)
            ),
            "items": [item],
        }
        if deal.get("DATE_CREATE"):
            raw["created_at"] = deal["DATE_CREATE"]  # ISO 8601 with the portal's offset
        if isinstance(phones, list) and phones and isinstance(phones[0], Mapping):
            raw["phone"] = phones[0].get("VALUE")
        if category := _text(deal, self.settings.category_field):
            item["category"] = category
        if region := _text(deal, self.settings.region_field):
            raw["delivery_region"] = region
        return CrmOrder(crm=NAME, external_id=str(deal["ID"]), number=None, data=raw)

    # -- inbound callers ---------------------------------------------------------------

    async def lookup_phone(self, phone_e164: str) -> dict[str, Any] | None:
        """What the portal knows of the caller at `phone_e164`: their latest deal still to be
        confirmed, else their latest deal, as `crm_bridge.lookup` describes; None when no
        contact has this number or their contacts have no deal.

        ``crm.duplicate.findbycomm`` finds the contacts (the 20 oldest at most), and one
        ``crm.deal.list`` the 50 newest deals whose contact is one of them.
        """
        found = await self.call(
            "crm.duplicate.findbycomm",
            {"entity_type": "CONTACT", "type": "PHONE", "values": list(search_forms(phone_e164))},
        )
        # An empty list when nothing matches, else {"CONTACT": [ids]}.
        ids = found.get("CONTACT") if isinstance(found, Mapping) else None
        deals: list[Mapping[str, Any]] = []
        if isinstance(ids, list) and ids:
            page = await self.call(
                "crm.deal.list",
                {
                    "filter": {"@CONTACT_ID": [str(i) for i in ids]},
                    "order": {"DATE_CREATE": "DESC", "ID": "DESC"},
                    "select": self._select("STAGE_ID", "STAGE_SEMANTIC_ID"),
                },
            )
            if not isinstance(page, list):
                raise CrmProtocolError("crm.deal.list did not return a list", crm=NAME)
            deals = [d for d in page if isinstance(d, Mapping) and d.get("ID") is not None]
        answer = self._callers.answer(
            FoundOrder(self._order(d, {}).data, self._standing(d)) for d in deals
        )
        log.info(
            "Bitrix24 has %d contacts and %d deals for caller %s",
            len(ids) if isinstance(ids, list) else 0,
            len(deals),
            mask_phone(phone_e164),
        )
        return answer

    def _standing(self, deal: Mapping[str, Any]) -> Standing:
        return standing(
            str(deal.get("STAGE_ID") or ""),
            mapped=self.settings.stages,
            delivery=self.settings.delivery_stages,
            final=deal.get("STAGE_SEMANTIC_ID") in _FINAL_SEMANTICS,
        )

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


def _text(deal: Mapping[str, Any], field_: str | None) -> str | None:
    value = deal.get(field_) if field_ else None
    text = str(value).strip() if isinstance(value, str | int) else ""
    return text or None


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
