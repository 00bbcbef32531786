"""A Bitrix24 REST stand-in behind an inbound webhook, built from the API documentation.

What it reproduces: ``/rest/<user>/<key>/<method>.json`` with JSON bodies; ``{"result": ...,
"time": {...}}`` answers and ``{"error": ..., "error_description": ...}`` with 400 (401 for a
wrong key, 503 ``QUERY_LIMIT_EXCEEDED`` when the leaky bucket overflows); ``crm.deal.list``
with ``filter[>ID]``, ``order``, ``select`` and ``start=-1`` (at most 50); ``crm.contact.list``;
``crm.deal.update``; ``crm.timeline.comment.add``; and the external-call trio, where
registering the same unfinished call again returns the same ``CALL_ID``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Bitrix24State:
    user: str = "1"
    key: str = "webhook-key"
    # Bitrix24's leaky bucket: a burst of `bucket` requests, drained at `drain_per_s`.
    bucket: int = 50
    drain_per_s: float = 50.0
    deals: dict[int, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: list[tuple[str, str]] = field(default_factory=list)
    open_calls: dict[tuple[Any, ...], str] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    records: dict[str, str] = field(default_factory=dict)
    limited: int = 0
    _level: float = 0.0
    _last: float = field(default_factory=time.monotonic)

    def add_deal(self, phone: str, *, created: str = "2026-01-10T12:00:00+03:00") -> int:
        contact_id = len(self.contacts) + 1
        self.contacts[contact_id] = {
            "ID": str(contact_id),
            "NAME": "Иван",
            "LAST_NAME": "Петров",
            "PHONE": [{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": phone, "TYPE_ID": "PHONE"}],
        }
        deal_id = len(self.deals) + 1
        self.deals[deal_id] = {
            "ID": str(deal_id),
            "TITLE": f"Заказ #{deal_id}",
            "OPPORTUNITY": "990.00",
            "CONTACT_ID": str(contact_id),
            "DATE_CREATE": created,
            "STAGE_ID": "NEW",
        }
        return deal_id

    def admit(self) -> bool:
        now = time.monotonic()
        self._level = max(0.0, self._level - (now - self._last) * self.drain_per_s)
        self._last = now
        if self._level + 1 > self.bucket:
            self.limited += 1
            return False
        self._level += 1
        return True


def error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status)


def result(value: Any) -> JSONResponse:
    return JSONResponse({"result": value, "time": {"start": time.time(), "duration": 0.01}})


def create_app(state: Bitrix24State) -> Starlette:
    def deal_list(p: dict[str, Any]) -> JSONResponse:
        after = int(p.get("filter", {}).get(">ID", 0))
        rows = sorted((d for i, d in state.deals.items() if i > after), key=lambda d: int(d["ID"]))
        select = p.get("select") or list(rows[0]) if rows else []
        return result([{k: d[k] for k in select if k in d} for d in rows[:50]])

    def contact_list(p: dict[str, Any]) -> JSONResponse:
        ids = {str(i) for i in p.get("filter", {}).get("ID", [])}
        return result([c for c in state.contacts.values() if c["ID"] in ids][:50])

    def deal_update(p: dict[str, Any]) -> JSONResponse:
        deal = state.deals.get(int(p.get("id", 0)))
        if deal is None:
            return error(400, "", "Not found")
        deal.update(p.get("fields", {}))
        return result(True)

    def comment_add(p: dict[str, Any]) -> JSONResponse:
        fields = p.get("fields", {})
        state.comments.append((str(fields.get("ENTITY_ID")), str(fields.get("COMMENT"))))
        return result(len(state.comments))

    def register(p: dict[str, Any]) -> JSONResponse:
        if not p.get("PHONE_NUMBER"):
            return error(400, "ERROR_ARGUMENT", "Argument PHONE_NUMBER is empty")
        if p.get("TYPE") not in (1, 2, 3, 4):
            return error(400, "ERROR_ARGUMENT", "Unknown TYPE")
        key = (p.get("USER_ID"), p["PHONE_NUMBER"], p.get("CALL_START_DATE"), p.get("TYPE"))
        call_id = state.open_calls.setdefault(key, f"externalCall.{len(state.calls) + 1}")
        state.calls[call_id] = dict(p)
        return result({"CALL_ID": call_id, "CRM_CREATED_LEAD": None})

    def finish(p: dict[str, Any]) -> JSONResponse:
        call_id = p.get("CALL_ID")
        if call_id not in state.calls:
            return error(400, "ERROR_NOT_FOUND", "Call is not found")
        state.open_calls = {k: v for k, v in state.open_calls.items() if v != call_id}
        state.finished.append(call_id)
        state.calls[call_id].update(p)
        return result({"CALL_ID": call_id, "CALL_DURATION": p.get("DURATION")})

    def attach(p: dict[str, Any]) -> JSONResponse:
        if p.get("CALL_ID") not in state.calls:
            return error(400, "ERROR_NOT_FOUND", "Call is not found")
        state.records[p["CALL_ID"]] = p.get("RECORD_URL", "")
        return result({"FILE_ID": len(state.records)})

    methods = {
        "crm.deal.list": deal_list,
        "crm.contact.list": contact_list,
        "crm.deal.update": deal_update,
        "crm.timeline.comment.add": comment_add,
        "telephony.externalcall.register": register,
        "telephony.externalcall.finish": finish,
        "telephony.externalcall.attachrecord": attach,
    }

    async def rest(request: Request) -> JSONResponse:
        if (request.path_params["user"], request.path_params["key"]) != (state.user, state.key):
            return error(401, "NO_AUTH_FOUND", "Wrong authorization data")
        if not state.admit():
            return error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        method = request.path_params["method"].removesuffix(".json").lower()
        handler = methods.get(method)
        if handler is None:
            return error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        return handler(await request.json())

    return Starlette(routes=[Route("/rest/{user}/{key}/{method}", rest, methods=["POST"])])
