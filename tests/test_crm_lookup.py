"""An inbound caller looked up by phone in each CRM, over real HTTP against the contract
servers, and through `CallerDirectory` on a real database when obzvon does not know them."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pytest

from crm_bridge.amocrm import AmoCrmAdapter, AmoCrmSettings
from crm_bridge.bitrix24 import Bitrix24Adapter, Bitrix24Settings
from crm_bridge.errors import CrmAuthError
from crm_bridge.http import RetryPolicy
from crm_bridge.retailcrm import RetailCrmAdapter, RetailCrmSettings
from dialer.callers import CallerDirectory, LineRules, PhoneLookup
from dialer.engine.campaign import InboundRules
from dialer.storage.db import Database
from tests.crm_servers import amocrm, bitrix24, retailcrm
from tests.crm_servers.serve import LoopbackServer, serving

NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
CALLER = "+79123456789"
RETRY = RetryPolicy(attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05)
# The delivery line's priorities, as in obzvon.example.toml.
PRIORITIES = InboundRules(priorities={"known": 1, "open-order": 5, "in-delivery": 10})

Stage = Literal["open", "delivery", "closed"]
Adapter = RetailCrmAdapter | Bitrix24Adapter | AmoCrmAdapter


def clock() -> float:
    return NOW.timestamp()


@dataclass(frozen=True)
class Placed:
    """An order as a shop's checkout places it in the CRM."""

    phone: str
    created: datetime
    stage: Stage
    category: str
    region: str
    total: int


class Shop:
    """A CRM stand-in holding a shop's orders, and the adapter that talks to it."""

    app: Any

    def order(
        self,
        phone: str,
        *,
        age: timedelta,
        stage: Stage,
        category: str = "cosmetics",
        region: str = "Свердловская область",
        total: int = 990,
    ) -> str:
        """An order from `phone` placed `age` before NOW; returns the CRM's id of it."""
        return str(self.place(Placed(phone, NOW - age, stage, category, region, total)))

    def place(self, o: Placed) -> int:
        raise NotImplementedError

    def adapter(self, url: str, *, key_refused: bool = False) -> Adapter:
        raise NotImplementedError


RETAIL_STATUS: Mapping[Stage, str] = {
    "open": "new",
    "delivery": "client-confirmed",
    "closed": "complete",
}
BITRIX_STAGE: Mapping[Stage, str] = {"open": "NEW", "delivery": "PREPARATION", "closed": "WON"}
AMO_STATUS: Mapping[Stage, tuple[int, int]] = {
    "open": (7, 61230),
    "delivery": (7, 61234),
    "closed": (7, 142),
}
AMO_CATEGORY, AMO_REGION = 501, 502  # the account's lead fields


class RetailShop(Shop):
    def __init__(self) -> None:
        self.state = retailcrm.RetailCrmState()
        self.app = retailcrm.create_app(self.state)

    def place(self, o: Placed) -> int:
        return self.state.add_order(
            o.phone,
            created_at=o.created,
            status=RETAIL_STATUS[o.stage],
            region=o.region,
            category=o.category,
            total=o.total,
        )

    def adapter(self, url: str, *, key_refused: bool = False) -> Adapter:
        key = "wrong" if key_refused else self.state.api_key
        settings = RetailCrmSettings(url=url, api_key=key, site="shop1", retry=RETRY)
        return RetailCrmAdapter(settings, now=clock)


class BitrixShop(Shop):
    def __init__(self) -> None:
        self.state = bitrix24.Bitrix24State()
        self.app = bitrix24.create_app(self.state)

    def place(self, o: Placed) -> int:
        return self.state.add_deal(
            o.phone,
            created=o.created.astimezone(ZoneInfo("Europe/Moscow")).isoformat(),
            stage=BITRIX_STAGE[o.stage],
            opportunity=f"{o.total}.00",
            fields={"UF_CRM_CATEGORY": o.category, "UF_CRM_REGION": o.region},
        )

    def adapter(self, url: str, *, key_refused: bool = False) -> Adapter:
        key = "wrong" if key_refused else self.state.key
        settings = Bitrix24Settings(
            webhook_url=f"{url}/rest/{self.state.user}/{key}/",
            user_id=1,
            stages={"confirmed": "PREPARATION", "client-confirmed": "PREPARATION"},
            category_field="UF_CRM_CATEGORY",
            region_field="UF_CRM_REGION",
            rate_per_s=40.0,  # the stand-in drains faster than a real portal
            retry=RETRY,
        )
        return Bitrix24Adapter(settings, now=clock)


