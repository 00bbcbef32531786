"""``POST /orders``: new orders from any shop or landing page, signed with a shared secret.

The body is one order as JSON, in the raw shape of docs/crm.md. The request is signed with
HMAC-SHA256 over the raw body with ``crm.webhook_secret``, sent as ``X-Obzvon-Signature:
sha256=<hex>``. Answers, which a shop's developer may rely on:

- 202 ``{"order_id", "external_id", "status", "created": true, "flags", "flag_reasons"}``: the
  order is stored (and, when it can be called, on its way to the dialer);
- 200, the same body with ``"created": false``: this ``external_id`` was posted before; nothing
  changed, so a shop may post again whenever it is unsure (idempotent);
- 401 bad or missing signature; 413 a body over 64 KiB (nothing is read past the limit);
- 422 ``{"errors": [{"field", "reason"}]}`` naming every bad field (``body`` for the whole);
- 503 the database is away; post again later.

Orders posted here are stored under the CRM name ``webhook``: a body cannot claim another
CRM's ids. Names with quotes or SQL in them are stored verbatim (storage binds parameters);
control characters are refused by intake.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from crm_bridge.intake.order import Rejected
from dialer.intake import IntakeService, StoredOrder
from dialer.storage.errors import StorageError

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Obzvon-Signature"
MAX_BODY_BYTES: Final = 64 * 1024
WEBHOOK_CRM: Final = "webhook"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` signs `body` with `secret`; compared in constant time."""
    if header is None:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().lower().encode())


def webhook_router(
    *,
    intake: IntakeService,
    secret: str,
    now: Callable[[], float],
    max_body_bytes: int = MAX_BODY_BYTES,
) -> APIRouter:
    """The ``POST /orders`` route; `now` is the daemon's clock (epoch seconds). Raises
    `ValueError` for a secret under 16 characters: an order intake open to guessing is worse
    than none."""
    if len(secret) < 16:
        raise ValueError("crm.webhook_secret must have at least 16 characters")
    router = APIRouter()

    @router.post("/orders", status_code=202)
    async def post_order(request: Request) -> JSONResponse:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            return _too_large(max_body_bytes)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return _too_large(max_body_bytes)
        if not signature_ok(secret, bytes(body), request.headers.get(SIGNATURE_HEADER)):
            return JSONResponse({"error": "missing or invalid signature"}, status_code=401)
        try:
            raw = json.loads(bytes(body), parse_constant=_no_constant)
        except ValueError as exc:
            return _errors([("body", f"not JSON: {exc}")])
        try:
            result = await intake.accept(
                raw, crm=WEBHOOK_CRM, now=datetime.fromtimestamp(now(), UTC)
            )
        except (StorageError, SQLAlchemyError, OSError):
            log.exception("a webhook order could not be stored")
            return JSONResponse(
                {"error": "the order could not be stored; post it again later"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        if isinstance(result, Rejected):
            return _errors(result.errors)
        return JSONResponse(_answer(result), status_code=202 if result.created else 200)

    return router


def _answer(result: StoredOrder) -> dict[str, Any]:
    n = result.order
    flags = {
        "invalid": n.invalid,
        "duplicate": n.duplicate_of is not None,
        "prepayment": n.prepayment_only,
        "verification": n.region_mismatch,
    }
    return {
        "order_id": result.order_id,
        "external_id": n.external_id,
        "status": result.status,
        "created": result.created,
        "flags": [name for name, on in flags.items() if on],
        "flag_reasons": list(n.flag_reasons),
    }


def _errors(errors: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> JSONResponse:
    body = [{"field": field or "body", "reason": reason} for field, reason in errors]
    return JSONResponse({"errors": body}, status_code=422)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"field": "body", "reason": f"larger than {limit} bytes"}]}, status_code=413
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")
