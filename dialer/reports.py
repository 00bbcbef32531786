"""Reports from the database: how operators and categories did, arrivals against staffing, and
abandon rates, for a range of days in one time zone.

Every report is a `Report`: named columns and rows of plain values, which `reports_router()`
serves as JSON (``GET /api/reports/{name}``) or CSV (``GET /api/reports/{name}.csv``), with
``from`` and ``to`` (local days, both included) and ``tz`` as query parameters. The queries
select plain columns with portable SQL (SQLite and PostgreSQL alike); bucketing by local hour
or day and time arithmetic happen in Python, which knows time zones the same way on both
databases. A range is at most `MAX_DAYS` days, so a report reads a bounded number of rows.

Definitions (what a reader of a report may rely on):

- approval rate: confirmed (with or without upsell) over all dispositions;
- upsell rate: confirmed with upsell over confirmed; upsell amount: the sum of those upsells;
- talk time: connected to hang-up of the attempts the operator took, counted on the day the
  call was connected;
- staffing of an hour: the operators who were connected to at least one customer in that hour
  (obzvon does not yet keep a history of log-ins);
- abandon rate: abandoned calls over live answers (the regulators' measure), by the day the
  customer answered.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time, and
# the dependencies are local to reports_router().

import csv
import io
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final, Self
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy import select

from dialer.http.auth import Authenticate, Permission, require
from dialer.http.control import ControlError
from dialer.http.schemas import Principal
from dialer.storage.db import Database
from dialer.storage.models import CallAttempt, Disposition, Order, Outcome

MAX_DAYS: Final = 92
CONFIRMED: Final = frozenset({Outcome.CONFIRMED.value, Outcome.UPSELL.value})
ABANDONED: Final = "abandoned"


class ReportError(ValueError):
    """A report was asked for with a bad range, time zone or name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    """Local days `first`..`last` (both included) in time zone `tz`."""

    first: date
    last: date
    tz: ZoneInfo

    @classmethod
    def of(cls, first: date, last: date, tz: str) -> Self:
        """Raises `ReportError` for an unknown zone, `last` before `first` or too many days."""
        try:
            zone = ZoneInfo(tz)
        except (KeyError, ValueError) as exc:
            raise ReportError(f"unknown time zone {tz!r}") from exc
        if last < first:
            raise ReportError("the range ends before it starts")
        if (last - first).days >= MAX_DAYS:
            raise ReportError(f"at most {MAX_DAYS} days at a time")
        return cls(first=first, last=last, tz=zone)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), self.tz).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(0), self.tz).astimezone(UTC)

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.tz)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def as_json(self, period: Period) -> dict[str, Any]:
        return {
            "report": self.name,
            "from": period.first.isoformat(),
            "to": period.last.isoformat(),
            "tz": period.tz.key,
            "columns": list(self.columns),
            "rows": [dict(zip(self.columns, r, strict=True)) for r in self.rows],
        }

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(self.columns)
        writer.writerows([("" if v is None else v) for v in r] for r in self.rows)
        return out.getvalue()


def _rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


# -- operators and categories ------------------------------------------------------------------

PERFORMANCE_COLUMNS: Final = (
    "dispositions",
    "confirmed",
    "approval_rate",
    "upsells",
    "upsell_rate",
    "upsell_amount",
    "calls_talked",
    "talk_s",
    "avg_talk_s",
)
GROUPINGS: Final[dict[str, tuple[str, ...]]] = {
    "operators": ("operator_id",),
    "categories": ("category",),
    "operator-categories": ("operator_id", "category"),
}


