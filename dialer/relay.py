"""The outbox relay: what obzvon stored for the CRM, delivered to it, each message once.

`OutboxRelay.run()` leases due outbox rows, sends ``outcome`` rows one by one with
`update_order` and ``call`` rows in batches of at most 50 with `upload_calls`, and marks a row
delivered only once the CRM has acknowledged it. What a caller may rely on:

- **Nothing stored is lost.** A row is delivered, waiting for a retry, or dead-lettered with
  the CRM's own message for an admin (`dialer.outbox_admin.dead_letters`); never dropped. A
  crash mid-delivery sends the row again after its lease: the CRM sets the same status again,
  and a call it already has counts as delivered (`UploadResult.duplicates`).
- **In order per order.** An order's outcome rows reach the CRM in the order they were
  stored: a later one waits while an earlier one waits for a retry, so a "callback" retried
  late never overwrites a "confirmed". Calls are independent records keyed by ChannelId and
  do not wait for each other or for outcomes.
- **Whose fault decides** (`crm_bridge.errors`): `CrmRejected` dead-letters the row with the
  CRM's message; `CrmUnavailable` (and an answer not in the CRM's format) retries it with
  backoff and pauses delivery until then, since the rest would fail too; `CrmAuthError` stops
  delivery, keeps every row and raises an alarm, trying again every `auth_retry_s`.
- **SLA clock.** A row not acknowledged within `sla_s` (15 minutes) of being stored is a
  breach, counted once, logged and published as ``crm/sla-breach`` (`dialer.relay_stats`);
  ``crm/stats`` (sync lag, backlog, oldest undelivered, breaches) every `stats_interval_s`.

No error ends `run()`: a CRM that is down, a database that is away, a bug in one message are
logged and tried again. Rows of another CRM than the adapter's are dead-lettered, saying so.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select, update

from crm_bridge.adapter import CallRecord, CrmAdapter, UploadResult
from crm_bridge.errors import CrmAuthError, CrmProtocolError, CrmRejected, CrmUnavailable
from dialer.crm_messages import DEFAULT_STATUSES, MalformedMessage, call_record, order_update
from dialer.events_schema import CRM_STATS_TOPIC
from dialer.outbox_admin import backlog
from dialer.relay_stats import DeliveryLedger, Publish, RelayStatistics
from dialer.storage.db import Database
from dialer.storage.models import OutboxEntry
from dialer.storage.outbox import mark_delivered, mark_failed, pending_outbox

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
# Overdue rows looked at per SLA check; more than this are counted on later checks.
OVERDUE_SCAN: Final = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayPolicy:
    """How the relay paces itself. Times are seconds of the relay's clock."""

    calls_per_batch: int = 50
    lease_rows: int = 100
    # Longer than the adapter's own retries (about 30 s) over a whole lease: a lease that ran
    # out mid-delivery would let a second relay send the same rows.
    lease_s: float = 300.0
    poll_s: float = 1.0
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 300.0
    auth_retry_s: float = 300.0
    sla_s: float = 900.0
    stats_interval_s: float = 5.0
    lag_samples: int = 1000


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    order_id: int | None
    kind: str
    payload: Mapping[str, Any]
    stored_at: float
    attempts: int


class _Halt(Exception):
    """Stop this pass: nothing more will get through before `until`."""

    def __init__(self, until: float) -> None:
        self.until = until


