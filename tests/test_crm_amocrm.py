"""amoCRM adapter against the contract test server, over real HTTP on loopback."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from crm_bridge.adapter import CallDirection, CallRecord, CallResult, OrderUpdate
from crm_bridge.amocrm import AmoCrmAdapter, AmoCrmSettings
from crm_bridge.errors import CrmAuthError, CrmInDoubt, CrmRejected
from crm_bridge.http import RetryPolicy
from crm_bridge.intake.order import AcceptedOrder, IntakeRules, intake
from tests.crm_servers.amocrm import AmoCrmState, create_app
from tests.crm_servers.lossy import LossyLink
from tests.crm_servers.serve import LoopbackServer

T0 = int(datetime(2026, 1, 10, 9, 0, tzinfo=UTC).timestamp())
CLOCK = [T0 + 60.0]  # the adapter's clock: the calls below have just ended
WAITS: list[float] = []


async def no_wait(seconds: float) -> None:
    WAITS.append(seconds)


@pytest.fixture
def state() -> AmoCrmState:
    return AmoCrmState()


@pytest.fixture
async def server(state: AmoCrmState) -> AsyncIterator[LoopbackServer]:
    running = LoopbackServer(create_app(state))
    await running.start()
    yield running
    await running.stop()


def make(server: LoopbackServer | LossyLink, token: str = "amo-token") -> AmoCrmAdapter:
    settings = AmoCrmSettings(
        url=server.url,
        token=token,
        statuses={"client-confirmed": (1, 142)},
        unmapped={"cancel-other": "set crm.amocrm_statuses.rejected"},
        retry=RetryPolicy(attempts=4, backoff_initial_s=0.01),
    )
    CLOCK[0] = T0 + 60.0
    return AmoCrmAdapter(settings, sleep=no_wait, now=lambda: CLOCK[0])


@pytest.fixture
async def adapter(server: LoopbackServer) -> AsyncIterator[AmoCrmAdapter]:
    async with make(server) as crm:
        yield crm


def call(n: int, phone: str = "+79120000000", **changes: object) -> CallRecord:
    fields: dict[str, object] = {
        "external_id": f"chan-{n}",
        "started_at": datetime(2026, 1, 10, 9, 0, tzinfo=UTC) + timedelta(seconds=n),
        "direction": CallDirection.OUT,
        "phone": phone,
        "result": CallResult.ANSWERED,
        "duration_s": 30,
        "record_url": f"https://obzvon.example/rec/{n}",
    }
    fields.update(changes)
    return CallRecord(**fields)  # type: ignore[arg-type]


async def test_leads_come_in_once_across_batches_and_a_crash(
    state: AmoCrmState, server: LoopbackServer
) -> None:
    for n in range(600):
        state.add_lead(f"8912{n:07d}", created_at=T0 + n // 7)  # several leads a second
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE orders (crm TEXT, external_id TEXT, UNIQUE (crm, external_id))")
    cursor: str | None = None
    crashed = False
    async with make(server) as crm:
        while True:
            batch = await crm.pull_orders(cursor)
            for i, order in enumerate(batch.orders):
                if not crashed and cursor is not None and i == len(batch.orders) // 2:
                    crashed = True  # dies here: the cursor below is never saved
                    break
                db.execute(
                    "INSERT OR IGNORE INTO orders VALUES (?, ?)", ("amocrm", order.external_id)
                )
            else:
                cursor = batch.cursor
                if not batch.orders and not batch.more:
                    break
    ids = [r[0] for r in db.execute("SELECT external_id FROM orders")]
    assert crashed
    assert sorted(ids) == sorted(str(i) for i in state.leads)


async def test_a_lead_becomes_an_order_that_passes_intake(
    state: AmoCrmState, adapter: AmoCrmAdapter
) -> None:
    state.add_lead("8 (912) 123-45-67", created_at=T0, price=1990)
    batch = await adapter.pull_orders(None)
    decision = intake(batch.orders[0].data, rules=IntakeRules(), now=datetime.now(UTC))
    assert isinstance(decision, AcceptedOrder), decision
    assert decision.order.phone is not None and decision.order.phone.e164 == "+79121234567"
    assert decision.order.items[0].price == 1990
    assert decision.order.customer_name == "Иван Петров"


async def test_nothing_new_keeps_the_cursor(adapter: AmoCrmAdapter) -> None:
    batch = await adapter.pull_orders(f"{T0}:1005")
    assert (batch.orders, batch.cursor, batch.more) == ((), f"{T0}:1005", False)


async def test_calls_with_no_matching_entity_or_invalid_fields_are_set_apart(
    state: AmoCrmState, adapter: AmoCrmAdapter
) -> None:
    state.add_lead("89120000000", created_at=T0)
    calls = [call(n) for n in range(120)]
    calls[5] = call(5, phone="+79990000000")  # no contact with this phone
    calls[70] = call(70, phone="")  # fails validation: the rest of its batch goes again
    result = await adapter.upload_calls(calls)
    assert {r.external_id for r in result.rejected} == {"chan-5", "chan-70"}
    rejected = {r.external_id: r.error for r in result.rejected}
    assert rejected["chan-5"].message == "Entity with this phone not found"
    assert rejected["chan-70"].errors == ["phone: This value is not valid."]
    assert len(result.delivered) == 118
    assert len(state.calls) == 118
    sent = state.calls[0]
    assert (sent["direction"], sent["uniq"], sent["call_status"]) == ("outbound", "chan-0", 4)
    assert sent["source"] == "obzvon"
    assert sent["link"] == "https://obzvon.example/rec/0"


async def test_429_is_retried(state: AmoCrmState, adapter: AmoCrmAdapter) -> None:
    state.add_lead("89120000000", created_at=T0)
    state.busy_next = 2
    WAITS.clear()
    result = await adapter.upload_calls([call(1)])
    assert result.delivered == ("chan-1",)
    assert len(WAITS) == 2


async def test_status_and_comment_reach_the_lead(
    state: AmoCrmState, adapter: AmoCrmAdapter
) -> None:
    lead = state.add_lead("89120000000", created_at=T0)
    await adapter.update_order(
        OrderUpdate(external_id=str(lead), status="client-confirmed", manager_comment="ок")
    )
    assert (state.leads[lead]["pipeline_id"], state.leads[lead]["status_id"]) == (1, 142)
    assert state.notes == [(lead, "ок")]


async def test_refusals_carry_the_crms_words(adapter: AmoCrmAdapter) -> None:
    with pytest.raises(CrmRejected, match="Lead not found") as missing:
        await adapter.update_order(OrderUpdate(external_id="5", status="client-confirmed"))
    assert missing.value.status == 404
    with pytest.raises(CrmRejected, match="no amoCRM status") as unmapped:
        await adapter.update_order(OrderUpdate(external_id="5", status="cancel-other"))
    assert "crm.amocrm_statuses.rejected" in unmapped.value.message


async def test_a_bad_token_is_an_auth_error(server: LoopbackServer) -> None:
    async with make(server, token="expired") as crm:
        with pytest.raises(CrmAuthError, match="invalid"):
            await crm.pull_orders(None)


async def test_a_call_whose_answer_is_lost_is_not_sent_blindly_again(
    state: AmoCrmState, server: LoopbackServer
) -> None:
    # amoCRM promises nothing about a uniq sent twice: the stand-in stores the call twice.
    state.add_lead("89120000000", created_at=T0)
    link = LossyLink(server.port)
    await link.start()
    try:
        link.lose_next(1, b"POST /api/v4/calls")
        async with make(link) as crm:
            with pytest.raises(CrmInDoubt):
                await crm.upload_calls([call(1), call(2)])
            assert state.uniqs() == ["chan-1", "chan-2"]  # stored, the answer lost

            result = await crm.upload_calls([call(1), call(2), call(3)])
    finally:
        await link.stop()
    assert result.duplicates == ("chan-1", "chan-2") and result.delivered == ("chan-3",)
    assert state.uniqs() == ["chan-1", "chan-2", "chan-3"]


async def test_a_late_call_is_looked_up_first_across_pages_of_notes(
    state: AmoCrmState, adapter: AmoCrmAdapter
) -> None:
    # A call handed over long after it ended may have been sent by a relay that stopped.
    state.add_lead("89120000000", created_at=T0)
    await adapter.upload_calls([call(n) for n in range(300)])  # 300 notes: two pages
    CLOCK[0] = T0 + 3600.0
    sent = len(state.calls)

    result = await adapter.upload_calls([call(299), call(300)])
    assert result.duplicates == ("chan-299",) and result.delivered == ("chan-300",)
    assert len(state.calls) == sent + 1


async def test_a_call_the_crm_acknowledged_is_not_sent_again(
    state: AmoCrmState, adapter: AmoCrmAdapter
) -> None:
    state.add_lead("89120000000", created_at=T0)
    first = await adapter.upload_calls([call(1)])
    again = await adapter.upload_calls([call(1)])
    assert first.delivered == ("chan-1",) and again.duplicates == ("chan-1",)
    assert state.uniqs() == ["chan-1"]
