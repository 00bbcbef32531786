"""Storage on SQLite and PostgreSQL: migrations, round trips, constraints, transactions, queues.

Every test runs once per database (the `db_url` / `database` fixtures in conftest.py) on a
schema of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Column, Integer, MetaData, Table, event, func, select, text
from sqlalchemy.exc import IntegrityError

from dialer.cli import main
from dialer.storage import (
    ChannelIdInUse,
    Database,
    DatabaseUnavailable,
    DispositionExists,
    LiveAttemptExists,
    OrderClosed,
    OrderExists,
    repo,
)
from dialer.storage.migrate import current, current_async, head, upgrade_async
from dialer.storage.models import (
    AuditEntry,
    Base,
    CallAttempt,
    CampaignSetting,
    Disposition,
    Operator,
    OperatorPerformance,
    OperatorSkill,
    Order,
    OrderStatus,
    OutboxEntry,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MSK = timezone(timedelta(hours=3))


async def new_order(db: Database, external_id: str, **fields: Any) -> int:
    values: dict[str, Any] = {
        "crm": "retailcrm",
        "phone_e164": "+79161234567",
        "campaign_id": "confirm",
        "timezone": "Europe/Moscow",
        "created_at": T0,
        "now": T0,
    }
    values.update(fields)
    async with db.session() as s:
        return (await repo.add_order(s, external_id=external_id, **values)).id


async def migration_diff(db: Database, metadata: MetaData) -> list[Any]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), metadata
            )
        )


# --- schema ------------------------------------------------------------------------------


async def test_upgrade_creates_the_schema_on_an_empty_database_and_is_repeatable(
    db_url: str,
) -> None:
    assert await current_async(db_url) is None

    await upgrade_async(db_url)
    await upgrade_async(db_url)

    assert await current_async(db_url) == head()


def test_db_upgrade_command_migrates_the_database_named_by_url(db_url: str) -> None:
    result = CliRunner().invoke(main, ["db", "upgrade", "--url", db_url])

    assert result.exit_code == 0, result.output
    assert current(db_url) == head()


async def test_models_and_migrations_agree(db_url: str) -> None:
    await upgrade_async(db_url)

    async with Database(db_url) as db:
        assert await migration_diff(db, Base.metadata) == []
        # The comparison does see differences: a table the migrations never made.
        extra = MetaData()
        Table("not_migrated", extra, Column("id", Integer, primary_key=True))
        assert await migration_diff(db, extra) != []


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_sqlite_runs_with_write_ahead_logging_and_foreign_keys(database: Database) -> None:
    async with database.session() as s:
        assert (await s.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await s.execute(text("PRAGMA foreign_keys"))).scalar() == 1


async def test_a_reading_session_sees_committed_rows_while_a_writer_holds_its_transaction(
    database: Database,
) -> None:
    # Screen pops and reports must not queue behind the daemon's writer (on SQLite every
    # writing transaction takes the one write lock at its start).
    await new_order(database, "R-1", customer_name="before")
    writing, reader_done = asyncio.Event(), asyncio.Event()

    async def writer() -> bool:
        async with database.session() as s:
            await s.execute(text("UPDATE orders SET customer_name = 'changed'"))
            writing.set()
            async with asyncio.timeout(10):
                await reader_done.wait()
            return True

    task = asyncio.create_task(writer())
    await writing.wait()
    async with database.reading() as s:
        names = (await s.scalars(select(Order.customer_name))).all()
    reader_done.set()
    assert await task  # the reader finished while the writer still held its transaction
    assert names and "changed" not in names  # and saw only what was committed
    async with database.reading() as s:
        assert "changed" in (await s.scalars(select(Order.customer_name))).all()


async def test_an_unreachable_database_is_reported(tmp_path: Any) -> None:
    for url in (
        "postgresql+asyncpg://postgres@127.0.0.1:1/test",
        f"sqlite+aiosqlite:///{tmp_path}/missing/dir/obzvon.db",
    ):
        with pytest.raises(DatabaseUnavailable):
            async with Database(url):
                pass
        with pytest.raises(DatabaseUnavailable):
            await upgrade_async(url)


# --- round trips -------------------------------------------------------------------------


async def test_an_order_round_trips_with_aware_utc_times_and_exact_amounts(
    database: Database,
) -> None:
    placed = datetime(2026, 3, 2, 12, 30, 15, 123456, tzinfo=MSK)
    order_id = await new_order(
        database,
        "A-1",
        created_at=placed,
        customer_name="Ирина",
        items=[{"sku": "cream-50", "qty": 2, "price": "990.00"}],
        amount=Decimal("1980.10"),
        region="RU-MOW",
        category="cosmetics",
        fraud=True,
        flag_reason="phone region differs from address",
    )

    async with database.session() as s:
        order = await s.get(Order, order_id)
        assert order is not None
        assert order.created_at == placed
        assert order.created_at.tzinfo == UTC
        assert order.stored_at == T0
        assert order.amount == Decimal("1980.10")
        assert order.items == [{"sku": "cream-50", "qty": 2, "price": "990.00"}]
        assert order.customer_name == "Ирина"
        assert (order.status, order.attempts, order.fraud, order.duplicate) == (
            "new",
            0,
            True,
            False,
        )


async def test_operators_campaign_settings_performance_and_audit_round_trip(
    database: Database,
) -> None:
    async with database.session() as s:
        s.add_all(
            [
                Operator(
                    id="1001",
                    name="Anna",
                    endpoint="PJSIP/1001",
                    categories_only=["cosmetics"],
                    updated_at=T0,
                    skills=[
                        OperatorSkill(kind="category", value="cosmetics", level=9),
                        OperatorSkill(kind="language", value="ru"),
                    ],
                ),
                CampaignSetting(
                    id="confirm", settings={"pacing": "progressive"}, paused=True, updated_at=T0
                ),
                OperatorPerformance(
                    operator_id="1001",
                    category="cosmetics",
                    successes=3.5,
                    trials=5.25,
                    updated_at=T0,
                ),
                AuditEntry(at=T0, who="2001", action="pause", details={"campaign": "confirm"}),
            ]
        )

    async with database.session() as s:
        operator = await s.get(Operator, "1001")
        assert operator is not None
        assert sorted((k.kind, k.value, k.level) for k in operator.skills) == [
            ("category", "cosmetics", 9),
            ("language", "ru", 1),
        ]
        assert operator.categories_only == ["cosmetics"]
        campaign = await s.get(CampaignSetting, "confirm")
        assert campaign is not None and (campaign.settings, campaign.paused) == (
            {"pacing": "progressive"},
            True,
        )
        performance = await s.get(OperatorPerformance, ("1001", "cosmetics", ""))
        assert performance is not None and (performance.successes, performance.trials) == (
            3.5,
            5.25,
        )
        audit = (await s.scalars(select(AuditEntry))).one()
        assert (audit.at, audit.who, audit.details) == (T0, "2001", {"campaign": "confirm"})
        await s.delete(operator)

    async with database.session() as s:
        # Skills go with their operator.
        assert await s.scalar(select(func.count()).select_from(OperatorSkill)) == 0


async def test_skill_levels_outside_1_to_10_are_refused(database: Database) -> None:
    with pytest.raises(IntegrityError):
        async with database.session() as s:
            s.add(Operator(id="1", name="x", endpoint="PJSIP/1", updated_at=T0))
            await s.flush()
            s.add(OperatorSkill(operator_id="1", kind="category", value="tea", level=11))


async def test_naive_datetimes_are_refused(database: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        await new_order(database, "A-1", created_at=datetime(2026, 3, 2, 9, 0))


async def test_an_order_is_stored_once_per_crm_and_external_id(database: Database) -> None:
    first = await new_order(database, "A-1")

    async with database.session() as s:
        with pytest.raises(OrderExists) as caught:
            await repo.add_order(
                s,
                crm="retailcrm",
                external_id="A-1",
                phone_e164="+79160000000",
                campaign_id="confirm",
                timezone="Europe/Moscow",
                created_at=T0,
                now=T0,
            )
        # The refusal left the transaction usable.
        other = await repo.add_order(
            s,
            crm="bitrix24",
            external_id="A-1",
            phone_e164="+79160000000",
            campaign_id="confirm",
            timezone="Europe/Moscow",
            created_at=T0,
            now=T0,
        )
    assert caught.value.order_id == first
    assert other.id != first


# --- call attempts -----------------------------------------------------------------------


async def test_the_database_refuses_a_second_live_attempt_for_an_order(database: Database) -> None:
    order_id = await new_order(database, "A-1")

    with pytest.raises(IntegrityError):
        async with database.session() as s:
            for channel in ("chan-1", "chan-2"):
                s.add(
                    CallAttempt(
                        channel_id=channel, order_id=order_id, campaign_id="confirm", queued_at=T0
                    )
                )
                await s.flush()


async def test_start_attempt_refuses_an_order_already_being_called(database: Database) -> None:
    order_id = await new_order(database, "A-1")
    async with database.session() as s:
        await repo.start_attempt(s, order_id=order_id, channel_id="chan-1", now=T0)

    async with database.session() as s:
        with pytest.raises(LiveAttemptExists) as caught:
            await repo.start_attempt(s, order_id=order_id, channel_id="chan-2", now=T0)
        assert caught.value.channel_id == "chan-1"
        await repo.finish_attempt(s, "chan-1", ended_at=T0, outcome="busy")
        # Once the first call has ended, the next one may start.
        await repo.start_attempt(s, order_id=order_id, channel_id="chan-2", now=T0)

    async with database.session() as s:
        assert [a.channel_id for a in await repo.live_attempts(s)] == ["chan-2"]
        with pytest.raises(ChannelIdInUse):
            other = await repo.add_order(
                s,
                crm="x",
                external_id="B",
                phone_e164="+7",
                campaign_id="confirm",
                timezone="UTC",
                created_at=T0,
                now=T0,
            )
            await repo.start_attempt(s, order_id=other.id, channel_id="chan-1", now=T0)


async def test_attempts_are_counted_per_customer_local_day(database: Database) -> None:
    # 20:30 UTC is already the next day in Yekaterinburg (UTC+5).
    order_id = await new_order(database, "A-1", timezone="Asia/Yekaterinburg")
    calls = [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=11, minutes=30)]
    async with database.session() as s:
        for n, at in enumerate(calls):
            await repo.start_attempt(s, order_id=order_id, channel_id=f"c{n}", now=at)
            await repo.finish_attempt(
                s, f"c{n}", ended_at=at, outcome="no_answer", next_attempt_at=at
            )

    async with database.session() as s:
        order = await s.get(Order, order_id)
        assert order is not None
        assert (order.attempts, order.attempts_today, order.attempts_day) == (
            3,
            1,
            date(2026, 3, 3),
        )
        assert order.first_call_at == T0
        assert (order.status, order.last_outcome) == ("scheduled", "no_answer")


async def test_finishing_an_attempt_twice_changes_nothing(database: Database) -> None:
    order_id = await new_order(database, "A-1")
    retry = T0 + timedelta(minutes=5)
    async with database.session() as s:
        await repo.start_attempt(s, order_id=order_id, channel_id="c1", now=T0)
        await repo.update_attempt(s, "c1", originated_at=T0, ami_server="pbx1")
        await repo.finish_attempt(
            s, "c1", ended_at=T0, outcome="busy", hangup_cause=17, next_attempt_at=retry
        )
        again = await repo.finish_attempt(s, "c1", ended_at=retry, outcome="failed")

    assert (again.ended_at, again.outcome, again.hangup_cause) == (T0, "busy", 17)
    async with database.session() as s:
        order = await s.get(Order, order_id)
        assert order is not None
        assert (order.status, order.next_attempt_at) == ("scheduled", retry)


async def test_a_closed_order_is_not_called_again(database: Database) -> None:
    order_id = await new_order(database, "A-1")
    async with database.session() as s:
        await repo.store_outcome(s, order_id=order_id, outcome="confirmed", now=T0)

    async with database.session() as s:
        with pytest.raises(OrderClosed):
            await repo.start_attempt(s, order_id=order_id, channel_id="c1", now=T0)


# --- outcomes and the outbox -------------------------------------------------------------


async def call_answered(db: Database, order_id: int, channel: str = "c1") -> None:
    async with db.session() as s:
        await repo.start_attempt(s, order_id=order_id, channel_id=channel, now=T0)
        await repo.update_attempt(s, channel, answered_at=T0, connected_at=T0, operator_id="1001")


async def test_an_outcome_updates_the_order_and_queues_the_crm_update(database: Database) -> None:
    order_id = await new_order(database, "A-1")
    await call_answered(database, order_id)
    async with database.session() as s:
        await repo.store_outcome(
            s,
            order_id=order_id,
            outcome="upsell",
            now=T0,
            channel_id="c1",
            operator_id="1001",
            upsell_items=[{"sku": "serum", "qty": 1}],
            upsell_amount=Decimal("490.00"),
        )
        await repo.finish_attempt(s, "c1", ended_at=T0, outcome="connected")

    async with database.session() as s:
        order = await s.get(Order, order_id)
        (entry,) = await repo.pending_outbox(s, now=T0, limit=10)
    assert order is not None and (order.status, order.last_outcome) == ("confirmed", "upsell")
    assert entry.kind == "outcome"
    assert entry.payload | {"disposition_id": None} == {
        "order_id": order_id,
        "crm": "retailcrm",
        "external_id": "A-1",
        "outcome": "upsell",
        "reason": None,
        "upsell_items": [{"sku": "serum", "qty": 1}],
        "upsell_amount": "490.00",
        "callback_at": None,
        "operator_id": "1001",
        "channel_id": "c1",
        "disposition_id": None,
        "at": T0.isoformat(),
    }


async def test_a_callback_reserved_for_the_operator_is_scheduled(database: Database) -> None:
    order_id = await new_order(database, "A-1")
    await call_answered(database, order_id)
    later = T0 + timedelta(hours=3)
    async with database.session() as s:
        await repo.store_outcome(
            s,
            order_id=order_id,
            outcome="callback",
            now=T0,
            channel_id="c1",
            operator_id="1001",
            callback_at=later,
            callback_mine=True,
        )
        await repo.finish_attempt(s, "c1", ended_at=T0, outcome="connected")
        assert [o.id for o in await repo.due_orders(s, "confirm", later, 10)] == [order_id]

    async with database.session() as s:
        order = await s.get(Order, order_id)
    assert order is not None
    assert (order.status, order.callback_at, order.callback_operator_id) == (
        "callback",
        later,
        "1001",
    )


@pytest.fixture
def outbox_insert_fails() -> Iterator[None]:
    def fail(*_: object) -> None:
        raise RuntimeError("disk full")

    event.listen(OutboxEntry, "before_insert", fail)
    try:
        yield
    finally:
        event.remove(OutboxEntry, "before_insert", fail)


async def counts(db: Database) -> tuple[int, int, str]:
    async with db.session() as s:
        dispositions = await s.scalar(select(func.count()).select_from(Disposition))
        outbox = await s.scalar(select(func.count()).select_from(OutboxEntry))
        status = await s.scalar(select(Order.status))
    return dispositions or 0, outbox or 0, status or ""


async def test_a_failure_while_storing_an_outcome_leaves_neither_row(
    database: Database, outbox_insert_fails: None
) -> None:
    order_id = await new_order(database, "A-1")

    async with database.session() as s:
        with pytest.raises(RuntimeError, match="disk full"):
            await repo.store_outcome(s, order_id=order_id, outcome="confirmed", now=T0)
        # The caller carries on and commits: the half-written outcome is not in it.

    assert await counts(database) == (0, 0, "new")


async def test_a_rolled_back_transaction_keeps_no_outcome(database: Database) -> None:
    order_id = await new_order(database, "A-1")

    with pytest.raises(RuntimeError):
        async with database.session() as s:
            await repo.store_outcome(s, order_id=order_id, outcome="rejected", now=T0)
            raise RuntimeError("crash before commit")

    assert await counts(database) == (0, 0, "new")


async def test_a_call_gets_one_outcome_only(database: Database) -> None:
    order_id = await new_order(database, "A-1")
    await call_answered(database, order_id)
    async with database.session() as s:
        await repo.store_outcome(s, order_id=order_id, outcome="confirmed", now=T0, channel_id="c1")

    async with database.session() as s:
        with pytest.raises(DispositionExists):
            await repo.store_outcome(
                s, order_id=order_id, outcome="rejected", now=T0, channel_id="c1"
            )

    assert await counts(database) == (1, 1, "confirmed")


async def test_the_outbox_leases_retries_gives_up_and_delivers(database: Database) -> None:
    async with database.session() as s:
        first = await repo.add_outbox(s, kind="recording", payload={"n": 1}, now=T0)
        second = await repo.add_outbox(s, kind="recording", payload={"n": 2}, now=T0)
        taken = await repo.pending_outbox(s, now=T0, limit=10, lease_s=60)
        assert [e.id for e in taken] == [first.id, second.id]
        # Leased: not handed out again while the relay is working on them.
        assert await repo.pending_outbox(s, now=T0 + timedelta(seconds=30), limit=10) == []
        await repo.mark_failed(s, first.id, error="HTTP 503", now=T0, retry_at=T0)
        await repo.mark_failed(s, second.id, error="HTTP 400", now=T0, retry_at=None)

    async with database.session() as s:
        (again,) = await repo.pending_outbox(s, now=T0, limit=10)
        assert (again.id, again.attempts, again.last_error) == (
            first.id,
            1,
            f"{T0.isoformat()} HTTP 503",
        )
        assert await repo.mark_delivered(s, [first.id], now=T0) == 1
        assert await repo.mark_delivered(s, [first.id], now=T0) == 0
        assert await repo.pending_outbox(s, now=T0 + timedelta(days=1), limit=10) == []
        dead = await s.get(OutboxEntry, second.id)
        assert dead is not None and dead.dead


# --- what to call next -------------------------------------------------------------------


async def test_due_orders_puts_fresh_orders_first_then_the_longest_overdue(
    database: Database,
) -> None:
    now = T0 + timedelta(hours=1)
    ago = {n: now - timedelta(minutes=n) for n in (1, 5, 10, 20, 30)}
    fresh_new = await new_order(database, "fresh-new", created_at=ago[10])
    fresh_old = await new_order(database, "fresh-old", created_at=ago[20])
    retry_recent = await new_order(
        database, "retry-recent", status=OrderStatus.SCHEDULED, next_attempt_at=ago[5]
    )
    retry_old = await new_order(
        database, "retry-old", status=OrderStatus.SCHEDULED, next_attempt_at=ago[30]
    )
    callback = await new_order(
        database, "callback", status=OrderStatus.CALLBACK, next_attempt_at=ago[1]
    )
    await new_order(
        database, "later", status=OrderStatus.SCHEDULED, next_attempt_at=now + timedelta(hours=1)
    )
    await new_order(database, "other-campaign", campaign_id="reminders")
    await new_order(database, "done", status=OrderStatus.CONFIRMED)
    locked = await new_order(
        database, "locked-out", status=OrderStatus.SCHEDULED, next_attempt_at=ago[30]
    )
    ringing = await new_order(database, "ringing", created_at=ago[30])
    async with database.session() as s:
        # A live attempt hides the order even before its status says so.
        s.add(CallAttempt(channel_id="c1", order_id=ringing, campaign_id="confirm", queued_at=T0))
        # An abandoned customer is not dialled again for 72 hours.
        locked_order = await s.get(Order, locked)
        assert locked_order is not None
        locked_order.abandoned_lockout_until = now + timedelta(hours=70)

    async with database.session() as s:
        due = [o.id for o in await repo.due_orders(s, "confirm", now, 10)]
        first_two = [o.id for o in await repo.due_orders(s, "confirm", now, 2)]
        with_locked = await repo.due_orders(s, "confirm", now, 10, include_locked_out=True)

    assert due == [fresh_old, fresh_new, retry_old, retry_recent, callback]
    assert first_two == [fresh_old, fresh_new]
    assert locked in [o.id for o in with_locked]


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
async def test_due_orders_on_postgresql_skips_orders_another_dialer_holds(
    database: Database,
) -> None:
    ids = [
        await new_order(database, f"o{n}", created_at=T0 + timedelta(seconds=n)) for n in range(4)
    ]

    async with database.session() as first, database.session() as second:
        held = [o.id for o in await repo.due_orders(first, "confirm", T0, 2)]
        rest = [o.id for o in await repo.due_orders(second, "confirm", T0, 10)]

    assert held == ids[:2]
    assert rest == ids[2:]


async def test_a_deferred_order_waits_until_its_time(database: Database) -> None:
    order_id = await new_order(database, "A-1")
    async with database.session() as s:
        await repo.defer_order(s, order_id, until=T0 + timedelta(hours=12))
        assert await repo.due_orders(s, "confirm", T0, 10) == []
        assert len(await repo.due_orders(s, "confirm", T0 + timedelta(hours=12), 10)) == 1


# --- isolation ---------------------------------------------------------------------------


async def test_every_test_starts_from_an_empty_database(database: Database) -> None:
    # Runs after tests that stored orders "A-1" in the same kind of database.
    async with database.session() as s:
        assert await s.scalar(select(func.count()).select_from(Order)) == 0
    await new_order(database, "A-1")
