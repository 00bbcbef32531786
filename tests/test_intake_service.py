"""IntakeService: orders through the intake rules into the database and the engine.

Real databases (SQLite and PostgreSQL through the `database` fixture); the engine is stood in
for by a list that records what would have been submitted. The CRM poll runs the real
RetailCRM adapter against the contract server on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_bridge.http import RetryPolicy
from crm_bridge.intake.fraud import FraudBase
from crm_bridge.intake.numbering import NumberingPlan
from crm_bridge.intake.order import IntakeRules, Rejected
from crm_bridge.retailcrm import RetailCrmAdapter, RetailCrmSettings
from dialer.crm_cursor import CursorFile
from dialer.engine import events as ev
from dialer.intake import IntakeService, StoredOrder
from dialer.storage.db import Database
from dialer.storage.models import Order, OrderStatus, OutboxEntry
from tests.crm_servers.retailcrm import RetailCrmState, create_app
from tests.crm_servers.serve import LoopbackServer

# PostgreSQL runs the tests where it behaves differently (constraints, row locks); the
# rest run on SQLite only, to keep the suite quick.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
RULES = IntakeRules()


def raw(n: int = 1, **changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "external_id": f"A-{n}",
        "created_at": (NOW - timedelta(minutes=5)).isoformat(),
        "customer_name": "Иван Петров",
        "phone": "8 (912) 123-45-67",
        "items": [
            {"sku": "CR-1", "name": "Крем", "category": "cosmetics", "quantity": 2, "price": "990"}
        ],
        "delivery_country": "RU",
        "delivery_region": "Свердловская область",
        "delivery_city": "Екатеринбург",
        "delivery_address": "ул. Ленина, 1",
    }
    order.update(changes)
    return order


class Engine:
    """Stands in for `Daemon.submit`: records the events, or refuses them."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.refuse = False

    async def submit(self, event: ev.Event) -> None:
        if self.refuse:
            raise RuntimeError("engine refused")
        self.events.append(event)

    def order_ids(self) -> list[str]:
        return [e.lead.order_id for e in self.events if isinstance(e, ev.OrderArrived)]


def service(db: Database, engine: Engine, rules: IntakeRules = RULES) -> IntakeService:
    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    return IntakeService(
        db=db,
        rules=rules,
        campaign_id="confirm",
        submit=engine.submit,
        now=lambda: NOW.timestamp(),
        sleep=no_sleep,
    )


async def orders(db: Database) -> list[Order]:
    async with db.session() as s:
        return list(await s.scalars(select(Order).order_by(Order.id)))


async def outbox(db: Database) -> list[OutboxEntry]:
    async with db.session() as s:
        return list(await s.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))


async def test_a_valid_order_is_stored_with_its_decisions_and_handed_to_the_engine(
    database: Database,
) -> None:
    engine = Engine()
    result = await service(database, engine).accept(raw(), crm="retailcrm", now=NOW)

    assert isinstance(result, StoredOrder) and result.created and result.submitted
    [order] = await orders(database)
    assert (order.crm, order.external_id, order.status) == ("retailcrm", "A-1", "new")
    assert order.phone_e164 == "+79121234567"
    assert order.timezone == "Asia/Yekaterinburg" and order.region == "RU-SVE"
    assert order.category == "cosmetics" and order.amount == 1980
    assert order.items == [
        {"sku": "CR-1", "name": "Крем", "category": "cosmetics", "qty": 2, "price": 990}
    ]
    assert order.address == "Екатеринбург, ул. Ленина, 1"
    assert order.stored_at == NOW and order.next_attempt_at is None
    assert not (order.invalid or order.duplicate or order.fraud) and order.flag_reason is None
    assert engine.order_ids() == [str(order.id)]
    [arrived] = engine.events
    assert isinstance(arrived, ev.OrderArrived) and arrived.now == NOW.timestamp()
    assert arrived.lead.phone == "+79121234567" and arrived.lead.campaign_id == "confirm"
    assert await outbox(database) == []


