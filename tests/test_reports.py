"""Reports from the database, on SQLite and PostgreSQL: operators and categories, arrivals
against staffing by hour, abandon rates by campaign and day, today's outcomes for the
wallboard, and the JSON and CSV routes."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest

from dialer.http.app import create_app
from dialer.reports import (
    MAX_DAYS,
    Period,
    ReportError,
    abandons,
    hourly,
    performance,
    reports_router,
    today_by_category,
)
from dialer.storage import repo
from dialer.storage.db import Database
from tests.test_wallboard import TokenControl, bearer, serve

MSK = ZoneInfo("Europe/Moscow")
DAY = date(2026, 6, 15)


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=MSK).astimezone(UTC)


async def call(
    db: Database,
    *,
    stored: datetime,
    category: str = "cosmetics",
    operator: str | None = None,
    talk_s: float = 0,
    outcome: str | None = None,
    upsell: Decimal = Decimal(0),
    attempt: str = "connected",
    campaign: str = "confirm",
) -> None:
    """An order stored at `stored`, called a minute later; answered and connected to
    `operator` for `talk_s` when one is given, then given `outcome` by them."""
    channel = str(uuid.uuid4())
    start = stored + timedelta(minutes=1)
    async with db.session() as session:
        order = await repo.add_order(
            session,
            crm="test",
            external_id=channel,
            phone_e164="+79001234567",
            campaign_id=campaign,
            timezone="Europe/Moscow",
            created_at=stored,
            now=stored,
            category=category,
            amount=Decimal(1990),
        )
        await repo.start_attempt(session, order_id=order.id, channel_id=channel, now=start)
        answered = start + timedelta(seconds=10)
        connected = answered + timedelta(seconds=1) if operator else None
        await repo.update_attempt(
            session, channel, answered_at=answered, connected_at=connected, operator_id=operator
        )
        ended = (connected or answered) + timedelta(seconds=talk_s or 3)
        await repo.finish_attempt(session, channel, ended_at=ended, outcome=attempt)
        if outcome is not None:
            await repo.store_outcome(
                session,
                order_id=order.id,
                outcome=outcome,
                now=ended + timedelta(seconds=5),
                channel_id=channel,
                operator_id=operator,
                reason="too expensive" if outcome == "rejected" else None,
                upsell_amount=upsell,
            )


async def the_day(db: Database) -> None:
    await call(
        db, stored=at(10, 5), operator="1001", talk_s=120, outcome="upsell", upsell=Decimal(990)
    )
    await call(db, stored=at(10, 20), operator="1001", talk_s=60, outcome="confirmed")
    await call(db, stored=at(10, 40), operator="1002", talk_s=90, outcome="rejected")
    await call(
        db,
        stored=at(11, 10),
        category="gadgets",
        operator="1002",
        talk_s=200,
        outcome="upsell",
        upsell=Decimal(1500),
    )
    await call(db, stored=at(11, 30), attempt="abandoned")
    await call(db, stored=at(11, 45), attempt="hung_up")
    await call(db, stored=at(12, 0, DAY + timedelta(days=1)), attempt="abandoned")


async def test_operator_and_category_figures(database: Database) -> None:
    await the_day(database)
    period = Period.of(DAY, DAY, "Europe/Moscow")
    by_operator = await performance(database, period, by="operators")
    rows = {r[0]: dict(zip(by_operator.columns, r, strict=True)) for r in by_operator.rows}
    assert set(rows) == {"1001", "1002"}
    assert rows["1001"] == {
        "operator_id": "1001",
        "dispositions": 2,
        "confirmed": 2,
        "approval_rate": 1.0,
        "upsells": 1,
        "upsell_rate": 0.5,
        "upsell_amount": 990.0,
        "calls_talked": 2,
        "talk_s": 180.0,
        "avg_talk_s": 90.0,
    }
    assert rows["1002"]["approval_rate"] == 0.5 and rows["1002"]["upsell_rate"] == 1.0
    by_category = await performance(database, period, by="categories")
    cats = {r[0]: r for r in by_category.rows}
    assert cats["cosmetics"][1:4] == (3, 2, pytest.approx(0.6667))
    both = await performance(database, period, by="operator-categories")
    assert [r[:2] for r in both.rows] == [
        ("1001", "cosmetics"),
        ("1002", "cosmetics"),
        ("1002", "gadgets"),
    ]


async def test_arrivals_against_staffing_by_local_hour(database: Database) -> None:
    await the_day(database)
    report = await hourly(database, Period.of(DAY, DAY, "Europe/Moscow"))
    rows = [dict(zip(report.columns, r, strict=True)) for r in report.rows]
    assert [(r["hour"], r["arrivals"], r["operators"]) for r in rows] == [
        (10, 3, 2),
        (11, 3, 1),
    ]
    assert rows[0]["arrivals_per_operator"] == 1.5


async def test_abandon_rate_per_campaign_per_day_counts_live_answers(database: Database) -> None:
    await the_day(database)
    report = await abandons(database, Period.of(DAY, DAY + timedelta(days=1), "Europe/Moscow"))
    assert report.rows == (
        ("confirm", "2026-06-15", 6, 1, pytest.approx(0.1667)),
        ("confirm", "2026-06-16", 1, 1, 1.0),
    )


async def test_todays_confirmations_and_upsells_by_category(database: Database) -> None:
    await the_day(database)
    today = await today_by_category(database, now=at(18).timestamp(), tz="Europe/Moscow")
    assert today == {
        "day": "2026-06-15",
        "categories": {
            "cosmetics": {"confirmed": 2, "upsells": 1, "upsell_amount": 990.0},
            "gadgets": {"confirmed": 1, "upsells": 1, "upsell_amount": 1500.0},
        },
    }


def test_a_period_refuses_bad_ranges_and_zones() -> None:
    with pytest.raises(ReportError):
        Period.of(DAY, DAY - timedelta(days=1), "UTC")
    with pytest.raises(ReportError):
        Period.of(DAY, DAY + timedelta(days=MAX_DAYS), "UTC")
    with pytest.raises(ReportError):
        Period.of(DAY, DAY, "Mars/Olympus")
    p = Period.of(DAY, DAY, "Asia/Novosibirsk")
    assert (p.end - p.start) == timedelta(days=1) and p.start.hour == 17


@pytest.fixture
async def api(database: Database) -> AsyncIterator[str]:
    app = create_app(TokenControl())
    app.include_router(
        reports_router(
            db=database,
            authenticate=TokenControl().authenticate,
            now=lambda: at(18).timestamp(),
            tz="Europe/Moscow",
        )
    )
    async with serve(app) as base:
        yield base


async def test_reports_as_json_and_csv_for_supervisors_only(api: str, database: Database) -> None:
    await the_day(database)
    async with httpx.AsyncClient(base_url=api) as c:
        as_json = await c.get("/api/reports/operators", headers=bearer("sup-token"))
        as_csv = await c.get(
            "/api/reports/abandons.csv?from=2026-06-15&to=2026-06-16", headers=bearer("adm-token")
        )
        operator = await c.get("/api/reports/operators", headers=bearer("op-token"))
        unknown = await c.get("/api/reports/salaries", headers=bearer("sup-token"))
        bad_zone = await c.get("/api/reports/hourly?tz=Mars/Olympus", headers=bearer("sup-token"))
        bad_day = await c.get("/api/reports/hourly?from=yesterday", headers=bearer("sup-token"))
    assert as_json.status_code == 200
    body = as_json.json()
    assert (body["from"], body["to"], body["tz"]) == ("2026-06-15", "2026-06-15", "Europe/Moscow")
    assert [r["operator_id"] for r in body["rows"]] == ["1001", "1002"]
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert "obzvon-abandons-2026-06-15-2026-06-16.csv" in as_csv.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(as_csv.text)))
    assert table[0] == ["campaign_id", "day", "live_answers", "abandons", "abandon_rate"]
    assert table[2] == ["confirm", "2026-06-16", "1", "1", "1.0"]
    assert operator.status_code == 403
    assert unknown.status_code == 422 and unknown.json()["field"] == "name"
    assert bad_zone.status_code == 422 and "time zone" in bad_zone.json()["error"]
    assert bad_day.status_code == 422