class OutboxRelay:
    """Delivers the outbox to `adapter` (see the module docstring).

    `now` and `sleep` are the daemon's clock; `publish` the event bus's (`EventBus.publish`);
    `statuses` maps outcomes to CRM statuses (`dialer.crm_messages.DEFAULT_STATUSES`);
    `record_url` makes a recording's link for the CRM from a ChannelId.
    """

    def __init__(
        self,
        db: Database,
        adapter: CrmAdapter,
        now: Callable[[], float],
        sleep: Sleep,
        *,
        publish: Publish | None = None,
        policy: RelayPolicy | None = None,
        statuses: Mapping[str, str | None] = DEFAULT_STATUSES,
        record_url: Callable[[str], str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._db, self._adapter, self._now, self._sleep = db, adapter, now, sleep
        self._publish: Publish = publish or (lambda _topic, _payload: None)
        self._policy = policy or RelayPolicy()
        self._statuses, self._record_url = statuses, record_url
        self._rng = rng or random.Random()
        self._ledger = DeliveryLedger(
            sla_s=self._policy.sla_s, lag_samples=self._policy.lag_samples, publish=self._publish
        )

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until cancelled; publish ``crm/stats`` every `stats_interval_s`."""
        next_stats = self._now()
        while True:
            handled = 0
            try:
                handled = await self.deliver_once()
            except Exception as exc:  # the database away, a bug: log, wait, try again
                log.exception("outbox relay: a delivery pass failed")
                self._ledger.last_error = f"{type(exc).__name__}: {exc}"
            if self._now() >= next_stats:
                next_stats = self._now() + self._policy.stats_interval_s
                try:
                    self._publish(CRM_STATS_TOPIC, (await self.refresh()).payload())
                except Exception:
                    log.exception("outbox relay: reading the backlog failed")
            if handled == 0:
                await self._sleep(self._policy.poll_s)

    def statistics(self) -> RelayStatistics:
        return self._ledger.snapshot(self._now())

    async def refresh(self) -> RelayStatistics:
        """Count the backlog and the dead letters in the database, count rows waiting past
        the SLA as breaches, and return the snapshot."""
        now = self._now()
        found = await backlog(
            self._db, overdue_before=_dt(now - self._policy.sla_s), overdue_limit=OVERDUE_SCAN
        )
        self._ledger.waiting(
            count=found.count,
            oldest=found.oldest.timestamp() if found.oldest is not None else None,
            dead=found.dead,
            overdue=[(i, kind, at.timestamp()) for i, kind, at in found.overdue],
            now=now,
        )
        return self.statistics()

    # -- one pass ---------------------------------------------------------------------------

    async def deliver_once(self) -> int:
        """Lease due rows and deliver them; returns how many were settled (delivered, dead or
        put back for a retry). Database errors propagate; leased rows then wait out their
        lease."""
        now = self._now()
        if now < self._ledger.paused_until:
            return 0
        rows = await self._lease(now)
        todo = {r.id: r for r in rows}
        try:
            for row in rows:
                if row.kind not in ("outcome", "call"):
                    await self._dead_letter([row], f"the relay does not deliver {row.kind!r}", todo)
                elif row.payload.get("crm") != self._adapter.name:
                    crm = row.payload.get("crm")
                    await self._dead_letter(
                        [row], f"no CRM adapter for {crm!r} is configured", todo
                    )
            await self._outcomes([r for r in rows if r.kind == "outcome" and r.id in todo], todo)
            calls = [r for r in rows if r.kind == "call" and r.id in todo]
            for start in range(0, len(calls), self._policy.calls_per_batch):
                await self._calls(calls[start : start + self._policy.calls_per_batch], todo)
        except _Halt as halt:
            self._ledger.paused_until = halt.until
            await self._release(list(todo), until=halt.until)
            todo.clear()
        return len(rows) - len(todo)

    async def _lease(self, now: float) -> list[_Row]:
        async with self._db.session() as s:
            entries = await pending_outbox(
                s, now=_dt(now), limit=self._policy.lease_rows, lease_s=self._policy.lease_s
            )
            leased = {e.id for e in entries}
            orders = {e.order_id for e in entries if e.kind == "outcome" and e.order_id}
            waiting: dict[int, list[tuple[int, datetime]]] = {}
            if orders:
                earlier = await s.execute(
                    select(OutboxEntry.id, OutboxEntry.order_id, OutboxEntry.next_try_at).where(
                        OutboxEntry.kind == "outcome",
                        OutboxEntry.order_id.in_(orders),
                        OutboxEntry.delivered_at.is_(None),
                        OutboxEntry.dead.is_(False),
                    )
                )
                for entry_id, order_id, next_try in earlier:
                    if entry_id not in leased and order_id is not None:
                        waiting.setdefault(order_id, []).append((entry_id, next_try))
            rows = []
            for e in entries:
                blockers = [t for i, t in waiting.get(e.order_id or 0, ()) if i < e.id]
                if e.kind == "outcome" and blockers:
                    # an earlier outcome of this order waits for a retry: go after it
                    e.next_try_at = max([*blockers, _dt(now)])
                    continue
                stored = e.created_at.timestamp()
                rows.append(_Row(e.id, e.order_id, e.kind, e.payload, stored, e.attempts))
        return rows

    async def _outcomes(self, rows: Sequence[_Row], todo: dict[int, _Row]) -> None:
        held: dict[int, float] = {}  # order → when its later outcomes may go
        for row in rows:
            if row.order_id is not None and row.order_id in held:
                await self._release([row.id], until=held[row.order_id])
                todo.pop(row.id, None)
                continue
            try:
                change = order_update(row.payload, statuses=self._statuses)
            except MalformedMessage as exc:
                await self._dead_letter([row], f"malformed outcome: {exc}", todo)
                continue
            retry_at = await self._send([row], self._adapter.update_order(change), todo)
            if retry_at is not None:
                if row.order_id is not None:
                    held[row.order_id] = retry_at
            elif row.id in todo:  # neither retried nor dead-lettered: acknowledged
                await self._acknowledged([row], todo)

    async def _calls(self, rows: Sequence[_Row], todo: dict[int, _Row]) -> None:
        records: list[CallRecord] = []
        by_channel: dict[str, list[_Row]] = {}
        for row in rows:
            try:
                record = call_record(row.payload, record_url=self._record_url)
            except MalformedMessage as exc:
                await self._dead_letter([row], f"malformed call: {exc}", todo)
                continue
            if record.external_id not in by_channel:
                records.append(record)
            by_channel.setdefault(record.external_id, []).append(row)
        if not records:
            return
        sent = [r for group in by_channel.values() for r in group]
        result: list[UploadResult] = []

        async def upload() -> None:
            result.append(await self._adapter.upload_calls(records))

        if await self._send(sent, upload(), todo) is not None or not result:
            return
        done = [r for channel in result[0].done for r in by_channel.get(channel, ())]
        await self._acknowledged(done, todo)
        for refused in result[0].rejected:
            refused_rows = by_channel.get(refused.external_id, [])
            await self._dead_letter(refused_rows, str(refused.error), todo)

    async def _send(
        self, rows: Sequence[_Row], request: Awaitable[object], todo: dict[int, _Row]
    ) -> float | None:
        """Await `request`, settling `rows` if it fails. Returns the retry time when they are
        to be tried again, None when it succeeded or they were dead-lettered. Raises `_Halt`
        when nothing else can get through now."""
        now = self._now()
        try:
            await request
        except CrmRejected as exc:
            await self._dead_letter(rows, str(exc), todo)
            return None
        except CrmAuthError as exc:
            if not self._ledger.auth_failed:
                log.error(
                    "ALARM: %s refused obzvon's credentials (%s); outbox delivery stopped, "
                    "every message kept; trying again every %.0f s",
                    self._adapter.name,
                    exc,
                    self._policy.auth_retry_s,
                )
            self._ledger.auth_failed = True
            self._ledger.last_error = f"credentials refused: {exc}"
            self._publish(CRM_STATS_TOPIC, self.statistics().payload())
            raise _Halt(now + self._policy.auth_retry_s) from None
        except (CrmUnavailable, CrmProtocolError) as exc:
            retry_at = await self._retry(rows, str(exc), todo)
            if isinstance(exc, CrmProtocolError):
                log.error("ALARM: %s answered outside its API: %s", self._adapter.name, exc)
            else:
                log.warning("%s unavailable: %s; retrying later", self._adapter.name, exc)
            raise _Halt(retry_at) from None
        except Exception as exc:  # a bug in an adapter must not hold up the other messages
            log.exception("delivering outbox rows %s failed", [r.id for r in rows])
            return await self._retry(rows, f"{type(exc).__name__}: {exc}", todo)
        return None

    # -- settling rows ----------------------------------------------------------------------

    async def _acknowledged(self, rows: Sequence[_Row], todo: dict[int, _Row]) -> None:
        if not rows:
            return
        now = self._now()
        async with self._db.session() as s:
            await mark_delivered(s, [r.id for r in rows], now=_dt(now))
        if self._ledger.auth_failed:
            log.warning("%s accepts obzvon's credentials again; delivering", self._adapter.name)
            self._ledger.auth_failed = False
        for row in rows:
            todo.pop(row.id, None)
        self._ledger.acknowledged(((r.id, r.kind, r.stored_at) for r in rows), now)

    async def _dead_letter(self, rows: Sequence[_Row], error: str, todo: dict[int, _Row]) -> None:
        now = _dt(self._now())
        async with self._db.session() as s:
            for row in rows:
                await mark_failed(s, row.id, error=error, now=now, retry_at=None)
        for row in rows:
            log.error(
                "outbox row %d (%s, order #%s) dead-lettered: %s",
                row.id,
                row.kind,
                row.order_id,
                error,
            )
            todo.pop(row.id, None)
        self._ledger.dead((r.id for r in rows), error)

    async def _retry(self, rows: Sequence[_Row], error: str, todo: dict[int, _Row]) -> float:
        now, p = self._now(), self._policy
        tries = min((r.attempts for r in rows), default=0)
        delay = min(p.backoff_max_s, p.backoff_initial_s * 2.0 ** min(tries, 30))
        retry_at = now + delay * (0.5 + self._rng.random() / 2)  # jitter: relays do not sync up
        async with self._db.session() as s:
            for row in rows:
                await mark_failed(s, row.id, error=error, now=_dt(now), retry_at=_dt(retry_at))
        for row in rows:
            todo.pop(row.id, None)
        self._ledger.retried += len(rows)
        self._ledger.last_error = error
        return retry_at

    async def _release(self, ids: Sequence[int], *, until: float) -> None:
        """Give leased rows back unsent, due at `until`; not counted as an attempt."""
        if not ids:
            return
        async with self._db.session() as s:
            await s.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id.in_(list(ids)), OutboxEntry.delivered_at.is_(None))
                .values(next_try_at=_dt(until))
            )


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