async def test_an_order_taken_in_twice_is_stored_and_submitted_once(database: Database) -> None:
    engine = Engine()
    intake = service(database, engine)
    first = await intake.accept(raw(), crm="retailcrm", now=NOW)
    again = await intake.accept(raw(), crm="retailcrm", now=NOW + timedelta(minutes=1))

    assert isinstance(first, StoredOrder) and isinstance(again, StoredOrder)
    assert again.order_id == first.order_id and not again.created and not again.submitted
    assert len(await orders(database)) == 1 and len(engine.events) == 1
    # the same id from another source is another order
    other = await intake.accept(raw(), crm="webhook", now=NOW)
    assert isinstance(other, StoredOrder) and other.created and other.order_id != first.order_id
    assert intake.statistics().already_stored == 1


async def test_a_number_that_cannot_be_called_is_stored_invalid_and_the_crm_told_at_once(
    database: Database,
) -> None:
    engine = Engine()
    result = await service(database, engine).accept(
        raw(phone="8 (800) 555-35-35"), crm="retailcrm", now=NOW
    )

    assert isinstance(result, StoredOrder) and result.status == "invalid" and not result.submitted
    [order] = await orders(database)
    assert order.status == OrderStatus.INVALID and order.invalid and order.phone_e164 == ""
    assert order.flag_reason is not None and "phone not dialled" in order.flag_reason
    [message] = await outbox(database)
    assert message.kind == "outcome" and message.order_id == order.id
    assert message.payload["outcome"] == "invalid" and message.payload["external_id"] == "A-1"
    assert message.payload["reason"] and message.next_try_at == NOW
    assert engine.events == []


@SQLITE_ONLY
async def test_a_second_order_from_the_same_phone_is_a_duplicate_and_not_called(
    database: Database,
) -> None:
    engine = Engine()
    intake = service(database, engine)
    first = await intake.accept(raw(1), crm="retailcrm", now=NOW)
    second = await intake.accept(
        raw(2, phone="+7 912 123 45 67", created_at=NOW.isoformat()), crm="retailcrm", now=NOW
    )

    assert isinstance(first, StoredOrder) and isinstance(second, StoredOrder)
    assert second.status == "duplicate" and not second.submitted
    stored = await orders(database)
    assert stored[1].duplicate and stored[1].duplicate_of == first.order_id
    assert stored[1].flag_reason == f"duplicate of order {first.order_id}"
    [message] = await outbox(database)
    assert message.payload["outcome"] == "duplicate" and message.payload["external_id"] == "A-2"
    assert "A-1" in message.payload["reason"]
    assert engine.order_ids() == [str(first.order_id)]


@SQLITE_ONLY
async def test_a_duplicate_of_an_order_the_customer_rejected_is_flagged_and_called(
    database: Database,
) -> None:
    engine = Engine()
    intake = service(database, engine)
    first = await intake.accept(raw(1), crm="retailcrm", now=NOW)
    assert isinstance(first, StoredOrder)
    async with database.session() as s:
        order = await s.get(Order, first.order_id)
        assert order is not None
        order.status = OrderStatus.REJECTED
    second = await intake.accept(raw(2, created_at=NOW.isoformat()), crm="retailcrm", now=NOW)

    assert isinstance(second, StoredOrder) and second.status == "new" and second.submitted
    assert (await orders(database))[1].duplicate_of == first.order_id


async def test_orders_from_one_phone_taken_in_at_once_find_each_other(database: Database) -> None:
    engine = Engine()
    intake = service(database, engine)
    results = await asyncio.gather(
        *(intake.accept(raw(n, created_at=NOW.isoformat()), crm="w", now=NOW) for n in range(5))
    )

    assert sorted(r.status for r in results if isinstance(r, StoredOrder)) == [
        "duplicate",
        "duplicate",
        "duplicate",
        "duplicate",
        "new",
    ]
    assert len(engine.events) == 1


@SQLITE_ONLY
async def test_a_fraud_base_hit_is_called_with_prepayment_only(database: Database) -> None:
    engine = Engine()
    rules = IntakeRules(fraud_base=FraudBase.from_numbers(["79121234567"]))
    result = await service(database, engine, rules).accept(raw(), crm="retailcrm", now=NOW)

    assert isinstance(result, StoredOrder) and result.submitted
    [order] = await orders(database)
    assert order.fraud and order.prepayment and order.status == "new"
    assert order.flag_reason is not None and "prepayment" in order.flag_reason


