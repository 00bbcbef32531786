"""One entry point for a new order: `intake(raw, rules=..., now=...)`.

A raw order comes from a CRM adapter or a shop's webhook and is untrusted: fields may be
missing, of the wrong type, absurdly large, or carry control characters. `intake` validates it
(pydantic), then applies every intake rule and returns either `Rejected`, naming each bad
field, or an `AcceptedOrder` carrying the `NormalisedOrder` and its flags.

Names like ``Robert'); DROP TABLE orders;--`` are kept verbatim: they are text, and storage
binds parameters. Only characters that break logs, CSV exports and terminals are refused.

The raw shape (what adapters produce; documented in docs/crm.md)::

    {"external_id": "A-1001", "crm": "retailcrm", "site": "shop1",
     "created_at": "2026-01-10T12:00:00+03:00", "customer_name": "Иван",
     "phone": "8 (900) 123-45-67",
     "items": [{"sku": "CR-1", "name": "Крем", "category": "cosmetics", "quantity": 1,
                "price": "990"}],
     "delivery_country": "RU", "delivery_region": "Свердловская область",
     "delivery_city": "Екатеринбург", "delivery_address": "ул. Ленина, 1",
     "total": "990", "comment": ""}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from crm_bridge.intake.duplicates import DuplicateRule, RecentLookup, RecentOrder, find_duplicate
from crm_bridge.intake.fraud import FRAUD_REASON, FraudBase
from crm_bridge.intake.numbering import NumberingPlan
from crm_bridge.intake.phone import InvalidPhone, ValidPhone, normalise_phone
from crm_bridge.intake.region_check import RegionCheck, RegionOutcome, check_region
from crm_bridge.intake.regions import RegionDirectory
from crm_bridge.intake.timezone import CustomerZone, customer_timezone

# C0/C1 control characters, DEL, and Unicode line/paragraph separators and bidi overrides
# (the last can make a log line read differently from what it says).
_CONTROL = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_CONTROL_SINGLE_LINE = re.compile(r"[\t\n\r]")


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    return value


def _single_line(value: str) -> str:
    if _CONTROL_SINGLE_LINE.search(value):
        raise ValueError("contains line breaks or tabs")
    return _no_control(value)


Line = Annotated[str, AfterValidator(_single_line)]
Text = Annotated[str, AfterValidator(_no_control)]
Money = Annotated[Decimal, Field(ge=0, le=100_000_000, max_digits=14, decimal_places=2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)


class RawItem(_Strict):
    sku: Annotated[Line, Field(min_length=1, max_length=64)]
    name: Annotated[Line, Field(min_length=1, max_length=300)]
    category: Annotated[Line, Field(max_length=100)] | None = None
    quantity: Annotated[int, Field(ge=1, le=1000)] = 1
    price: Money = Decimal(0)


class RawOrder(_Strict):
    external_id: Annotated[Line, Field(min_length=1, max_length=64)]
    crm: Annotated[Line, Field(min_length=1, max_length=32)] = "webhook"
    site: Annotated[Line, Field(max_length=64)] | None = None
    created_at: datetime
    customer_name: Annotated[Line, Field(max_length=200)] = ""
    phone: Annotated[Line, Field(min_length=1, max_length=64)]
    items: Annotated[list[RawItem], Field(min_length=1, max_length=100)]
    delivery_country: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None
    delivery_region: Annotated[Line, Field(max_length=200)] | None = None
    delivery_city: Annotated[Line, Field(max_length=200)] | None = None
    delivery_address: Annotated[Text, Field(max_length=500)] = ""
    total: Money | None = None
    comment: Annotated[Text, Field(max_length=2000)] = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderItem:
    sku: str
    name: str
    category: str | None
    quantity: int
    price: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class NormalisedOrder:
    """A validated order with every intake decision.

    `phone` is None exactly when the number may not be dialled; `phone_invalid` then says
    why. `prepayment_only` is set by a fraud-base hit, with `flag_reasons` saying so in words
    an operator reads. `verify_at` is set when the phone's region disagrees with the delivery
    region. `timezone` is always an IANA zone name.
    """

    crm: str
    external_id: str
    site: str | None
    created_at: datetime
    customer_name: str
    phone_raw: str
    phone: ValidPhone | None
    phone_invalid: str | None
    items: tuple[OrderItem, ...]
    delivery_country: str | None
    delivery_region: str | None
    delivery_city: str | None
    delivery_address: str
    total: Decimal | None
    comment: str
    duplicate_of: str | None
    prepayment_only: bool
    region_check: RegionCheck | None
    timezone: CustomerZone
    flag_reasons: tuple[str, ...] = ()

    @property
    def invalid(self) -> bool:
        return self.phone is None

    @property
    def region_mismatch(self) -> bool:
        return self.region_check is not None and self.region_check.outcome is RegionOutcome.MISMATCH

    @property
    def verify_at(self) -> datetime | None:
        return self.region_check.verify_at if self.region_check is not None else None


@dataclass(frozen=True, slots=True)
class AcceptedOrder:
    order: NormalisedOrder


@dataclass(frozen=True, slots=True)
class Rejected:
    """The order could not be read. Each error is (field path, reason); the path is dotted
    (``items.0.quantity``), or empty when the whole input is wrong."""

    errors: tuple[tuple[str, str], ...]


IntakeDecision = AcceptedOrder | Rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeRules:
    """The shop's intake settings and reference data. Build once; share between orders."""

    default_region: str = "RU"
    shop_timezone: str = "Europe/Moscow"
    duplicates: DuplicateRule = field(default_factory=DuplicateRule)
    fraud_base: FraudBase | None = None
    numbering_plan: NumberingPlan | None = None
    regions: RegionDirectory = field(default_factory=RegionDirectory.load)
    verify_after: timedelta = timedelta(hours=2)


