"""A Bitrix24 REST stand-in behind an inbound webhook, built from the API documentation.

What it reproduces: ``/rest/<user>/<key>/<method>.json`` with JSON bodies; ``{"result": ...,
"time": {...}}`` answers and ``{"error": ..., "error_description": ...}`` with 400 (401 for a
wrong key, 503 ``QUERY_LIMIT_EXCEEDED`` when the leaky bucket overflows); ``crm.deal.list``
with ``filter`` by ``>ID`` and by ``CONTACT_ID`` (``@CONTACT_ID`` for a list), ``order`` by
any field, ``select`` and ``start`` (50 a page, with ``next`` and ``total`` unless ``start``
is -1); ``crm.contact.list``; ``crm.deal.update`` (a deal's ``STAGE_SEMANTIC_ID`` follows its
stage: S won, F lost, else P); ``crm.timeline.comment.add``; ``crm.duplicate.findbycomm``
(``type`` PHONE or EMAIL, up to 20 ``values``, ``entity_type``; a phone matches a contact's
phone with the same digits, as the portal's duplicate index keeps numbers without punctuation;
``{"CONTACT": [ids]}`` with at most the 20 oldest, an empty list when nothing matches); the
external-call trio; and ``voximplant.statistic.get``. The external calls behave as the method
pages say:

- ``telephony.externalCall.register`` again with the same ``PHONE_NUMBER``, ``TYPE``,
  ``USER_ID``, ``LINE_NUMBER`` and ``EXTERNAL_CALL_ID`` while that call is not finished, within
  30 minutes, returns the same ``CALL_ID``; the start date and the CRM entity are not part of
  that key. Once the call is finished, the same parameters register a new call;
- ``telephony.externalCall.finish`` moves an open call into the statistics (with its
  ``EXTERNAL_CALL_ID``); finishing it again is refused (``ERROR_CORE``, "Call is not found");
- ``telephony.externalCall.attachRecord`` works on finished calls only and replaces the record;
- ``voximplant.statistic.get`` filters finished calls by ``CALL_ID`` or ``EXTERNAL_CALL_ID``
  (a value or a list), 50 a page with ``next`` and ``total``.

`clock` is the portal's clock (seconds), for the 30-minute window.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
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
    open_calls: dict[tuple[Any, ...], tuple[str, float]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    statistics: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, str] = field(default_factory=dict)
    statistics_denied: bool = False  # the webhook's user lacks "Call statistics: view"
    clock: Any = time.monotonic
    limited: int = 0
    _level: float = 0.0
    _last: float = field(default_factory=time.monotonic)

    def add_deal(
        self,
        phone: str,
        *,
        created: str = "2026-01-10T12:00:00+03:00",
        stage: str = "NEW",
        opportunity: str = "990.00",
        fields: dict[str, Any] | None = None,
    ) -> int:
        """A deal with a contact of its own, or the contact that already has `phone` as
        typed; `fields` are its user fields (``UF_CRM_…``)."""
        contact_id = next(
            (i for i, c in self.contacts.items() if c["PHONE"][0]["VALUE"] == phone),
            len(self.contacts) + 1,
        )
        self.contacts.setdefault(
            contact_id,
            {
                "ID": str(contact_id),
                "NAME": "Иван",
                "LAST_NAME": "Петров",
                "PHONE": [{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": phone, "TYPE_ID": "PHONE"}],
            },
        )
        deal_id = len(self.deals) + 1
        self.deals[deal_id] = {
            "ID": str(deal_id),
            "TITLE": f"Заказ #{deal_id}",
            "OPPORTUNITY": opportunity,
            "CURRENCY_ID": "RUB",
            "CONTACT_ID": str(contact_id),
            "DATE_CREATE": created,
            "STAGE_ID": stage,
            "STAGE_SEMANTIC_ID": semantic(stage),
            **(fields or {}),
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


def semantic(stage: str) -> str:
    """A stage's STAGE_SEMANTIC_ID, for the standard stages (``C1:WON`` in another pipeline)."""
    final = stage.rsplit(":", 1)[-1]
    return "S" if final == "WON" else "F" if final in ("LOSE", "APOLOGY") else "P"