async def performance(db: Database, period: Period, *, by: str = "operators") -> Report:
    """Approval and upsell rates, upsell amount and talk time per operator, per category or per
    operator × category (`by` is a key of `GROUPINGS`)."""
    keys = GROUPINGS.get(by)
    if keys is None:
        raise ReportError(f"no grouping {by!r}; use one of {', '.join(GROUPINGS)}")

    def key(operator_id: str | None, category: str | None) -> tuple[str, ...]:
        values = {"operator_id": operator_id or "–", "category": category or "–"}
        return tuple(values[k] for k in keys)

    totals: dict[tuple[str, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, Decimal(0), 0, 0.0])
    dispositions = (
        select(
            Disposition.operator_id,
            Order.category,
            Disposition.outcome,
            Disposition.upsell_amount,
        )
        .join(Order, Order.id == Disposition.order_id)
        .where(Disposition.created_at >= period.start, Disposition.created_at < period.end)
    )
    talks = (
        select(
            CallAttempt.operator_id, Order.category, CallAttempt.connected_at, CallAttempt.ended_at
        )
        .join(Order, Order.id == CallAttempt.order_id)
        .where(
            CallAttempt.connected_at >= period.start,
            CallAttempt.connected_at < period.end,
            CallAttempt.ended_at.is_not(None),
        )
    )
    async with db.reading() as session:
        for operator_id, category, outcome, amount in await session.execute(dispositions):
            t = totals[key(operator_id, category)]
            t[0] += 1
            if outcome in CONFIRMED:
                t[1] += 1
            if outcome == Outcome.UPSELL.value:
                t[2] += 1
                t[3] += amount or Decimal(0)
        for operator_id, category, connected, ended in await session.execute(talks):
            if connected is None or ended is None:  # excluded by the query; for the checker
                continue
            t = totals[key(operator_id, category)]
            t[4] += 1
            t[5] += max(0.0, (ended - connected).total_seconds())
    rows = []
    for k in sorted(totals):
        n, confirmed, upsells, amount, talked, talk_s = totals[k]
        rows.append(
            (
                *k,
                n,
                confirmed,
                _rate(confirmed, n),
                upsells,
                _rate(upsells, confirmed),
                float(amount),
                talked,
                round(talk_s, 1),
                round(talk_s / talked, 1) if talked else None,
            )
        )
    return Report(name=by, columns=(*keys, *PERFORMANCE_COLUMNS), rows=tuple(rows))


# -- arrivals against staffing, by hour ---------------------------------------------------------


async def hourly(db: Database, period: Period) -> Report:
    """Per local hour with any activity: orders arrived (stored), calls connected, and the
    operators connected to a customer in that hour."""
    arrivals: dict[datetime, int] = defaultdict(int)
    connected: dict[datetime, int] = defaultdict(int)
    staff: dict[datetime, set[str]] = defaultdict(set)

    def hour(at: datetime) -> datetime:
        return period.local(at).replace(minute=0, second=0, microsecond=0)

    orders = select(Order.stored_at).where(
        Order.stored_at >= period.start, Order.stored_at < period.end
    )
    calls = select(CallAttempt.connected_at, CallAttempt.operator_id).where(
        CallAttempt.connected_at >= period.start, CallAttempt.connected_at < period.end
    )
    async with db.reading() as session:
        for (stored_at,) in await session.execute(orders):
            arrivals[hour(stored_at)] += 1
        for connected_at, operator_id in await session.execute(calls):
            if connected_at is None:  # excluded by the query; for the checker
                continue
            h = hour(connected_at)
            connected[h] += 1
            if operator_id:
                staff[h].add(operator_id)
    rows = []
    for h in sorted(set(arrivals) | set(connected)):
        operators = len(staff[h])
        per_operator = round(arrivals[h] / operators, 2) if operators else None
        rows.append(
            (h.date().isoformat(), h.hour, arrivals[h], connected[h], operators, per_operator)
        )
    columns = ("day", "hour", "arrivals", "calls_connected", "operators", "arrivals_per_operator")
    return Report(name="hourly", columns=columns, rows=tuple(rows))


# -- abandon rate per campaign per day ----------------------------------------------------------


async def abandons(db: Database, period: Period) -> Report:
    """Live answers, abandoned calls and their ratio per campaign and local day."""
    answers: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0])
    query = select(CallAttempt.campaign_id, CallAttempt.answered_at, CallAttempt.outcome).where(
        CallAttempt.answered_at >= period.start, CallAttempt.answered_at < period.end
    )
    async with db.reading() as session:
        for campaign_id, answered_at, outcome in await session.execute(query):
            if answered_at is None:  # excluded by the query; for the checker
                continue
            counts = answers[(campaign_id, period.local(answered_at).date())]
            counts[0] += 1
            if outcome == ABANDONED:
                counts[1] += 1
    rows = tuple(
        (campaign, day.isoformat(), n, dropped, _rate(dropped, n))
        for (campaign, day), (n, dropped) in sorted(answers.items())
    )
    columns = ("campaign_id", "day", "live_answers", "abandons", "abandon_rate")
    return Report(name="abandons", columns=columns, rows=rows)