@SQLITE_ONLY
async def test_a_phone_from_another_region_waits_for_the_verification_time(
    database: Database,
) -> None:
    engine = Engine()
    rules = IntakeRules(numbering_plan=NumberingPlan.load(), verify_after=timedelta(hours=2))
    # +7 913 is Novosibirsk in the sample plan; delivery to Sverdlovsk
    result = await service(database, engine, rules).accept(
        raw(phone="+79131234567"), crm="retailcrm", now=NOW
    )

    assert isinstance(result, StoredOrder) and result.submitted
    [order] = await orders(database)
    assert order.next_attempt_at == NOW + timedelta(hours=2) and order.status == "new"
    assert order.flag_reason is not None and "region mismatch" in order.flag_reason
    [arrived] = engine.events
    assert isinstance(arrived, ev.OrderArrived)
    assert arrived.lead.next_attempt_at == (NOW + timedelta(hours=2)).timestamp()


@SQLITE_ONLY
async def test_a_refused_order_names_its_fields_and_stores_nothing(database: Database) -> None:
    engine = Engine()
    result = await service(database, engine).accept(
        raw(items=[], phone=None, customer_name="a\x00b"), crm="retailcrm", now=NOW
    )

    assert isinstance(result, Rejected)
    assert {f for f, _ in result.errors} == {"items", "phone", "customer_name"}
    assert await orders(database) == [] and engine.events == []


@SQLITE_ONLY
async def test_an_order_the_engine_refuses_stays_stored_for_the_next_start(
    database: Database,
) -> None:
    engine = Engine()
    engine.refuse = True
    result = await service(database, engine).accept(raw(), crm="retailcrm", now=NOW)

    assert isinstance(result, StoredOrder) and result.created and not result.submitted
    assert [o.status for o in await orders(database)] == ["new"]


# -- the CRM poll ---------------------------------------------------------------------------


@pytest.fixture
async def crm() -> AsyncIterator[tuple[RetailCrmState, LoopbackServer]]:
    state = RetailCrmState()
    server = LoopbackServer(create_app(state))
    await server.start()
    yield state, server
    await server.stop()


def adapter(server: LoopbackServer) -> RetailCrmAdapter:
    async def no_wait(_: float) -> None:
        await asyncio.sleep(0)

    retry = RetryPolicy(attempts=2, backoff_initial_s=0.01, backoff_max_s=0.01)
    settings = RetailCrmSettings(url=server.url, api_key="test-key", site="shop1", retry=retry)
    return RetailCrmAdapter(settings, sleep=no_wait)


class CrashingCursor(CursorFile):
    """A cursor file whose first save fails, as a process killed after storing would."""

    crashes = 1

    def save(self, cursor: str | None) -> None:
        if self.crashes:
            self.crashes -= 1
            raise OSError("killed before the cursor was saved")
        super().save(cursor)


@SQLITE_ONLY
async def test_a_crash_before_the_cursor_is_saved_rereads_the_batch_and_stores_nothing_twice(
    database: Database, crm: tuple[RetailCrmState, LoopbackServer], tmp_path: Path
) -> None:
    state, server = crm
    for n in range(110):
        state.add_order(f"8912{n:07d}", created_at=NOW - timedelta(minutes=110 - n))
    engine = Engine()
    intake = service(database, engine)
    cursors = CrashingCursor(tmp_path / "cursor.json")
    async with adapter(server) as retail:
        with pytest.raises(OSError):
            await intake.pull_once(retail, cursors)
        assert cursors.load() is None  # the batch is stored, the cursor is not
        while await intake.pull_once(retail, cursors):
            pass

    async with database.session() as s:
        count = await s.scalar(select(func.count()).select_from(Order))
        ids = set(await s.scalars(select(Order.external_id)))
        stored = {str(i) for i in await s.scalars(select(Order.id))}
    assert count == 110 and ids == {str(n) for n in range(1, 111)}
    assert len(engine.events) == 110 and set(engine.order_ids()) == stored
    assert cursors.load() == "id:110"
    assert intake.statistics().already_stored == 100


