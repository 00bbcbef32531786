"""Bitrix24 adapter against the contract test server, over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from crm_bridge.adapter import CallDirection, CallRecord, CallResult, OrderUpdate
from crm_bridge.bitrix24 import Bitrix24Adapter, Bitrix24Settings
from crm_bridge.errors import CrmAuthError, CrmRejected, CrmUnavailable
from crm_bridge.http import RetryPolicy, Sleep
from crm_bridge.intake.order import AcceptedOrder, IntakeRules, intake
from tests.crm_servers.bitrix24 import Bitrix24State, create_app
from tests.crm_servers.lossy import LossyLink
from tests.crm_servers.serve import LoopbackServer

T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
CLOCK = [T0.timestamp() + 60]  # the adapter's clock: the calls below have just ended


async def no_wait(seconds: float) -> None:
    return None


@pytest.fixture
def state() -> Bitrix24State:
    return Bitrix24State()


@pytest.fixture
async def server(state: Bitrix24State) -> AsyncIterator[LoopbackServer]:
    running = LoopbackServer(create_app(state))
    await running.start()
    yield running
    await running.stop()


def make(
    server: LoopbackServer | LossyLink,
    key: str = "webhook-key",
    sleep: Sleep = no_wait,
    attempts: int = 4,
) -> Bitrix24Adapter:
    settings = Bitrix24Settings(
        webhook_url=f"{server.url}/rest/1/{key}/",
        user_id=7,
        stages={"client-confirmed": "PREPARATION"},
        unmapped={"cancel-other": "set crm.bitrix24_stages.rejected"},
        rate_per_s=40.0,  # the stand-in drains faster than a real portal, to keep tests short
        retry=RetryPolicy(attempts=attempts, backoff_initial_s=0.01),
    )
    CLOCK[0] = T0.timestamp() + 60
    return Bitrix24Adapter(settings, sleep=sleep, now=lambda: CLOCK[0])


@pytest.fixture
async def adapter(server: LoopbackServer) -> AsyncIterator[Bitrix24Adapter]:
    async with make(server) as crm:
        yield crm


def call(n: int, **changes: object) -> CallRecord:
    fields: dict[str, object] = {
        "external_id": f"chan-{n}",
        "started_at": T0 + timedelta(seconds=n),
        "direction": CallDirection.OUT,
        "phone": "+79121234567",
        "result": CallResult.ANSWERED,
        "duration_s": 42,
        "record_url": f"https://obzvon.example/rec/{n}",
        "order_external_id": "1",
    }
    fields.update(changes)
    return CallRecord(**fields)  # type: ignore[arg-type]


async def test_deals_come_in_once_through_the_id_cursor(
    state: Bitrix24State, adapter: Bitrix24Adapter
) -> None:
    for n in range(120):
        state.add_deal(f"8912{n:07d}")
    seen: list[str] = []
    cursor = None
    while True:
        batch = await adapter.pull_orders(cursor)
        seen += [o.external_id for o in batch.orders]
        cursor = batch.cursor
        if not batch.more:
            break
    assert seen == [str(i) for i in range(1, 121)]
    assert cursor == "id:120"
    again = await adapter.pull_orders(cursor)
    assert (again.orders, again.cursor) == ((), "id:120")


async def test_a_deal_becomes_an_order_that_passes_intake(
    state: Bitrix24State, adapter: Bitrix24Adapter
) -> None:
    state.add_deal("8 (912) 123-45-67")
    batch = await adapter.pull_orders(None)
    decision = intake(batch.orders[0].data, rules=IntakeRules(), now=datetime.now(UTC))
    assert isinstance(decision, AcceptedOrder), decision
    assert decision.order.phone is not None and decision.order.phone.e164 == "+79121234567"
    assert decision.order.customer_name == "Петров Иван"
    assert decision.order.created_at.utcoffset() == timedelta(hours=3)


async def test_a_call_is_registered_finished_and_its_record_attached(
    state: Bitrix24State, adapter: Bitrix24Adapter
) -> None:
    result = await adapter.upload_calls([call(1), call(2, result=CallResult.BUSY, record_url=None)])
    assert result.delivered == ("chan-1", "chan-2")
    assert state.finished == ["externalCall.1", "externalCall.2"]
    first = state.calls["externalCall.1"]
    assert (first["USER_ID"], first["TYPE"], first["STATUS_CODE"]) == (7, 1, "200")
    assert (first["CRM_ENTITY_TYPE"], first["CRM_ENTITY_ID"]) == ("DEAL", "1")
    assert first["CALL_START_DATE"] == "2026-01-10T09:00:01+00:00"
    assert (first["EXTERNAL_CALL_ID"], first["SHOW"], first["ADD_TO_CHAT"]) == ("chan-1", 0, 0)
    assert state.calls["externalCall.2"]["STATUS_CODE"] == "486"
    assert state.records == {"externalCall.1": "https://obzvon.example/rec/1"}


async def test_a_refused_call_is_set_apart_and_the_others_delivered(
    state: Bitrix24State, adapter: Bitrix24Adapter
) -> None:
    result = await adapter.upload_calls([call(1), call(2, phone=""), call(3)])
    assert result.delivered == ("chan-1", "chan-3")
    [refused] = result.rejected
    assert refused.external_id == "chan-2"
    assert refused.error.message == "Argument PHONE_NUMBER is empty"
    assert refused.error.errors == ["ERROR_ARGUMENT"]


async def test_query_limit_exceeded_is_retried(
    state: Bitrix24State, server: LoopbackServer
) -> None:
    state.bucket, state.drain_per_s = 2, 0.0  # a portal whose bucket does not leak by itself
    for _ in range(2):
        state.admit()  # ... and is already full

    async def drain(seconds: float) -> None:
        state.bucket += 1  # room frees up while we wait

    async with make(server, sleep=drain) as crm:
        result = await crm.upload_calls([call(1, record_url=None)])
    assert result.delivered == ("chan-1",)
    assert state.limited >= 1


async def test_stage_and_comment_reach_the_deal(
    state: Bitrix24State, adapter: Bitrix24Adapter
) -> None:
    deal = state.add_deal("89121234567")
    await adapter.update_order(
        OrderUpdate(external_id=str(deal), status="client-confirmed", manager_comment="ок")
    )
    assert state.deals[deal]["STAGE_ID"] == "PREPARATION"
    assert state.comments == [(str(deal), "ок")]
    with pytest.raises(CrmRejected, match="no Bitrix24 stage") as unmapped:
        await adapter.update_order(OrderUpdate(external_id=str(deal), status="cancel-other"))
    assert "crm.bitrix24_stages.rejected" in unmapped.value.message


async def test_a_wrong_webhook_key_is_an_auth_error(server: LoopbackServer) -> None:
    async with make(server, key="leaked") as crm:
        with pytest.raises(CrmAuthError, match="Wrong authorization"):
            await crm.pull_orders(None)


async def test_two_open_calls_to_one_number_stay_two_calls(
    state: Bitrix24State, server: LoopbackServer
) -> None:
    # Without EXTERNAL_CALL_ID the portal would hand the second call the first one's CALL_ID
    # while the first is not finished, and one call would vanish into the other.
    link = LossyLink(server.port)
    await link.start()
    try:
        link.lose_next(2, b"telephony.externalCall.finish")
        async with make(link, attempts=2) as crm:
            with pytest.raises(CrmUnavailable):
                await crm.upload_calls([call(1, record_url=None)])  # finish lost, then refused
            second = await crm.upload_calls([call(2, record_url=None)])
            first = await crm.upload_calls([call(1, record_url=None)])
    finally:
        await link.stop()
    assert second.delivered == ("chan-2",) and first.duplicates == ("chan-1",)
    assert sorted(r["EXTERNAL_CALL_ID"] for r in state.statistics) == ["chan-1", "chan-2"]
    assert len({r["CALL_ID"] for r in state.statistics}) == 2


async def test_a_late_call_found_in_the_statistics_only_gets_its_record(
    state: Bitrix24State, adapter: Bitrix24Adapter
) -> None:
    # Finished by a relay that stopped before the record was attached.
    registered = await adapter.call(
        "telephony.externalCall.register",
        {"USER_ID": 7, "PHONE_NUMBER": "+79121234567", "TYPE": 1, "EXTERNAL_CALL_ID": "chan-1"},
    )
    await adapter.call(
        "telephony.externalCall.finish",
        {"CALL_ID": registered["CALL_ID"], "USER_ID": 7, "DURATION": 42},
    )
    CLOCK[0] += 3600

    result = await adapter.upload_calls([call(1), call(2)])
    assert result.duplicates == ("chan-1",) and result.delivered == ("chan-2",)
    assert len(state.statistics) == 2
    assert state.records[registered["CALL_ID"]] == "https://obzvon.example/rec/1"


async def test_statistics_the_webhook_may_not_read_stop_delivery_with_a_reason(
    state: Bitrix24State, adapter: Bitrix24Adapter
) -> None:
    state.statistics_denied = True
    CLOCK[0] += 3600
    with pytest.raises(CrmAuthError, match="Call statistics"):
        await adapter.upload_calls([call(1)])
    assert state.statistics == []