REPORTS: Final[dict[str, Callable[[Database, Period], Any]]] = {
    "operators": lambda db, p: performance(db, p, by="operators"),
    "categories": lambda db, p: performance(db, p, by="categories"),
    "operator-categories": lambda db, p: performance(db, p, by="operator-categories"),
    "hourly": hourly,
    "abandons": abandons,
}


async def build(db: Database, name: str, period: Period) -> Report:
    """The report `name` (a key of `REPORTS`) over `period`; `ReportError` for another name."""
    make = REPORTS.get(name)
    if make is None:
        raise ReportError(f"no report {name!r}; use one of {', '.join(REPORTS)}")
    report: Report = await make(db, period)
    return report


# -- today, for the wallboard -------------------------------------------------------------------


async def today_by_category(db: Database, *, now: float, tz: str) -> dict[str, Any]:
    """Today's (local day in `tz`) confirmations and upsells per category, for the wallboard:
    ``{"day": "2026-06-15", "categories": {"cosmetics": {"confirmed": 12, "upsells": 9,
    "upsell_amount": 13450.0}}}``; confirmed counts include those with an upsell."""
    day = datetime.fromtimestamp(now, ZoneInfo(tz)).date()
    period = Period.of(day, day, tz)
    report = await performance(db, period, by="categories")
    categories = {
        row[0]: {"confirmed": row[2], "upsells": row[4], "upsell_amount": row[6]}
        for row in report.rows
        if row[1]  # categories with dispositions today
    }
    return {"day": day.isoformat(), "categories": categories}


# -- HTTP ---------------------------------------------------------------------------------------


class BadReport(ControlError):
    status = 422


def reports_router(
    *,
    db: Database,
    authenticate: Authenticate,
    now: Callable[[], float],
    tz: str = "UTC",
) -> APIRouter:
    """``GET /api/reports/{name}`` (JSON) and ``GET /api/reports/{name}.csv``, for supervisors
    and admins. ``from`` / ``to`` default to today in ``tz`` (default: `tz`), the daemon's
    clock (`now`) telling what today is."""
    router = APIRouter()
    Reader = Annotated[Principal, Depends(require(authenticate, Permission.REPORTS))]
    Day = Annotated[date | None, Query()]

    async def make(name: str, start: date | None, end: date | None, zone: str | None) -> Any:
        zone = zone or tz
        try:
            today = datetime.fromtimestamp(now(), ZoneInfo(zone)).date()
            period = Period.of(start or end or today, end or start or today, zone)
            return await build(db, name, period), period
        except (ReportError, KeyError, ValueError) as exc:
            field = "name" if "report" in str(exc) else "from"
            raise BadReport(str(exc).strip("'\""), field=field) from None

    # The CSV route first: "{name}" alone would also match "operators.csv".
    @router.get("/api/reports/{name}.csv")
    async def report_csv(
        name: str,
        _: Reader,
        start: Annotated[Day, Query(alias="from")] = None,
        end: Annotated[Day, Query(alias="to")] = None,
        zone: Annotated[str | None, Query(alias="tz", max_length=64)] = None,
    ) -> Response:
        report, period = await make(name, start, end, zone)
        filename = f"obzvon-{name}-{period.first}-{period.last}.csv"
        return Response(
            report.as_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @router.get("/api/reports/{name}")
    async def report_json(
        name: str,
        _: Reader,
        start: Annotated[Day, Query(alias="from")] = None,
        end: Annotated[Day, Query(alias="to")] = None,
        zone: Annotated[str | None, Query(alias="tz", max_length=64)] = None,
    ) -> dict[str, Any]:
        report, period = await make(name, start, end, zone)
        result: dict[str, Any] = report.as_json(period)
        return result

    return router
