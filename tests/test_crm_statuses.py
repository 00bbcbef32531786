"""Which status an outcome moves an order to in amoCRM and Bitrix24, from the config file on.

`crm.amocrm_statuses` and `crm.bitrix24_stages` are read and checked by the config loader,
turned into the adapters' tables by `crm_factory`, and used when the outbox relay delivers an
outcome, against the contract servers on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from crm_bridge.adapter import CrmAdapter
from crm_bridge.amocrm import AmoCrmAdapter
from crm_bridge.bitrix24 import Bitrix24Adapter
from dialer.config.loader import ConfigError, parse_settings
from dialer.config.models import CrmSettings
from dialer.crm_factory import make_adapter, relay_statuses, status_table
from dialer.crm_messages import DEFAULT_STATUSES
from dialer.outbox_admin import dead_letters
from dialer.relay import OutboxRelay, RelayPolicy
from dialer.storage import repo
from dialer.storage.db import Database
from tests.crm_servers import amocrm, bitrix24
from tests.crm_servers.serve import LoopbackServer, serving

SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)

AMO = """\
[crm]
adapter = "amocrm"
url = "{url}"
api_key = "amo-token"

[crm.amocrm_statuses]
confirmed = {{ pipeline_id = 7, status_id = 70 }}
upsell = {{ pipeline_id = 7, status_id = 70 }}
rejected = {{ pipeline_id = 7, status_id = 143 }}
invalid = {{ pipeline_id = 7, status_id = 143 }}
duplicate = {{ pipeline_id = 7, status_id = 143 }}
unreached = {{ pipeline_id = 7, status_id = 75 }}
"""

BITRIX = """\
[crm]
adapter = "bitrix24"
url = "{url}/rest/1/webhook-key/"
bitrix24_user_id = 7

[crm.bitrix24_stages]
confirmed = "PREPARATION"
upsell = "PREPARATION"
rejected = "LOSE"
invalid = "C1:UC_JUNK"
duplicate = "LOSE"
unreached = "C1:UC_NOCALL"
"""


def test_the_keys_are_checked_and_each_problem_names_its_key() -> None:
    text = """\
[crm]
adapter = "amocrm"
url = "https://shop.amocrm.ru"
api_key = "token"
webhook_secret = "short"

[crm.amocrm_statuses]
confirmd = { pipeline_id = 7, status_id = 70 }
rejected = { pipeline_id = 0, status_id = 143 }
unreached = { pipeline_id = 7 }
callback = { pipeline_id = 7, status_id = 71 }

