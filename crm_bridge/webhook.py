"""Outcomes and calls posted back to a shop that has no CRM, only a URL of its own.

A shop that sends its orders to ``POST /orders`` gets what became of them the same way: each
outcome and each call is one signed JSON ``POST`` to the shop's URL. What the shop may rely
on (docs/crm.md, "Outcomes posted to the shop"):

- the body is JSON with ``"version": 1`` and ``"type"`` ``"outcome"`` or ``"call"``;
- ``X-Obzvon-Signature: sha256=<hex>`` is HMAC-SHA256 over the raw body with the shared
  secret, as for orders posted to us;
- ``Idempotency-Key`` names the message: a message may come more than once (its
  acknowledgement lost), always with the same key and the same body; the shop answers 2xx
  again and does nothing twice. ``X-Obzvon-Event`` repeats the type;
- a 2xx answer acknowledges the message; 408, 409, 425, 429, 5xx and network errors are
  tried again with backoff; 401 and 403 mean the shop refused our signature (delivery stops
  and raises an alarm); any other answer is final, and the message goes to the dead-letter
  list with the shop's own words (``error``, ``message`` or ``detail`` of a JSON body, else
  the body's text).

Orders never come from here: `pull_orders` returns nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from crm_bridge.adapter import (
    CallRecord,
    OrderBatch,
    OrderUpdate,
    RejectedCall,
    UploadResult,
)
from crm_bridge.errors import CrmAuthError, CrmRejected
from crm_bridge.http import CrmHttp, RateLimit, Reply, RetryPolicy, Sleep

NAME: Final = "webhook"
VERSION: Final = 1
SIGNATURE_HEADER: Final = "X-Obzvon-Signature"
KEY_HEADER: Final = "Idempotency-Key"
EVENT_HEADER: Final = "X-Obzvon-Event"
# "Not now" rather than "no": a timeout, a message with this key still being processed, too
# early, too many.
RETRY_STATUSES: Final = frozenset({408, 409, 425, 429})
MIN_SECRET_CHARS: Final = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSettings:
    """`url` receives every message; `secret` signs them (at least 16 characters)."""

    url: str
    secret: str = field(repr=False)
    rate_per_s: float = 10.0
    timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_CHARS:
            raise ValueError(f"the webhook secret must have at least {MIN_SECRET_CHARS} characters")


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def outcome_message(update: OrderUpdate) -> dict[str, Any]:
    """The body posted for an outcome (without the key it is sent under)."""
    return {
        "version": VERSION,
        "type": "outcome",
        "order": {"external_id": update.external_id},
        "status": update.status,
        "comment": update.manager_comment,
        "custom_fields": dict(update.custom_fields),
    }


def outcome_key(update: OrderUpdate) -> str:
    """The idempotency key of an outcome: the outbox message's id when the relay gives it,
    else a digest of what the message says (the same outcome sent again has the same key)."""
    if update.key is not None:
        return f"outcome-{update.key}"
    canonical = json.dumps(outcome_message(update), sort_keys=True, ensure_ascii=False)
    return "outcome-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def call_message(call: CallRecord) -> dict[str, Any]:
    """The body posted for a call (without the key it is sent under)."""
    return {
        "version": VERSION,
        "type": "call",
        "order": {"external_id": call.order_external_id},
        "call": {
            "id": call.external_id,
            "started_at": call.started_at.isoformat(),
            "direction": call.direction.value,
            "phone": call.phone,
            "result": call.result.value,
            "duration_s": call.duration_s,
            "waiting_s": call.waiting_s,
            "operator": call.operator_code,
            "recording_url": call.record_url,
        },
    }


class WebhookAdapter:
    """`CrmAdapter` posting to a shop's own URL. Use as ``async with`` or call `aclose`."""

    name = NAME

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.http = CrmHttp(
            crm=NAME,
            base_url="",
            headers={"Content-Type": "application/json", "User-Agent": "obzvon"},
            limits={"default": RateLimit(per_second=settings.rate_per_s)},
            retry=settings.retry,
            timeout_s=settings.timeout_s,
            transport=transport,
            sleep=sleep,
            retry_statuses=RETRY_STATUSES,
        )

    async def __aenter__(self) -> WebhookAdapter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def pull_orders(self, cursor: str | None) -> OrderBatch:
        """Nothing: the shop posts its orders to ``POST /orders``."""
        return OrderBatch(orders=(), cursor=cursor, more=False)

    async def update_order(self, update: OrderUpdate) -> None:
        """Post the outcome; raises `CrmRejected` with the shop's message for a final
        refusal."""
        await self._post("outcome", outcome_key(update), outcome_message(update))

    async def upload_calls(self, calls: Sequence[CallRecord]) -> UploadResult:
        """Post each call, keyed by its ChannelId; calls the shop refuses are set apart."""
        delivered: list[str] = []
        rejected: list[RejectedCall] = []
        for call in calls:
            try:
                await self._post("call", f"call-{call.external_id}", call_message(call))
            except CrmRejected as exc:
                rejected.append(RejectedCall(call.external_id, exc))
            else:
                delivered.append(call.external_id)
        return UploadResult(delivered=tuple(delivered), rejected=tuple(rejected))

    async def _post(self, event: str, key: str, message: Mapping[str, Any]) -> None:
        body = json.dumps({**message, "id": key}, ensure_ascii=False, sort_keys=True).encode()
        headers = {
            SIGNATURE_HEADER: sign(self.settings.secret, body),
            KEY_HEADER: key,
            EVENT_HEADER: event,
        }
        reply = await self.http.request("POST", self.settings.url, content=body, headers=headers)
        if 200 <= reply.status < 300:
            return
        why = _shop_says(reply)
        if reply.status in (401, 403):
            raise CrmAuthError(f"the shop refused the signature: {why}", crm=NAME)
        raise CrmRejected(why, crm=NAME, status=reply.status)


def _shop_says(reply: Reply) -> str:
    body = reply.body or {}
    for key in ("error", "message", "detail"):
        if isinstance(body.get(key), str) and body[key].strip():
            return f"HTTP {reply.status}: {body[key].strip()[:500]}"
    return f"HTTP {reply.status}: {reply.text.strip()[:500] or 'no message'}"