class AmoShop(Shop):
    def __init__(self) -> None:
        self.state = amocrm.AmoCrmState()
        self.app = amocrm.create_app(self.state)

    def place(self, o: Placed) -> int:
        return self.state.add_lead(
            o.phone,
            created_at=int(o.created.timestamp()),
            price=o.total,
            status=AMO_STATUS[o.stage],
            fields={AMO_CATEGORY: o.category, AMO_REGION: o.region},
        )

    def adapter(self, url: str, *, key_refused: bool = False) -> Adapter:
        token = "wrong" if key_refused else self.state.token
        settings = AmoCrmSettings(
            url=url,
            token=token,
            statuses={"confirmed": AMO_STATUS["delivery"], "rejected": (7, 143)},
            category_field_id=AMO_CATEGORY,
            region_field_id=AMO_REGION,
            rate_per_s=50.0,  # one test's requests, not an account's
            retry=RETRY,
        )
        return AmoCrmAdapter(settings, now=clock)


SHOPS: Mapping[str, type[Shop]] = {
    "retailcrm": RetailShop,
    "bitrix24": BitrixShop,
    "amocrm": AmoShop,
}


@dataclass(frozen=True)
class Running:
    crm: Shop
    adapter: Adapter
    url: str


@pytest.fixture(params=sorted(SHOPS))
async def shop(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    """A shop's CRM stand-in on loopback and an adapter for it."""
    crm = SHOPS[request.param]()
    server = LoopbackServer(crm.app)
    await server.start()
    adapter = crm.adapter(server.url)
    try:
        yield Running(crm, adapter, server.url)
    finally:
        await adapter.aclose()
        await server.stop()


async def test_a_caller_with_an_open_order_is_found_with_its_category_region_and_amount(
    shop: Running,
) -> None:
    crm, adapter = shop.crm, shop.adapter
    order = crm.order(CALLER, age=timedelta(hours=3), stage="open", total=1490)

    found = await adapter.lookup_phone(CALLER)

    assert found is not None
    assert found["external_id"] == order
    assert set(found["tags"]) == {"open-order"}
    assert found["category"] == "cosmetics"
    assert found["region"] == "RU-SVE"
    assert found["timezone"] == "Asia/Yekaterinburg"
    assert found["amount"] == 1490.0


async def test_a_recently_confirmed_order_puts_the_caller_in_delivery(
    shop: Running,
) -> None:
    crm, adapter = shop.crm, shop.adapter
    crm.order(CALLER, age=timedelta(days=40), stage="closed")
    order = crm.order(CALLER, age=timedelta(days=3), stage="delivery", region="Москва")

    found = await adapter.lookup_phone(CALLER)

    assert found is not None
    assert found["external_id"] == order
    assert set(found["tags"]) == {"in-delivery"}
    assert (found["region"], found["timezone"]) == ("RU-MOW", "Europe/Moscow")


async def test_an_order_confirmed_weeks_ago_is_no_longer_in_delivery(
    shop: Running,
) -> None:
    crm, adapter = shop.crm, shop.adapter
    order = crm.order(CALLER, age=timedelta(days=30), stage="delivery")

    found = await adapter.lookup_phone(CALLER)

    assert found is not None
    assert (found["external_id"], set(found["tags"])) == (order, set())


async def test_the_order_still_to_confirm_wins_over_a_newer_closed_one(
    shop: Running,
) -> None:
    crm, adapter = shop.crm, shop.adapter
    waiting = crm.order(CALLER, age=timedelta(days=2), stage="open", category="health")
    crm.order(CALLER, age=timedelta(hours=1), stage="closed", category="cosmetics")

    found = await adapter.lookup_phone(CALLER)

    assert found is not None
    assert (found["external_id"], found["category"]) == (waiting, "health")
    assert set(found["tags"]) == {"open-order"}


async def test_an_unknown_number_is_none_even_where_another_number_holds_its_digits(
    shop: Running,
) -> None:
    crm, adapter = shop.crm, shop.adapter
    crm.order("+79120000000", age=timedelta(hours=1), stage="open")
    crm.order("+49 1591 23456789", age=timedelta(hours=1), stage="open")  # …9123456789

    assert await adapter.lookup_phone(CALLER) is None


@pytest.mark.parametrize("stored", ["+7 (912) 345-67-89", "89123456789", "912 345 67 89"])
async def test_a_number_stored_in_another_format_is_found(shop: Running, stored: str) -> None:
    crm, adapter = shop.crm, shop.adapter
    order = crm.order(stored, age=timedelta(hours=1), stage="open")

    found = await adapter.lookup_phone(CALLER)

    assert found is not None and found["external_id"] == order


async def test_log_lines_never_carry_the_callers_whole_number(
    shop: Running, caplog: pytest.LogCaptureFixture
) -> None:
    shop.crm.order(CALLER, age=timedelta(hours=1), stage="open")

    with caplog.at_level(logging.DEBUG, logger="crm_bridge"):
        await shop.adapter.lookup_phone(CALLER)
        await shop.adapter.lookup_phone("+79120000000")

    logged = [r.getMessage() for r in caplog.records]
    assert any("+7912***6789" in line for line in logged)
    assert not any(number in line for line in logged for number in (CALLER, "9123456789"))


async def test_retailcrm_finds_the_newest_order_when_the_orders_span_pages() -> None:
    crm = RetailShop()
    for day in range(25, 0, -1):  # the stand-in lists orders oldest first
        crm.order(CALLER, age=timedelta(days=day), stage="closed")
    newest = crm.order(CALLER, age=timedelta(hours=1), stage="delivery")
    async with serving(crm.app) as server:
        settings = RetailCrmSettings(url=server.url, api_key="test-key", list_limit=20)
        async with RetailCrmAdapter(settings, now=clock) as adapter:
            found = await adapter.lookup_phone(CALLER)
            sent = adapter.http.requests_sent

    assert found is not None
    assert (found["external_id"], set(found["tags"])) == (newest, {"in-delivery"})
    assert sent == 2  # the first page and the last


async def test_refused_credentials_are_the_adapters_auth_error(shop: Running) -> None:
    async with shop.crm.adapter(shop.url, key_refused=True) as refused:
        with pytest.raises(CrmAuthError):
            await refused.lookup_phone(CALLER)


async def test_a_caller_unknown_to_the_database_is_identified_through_the_crm(
    database: Database, shop: Running
) -> None:
    crm, adapter = shop.crm, shop.adapter
    crm.order("8 (912) 345-67-89", age=timedelta(hours=3), stage="open", total=1490)
    assert isinstance(adapter, PhoneLookup)  # what the daemon checks before passing it
    directory = CallerDirectory(database, crm=adapter, now=clock)

    call = await directory.identify("chan-1", "+7 912 345 67 89", LineRules(line_id="delivery"))

    assert call.caller == CALLER
    assert call.tags == {"known", "open-order"}
    assert (call.category, call.region, call.timezone) == (
        "cosmetics",
        "RU-SVE",
        "Asia/Yekaterinburg",
    )
    assert call.amount == 1490.0
    assert PRIORITIES.priority(call.tags) == 5


async def test_a_crm_that_hangs_past_the_lines_timeout_leaves_the_caller_unknown(
    database: Database,
) -> None:
    crm = RetailShop()
    crm.order(CALLER, age=timedelta(hours=3), stage="open")
    crm.state.hang_s = 30.0
    server = LoopbackServer(crm.app)
    await server.start()
    line = LineRules(line_id="delivery", crm_timeout_s=0.5)
    try:
        async with crm.adapter(server.url) as adapter:
            directory = CallerDirectory(database, crm=adapter, now=clock)
            started = time.monotonic()
            call = await directory.identify("chan-1", CALLER, line)
            waited = time.monotonic() - started
    finally:
        crm.state.release()
        await server.stop()

    assert (call.tags, call.order_id, call.category) == (frozenset(), None, None)
    assert PRIORITIES.priority(call.tags) == 0
    assert line.crm_timeout_s <= waited < line.crm_timeout_s + 1.0