[crm.bitrix24_stages]
confirmed = "Подтверждён"
"""
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    assert sorted(caught.value.problems) == [
        "crm.amocrm_statuses.callback: unknown key",
        "crm.amocrm_statuses.confirmd: unknown key",
        "crm.amocrm_statuses.rejected.pipeline_id: must be at least 1 (got 0)",
        "crm.amocrm_statuses.unreached.status_id: required",
        "crm.bitrix24_stages.confirmed: must be a STAGE_ID such as PREPARATION, WON or "
        "C1:UC_ABC123 (got 'Подтверждён')",
    ]


def test_a_short_webhook_secret_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(
            '[crm]\nadapter = "webhook"\nurl = "https://s.example/h"\n'
            'webhook_secret = "0123456789"\n'
        )
    assert caught.value.problems == ["crm.webhook_secret: must have at least 16 characters"]


def test_the_table_answers_outcome_names_and_the_codes_they_share() -> None:
    table, unmapped = status_table(
        {"confirmed": "A", "upsell": "A", "rejected": "R", "invalid": "J", "duplicate": "R"},
        key="bitrix24_stages",
    )
    assert table == {
        "confirmed": "A",
        "upsell": "A",
        "rejected": "R",
        "invalid": "J",
        "duplicate": "R",
        "client-confirmed": "A",
    }
    assert unmapped["unreached"] == "set crm.bitrix24_stages.unreached"
    assert unmapped["no-call"] == "set crm.bitrix24_stages.unreached"
    assert (
        "rejected, invalid, duplicate all reach the CRM as 'cancel-other'"
        in (unmapped["cancel-other"])
    )


def test_the_relay_sends_outcome_names_to_amocrm_and_bitrix24_only() -> None:
    amo = relay_statuses(
        CrmSettings(adapter="amocrm", url="https://a.example", api_key=SecretStr("k"))
    )
    assert amo["rejected"] == "rejected" and amo["callback"] is None
    assert set(amo) == set(DEFAULT_STATUSES)
    assert relay_statuses(CrmSettings()) is DEFAULT_STATUSES


@pytest.fixture
async def amo_crm() -> AsyncIterator[tuple[amocrm.AmoCrmState, LoopbackServer]]:
    state = amocrm.AmoCrmState(limit_per_s=1000)
    async with serving(amocrm.create_app(state)) as server:
        yield state, server


@pytest.fixture
async def bitrix_crm() -> AsyncIterator[tuple[bitrix24.Bitrix24State, LoopbackServer]]:
    state = bitrix24.Bitrix24State()
    async with serving(bitrix24.create_app(state)) as server:
        yield state, server


async def store(db: Database, crm: str, external_id: str, outcome: str) -> None:
    async with db.session() as s:
        order = await repo.add_order(
            s,
            crm=crm,
            external_id=external_id,
            phone_e164="+79121234567",
            campaign_id="confirm",
            timezone="Europe/Moscow",
            created_at=T0,
            now=T0,
        )
        await repo.store_outcome(s, order_id=order.id, outcome=outcome, now=T0, reason="why")


async def relay_all(
    db: Database, adapter: CrmAdapter, statuses: Mapping[str, str | None]
) -> OutboxRelay:
    async def sleep(_: float) -> None:
        await asyncio.sleep(0)

    relay = OutboxRelay(
        db,
        adapter,
        lambda: T0.timestamp(),
        sleep,
        policy=RelayPolicy(),
        statuses=statuses,
    )
    await relay.deliver_once()
    return relay


@SQLITE_ONLY
async def test_amocrm_leads_move_to_the_configured_statuses(
    database: Database, amo_crm: tuple[amocrm.AmoCrmState, LoopbackServer]
) -> None:
    state, server = amo_crm
    leads = {o: state.add_lead("89121234567", created_at=0) for o in ("confirmed", "invalid")}
    for outcome, lead in leads.items():
        await store(database, "amocrm", str(lead), outcome)
    crm = make_adapter(parse_settings(AMO.format(url=server.url)).crm)
    assert isinstance(crm, AmoCrmAdapter)
    async with crm:
        # the relay as the daemon builds it today: RetailCRM's codes
        relay = await relay_all(database, crm, DEFAULT_STATUSES)
    assert relay.statistics().delivered == 2
    moved = {
        o: (state.leads[lead]["pipeline_id"], state.leads[lead]["status_id"])
        for o, lead in leads.items()
    }
    assert moved == {"confirmed": (7, 70), "invalid": (7, 143)}


@SQLITE_ONLY
async def test_bitrix24_deals_move_to_the_stage_of_each_outcome(
    database: Database, bitrix_crm: tuple[bitrix24.Bitrix24State, LoopbackServer]
) -> None:
    state, server = bitrix_crm
    deals = {o: state.add_deal("89121234567") for o in ("confirmed", "rejected", "invalid")}
    for outcome, deal in deals.items():
        await store(database, "bitrix24", str(deal), outcome)
    settings = parse_settings(BITRIX.format(url=server.url)).crm
    crm = make_adapter(settings)
    assert isinstance(crm, Bitrix24Adapter) and crm.settings.user_id == 7
    async with crm:
        relay = await relay_all(database, crm, relay_statuses(settings))
    assert relay.statistics().delivered == 3
    assert {o: state.deals[d]["STAGE_ID"] for o, d in deals.items()} == {
        "confirmed": "PREPARATION",
        "rejected": "LOSE",
        "invalid": "C1:UC_JUNK",  # its own stage: the relay named the outcome
    }


@SQLITE_ONLY
async def test_an_outcome_the_stages_cannot_tell_apart_waits_for_an_admin(
    database: Database, bitrix_crm: tuple[bitrix24.Bitrix24State, LoopbackServer]
) -> None:
    state, server = bitrix_crm
    deal = state.add_deal("89121234567")
    await store(database, "bitrix24", str(deal), "rejected")
    crm = make_adapter(parse_settings(BITRIX.format(url=server.url)).crm)
    assert isinstance(crm, Bitrix24Adapter)
    async with crm:
        await relay_all(database, crm, DEFAULT_STATUSES)  # sends 'cancel-other'
    [dead] = await dead_letters(database)
    assert dead.error is not None and "crm.bitrix24_stages maps them differently" in dead.error
    assert state.deals[deal]["STAGE_ID"] == "NEW"
