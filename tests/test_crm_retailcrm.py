"""RetailCRM adapter against the contract test server, over real HTTP on loopback."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from crm_bridge.adapter import CallDirection, CallRecord, CallResult, OrderUpdate
from crm_bridge.errors import CrmAuthError, CrmRejected, CrmUnavailable
from crm_bridge.http import RetryPolicy
from crm_bridge.intake.order import AcceptedOrder, IntakeRules, intake
from crm_bridge.retailcrm import RetailCrmAdapter, RetailCrmSettings
from tests.crm_servers.retailcrm import RetailCrmState, create_app
from tests.crm_servers.serve import LoopbackServer

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
FAST_RETRY = RetryPolicy(attempts=6, backoff_initial_s=0.01, backoff_max_s=0.05)


class Waits:
    """The adapter's sleep: records each wait and lets a test act during it (bring the CRM
    back up), without the test waiting for real."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.on_wait: Callable[[int], Awaitable[None]] | None = None

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.on_wait is not None:
            await self.on_wait(len(self.waits))


@pytest.fixture
def state() -> RetailCrmState:
    return RetailCrmState()


@pytest.fixture
async def server(state: RetailCrmState) -> AsyncIterator[LoopbackServer]:
    running = LoopbackServer(create_app(state))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def waits() -> Waits:
    return Waits()


def make_adapter(server: LoopbackServer, waits: Waits, **changes: object) -> RetailCrmAdapter:
    settings: dict[str, object] = {
        "url": server.url,
        "api_key": "test-key",
        "site": "shop1",
        "retry": FAST_RETRY,
    }
    settings.update(changes)
    return RetailCrmAdapter(RetailCrmSettings(**settings), sleep=waits)  # type: ignore[arg-type]


@pytest.fixture
async def adapter(server: LoopbackServer, waits: Waits) -> AsyncIterator[RetailCrmAdapter]:
    async with make_adapter(server, waits) as crm:
        yield crm


def call(n: int, **changes: object) -> CallRecord:
    fields: dict[str, object] = {
        "external_id": f"chan-{n:05d}",
        "started_at": T0 + timedelta(seconds=n),
        "direction": CallDirection.OUT,
        "phone": f"+7912{n:07d}",
        "result": CallResult.ANSWERED,
        "duration_s": 60,
        "waiting_s": 2,
        "operator_code": "op1",
        "record_url": f"https://obzvon.example/rec/{n}",
    }
    fields.update(changes)
    return CallRecord(**fields)  # type: ignore[arg-type]


class Crash(Exception):
    pass


