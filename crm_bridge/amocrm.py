"""amoCRM / Kommo (API v4) adapter.

The API as documented (amocrm.ru/developers, kommo.com/developers):

- ``Authorization: Bearer <token>`` (a long-lived token or an OAuth access token); JSON
  bodies; errors as ``application/problem+json`` (``title``, ``status``, ``detail``, and
  ``validation-errors`` listing ``request_id`` with the fields at fault);
- at most 7 requests a second per account, 429 past that;
- ``GET /api/v4/leads`` answers 204 with no body when nothing matches.

Orders are leads: `pull_orders` reads leads created since the cursor, oldest first, with their
main contact's phone from ``GET /api/v4/contacts``. Leads carry no line items or delivery
address unless the account has custom fields for them, so an order becomes one item named
after the lead, priced at the lead's budget.

Calls go to ``POST /api/v4/calls`` (``direction``, ``uniq`` = ChannelId, ``duration``,
``source``, ``link``, ``phone``, ``call_result``, ``call_status``, ``created_at``). amoCRM
attaches a call to the lead, customer, contact or company with that phone, as a ``call_in`` or
``call_out`` note whose ``params.uniq`` is ours, and refuses the call when none exists; refused
calls come back in `UploadResult.rejected`.

amoCRM does not promise to recognise a ``uniq`` it already has, so the adapter makes sure a
call is not sent twice itself. ``POST /api/v4/calls`` is never retried blindly: when its
answer is lost (a timeout, a reset connection, a 5xx) it raises `CrmInDoubt`, and before a call
that may be in amoCRM already is sent (`crm_bridge.redelivery`), the call notes written since
it started are read (``GET /api/v4/{leads,customers,contacts,companies}/notes`` by
``filter[note_type]`` and ``filter[updated_at][from]``); a call whose ``uniq`` is among them
is a duplicate.

An inbound caller the database does not know is looked up by ``GET /api/v4/contacts`` with
``query`` (a search of every filled field) set to the bare national number, which every
stored form of the number contains, and ``with=leads``; the contacts whose phone is the
caller's give their leads, read by ``GET /api/v4/leads?filter[id][]=…``: see
`AmoCrmAdapter.lookup_phone`. A shop that keeps the product category and the delivery region
in lead fields names them in `AmoCrmSettings.category_field_id` and `region_field_id`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    national_digits,
    same_phone,
    standing,
)
from crm_bridge.masking import mask_phone
from crm_bridge.redelivery import CHECK_AFTER_S, CallLedger

log = logging.getLogger(__name__)

NAME = "amocrm"
CALLS_PER_REQUEST = 50
LEADS_PER_REQUEST = 250
CONTACTS_PER_SEARCH = 50
# amoCRM's own statuses of every pipeline: 142 won, 143 lost.
CLOSED_STATUSES = frozenset({142, 143})
NOTES_PER_REQUEST = 250
# Where a call may have been written as a note; customers only where the account has them.
NOTE_ENTITIES = ("leads", "customers", "contacts", "companies")
# Notes are looked up from this long before a call started: clocks differ.
NOTES_MARGIN_S = 600

# amoCRM's call_status: 1 left a message, 2 call back later, 3 not available, 4 had a
# conversation, 5 invalid number, 6 no connection, 7 line busy.
CALL_STATUS = {
    CallResult.ANSWERED: 4,
    CallResult.BUSY: 7,
    CallResult.NO_ANSWER: 3,
    CallResult.FAILED: 6,
    CallResult.NOT_ALLOWED: 5,
    CallResult.UNKNOWN: 6,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AmoCrmSettings:
    """`statuses` maps the status an `OrderUpdate` names to an amoCRM (pipeline_id,
    status_id) pair; `unmapped` says, per status without one, what to configure (it goes
    into the refusal an admin reads).

    For an inbound caller, a lead is on its way in the statuses `statuses` gives a
    confirmation and in `delivery_statuses` ("in-delivery" when created within
    `delivery_days`); closed when won or lost (142, 143) and in the statuses of obzvon's
    other outcomes; else still to be confirmed. `category_field_id` and `region_field_id`
    are the lead fields that hold the product category and the delivery region, if the
    account has them."""

    url: str
    token: str
    source: str = "obzvon"
    statuses: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    unmapped: Mapping[str, str] = field(default_factory=dict)
    rate_per_s: float = 7.0
    timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    check_after_s: float = CHECK_AFTER_S
    delivery_statuses: frozenset[tuple[int, int]] = frozenset()
    delivery_days: int = DELIVERY_DAYS
    category_field_id: int | None = None
    region_field_id: int | None = None


class AmoCrmAdapter:
    """`CrmAdapter` for amoCRM and Kommo. Use as ``async with`` or call `aclose`."""

    name = NAME

    def __init__(
        self,
        settings: AmoCrmSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        now: Callable[[], float] = time.time,
        regions: RegionDirectory | None = None,
    ) -> None:
        """`now` is the clock calls' times and a caller's "recent" lead are judged by (epoch
        seconds)."""
        self.settings = settings
        self.ledger = CallLedger(now=now, check_after_s=settings.check_after_s)
        self._callers = CallerLookup(now=now, delivery_days=settings.delivery_days, regions=regions)
        self.http = CrmHttp(
            crm=NAME,
            base_url=settings.url.rstrip("/") + "/api/v4",
            headers={"Authorization": f"Bearer {settings.token}"},
            limits={"default": RateLimit(per_second=settings.rate_per_s)},
            retry=settings.retry,
            timeout_s=settings.timeout_s,
            transport=transport,
            sleep=sleep,
        )

    async def __aenter__(self) -> AmoCrmAdapter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def pull_orders(self, cursor: str | None) -> OrderBatch:
        """Leads created after `cursor` (``"<unix time>:<last lead id>"``), oldest first.

        The next query starts at the creation second of the last lead read and skips ids up
        to it, so leads created in the same second are neither lost nor read twice.
        """
        since, last_id = 0, 0
        if cursor is not None:
            head, _, tail = cursor.partition(":")
            if not (head.isdigit() and tail.isdigit()):
                raise ValueError(f"not an amoCRM cursor: {cursor!r}")
            since, last_id = int(head), int(tail)
        params = {
            "limit": LEADS_PER_REQUEST,
            "with": "contacts",
            "order[id]": "asc",
            "filter[created_at][from]": since,
        }
        reply = await self.http.request("GET", "/leads", params=params)
        page = _embedded(_ok(reply), "leads")
        leads = [lead for lead in page if isinstance(lead.get("id"), int) and lead["id"] > last_id]
        if not leads:
            return OrderBatch(orders=(), cursor=cursor, more=False)
        phones = await self._phones(leads)
        last = leads[-1]
        return OrderBatch(
            orders=tuple(self._order(lead, phones) for lead in leads),
            cursor=f"{int(last.get('created_at') or since)}:{last['id']}",
            more=len(page) == LEADS_PER_REQUEST,
        )

    async def _phones(self, leads: Sequence[Mapping[str, Any]]) -> dict[int, tuple[str, str]]:
        ids = sorted({cid for lead in leads if (cid := _main_contact(lead)) is not None})
        if not ids:
            return {}
        params = [("filter[id][]", i) for i in ids] + [("limit", LEADS_PER_REQUEST)]
        reply = await self.http.request("GET", "/contacts", params=params)
        found: dict[int, tuple[str, str]] = {}
        for contact in _embedded(_ok(reply), "contacts"):
            phone = next(iter(_field_values(contact, code="PHONE")), None)
            if isinstance(contact.get("id"), int) and phone is not None:
                found[contact["id"]] = (str(contact.get("name") or ""), phone)
        return found

    def _order(self, lead: Mapping[str, Any], phones: Mapping[int, tuple[str, str]]) -> CrmOrder:
        contact = _main_contact(lead)
        name, phone = phones.get(contact, ("", None)) if contact is not None else ("", None)
        item: dict[str, Any] = {
            "sku": f"lead-{lead['id']}",
            "name": str(lead.get("name") or f"Lead {lead['id']}"),
            "quantity": 1,
            "price": lead.get("price") or 0,
        }
        raw: dict[str, Any] = {
            "external_id": str(lead["id"]),
            "crm": NAME,
            "customer_name": name,
            "items": [item],
        }
        if isinstance(lead.get("created_at"), int):
            raw["created_at"] = datetime.fromtimestamp(lead["created_at"], UTC)
        if phone is not None:
            raw["phone"] = phone
        if category := _first(lead, self.settings.category_field_id):
            item["category"] = category
        if region := _first(lead, self.settings.region_field_id):
            raw["delivery_region"] = region
        return CrmOrder(crm=NAME, external_id=str(lead["id"]), number=None, data=raw)

    # -- inbound callers ---------------------------------------------------------------

    async def lookup_phone(self, phone_e164: str) -> dict[str, Any] | None:
        """What amoCRM knows of the caller at `phone_e164`: their latest lead still to be
        confirmed, else their latest lead, as `crm_bridge.lookup` describes; None when no
        contact has this number or their contacts have no lead.

        ``GET /contacts?query=<national number>&with=leads`` (50 contacts at most; 204 when
        nothing matches), keeping the contacts one of whose phones is the caller's, then
        ``GET /leads?filter[id][]=…`` for their 250 newest leads.
        """
        params = {"query": national_digits(phone_e164), "with": "leads"}
        reply = await self.http.request(
            "GET", "/contacts", params={**params, "limit": CONTACTS_PER_SEARCH}
        )
        contacts = [
            c
            for c in _embedded(_ok(reply), "contacts", required=False)
            if any(same_phone(p, phone_e164) for p in _field_values(c, code="PHONE"))
        ]
        ids = sorted({i for c in contacts for i in _linked(c, "leads")})[-LEADS_PER_REQUEST:]
        leads: list[Mapping[str, Any]] = []
        if ids:
            query = [("filter[id][]", i) for i in ids] + [("limit", LEADS_PER_REQUEST)]
            reply = await self.http.request("GET", "/leads", params=query)
            leads = [
                lead
                for lead in _embedded(_ok(reply), "leads", required=False)
                if isinstance(lead.get("id"), int)
            ]
        answer = self._callers.answer(
            FoundOrder(self._order(lead, {}).data, self._standing(lead)) for lead in leads
        )
        log.info(
            "amoCRM has %d contacts and %d leads for caller %s",
            len(contacts),
            len(leads),
            mask_phone(phone_e164),
        )
        return answer

    def _standing(self, lead: Mapping[str, Any]) -> Standing:
        return standing(
            (lead.get("pipeline_id"), lead.get("status_id")),
            mapped=self.settings.statuses,
            delivery=self.settings.delivery_statuses,
            final=lead.get("status_id") in CLOSED_STATUSES,
        )

    async def update_order(self, update: OrderUpdate) -> None:
        """Move the lead to the mapped status; a manager comment becomes a note."""
        lead = int(update.external_id)
        if update.status is not None:
            if update.status not in self.settings.statuses:
                hint = self.settings.unmapped.get(update.status)
                raise CrmRejected(
                    f"no amoCRM status configured for {update.status!r}"
                    + (f": {hint}" if hint else ""),
                    crm=NAME,
                )
            pipeline, status = self.settings.statuses[update.status]
            body = {"pipeline_id": pipeline, "status_id": status}
            _ok(await self.http.request("PATCH", f"/leads/{lead}", json=body))
        if update.manager_comment:
            note = [{"note_type": "common", "params": {"text": update.manager_comment}}]
            _ok(await self.http.request("POST", f"/leads/{lead}/notes", json=note))

    async def upload_calls(self, calls: Sequence[CallRecord]) -> UploadResult:
        """Batches of 50; calls refused by validation or with no matching entity are set
        apart by their ``request_id`` and the rest of the batch sent again. Calls amoCRM may
        have already are looked up first, and those it has are duplicates."""
        delivered: list[str] = []
        duplicates: list[str] = []
        rejected: list[RejectedCall] = []
        todo = []
        for record in calls:
            if self.ledger.known(record.external_id):
                duplicates.append(record.external_id)
            else:
                todo.append(record)
        doubtful = [r for r in todo if self.ledger.needs_check(r)]
        if doubtful:
            have = await self._calls_in_notes(doubtful)
            for record in doubtful:
                if record.external_id in have:
                    self.ledger.acknowledged(record.external_id)
                    duplicates.append(record.external_id)
            todo = [r for r in todo if r.external_id not in have]
        for start in range(0, len(todo), CALLS_PER_REQUEST):
            batch = list(todo[start : start + CALLS_PER_REQUEST])
            while batch:
                batch = await self._upload(batch, delivered, rejected)
        return UploadResult(
            delivered=tuple(delivered), duplicates=tuple(duplicates), rejected=tuple(rejected)
        )

    async def _upload(
        self, batch: list[CallRecord], delivered: list[str], rejected: list[RejectedCall]
    ) -> list[CallRecord]:
        """Send `batch`; return the calls to send again (none, unless validation failed)."""
        payload = [self._call(c, i) for i, c in enumerate(batch)]
        for record in batch:
            self.ledger.sending(record.external_id)
        try:
            reply = await self.http.request("POST", "/calls", json=payload, idempotent=False)
            if (
                reply.status == 400
                and reply.body is not None
                and reply.body.get("validation-errors")
            ):
                bad = _validation_errors(reply.body)
                if not bad:
                    raise _rejected(reply)
                for i, detail in bad.items():
                    self.ledger.refused(batch[i].external_id)
                    rejected.append(RejectedCall(batch[i].external_id, _rejected(reply, detail)))
                return [c for i, c in enumerate(batch) if i not in bad]
            body = _ok(reply)
        except (CrmRejected, CrmAuthError):
            for record in batch:  # refused whole: nothing of it was stored
                self.ledger.refused(record.external_id)
            raise
        errors = {_index(e.get("request_id")): e for e in _embedded(body, "errors", required=False)}
        for i, call in enumerate(batch):
            if i in errors:
                why = str(errors[i].get("detail") or errors[i].get("title") or "refused")
                self.ledger.refused(call.external_id)
                rejected.append(RejectedCall(call.external_id, CrmRejected(why, crm=NAME)))
            else:
                self.ledger.acknowledged(call.external_id)
                delivered.append(call.external_id)
        return []

    async def _calls_in_notes(self, calls: Sequence[CallRecord]) -> set[str]:
        """Which of `calls` amoCRM has: their ``uniq`` among the call notes written since
        the earliest of them started."""
        wanted = {c.external_id for c in calls}
        since = int(min(c.started_at.timestamp() for c in calls)) - NOTES_MARGIN_S
        found: set[str] = set()
        for entity in NOTE_ENTITIES:
            page = 1
            while found != wanted:
                params: list[tuple[str, str | int]] = [
                    ("filter[note_type][]", "call_in"),
                    ("filter[note_type][]", "call_out"),
                    ("filter[updated_at][from]", since),
                    ("limit", NOTES_PER_REQUEST),
                    ("page", page),
                ]
                reply = await self.http.request("GET", f"/{entity}/notes", params=params)
                if entity == "customers" and reply.status in (402, 403, 404):
                    break  # the account has no customers, so no call went to one
                notes = _embedded(_ok(reply), "notes", required=False)
                for note in notes:
                    params_ = note.get("params")
                    uniq = params_.get("uniq") if isinstance(params_, Mapping) else None
                    if uniq in wanted:
                        found.add(str(uniq))
                if len(notes) < NOTES_PER_REQUEST:
                    break
                page += 1
        return found

    def _call(self, call: CallRecord, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": str(index),
            "direction": "outbound" if call.direction is CallDirection.OUT else "inbound",
            "uniq": call.external_id,
            "duration": call.duration_s,
            "source": self.settings.source,
            "phone": call.phone,
            "call_result": call.result.value,
            "call_status": CALL_STATUS[call.result],
            "created_at": int(call.started_at.timestamp()),
        }
        if call.record_url is not None:
            out["link"] = call.record_url
        if call.operator_id is not None:
            out["responsible_user_id"] = call.operator_id
            out["created_by"] = call.operator_id
        return out


def _ok(reply: Reply) -> Mapping[str, Any]:
    if reply.status == 204:
        return {}
    if 200 <= reply.status < 300:
        if reply.body is None:
            raise CrmProtocolError(f"answer is not JSON: {reply.text[:200]!r}", crm=NAME)
        return reply.body
    if reply.status in (401, 403):
        detail = reply.body.get("detail") or reply.body.get("title") if reply.body else None
        raise CrmAuthError(str(detail or f"HTTP {reply.status}"), crm=NAME)
    raise _rejected(reply)


def _rejected(reply: Reply, detail: list[str] | None = None) -> CrmRejected:
    body = reply.body or {}
    message = str(body.get("detail") or body.get("title") or reply.text[:500] or reply.status)
    return CrmRejected(message, detail or [], crm=NAME, status=reply.status)


def _validation_errors(body: Mapping[str, Any]) -> dict[int, list[str]]:
    bad: dict[int, list[str]] = {}
    for item in body.get("validation-errors") or ():
        if not isinstance(item, Mapping) or _index(item.get("request_id")) < 0:
            continue
        details = [
            f"{e.get('path')}: {e.get('detail')}"
            for e in item.get("errors") or ()
            if isinstance(e, Mapping)
        ]
        bad[_index(item.get("request_id"))] = details
    return bad


def _index(request_id: object) -> int:
    text = str(request_id)
    return int(text) if text.isdigit() else -1


def _embedded(
    body: Mapping[str, Any], key: str, *, required: bool = True
) -> list[Mapping[str, Any]]:
    embedded = body.get("_embedded")
    value = embedded.get(key) if isinstance(embedded, Mapping) else None
    if value is None and (not required or not body):
        return []
    if not isinstance(value, list):
        raise CrmProtocolError(f"answer has no _embedded.{key}: {json.dumps(body)[:200]}", crm=NAME)
    return [v for v in value if isinstance(v, Mapping)]


def _main_contact(lead: Mapping[str, Any]) -> int | None:
    embedded = lead.get("_embedded")
    contacts = embedded.get("contacts") if isinstance(embedded, Mapping) else None
    if not isinstance(contacts, list):
        return None
    chosen = [c for c in contacts if isinstance(c, Mapping) and c.get("is_main")] or contacts
    first = chosen[0] if chosen else None
    return first["id"] if isinstance(first, Mapping) and isinstance(first.get("id"), int) else None


def _linked(entity: Mapping[str, Any], key: str) -> list[int]:
    """The ids of the entities `_embedded[key]` links to (``with=leads`` on a contact)."""
    embedded = entity.get("_embedded")
    linked = embedded.get(key) if isinstance(embedded, Mapping) else None
    return [
        e["id"]
        for e in (linked if isinstance(linked, list) else ())
        if isinstance(e, Mapping) and isinstance(e.get("id"), int)
    ]


def _field_values(
    entity: Mapping[str, Any], *, code: str | None = None, field_id: int | None = None
) -> list[str]:
    """The values of the custom field with this `code` (``PHONE``) or `field_id`."""
    out: list[str] = []
    for field_ in entity.get("custom_fields_values") or ():
        if not isinstance(field_, Mapping):
            continue
        if (code is not None and field_.get("field_code") == code) or (
            field_id is not None and field_.get("field_id") == field_id
        ):
            values = field_.get("values")
            for value in values if isinstance(values, list) else ():
                if isinstance(value, Mapping) and value.get("value") is not None:
                    out.append(str(value["value"]))
    return out


def _first(entity: Mapping[str, Any], field_id: int | None) -> str | None:
    if field_id is None:
        return None
    return next((v.strip() for v in _field_values(entity, field_id=field_id) if v.strip()), None)
