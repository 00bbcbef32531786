"""`[crm.lookup]`: how an inbound caller is read from the CRM, from the config file to the
adapter that the daemon builds, and against the contract servers on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_bridge.amocrm import AmoCrmAdapter
from crm_bridge.bitrix24 import Bitrix24Adapter
from crm_bridge.retailcrm import DELIVERY_STATUSES, RetailCrmAdapter
from dialer.config.loader import ConfigError, parse_settings
from dialer.crm_factory import make_adapter
from tests.crm_servers import amocrm
from tests.crm_servers.serve import serving


def test_retailcrm_takes_the_configured_statuses_and_item_property() -> None:
    settings = parse_settings(
        '[crm]\nadapter = "retailcrm"\nurl = "https://shop.retailcrm.ru"\napi_key = "k"\n'
        "[crm.lookup]\n"
        'category_field = "group"\n'
        'open_statuses = ["new", "waiting-call"]\n'
        "delivery_days = 21\n"
    )
    adapter = make_adapter(settings.crm)
    assert isinstance(adapter, RetailCrmAdapter)
    assert adapter.settings.category_property == "group"
    assert adapter.settings.open_statuses == {"new", "waiting-call"}
    assert adapter.settings.delivery_statuses == DELIVERY_STATUSES  # not given: the default
    assert adapter.settings.delivery_days == 21


def test_bitrix24_takes_deal_fields_and_delivery_stages() -> None:
    settings = parse_settings(
        '[crm]\nadapter = "bitrix24"\nurl = "https://shop.bitrix24.ru/rest/1/key/"\n'
        "[crm.lookup]\n"
        'category_field = "UF_CRM_CATEGORY"\n'
        'region_field = "UF_CRM_REGION"\n'
        'delivery_statuses = ["C1:DELIVERY"]\n'
    )
    adapter = make_adapter(settings.crm)
    assert isinstance(adapter, Bitrix24Adapter)
    assert adapter.settings.category_field == "UF_CRM_CATEGORY"
    assert adapter.settings.region_field == "UF_CRM_REGION"
    assert adapter.settings.delivery_stages == {"C1:DELIVERY"}


def test_delivery_days_must_be_a_day_at_least() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings("[crm.lookup]\ndelivery_days = 0\n")
    assert caught.value.problems == ["crm.lookup.delivery_days: must be at least 1 (got 0)"]


def test_amocrm_bad_field_ids_and_statuses_each_name_their_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(
            '[crm]\nadapter = "amocrm"\nurl = "https://shop.amocrm.ru"\napi_key = "t"\n'
            "[crm.lookup]\n"
            'category_field = "UF_CRM_CATEGORY"\n'
            'delivery_statuses = ["7:61234", "delivery"]\n'
        )
    assert sorted(caught.value.problems) == [
        "crm.lookup.category_field: must be an amoCRM field id (digits)",
        "crm.lookup.delivery_statuses: 'delivery' must be 'pipeline_id:status_id'",
    ]


async def test_an_amocrm_caller_is_read_with_the_configured_fields() -> None:
    state = amocrm.AmoCrmState()
    now = datetime.now(UTC)
    state.add_lead(
        "+79123456789",
        created_at=int((now - timedelta(days=2)).timestamp()),
        price=2490,
        status=(7, 61234),
        fields={501: "gadgets", 502: "Москва"},
    )
    async with serving(amocrm.create_app(state)) as server:
        settings = parse_settings(
            f'[crm]\nadapter = "amocrm"\nurl = "{server.url}"\napi_key = "{state.token}"\n'
            "[crm.lookup]\n"
            'category_field = "501"\nregion_field = "502"\n'
            'delivery_statuses = ["7:61234"]\n'
        )
        adapter = make_adapter(settings.crm)
        assert isinstance(adapter, AmoCrmAdapter)
        try:
            found = await adapter.lookup_phone("+79123456789")
        finally:
            await adapter.aclose()
    assert found is not None
    assert found["category"] == "gadgets"
    assert set(found["tags"]) == {"in-delivery"}
    assert found["amount"] == 2490.0