def intake(
    raw: Mapping[str, Any] | object,
    *,
    rules: IntakeRules,
    now: datetime,
    recent: Iterable[RecentOrder] | RecentLookup = (),
) -> IntakeDecision:
    """Validate `raw` and apply every intake rule. Never raises for any input.

    `now` is when the order is taken in (the verification call is scheduled from it);
    `recent` are earlier orders, or a function finding them, for the duplicate check.
    A naive `created_at` is read in the shop's time zone.
    """
    if not isinstance(raw, Mapping):
        return Rejected(errors=(("", "an order must be an object"),))
    try:
        order = RawOrder.model_validate(raw)
    except ValidationError as exc:
        return Rejected(errors=tuple(_errors(exc)))
    created = order.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=ZoneInfo(rules.shop_timezone))
    reasons: list[str] = []
    parsed = normalise_phone(order.phone, default_region=rules.default_region)
    phone = parsed if isinstance(parsed, ValidPhone) else None
    invalid = parsed.message if isinstance(parsed, InvalidPhone) else None
    if invalid is not None:
        reasons.append(f"phone not dialled: {invalid}")
    items = tuple(
        OrderItem(sku=i.sku, name=i.name, category=i.category, quantity=i.quantity, price=i.price)
        for i in order.items
    )
    duplicate_of = None
    prepayment = False
    region = None
    if phone is not None:
        this = RecentOrder(
            order_id=order.external_id,
            e164=phone.e164,
            created_at=created,
            skus=frozenset(i.sku for i in items),
            categories=frozenset(i.category for i in items if i.category),
        )
        duplicate_of = find_duplicate(this, recent, rule=rules.duplicates)
        if duplicate_of is not None:
            reasons.append(f"duplicate of order {duplicate_of}")
        if rules.fraud_base is not None and rules.fraud_base.contains(phone.digits):
            prepayment = True
            reasons.append(FRAUD_REASON)
        region = check_region(
            phone,
            delivery_region=order.delivery_region,
            delivery_country=order.delivery_country,
            plan=rules.numbering_plan,
            directory=rules.regions,
            now=now,
            verify_after=rules.verify_after,
        )
        if region.outcome is RegionOutcome.MISMATCH:
            reasons.append(f"region mismatch, verification call planned: {region.reason}")
    zone = customer_timezone(
        delivery_region=order.delivery_region,
        delivery_country=order.delivery_country,
        phone=phone,
        plan=rules.numbering_plan,
        directory=rules.regions,
        shop_default=rules.shop_timezone,
    )
    return AcceptedOrder(
        NormalisedOrder(
            crm=order.crm,
            external_id=order.external_id,
            site=order.site,
            created_at=created,
            customer_name=order.customer_name,
            phone_raw=order.phone,
            phone=phone,
            phone_invalid=invalid,
            items=items,
            delivery_country=order.delivery_country.upper() if order.delivery_country else None,
            delivery_region=order.delivery_region,
            delivery_city=order.delivery_city,
            delivery_address=order.delivery_address,
            total=order.total,
            comment=order.comment,
            duplicate_of=duplicate_of,
            prepayment_only=prepayment,
            region_check=region,
            timezone=zone,
            flag_reasons=tuple(reasons),
        )
    )


def _errors(exc: ValidationError) -> Iterable[tuple[str, str]]:
    for error in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        # pydantic prefixes validator messages with "Value error, "; the field says enough.
        yield path, message.removeprefix("Value error, ")
