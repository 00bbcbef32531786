"""An amoCRM / Kommo API v4 stand-in, built from the API documentation.

What it reproduces: Bearer authentication (401 problem+json otherwise); JSON bodies;
``GET /api/v4/leads`` with ``filter[created_at][from]``, ``filter[id][]``, ``order[id]``,
``limit`` (at most 250), ``with=contacts`` and 204 with no body when nothing matches;
``GET /api/v4/contacts`` by ``filter[id][]`` or ``query`` (a search of the filled fields: a
query of digits matches a phone holding those digits however it was typed, other text a
name or a field value), ``with=leads`` (each contact's leads in ``_embedded.leads``) and
``limit`` (at most 250), 204 when nothing matches, with the phone in
``custom_fields_values`` (``field_code: PHONE``);
``PATCH /api/v4/leads/{id}``; ``POST /api/v4/leads/{id}/notes``; ``POST /api/v4/calls``
(validation errors as ``validation-errors`` by ``request_id``; a call whose phone matches no
contact comes back in ``_embedded.errors``; a call is written as a ``call_in``/``call_out``
note, on the contact's one lead, or on the contact when it has none or several);
``GET /api/v4/{leads,contacts,companies,customers}/notes`` by ``filter[note_type][]``,
``filter[updated_at][from]``, ``limit`` (at most 250) and ``page``, 204 when nothing matches;
429 past 7 requests a second.

amoCRM's documentation says nothing about a ``uniq`` sent twice, so by default a call with a
``uniq`` already stored is stored again (a second note); `dedupe_uniq` makes the stand-in
update the existing note instead, as some accounts are reported to.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DIRECTIONS = {"inbound", "outbound"}


@dataclass
class AmoCrmState:
    token: str = "amo-token"
    limit_per_s: int = 7
    leads: dict[int, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: list[tuple[int, str]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    call_notes: list[dict[str, Any]] = field(default_factory=list)
    dedupe_uniq: bool = False
    clock: Callable[[], float] = time.time
    too_many: int = 0
    busy_next: int = 0
    _window: deque[float] = field(default_factory=deque)

    def add_lead(
        self,
        phone: str,
        *,
        created_at: int,
        price: int = 990,
        status: tuple[int, int] = (1, 10),
        fields: dict[int, str] | None = None,
    ) -> int:
        """A lead in (pipeline_id, status_id) `status` with `fields` (field_id → value),
        whose main contact is the one that has `phone` as typed, or a new one."""
        contact_id = next(
            (i for i, c in self.contacts.items() if self.phone_of(c) == phone),
            len(self.contacts) + 100,
        )
        self.contacts.setdefault(
            contact_id,
            {
                "id": contact_id,
                "name": "Иван Петров",
                "custom_fields_values": [
                    {"field_id": 1, "field_code": "PHONE", "values": [{"value": phone}]}
                ],
            },
        )
        lead_id = len(self.leads) + 1000
        self.leads[lead_id] = {
            "id": lead_id,
            "name": f"Заказ {lead_id}",
            "price": price,
            "created_at": created_at,
            "pipeline_id": status[0],
            "status_id": status[1],
            "closed_at": created_at if status[1] in (142, 143) else None,
            "custom_fields_values": [
                {"field_id": k, "field_code": None, "values": [{"value": v}]}
                for k, v in (fields or {}).items()
            ]
            or None,
            "_embedded": {"contacts": [{"id": contact_id, "is_main": True}]},
        }
        return lead_id

    @staticmethod
    def phone_of(contact: dict[str, Any]) -> str:
        return str(contact["custom_fields_values"][0]["values"][0]["value"])

    def leads_of(self, contact_id: int) -> list[int]:
        return [
            lead["id"]
            for lead in self.leads.values()
            if any(c["id"] == contact_id for c in lead["_embedded"]["contacts"])
        ]

    def phones(self) -> set[str]:
        return {
            c["custom_fields_values"][0]["values"][0]["value"][-10:] for c in self.contacts.values()
        }

    def uniqs(self) -> list[str]:
        """The ``uniq`` of every call note, one per note: a call stored twice shows twice."""
        return [n["params"]["uniq"] for n in self.call_notes]

    def write_call(self, call: dict[str, Any]) -> dict[str, Any]:
        """Store `call` as a note where amoCRM would; returns the note."""
        contact = next(
            cid
            for cid, c in self.contacts.items()
            if c["custom_fields_values"][0]["values"][0]["value"][-10:] == call["phone"][-10:]
        )
        leads = [
            lead["id"]
            for lead in self.leads.values()
            if any(c["id"] == contact for c in lead["_embedded"]["contacts"])
        ]
        entity_type, entity_id = ("leads", leads[0]) if len(leads) == 1 else ("contacts", contact)
        now = int(self.clock())
        params = {
            k: call.get(k)
            for k in ("uniq", "duration", "source", "link", "phone", "call_result", "call_status")
        }
        if self.dedupe_uniq and call.get("uniq"):
            for note in self.call_notes:
                if note["params"]["uniq"] == call["uniq"]:
                    note["params"].update(params)
                    note["updated_at"] = now
                    return note
        note = {
            "id": len(self.call_notes) + 1,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "note_type": "call_out" if call["direction"] == "outbound" else "call_in",
            "created_at": now,
            "updated_at": now,
            "params": params,
        }
        self.calls.append(call)
        self.call_notes.append(note)
        return note


def _matches(contact: dict[str, Any], query: str) -> bool:
    values = [str(v["value"]) for f in contact["custom_fields_values"] for v in f["values"]]
    digits = re.sub(r"\D", "", query)
    if digits and not re.sub(r"[\d\s()+-]", "", query):
        return any(digits in re.sub(r"\D", "", v) for v in values)
    return any(query.casefold() in t.casefold() for t in [contact["name"], *values])


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"title": title, "type": "https://httpstatus.es/" + str(status), "status": status}
    body.update(detail=detail, **extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def create_app(state: AmoCrmState) -> Starlette:
    def gate(request: Request) -> JSONResponse | None:
        if request.headers.get("Authorization") != f"Bearer {state.token}":
            return problem(401, "Unauthorized", "Access token is invalid")
        if state.busy_next > 0:
            state.busy_next -= 1
            return problem(429, "Too Many Requests", "Too many requests")
        now = time.monotonic()
        while state._window and state._window[0] <= now - 1.0:
            state._window.popleft()
        if len(state._window) >= state.limit_per_s:
            state.too_many += 1
            return problem(429, "Too Many Requests", "Too many requests")
        state._window.append(now)
        return None

    async def leads(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        q = request.query_params
        limit = int(q.get("limit", "50"))
        if limit > 250:
            return problem(400, "Bad Request", "limit must be at most 250")
        since = int(q.get("filter[created_at][from]", "0"))
        ids = {int(i) for i in q.getlist("filter[id][]")}
        found = sorted(
            (
                lead
                for lead in state.leads.values()
                if lead["created_at"] >= since and (not ids or lead["id"] in ids)
            ),
            key=lambda lead: lead["id"],
        )
        page = int(q.get("page", "1"))
        chunk = found[(page - 1) * limit : page * limit]
        if not chunk:
            return Response(status_code=204)
        return JSONResponse({"_page": page, "_embedded": {"leads": chunk}})

    async def contacts(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        q = request.query_params
        limit = int(q.get("limit", "50"))
        if limit > 250:
            return problem(400, "Bad Request", "limit must be at most 250")
        ids = {int(i) for i in q.getlist("filter[id][]")}
        query = q.get("query", "")
        found = [
            c
            for cid, c in state.contacts.items()
            if (not ids or cid in ids) and (not query or _matches(c, query))
        ][:limit]
        if not found:
            return Response(status_code=204)
        if "leads" in q.get("with", "").split(","):
            found = [
                {**c, "_embedded": {"leads": [{"id": i} for i in state.leads_of(c["id"])]}}
                for c in found
            ]
        return JSONResponse({"_page": 1, "_embedded": {"contacts": found}})

    async def patch_lead(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        lead = state.leads.get(int(request.path_params["lead"]))
        if lead is None:
            return problem(404, "Not Found", "Lead not found")
        lead.update(await request.json())
        return JSONResponse({"id": lead["id"], "updated_at": int(time.time())})

    async def notes(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        lead_id = int(request.path_params["lead"])
        for note in await request.json():
            state.notes.append((lead_id, note["params"]["text"]))
        return JSONResponse({"_embedded": {"notes": [{"entity_id": lead_id}]}})

    async def calls(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        payload = await request.json()
        invalid = []
        for call in payload:
            errors = []
            if call.get("direction") not in DIRECTIONS:
                errors.append({"code": "NotSupportedChoice", "path": "direction"})
            if not isinstance(call.get("duration"), int):
                errors.append({"code": "InvalidType", "path": "duration"})
            for key in ("source", "phone"):
                if not call.get(key):
                    errors.append({"code": "NotBlank", "path": key})
            if errors:
                for e in errors:
                    e["detail"] = "This value is not valid."
                invalid.append({"request_id": call.get("request_id"), "errors": errors})
        if invalid:
            return problem(
                400, "Bad Request", "Request validation failed", **{"validation-errors": invalid}
            )
        known = state.phones()
        added, refused_calls = [], []
        for call in payload:
            if call["phone"][-10:] in known:  # amoCRM matches on the last ten digits
                note = state.write_call(call)
                added.append(
                    {
                        "id": note["id"],
                        "entity_id": note["entity_id"],
                        "entity_type": note["entity_type"],
                        "request_id": call.get("request_id"),
                    }
                )
            else:
                refused_calls.append(
                    {
                        "request_id": call.get("request_id"),
                        "status": 404,
                        "title": "Not Found",
                        "detail": "Entity with this phone not found",
                    }
                )
        return JSONResponse(
            {"_total_items": len(added), "_embedded": {"calls": added, "errors": refused_calls}}
        )

    async def list_notes(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        q = request.query_params
        limit = int(q.get("limit", "50"))
        if limit > 250:
            return problem(400, "Bad Request", "limit must be at most 250")
        types = set(q.getlist("filter[note_type][]"))
        since = int(q.get("filter[updated_at][from]", "0"))
        entity = request.path_params["entity"]
        found = [
            n
            for n in state.call_notes
            if n["entity_type"] == entity
            and (not types or n["note_type"] in types)
            and n["updated_at"] >= since
        ]
        page = int(q.get("page", "1"))
        chunk = found[(page - 1) * limit : page * limit]
        if not chunk:
            return Response(status_code=204)
        notes = [{k: v for k, v in n.items() if k != "entity_type"} for n in chunk]
        return JSONResponse({"_page": page, "_embedded": {"notes": notes}})

    return Starlette(
        routes=[
            Route("/api/v4/leads", leads, methods=["GET"]),
            Route("/api/v4/contacts", contacts, methods=["GET"]),
            Route("/api/v4/leads/{lead:int}", patch_lead, methods=["PATCH"]),
            Route("/api/v4/leads/{lead:int}/notes", notes, methods=["POST"]),
            Route("/api/v4/calls", calls, methods=["POST"]),
            Route("/api/v4/{entity:str}/notes", list_notes, methods=["GET"]),
        ]
    )