def _order_key(value: Any) -> tuple[int, Any]:
    text = str(value)
    if text.lstrip("-").isdigit():
        return (0, int(text))
    try:
        return (1, datetime.fromisoformat(text).timestamp())
    except ValueError:
        return (2, text)


def error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status)


def result(value: Any) -> JSONResponse:
    return JSONResponse({"result": value, "time": {"start": time.time(), "duration": 0.01}})


def create_app(state: Bitrix24State) -> Starlette:
    def deal_list(p: dict[str, Any]) -> JSONResponse:
        where = p.get("filter") or {}
        after = int(where.get(">ID", 0))
        rows = [d for i, d in state.deals.items() if i > after]
        for key in ("CONTACT_ID", "@CONTACT_ID"):
            if key in where:
                wanted = where[key] if isinstance(where[key], list) else [where[key]]
                rows = [d for d in rows if d["CONTACT_ID"] in {str(v) for v in wanted}]
        rows.sort(key=lambda d: int(d["ID"]))
        for by, direction in reversed(list((p.get("order") or {"ID": "ASC"}).items())):
            descending = str(direction).upper() == "DESC"
            rows.sort(key=lambda d: _order_key(d.get(by)), reverse=descending)
        start = int(p.get("start") or 0)
        select = p.get("select") or (list(rows[0]) if rows else [])
        chunk = [{k: d[k] for k in select if k in d} for d in rows[max(start, 0) :][:50]]
        if start < 0:  # no count: the fast way to page by ID
            return result(chunk)
        body: dict[str, Any] = {"result": chunk, "total": len(rows)}
        if start + 50 < len(rows):
            body["next"] = start + 50
        return JSONResponse(body)

    def contact_list(p: dict[str, Any]) -> JSONResponse:
        ids = {str(i) for i in p.get("filter", {}).get("ID", [])}
        return result([c for c in state.contacts.values() if c["ID"] in ids][:50])

    def deal_update(p: dict[str, Any]) -> JSONResponse:
        deal = state.deals.get(int(p.get("id", 0)))
        if deal is None:
            return error(400, "", "Not found")
        deal.update(p.get("fields", {}))
        deal["STAGE_SEMANTIC_ID"] = semantic(deal["STAGE_ID"])
        return result(True)

    def find_by_comm(p: dict[str, Any]) -> JSONResponse:
        kind, values = p.get("type"), p.get("values")
        if kind not in ("PHONE", "EMAIL"):
            return error(400, "", "Parameter 'type' is not defined or invalid")
        if not isinstance(values, list) or not values:
            return error(400, "", "Parameter 'values' must be array.")
        if len(values) > 20:
            return error(400, "", "Too many values. Maximum allowed is 20.")
        if p.get("entity_type") not in (None, "CONTACT") or kind != "PHONE":
            return result([])  # the stand-in keeps phones on contacts only
        wanted = {re.sub(r"\D", "", str(v)) for v in values} - {""}
        found = [
            int(c["ID"])
            for c in state.contacts.values()
            if any(re.sub(r"\D", "", str(ph["VALUE"])) in wanted for ph in c["PHONE"])
        ]
        return result({"CONTACT": sorted(found)[:20]} if found else [])

    def comment_add(p: dict[str, Any]) -> JSONResponse:
        fields = p.get("fields", {})
        state.comments.append((str(fields.get("ENTITY_ID")), str(fields.get("COMMENT"))))
        return result(len(state.comments))

    def register(p: dict[str, Any]) -> JSONResponse:
        if not p.get("PHONE_NUMBER"):
            return error(400, "ERROR_ARGUMENT", "Argument PHONE_NUMBER is empty")
        if p.get("TYPE") not in (1, 2, 3, 4, 5):
            return error(400, "ERROR_CORE", "Unknown TYPE.")
        key = (
            p["PHONE_NUMBER"],
            p.get("TYPE"),
            p.get("USER_ID") or p.get("USER_PHONE_INNER"),
            p.get("LINE_NUMBER"),
            p.get("EXTERNAL_CALL_ID"),
        )
        now = state.clock()
        open_call = state.open_calls.get(key)
        if open_call is not None and now - open_call[1] <= 30 * 60:
            return result({"CALL_ID": open_call[0], "CRM_CREATED_LEAD": None})
        call_id = f"externalCall.{len(state.calls) + 1}"
        state.open_calls[key] = (call_id, now)
        state.calls[call_id] = dict(p)
        return result({"CALL_ID": call_id, "CRM_CREATED_LEAD": None})

    def finish(p: dict[str, Any]) -> JSONResponse:
        call_id = p.get("CALL_ID")
        keys = [k for k, (open_id, _) in state.open_calls.items() if open_id == call_id]
        if not keys:
            return error(
                400,
                "ERROR_CORE",
                "Call is not found (call should be registered prior to finishing)",
            )
        for k in keys:
            del state.open_calls[k]
        call = state.calls[str(call_id)]
        call.update(p)
        state.finished.append(str(call_id))
        row = {
            "ID": str(len(state.statistics) + 1),
            "CALL_ID": call_id,
            "EXTERNAL_CALL_ID": call.get("EXTERNAL_CALL_ID"),
            "PORTAL_USER_ID": str(call.get("USER_ID")),
            "PHONE_NUMBER": call["PHONE_NUMBER"],
            "CALL_TYPE": str(call.get("TYPE")),
            "CALL_DURATION": str(p.get("DURATION", 0)),
            "CALL_START_DATE": call.get("CALL_START_DATE"),
            "CALL_FAILED_CODE": p.get("STATUS_CODE"),
            "CRM_ENTITY_TYPE": call.get("CRM_ENTITY_TYPE"),
            "CRM_ENTITY_ID": call.get("CRM_ENTITY_ID"),
            "CALL_RECORD_URL": None,
            "RECORD_FILE_ID": None,
        }
        state.statistics.append(row)
        return result({**row, "CALL_DURATION": p.get("DURATION")})

    def attach(p: dict[str, Any]) -> JSONResponse:
        rows = [r for r in state.statistics if r["CALL_ID"] == p.get("CALL_ID")]
        if not rows:
            return error(
                400,
                "",
                "Call is not found in the statistic table. It looks like it is not finished yet.",
            )
        state.records[p["CALL_ID"]] = p.get("RECORD_URL", "")  # a second record replaces it
        rows[0]["RECORD_FILE_ID"] = len(state.records)
        return result({"FILE_ID": len(state.records)})

    def statistic_get(p: dict[str, Any]) -> JSONResponse:
        if state.statistics_denied:
            return error(403, "ACCESS_DENIED", "Access denied!")
        rows = state.statistics
        for key, wanted in (p.get("FILTER") or {}).items():
            values = {str(v) for v in wanted} if isinstance(wanted, list) else {str(wanted)}
            rows = [r for r in rows if str(r.get(key)) in values]
        start = int(p.get("start") or 0)
        body: dict[str, Any] = {"result": rows[start : start + 50], "total": len(rows)}
        if start + 50 < len(rows):
            body["next"] = start + 50
        return JSONResponse(body)

    methods = {
        "crm.deal.list": deal_list,
        "crm.contact.list": contact_list,
        "crm.deal.update": deal_update,
        "crm.duplicate.findbycomm": find_by_comm,
        "crm.timeline.comment.add": comment_add,
        "telephony.externalcall.register": register,
        "telephony.externalcall.finish": finish,
        "telephony.externalcall.attachrecord": attach,
        "voximplant.statistic.get": statistic_get,
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
