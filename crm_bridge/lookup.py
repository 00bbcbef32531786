"""A caller looked up in the CRM by phone: what ``lookup_phone`` answers, whatever the CRM.

Each adapter finds the customer's orders its own way, reads each into intake's raw shape (the
one `pull_orders` produces) and says where it stands (`Standing`); `CallerLookup.answer` then
reads them the way obzvon reads its own database (``dialer/callers.py``):

- the order reported is the latest one still to be confirmed, else the latest one;
- ``tags``: ``open-order`` when any order is still to be confirmed, ``in-delivery`` when one
  confirmed and on its way was created within `delivery_days`;
- ``category``: the first item's that has one; ``region``: the key of the delivery region
  when it names exactly one known region, and ``timezone`` that region's zone (both left out
  otherwise); ``amount``: the order's total, else the sum of its items;
- ``external_id``: the CRM's id of the order reported.

A CRM's search is wider than one number (RetailCRM and amoCRM match the digits anywhere in a
customer's fields), so an adapter keeps only the customers `same_phone` says are the caller.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import phonenumbers

from crm_bridge.intake.phone import ValidPhone, normalise_phone
from crm_bridge.intake.regions import RegionDirectory

# The outcomes whose CRM status means "confirmed, on its way": the names the relay sends to
# amoCRM and Bitrix24, and RetailCRM's code they share (see crm_factory.status_table).
CONFIRMED_OUTCOMES = ("confirmed", "upsell", "client-confirmed")
DELIVERY_DAYS = 14  # as the inbound lines' default: an order confirmed in the last two weeks
_OLDEST = datetime.min.replace(tzinfo=UTC)
S = TypeVar("S", bound=Hashable)


class Standing(enum.Enum):
    """Where an order found for a caller stands."""

    OPEN = "open"  # still to be confirmed
    DELIVERY = "delivery"  # confirmed and on its way
    CLOSED = "closed"  # anything else: bought out, cancelled, not reached


@dataclass(frozen=True, slots=True)
class FoundOrder:
    """An order in intake's raw shape (``external_id``, ``created_at``, ``items``,
    ``delivery_region``, ``total``...) and where it stands."""

    raw: Mapping[str, Any]
    standing: Standing


def standing(
    status: S, *, mapped: Mapping[str, S], delivery: Collection[S], final: bool
) -> Standing:
    """Where an order in CRM status `status` stands, for a CRM whose statuses obzvon sets by
    `mapped` (outcome → status): on its way in the status of a confirmation and in
    `delivery`; closed when `final` (won or lost) or in the status of another outcome; else
    still to be confirmed."""
    if status in delivery or any(mapped.get(o) == status for o in CONFIRMED_OUTCOMES):
        return Standing.DELIVERY
    if final or status in mapped.values():
        return Standing.CLOSED
    return Standing.OPEN


def search_forms(phone_e164: str) -> tuple[str, ...]:
    """The caller's number in the forms CRMs store it in: ``+79123456789``, ``79123456789``,
    the national form with its trunk prefix (``89123456789``) and the bare national number
    (``9123456789``)."""
    parsed = phonenumbers.parse(phone_e164)
    national = str(parsed.national_number)
    with_prefix = "".join(
        c
        for c in phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        if c.isdigit()
    )
    return tuple(dict.fromkeys((phone_e164, phone_e164[1:], with_prefix, national)))


def national_digits(phone_e164: str) -> str:
    """The national number without any prefix (``9123456789``): digits every stored form of
    the number contains."""
    return str(phonenumbers.parse(phone_e164).national_number)


def same_phone(stored: object, phone_e164: str) -> bool:
    """Whether `stored`, a number as typed into the CRM, is `phone_e164`; a number without a
    country code is read in the caller's country."""
    if not isinstance(stored, str | int) or not str(stored).strip():
        return False
    caller = normalise_phone(phone_e164)
    region = caller.region if isinstance(caller, ValidPhone) else "RU"
    parsed = normalise_phone(str(stored), default_region=region)
    return isinstance(parsed, ValidPhone) and parsed.e164 == phone_e164


class CallerLookup:
    """Reads the orders an adapter found into ``lookup_phone``'s answer (module docstring).

    `now` is the adapter's clock (epoch seconds). The regions table is loaded on the first
    answer unless given.
    """

    def __init__(
        self,
        *,
        now: Callable[[], float],
        delivery_days: int = DELIVERY_DAYS,
        regions: RegionDirectory | None = None,
    ) -> None:
        self._now = now
        self._delivery_days = delivery_days
        self._regions = regions

    def answer(self, orders: Iterable[FoundOrder]) -> dict[str, Any] | None:
        """None when there is no order; else the answer for the order that matters."""
        ordered = sorted(orders, key=lambda o: _created(o.raw), reverse=True)
        if not ordered:
            return None
        since = datetime.fromtimestamp(self._now(), UTC) - timedelta(days=self._delivery_days)
        waiting = [o for o in ordered if o.standing is Standing.OPEN]
        tags = []
        if waiting:
            tags.append("open-order")
        if any(o.standing is Standing.DELIVERY and _created(o.raw) >= since for o in ordered):
            tags.append("in-delivery")
        raw = (waiting or ordered)[0].raw
        out: dict[str, Any] = {"tags": tuple(tags), "external_id": str(raw.get("external_id"))}
        items = [i for i in raw.get("items") or () if isinstance(i, Mapping)]
        category = next((str(i["category"]) for i in items if i.get("category")), None)
        if category:
            out["category"] = category[:64]
        if self._regions is None:
            self._regions = RegionDirectory.load()
        region = raw.get("delivery_region")
        found = self._regions.resolve(region if isinstance(region, str) else None)
        if len(found) == 1:
            only = next(iter(found))
            out["region"], out["timezone"] = only.key[:16], only.tz
        amount = _amount(raw.get("total"), items)
        if amount is not None:
            out["amount"] = amount
        return out


def _created(raw: Mapping[str, Any]) -> datetime:
    value = raw.get("created_at")
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return _OLDEST
    if not isinstance(value, datetime):
        return _OLDEST
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _amount(total: object, items: list[Mapping[str, Any]]) -> float | None:
    if total is not None:
        return _number(total)
    if not items:
        return None
    amount = 0.0
    for item in items:
        price, quantity = _number(item.get("price", 0)), _number(item.get("quantity", 1))
        if price is None or quantity is None:
            return None
        amount += price * quantity
    return amount


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return float(number) if number.is_finite() else None
