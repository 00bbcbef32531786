from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm_bridge.intake.duplicates import (
    DuplicateRule,
    DuplicateScope,
    RecentOrder,
    find_duplicate,
)

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
PHONE = "+79001234567"


def order(
    oid: str,
    minutes: float,
    *,
    phone: str = PHONE,
    skus: tuple[str, ...] = ("sku-1",),
    categories: tuple[str, ...] = ("cream",),
) -> RecentOrder:
    return RecentOrder(
        order_id=oid,
        e164=phone,
        created_at=T0 + timedelta(minutes=minutes),
        skus=frozenset(skus),
        categories=frozenset(categories),
    )


def test_same_phone_within_the_window_is_a_duplicate_of_the_first_order() -> None:
    first, second, third = order("101", 0), order("102", 5), order("103", 30)
    assert find_duplicate(third, [second, first, third]) == "101"
    assert find_duplicate(second, [first, second, third]) == "101"


def test_the_first_order_itself_is_no_duplicate() -> None:
    first, later = order("101", 0), order("102", 5)
    assert find_duplicate(first, [first, later]) is None


def test_orders_outside_the_window_do_not_count() -> None:
    old, new = order("101", 0), order("102", 24 * 60 + 1)
    assert find_duplicate(new, [old]) is None
    assert find_duplicate(new, [old], rule=DuplicateRule(window=timedelta(hours=48))) == "101"


def test_another_phone_is_no_duplicate() -> None:
    assert find_duplicate(order("102", 5), [order("101", 0, phone="+79007654321")]) is None


def test_product_scope_needs_the_same_product() -> None:
    rule = DuplicateRule(scope=DuplicateScope.PRODUCT)
    first = order("101", 0, skus=("sku-1",))
    assert find_duplicate(order("102", 5, skus=("sku-2",)), [first], rule=rule) is None
    assert find_duplicate(order("103", 5, skus=("sku-2", "sku-1")), [first], rule=rule) == "101"


def test_category_scope_needs_the_same_category() -> None:
    rule = DuplicateRule(scope=DuplicateScope.CATEGORY)
    first = order("101", 0, categories=("cream",))
    assert find_duplicate(order("102", 5, categories=("watch",)), [first], rule=rule) is None
    assert find_duplicate(order("103", 5, categories=("cream",)), [first], rule=rule) == "101"


def test_same_second_orders_are_ordered_by_numeric_id() -> None:
    a, b = order("9", 0), order("10", 0)
    assert find_duplicate(b, [a, b]) == "9"
    assert find_duplicate(a, [a, b]) is None


def test_a_lookup_function_is_asked_for_the_phone_and_the_window_start() -> None:
    asked: list[tuple[str, datetime]] = []

    def lookup(e164: str, since: datetime) -> list[RecentOrder]:
        asked.append((e164, since))
        return [order("101", 0)]

    assert find_duplicate(order("102", 60), lookup) == "101"
    assert asked == [(PHONE, T0 + timedelta(minutes=60) - timedelta(hours=24))]
