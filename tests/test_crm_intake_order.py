from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_bridge.intake.duplicates import RecentOrder
from crm_bridge.intake.fraud import FraudBase
from crm_bridge.intake.numbering import NumberingPlan
from crm_bridge.intake.order import (
    AcceptedOrder,
    IntakeRules,
    NormalisedOrder,
    Rejected,
    intake,
)
from crm_bridge.intake.timezone import ZoneSource

NOW = datetime(2026, 1, 10, 9, 5, tzinfo=UTC)
RULES = IntakeRules(
    fraud_base=FraudBase.from_numbers(["+79130000001"]),
    numbering_plan=NumberingPlan.load(),
    verify_after=timedelta(hours=3),
)


def raw(**changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "external_id": "A-1001",
        "crm": "retailcrm",
        "site": "shop1",
        "created_at": "2026-01-10T12:00:00+03:00",
        "customer_name": "Иван Петров",
        "phone": "8 (912) 123-45-67",
        "items": [
            {"sku": "CR-1", "name": "Крем", "category": "cosmetics", "quantity": 2, "price": 990}
        ],
        "delivery_country": "RU",
        "delivery_region": "Свердловская область",
        "delivery_city": "Екатеринбург",
        "delivery_address": "ул. Ленина, 1, кв. 5",
        "total": "1980.00",
        "comment": "позвонить после обеда",
    }
    order.update(changes)
    return order


def accept(order: Mapping[str, Any], **kwargs: Any) -> NormalisedOrder:
    decision = intake(order, rules=RULES, now=NOW, **kwargs)
    assert isinstance(decision, AcceptedOrder), decision
    return decision.order


def reject(order: object) -> dict[str, str]:
    decision = intake(order, rules=RULES, now=NOW)
    assert isinstance(decision, Rejected), decision
    return dict(decision.errors)


def test_a_good_order_is_accepted_without_flags() -> None:
    order = accept(raw())
    assert order.phone is not None and order.phone.e164 == "+79121234567"
    assert order.flag_reasons == ()
    assert not (order.invalid or order.prepayment_only or order.region_mismatch)
    assert order.duplicate_of is None
    assert order.timezone.tz == "Asia/Yekaterinburg"
    assert order.timezone.source is ZoneSource.DELIVERY_REGION
    assert order.items[0].price == Decimal(990)
    assert order.total == Decimal("1980.00")
    assert order.created_at == datetime(2026, 1, 10, 9, 0, tzinfo=UTC)


def test_an_invalid_phone_is_accepted_but_flagged_and_never_dialled() -> None:
    order = accept(raw(phone="8 900 12"))
    assert order.invalid
    assert order.phone is None
    assert order.phone_invalid == "too short"
    assert order.phone_raw == "8 900 12"
    assert order.flag_reasons == ("phone not dialled: too short",)


def test_a_fraud_base_hit_makes_the_order_prepayment_only_with_a_reason() -> None:
    order = accept(raw(phone="+7 913 000 00 01", delivery_region="Новосибирская обл."))
    assert order.prepayment_only
    assert any("fraud base" in r and "prepayment" in r for r in order.flag_reasons)


def test_a_region_mismatch_schedules_a_verification_call() -> None:
    order = accept(raw(delivery_region="г. Москва"))
    assert order.region_mismatch
    assert order.verify_at == NOW + timedelta(hours=3)
    assert order.timezone.tz == "Europe/Moscow"


def test_a_repeat_order_is_a_duplicate_of_the_first() -> None:
    first = RecentOrder(
        order_id="A-0999",
        e164="+79121234567",
        created_at=datetime(2026, 1, 10, 8, 0, tzinfo=UTC),
    )
    order = accept(raw(), recent=[first])
    assert order.duplicate_of == "A-0999"
    assert order.flag_reasons == ("duplicate of order A-0999",)


def test_a_naive_creation_time_is_read_in_the_shop_zone() -> None:
    order = accept(raw(created_at="2026-01-10 12:00:00"))
    assert order.created_at.utcoffset() == timedelta(hours=3)


def test_names_that_look_like_sql_are_kept_verbatim() -> None:
    name = "Robert'); DROP TABLE orders;--"
    assert accept(raw(customer_name=name)).customer_name == name


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"external_id": ""}, "external_id", "at least 1"),
        ({"external_id": None}, "external_id", "string"),
        ({"phone": 79121234567}, "phone", "string"),
        ({"created_at": "yesterday"}, "created_at", "datetime"),
        ({"items": []}, "items", "at least 1"),
        ({"items": [{"sku": "X", "name": "Y"}] * 101}, "items", "at most 100"),
        ({"items": [{"sku": "X", "name": "Y", "quantity": 10**6}]}, "items.0.quantity", "1000"),
        ({"items": [{"sku": "X", "name": "Y", "quantity": "two"}]}, "items.0.quantity", "integer"),
        ({"items": [{"sku": "X", "name": "Y", "price": -1}]}, "items.0.price", "greater"),
        ({"items": [{"name": "Y"}]}, "items.0.sku", "required"),
        ({"total": "1e30"}, "total", "digits"),
        ({"customer_name": "x" * 201}, "customer_name", "at most 200"),
        ({"customer_name": "Иван\x00"}, "customer_name", "control characters"),
        ({"customer_name": "Иван\nПетров"}, "customer_name", "line breaks"),
        ({"customer_name": "\u202eвонаП"}, "customer_name", "control characters"),
        ({"comment": "a\x1b[31m"}, "comment", "control characters"),
        ({"delivery_country": "Russia"}, "delivery_country", "pattern"),
        ({"comment": "x" * 2001}, "comment", "at most 2000"),
    ],
)
def test_every_rejection_names_the_field(changes: dict[str, Any], field: str, words: str) -> None:
    errors = reject(raw(**changes))
    assert field in errors, errors
    assert words in errors[field]


def test_a_missing_field_is_named() -> None:
    order = raw()
    del order["phone"]
    del order["created_at"]
    assert set(reject(order)) == {"phone", "created_at"}


def test_input_that_is_not_an_object_is_rejected_as_a_whole() -> None:
    assert reject(["not", "an", "order"]) == {"": "an order must be an object"}
    assert reject(None) == {"": "an order must be an object"}


def test_multi_line_address_and_comment_are_allowed() -> None:
    order = accept(raw(delivery_address="ул. Ленина, 1\nподъезд 2", comment="a\r\nb\tc"))
    assert order.delivery_address == "ул. Ленина, 1\nподъезд 2"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(raw())), JSON, max_size=14))
def test_any_input_is_accepted_or_rejected_with_named_fields_never_raising(
    changes: dict[str, Any],
) -> None:
    decision = intake(raw(**changes), rules=RULES, now=NOW)
    if isinstance(decision, Rejected):
        assert decision.errors
        assert all(field for field, _ in decision.errors)
    else:
        assert decision.order.timezone.tz
