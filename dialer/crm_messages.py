"""Outbox payloads in the CRM's terms: an ``outcome`` row becomes an `OrderUpdate`, a ``call``
row a `CallRecord`. Pure functions; the relay sends what they return.

Statuses are RetailCRM's standard codes (``client-confirmed``, ``cancel-other``, ``no-call``);
the amoCRM and Bitrix24 adapters map those same names to their pipelines and stages, so one
table serves every CRM. A shop with its own codes passes its own `statuses`. An outcome
mapped to ``None`` changes no status and only leaves the manager a comment (a callback, an
order obzvon could not take in).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from crm_bridge.adapter import CallDirection, CallRecord, CallResult, OrderUpdate

# obzvon's outcome → the CRM status it sets. "unreached" stands for every final outcome
# that is an attempt's result (no_answer, busy, ...) after the attempts ran out.
DEFAULT_STATUSES: Final[Mapping[str, str | None]] = MappingProxyType(
    {
        "confirmed": "client-confirmed",
        "upsell": "client-confirmed",
        "rejected": "cancel-other",
        "invalid": "cancel-other",
        "duplicate": "cancel-other",
        "unreached": "no-call",
        "callback": None,
        "not-taken": None,
    }
)
# How an attempt ended → the CRM's call result. An answering machine is "no answer": a CRM
# manager reads "answered" as "someone spoke to the customer".
CALL_RESULTS: Final[Mapping[str, CallResult]] = MappingProxyType(
    {
        "connected": CallResult.ANSWERED,
        "abandoned": CallResult.ANSWERED,
        "hung_up": CallResult.ANSWERED,
        "busy": CallResult.BUSY,
        "no_answer": CallResult.NO_ANSWER,
        "machine": CallResult.NO_ANSWER,
        "congestion": CallResult.FAILED,
        "failed": CallResult.FAILED,
    }
)
_DISPOSITIONS = frozenset({"confirmed", "upsell", "rejected", "callback", "invalid", "duplicate"})


class MalformedMessage(ValueError):
    """An outbox payload lacks what the CRM needs; sending it again cannot help."""


def outcome_key(payload: Mapping[str, Any]) -> str:
    """The `statuses` key of an outcome payload (see `DEFAULT_STATUSES`)."""
    outcome = str(payload.get("outcome") or "")
    if outcome in _DISPOSITIONS or outcome == "not-taken":
        return outcome
    return "unreached" if "attempts" in payload else outcome


def order_update(
    payload: Mapping[str, Any], *, statuses: Mapping[str, str | None] = DEFAULT_STATUSES
) -> OrderUpdate:
    """The CRM update for an ``outcome`` row. An outcome `statuses` does not know changes no
    status. Raises `MalformedMessage` without an external id."""
    external_id = _text(payload, "external_id")
    key = outcome_key(payload)
    return OrderUpdate(
        external_id=external_id, status=statuses.get(key), manager_comment=comment(payload)
    )


def comment(payload: Mapping[str, Any]) -> str:
    """What the CRM's manager reads about the outcome: who, what, and why."""
    key = outcome_key(payload)
    operator = payload.get("operator_id")
    by = f" (operator {operator})" if operator else ""
    reason = str(payload.get("reason") or "").strip()
    why = f": {reason}" if reason else ""
    match key:
        case "confirmed" | "upsell":
            text = f"confirmed by the customer{by}"
            items = [str(i.get("sku")) for i in payload.get("upsell_items") or () if _is_map(i)]
            amount = str(payload.get("upsell_amount") or "0")
            if items or amount not in ("0", "0.00"):
                text += f"; upsell {', '.join(items) or '-'} (+{amount})"
        case "rejected":
            text = f"rejected by the customer{why}{by}"
        case "callback":
            text = f"the customer asked to be called back at {payload.get('callback_at')}{by}"
        case "invalid":
            text = f"not a number that can be called{why}{by}"
        case "duplicate":
            text = f"duplicate order{why}{by}"
        case "unreached":
            attempts = payload.get("attempts")
            text = f"not reached after {attempts} calls (last: {payload.get('outcome')})"
        case "not-taken":
            text = f"obzvon could not take this order in{why}"
        case _:
            text = f"outcome {payload.get('outcome')}{why}{by}"
    return f"obzvon: {text}"


def call_record(
    payload: Mapping[str, Any], *, record_url: Callable[[str], str] | None = None
) -> CallRecord:
    """The CRM's record of a ``call`` row; `record_url` links a recorded call's recording
    (a signed link, `dialer.recordings.RecordingLinks.url`). Raises `MalformedMessage`."""
    channel_id = _text(payload, "channel_id")
    try:
        started = datetime.fromisoformat(_text(payload, "started_at"))
        duration = max(0, int(payload.get("duration_s") or 0))
        waiting = max(0, int(payload.get("waiting_s") or 0))
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"call {channel_id}: {exc}") from None
    if started.tzinfo is None:
        raise MalformedMessage(f"call {channel_id}: started_at has no offset")
    operator = payload.get("operator_id")
    recorded = bool(payload.get("recorded")) and record_url is not None
    return CallRecord(
        external_id=channel_id,
        started_at=started,
        direction=CallDirection.OUT,
        phone=_text(payload, "phone"),
        result=CALL_RESULTS.get(str(payload.get("outcome")), CallResult.UNKNOWN),
        duration_s=duration,
        waiting_s=waiting,
        operator_code=str(operator) if operator else None,
        record_url=record_url(channel_id) if recorded and record_url is not None else None,
        order_external_id=str(payload["external_id"]) if payload.get("external_id") else None,
    )


def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if value is None or str(value) == "":
        raise MalformedMessage(f"no {key}")
    return str(value)


def _is_map(value: object) -> bool:
    return isinstance(value, Mapping)