@SQLITE_ONLY
async def test_the_poll_outlives_a_crm_that_is_down_and_takes_every_order_once(
    database: Database, crm: tuple[RetailCrmState, LoopbackServer], tmp_path: Path
) -> None:
    state, server = crm
    for n in range(30):
        state.add_order(f"8912{n:07d}", created_at=NOW)
    state.add_order("12", created_at=NOW)  # not a number anyone can call
    engine = Engine()
    pauses: list[float] = []
    enough = asyncio.Event()

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 6:
            enough.set()
        if len(pauses) == 2:
            state.down = False  # back after two failed polls
        if len(pauses) == 3:
            await server.stop()  # and then gone altogether
        if len(pauses) == 4:
            await server.start()
        await asyncio.sleep(0)

    intake = IntakeService(
        db=database,
        rules=RULES,
        campaign_id="confirm",
        submit=engine.submit,
        now=lambda: NOW.timestamp(),
        sleep=sleep,
    )
    state.down = True
    async with adapter(server) as retail:
        task = asyncio.create_task(intake.run_pull(retail, CursorFile(tmp_path / "c"), 10.0))
        async with asyncio.timeout(20):
            await enough.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    stored = await orders(database)
    assert len(stored) == 31 and len(engine.events) == 30
    assert [o.external_id for o in stored if o.status == "invalid"] == ["31"]
    stats = intake.statistics()
    assert stats.pull_errors >= 3 and stats.stored == 31
    assert max(pauses) >= 30  # a failed poll waits longer than the interval


@SQLITE_ONLY
async def test_an_order_intake_refuses_is_reported_to_the_crm_without_a_status_change(
    database: Database, crm: tuple[RetailCrmState, LoopbackServer], tmp_path: Path
) -> None:
    state, server = crm
    order_id = state.add_order("89121234567", created_at=NOW)
    state.orders[order_id]["items"] = []
    state.history[-1]["order"]["items"] = []
    engine = Engine()
    async with adapter(server) as retail:
        await service(database, engine).pull_once(retail, CursorFile(tmp_path / "c"))

    assert await orders(database) == []
    [message] = await outbox(database)
    payload: Mapping[str, Any] = message.payload
    assert message.order_id is None and payload["outcome"] == "not-taken"
    assert payload["external_id"] == str(order_id) and "items" in payload["reason"]


# -- built from the settings ----------------------------------------------------------------


async def test_the_settings_name_the_adapter_and_the_intake_rules(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from crm_bridge.amocrm import AmoCrmAdapter
    from crm_bridge.bitrix24 import Bitrix24Adapter
    from dialer.config.models import CrmSettings
    from dialer.crm_factory import first_cursor, intake_rules, make_adapter

    key = SecretStr("k")
    retail = make_adapter(CrmSettings(adapter="retailcrm", url="https://s.retail.ru", api_key=key))
    amo = make_adapter(CrmSettings(adapter="amocrm", url="https://s.amocrm.ru", api_key=key))
    bitrix = make_adapter(CrmSettings(adapter="bitrix24", url="https://s.bitrix24.ru/rest/1/k/"))
    try:
        assert isinstance(retail, RetailCrmAdapter) and isinstance(amo, AmoCrmAdapter)
        assert isinstance(bitrix, Bitrix24Adapter)
        assert make_adapter(CrmSettings()) is None
        assert first_cursor(retail, NOW) == "date:2026-01-09 15:00:00"  # a day back, in Moscow
        assert first_cursor(amo, NOW) is None
    finally:
        for adapter in (retail, amo, bitrix):
            if adapter is not None:
                await adapter.aclose()

    FraudBase.from_numbers(["79121234567"]).save(tmp_path / "fraud.npy")
    rules = intake_rules(CrmSettings(default_region="KZ"), fraud_base=tmp_path / "fraud.npy")
    assert rules.default_region == "KZ" and rules.numbering_plan is None
    assert rules.fraud_base is not None and rules.fraud_base.contains("79121234567")
