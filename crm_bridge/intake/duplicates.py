"""Duplicate orders: the same customer ordering again within a window.

CPA traffic produces many: a customer presses "order" twice, or fills in the form on two
landing pages. The centre calls once; the later order is marked a duplicate of the first and
confirmed (or not) together with it.

Pure: the caller passes the recent orders, or a function that finds them (a database query in
the daemon, a list in tests).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


class DuplicateScope(enum.StrEnum):
    """What besides the phone must match for an order to be a duplicate."""

    PHONE = "phone"  # any order from the same phone
    CATEGORY = "category"  # ... for a product of the same category
    PRODUCT = "product"  # ... for the same product (SKU)


@dataclass(frozen=True, slots=True, kw_only=True)
class DuplicateRule:
    """How duplicates are found. The window is measured between the orders' creation times."""

    window: timedelta = timedelta(hours=24)
    scope: DuplicateScope = DuplicateScope.PHONE


@dataclass(frozen=True, slots=True, kw_only=True)
class RecentOrder:
    """What the duplicate check needs to know of an earlier order.

    `skus` and `categories` are those of its items; `order_id` is whatever the caller uses to
    name orders (the CRM's external id, a database id) and is returned as is.
    """

    order_id: str
    e164: str
    created_at: datetime
    skus: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()


# Given an E.164 number and the earliest creation time of interest, the orders to compare.
RecentLookup = Callable[[str, datetime], Iterable[RecentOrder]]


def find_duplicate(
    order: RecentOrder,
    recent: Iterable[RecentOrder] | RecentLookup,
    *,
    rule: DuplicateRule = DuplicateRule(),
) -> str | None:
    """The id of the first order that `order` duplicates, or None.

    "First" is the earliest by creation time (ties broken by id), so a third order from the
    same customer points to the first one, not to the second. Orders created after `order`,
    or `order` itself, never count; orders more than `rule.window` before it do not either.
    """
    since = order.created_at - rule.window
    candidates = recent(order.e164, since) if callable(recent) else recent
    first: RecentOrder | None = None
    for other in candidates:
        if not _matches(order, other, since, rule.scope):
            continue
        if first is None or _order_key(other) < _order_key(first):
            first = other
    return first.order_id if first is not None else None


def _matches(order: RecentOrder, other: RecentOrder, since: datetime, scope: str) -> bool:
    if other.order_id == order.order_id or other.e164 != order.e164:
        return False
    if not since <= other.created_at <= order.created_at:
        return False
    if other.created_at == order.created_at and _order_key(other) > _order_key(order):
        # Same second from a CRM with whole-second timestamps: the lower id came first.
        return False
    if scope == DuplicateScope.PRODUCT:
        return bool(order.skus & other.skus)
    if scope == DuplicateScope.CATEGORY:
        return bool(order.categories & other.categories)
    return True


def _order_key(order: RecentOrder) -> tuple[datetime, int, str]:
    # CRM ids are usually numbers sent as strings: "9" came before "10".
    oid = order.order_id
    return (order.created_at, len(oid) if oid.isdigit() else 1 << 30, oid)