class OrderStore:
    """Idempotent storage on (crm, external_id), in a real SQLite database."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute(
            "CREATE TABLE orders (crm TEXT, external_id TEXT, UNIQUE (crm, external_id))"
        )
        self.db.execute("CREATE TABLE cursor (value TEXT)")
        self.attempts = 0

    def store(self, crm: str, external_id: str) -> None:
        self.attempts += 1
        self.db.execute("INSERT OR IGNORE INTO orders VALUES (?, ?)", (crm, external_id))

    def save_cursor(self, cursor: str | None) -> None:
        self.db.execute("DELETE FROM cursor")
        self.db.execute("INSERT INTO cursor VALUES (?)", (cursor,))

    def cursor(self) -> str | None:
        row = self.db.execute("SELECT value FROM cursor").fetchone()
        return row[0] if row else None

    def ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT external_id FROM orders")]


async def consume(
    crm: RetailCrmAdapter, store: OrderStore, *, crash_in_batch: int | None = None
) -> None:
    """Pull until the CRM has nothing new, storing each batch before saving its cursor."""
    batch_no = 0
    while True:
        batch = await crm.pull_orders(store.cursor())
        batch_no += 1
        for i, order in enumerate(batch.orders):
            if batch_no == crash_in_batch and i == len(batch.orders) // 2:
                raise Crash
            store.store(order.crm, order.external_id)
        store.save_cursor(batch.cursor)
        if not batch.orders and not batch.more:
            return


async def test_a_crash_mid_batch_loses_no_order_and_stores_none_twice(
    state: RetailCrmState, server: LoopbackServer, waits: Waits
) -> None:
    for n in range(1000):
        order_id = state.add_order(f"8912{n:07d}", created_at=T0 + timedelta(seconds=n))
        if n % 3 == 0:  # status changes interleave with creations in the history
            state.change_status(order_id, "client-confirmed", when=T0 + timedelta(seconds=n))
    store = OrderStore()
    async with make_adapter(server, waits) as crm:
        with pytest.raises(Crash):
            await consume(crm, store, crash_in_batch=3)
    stored_before_crash = len(store.ids())
    assert 0 < stored_before_crash < 1000
    # The consumer restarts from the last saved cursor, with a new connection.
    async with make_adapter(server, waits) as crm:
        await consume(crm, store)
    ids = store.ids()
    assert len(ids) == len(set(ids)) == 1000
    assert set(ids) == {str(i) for i in state.orders}
    assert store.attempts > 1000  # half a batch was read again, and not stored twice
    assert state.violations == []


async def test_pulled_orders_pass_intake(state: RetailCrmState, adapter: RetailCrmAdapter) -> None:
    state.add_order("8 (912) 123-45-67", created_at=T0)
    batch = await adapter.pull_orders(None)
    assert [o.external_id for o in batch.orders] == ["1"]
    decision = intake(batch.orders[0].data, rules=IntakeRules(), now=T0)
    assert isinstance(decision, AcceptedOrder), decision
    order = decision.order
    assert order.phone is not None and order.phone.e164 == "+79121234567"
    assert order.customer_name == "Петров Иван"
    assert order.items[0].sku == "CR-1"
    assert order.created_at == T0.astimezone(order.created_at.tzinfo)
    assert order.delivery_region == "Свердловская область"


async def test_an_empty_history_keeps_the_cursor(adapter: RetailCrmAdapter) -> None:
    batch = await adapter.pull_orders("id:41")
    assert (batch.orders, batch.cursor, batch.more) == ((), "id:41", False)


async def test_first_run_starts_history_at_a_date_and_lists_orders_by_status(
    state: RetailCrmState, adapter: RetailCrmAdapter
) -> None:
    old = state.add_order("89120000001", created_at=T0 - timedelta(days=2))
    state.add_order("89120000002", created_at=T0 - timedelta(days=1), status="assembling")
    new = state.add_order("89120000003", created_at=T0 + timedelta(minutes=5))
    page = await adapter.list_orders(["new"])
    assert [o.external_id for o in page.orders] == [str(old), str(new)]
    assert (page.page, page.total_pages) == (1, 1)
    batch = await adapter.pull_orders(adapter.cursor_since(T0))
    assert [o.external_id for o in batch.orders] == [str(new)]
    assert batch.cursor == "id:3"


async def test_calls_go_in_batches_of_at_most_50_within_the_rate_limit(
    state: RetailCrmState, adapter: RetailCrmAdapter
) -> None:
    calls = [call(n) for n in range(2_100)]  # 42 requests: more than one second's worth
    result = await adapter.upload_calls(calls)
    assert result.delivered == tuple(c.external_id for c in calls)
    assert result.rejected == ()
    assert max(state.upload_sizes) == 50
    assert sum(state.upload_sizes) == 2_100
    assert state.rate_limited == 0
    stored = state.calls["chan-00007"]
    assert stored["result"] == "answered"
    assert stored["date"] == "2026-01-10 15:00:07"  # the account's zone, Moscow
    assert stored["site"] == "shop1"
    assert stored["code"] == "op1"


async def test_calls_the_crm_already_has_count_as_delivered(
    state: RetailCrmState, adapter: RetailCrmAdapter
) -> None:
    await adapter.upload_calls([call(1), call(2)])
    result = await adapter.upload_calls([call(1), call(2), call(3)])
    assert result.duplicates == ("chan-00001", "chan-00002")
    assert result.delivered == ("chan-00003",)
    assert set(result.done) == {"chan-00001", "chan-00002", "chan-00003"}
    assert len(state.calls) == 3


async def test_a_refused_call_is_set_apart_and_the_others_delivered(
    state: RetailCrmState, adapter: RetailCrmAdapter
) -> None:
    calls = [call(n) for n in range(50)]
    calls[17] = call(17, phone="")
    result = await adapter.upload_calls(calls)
    assert [r.external_id for r in result.rejected] == ["chan-00017"]
    error = result.rejected[0].error
    assert error.message == "Errors in the entity format"
    assert error.errors == {"calls[0][phone]": "This value should not be blank."}
    assert len(result.delivered) == 49
    assert len(state.calls) == 49


async def test_the_crm_answering_503_then_back_gets_everything_once(
    state: RetailCrmState, adapter: RetailCrmAdapter, waits: Waits
) -> None:
    state.down = True

    async def come_back(n: int) -> None:
        if n == 3:
            state.down = False

    waits.on_wait = come_back
    result = await adapter.upload_calls([call(n) for n in range(120)])
    assert len(result.done) == 120
    assert len(state.calls) == 120
    assert len(waits.waits) == 3


async def test_the_crm_refusing_connections_then_back_gets_everything_once(
    state: RetailCrmState, server: LoopbackServer, adapter: RetailCrmAdapter, waits: Waits
) -> None:
    await adapter.upload_calls([call(0)])
    await server.stop()

    async def come_back(n: int) -> None:
        if n == 2:
            await server.start()

    waits.on_wait = come_back
    result = await adapter.upload_calls([call(n) for n in range(1, 80)])
    assert len(result.done) == 79
    assert len(state.calls) == 80


async def test_answers_lost_after_processing_are_retried_and_not_doubled(
    state: RetailCrmState, adapter: RetailCrmAdapter
) -> None:
    # The first batch lands twice with its answer lost: on the first try and on the retry
    # (which the CRM already answers with duplicateCalls).
    state.lose_answers = 2
    result = await adapter.upload_calls([call(n) for n in range(100)])
    assert result.duplicates == tuple(f"chan-{n:05d}" for n in range(50))
    assert result.delivered == tuple(f"chan-{n:05d}" for n in range(50, 100))
    assert len(state.calls) == 100


async def test_retry_after_is_honoured_and_a_crm_that_stays_down_is_unavailable(
    state: RetailCrmState, adapter: RetailCrmAdapter, waits: Waits
) -> None:
    state.down = True
    state.retry_after = "7"
    with pytest.raises(CrmUnavailable, match="HTTP 503"):
        await adapter.upload_calls([call(1)])
    assert waits.waits == [7.0] * (FAST_RETRY.attempts - 1)
    assert state.calls == {}


async def test_a_4xx_reaches_the_caller_as_crm_rejected_with_the_crms_message(
    state: RetailCrmState, adapter: RetailCrmAdapter, waits: Waits
) -> None:
    order_id = state.add_order("89121234567", created_at=T0)
    before = state.requests
    with pytest.raises(CrmRejected) as rejected:
        await adapter.update_order(OrderUpdate(external_id=str(order_id), status="bogus"))
    assert rejected.value.message == "Errors in the entity format"
    assert rejected.value.errors == {"status": 'Status "bogus" does not exist.'}
    assert rejected.value.status == 400
    assert state.requests == before + 1  # never retried
    assert waits.waits == []
    with pytest.raises(CrmRejected, match="Not found") as missing:
        await adapter.update_order(OrderUpdate(external_id="999", status="new"))
    assert missing.value.status == 404


async def test_a_wrong_api_key_is_an_auth_error(server: LoopbackServer, waits: Waits) -> None:
    async with make_adapter(server, waits, api_key="stolen") as crm:
        with pytest.raises(CrmAuthError, match="apiKey"):
            await crm.pull_orders(None)


async def test_an_order_update_lands_in_the_crm(
    state: RetailCrmState, adapter: RetailCrmAdapter
) -> None:
    order_id = state.add_order("89121234567", created_at=T0)
    await adapter.update_order(
        OrderUpdate(
            external_id=str(order_id),
            status="client-confirmed",
            manager_comment="подтвердил, +1 крем",
            custom_fields={"upsell": True},
        )
    )
    order = state.orders[order_id]
    assert order["status"] == "client-confirmed"
    assert order["managerComment"] == "подтвердил, +1 крем"
    assert order["customFields"] == {"upsell": True}
    assert state.history[-1]["field"] == "status"
    assert state.violations == []


async def test_a_live_call_event_reaches_the_crm(
    state: RetailCrmState, adapter: RetailCrmAdapter
) -> None:
    await adapter.call_event(phone="+79121234567", event="out", operator_codes=["op1"])
    assert state.call_events == [
        {"phone": "+79121234567", "type": "out", "codes": ["op1"], "site": "shop1"}
    ]


def test_limits_the_api_does_not_accept_are_refused_early() -> None:
    with pytest.raises(ValueError, match="history_limit"):
        RetailCrmSettings(url="http://x", api_key="k", history_limit=250)
