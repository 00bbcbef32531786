"""`Store`: what the engine decides, written to the database.

The daemon's one writer task hands these to `Store.write_many` in the order the engine issued
them, as many as are waiting in one transaction, each in a savepoint of its own (a write the
database refuses is undone alone):

- `StartAttempt` writes the attempt row with its ChannelId before the Originate is sent;
  the database refuses a second live attempt for an order, and then nothing is dialled;
- `StoreAttempt` ends the attempt and queues the call for the CRM (outbox kind ``call``);
- `StoreOutcome` sets the order's status and next attempt; an operator's outcome is stored
  with its disposition and outbox row (``outcome``) together, and so is a final "unreached";
- `StoreInbound`, `StoreTransfer`: an inbound call's record, a transfer.

Metrics and the routing's learning hear of a write only once it is committed. Reads (screen
pops, the hopper at start-up) use `Database.reading()` and never wait for the writer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.masking import mask_phone
from dialer.engine import commands as cmd
from dialer.engine.scheduling import Lead
from dialer.metrics import EventMetrics
from dialer.storage import repo
from dialer.storage.db import STRAIGHT_THROUGH, Database
from dialer.storage.models import CallAttempt, CallTransfer, Order, OrderStatus, Outcome
from dialer.storage.models import InboundCall as InboundCallRow
from dialer.storage.outbox import LOCAL_CRM, add_outbox

DISPOSITIONS = frozenset(o.value for o in Outcome)
STORE_COMMANDS = (cmd.StoreAttempt, cmd.StoreOutcome, cmd.StoreInbound, cmd.StoreTransfer)
# The outcome of an attempt that was live when the daemon stopped.
LOST = "lost"


@dataclass(frozen=True, slots=True)
class StartAttempt:
    """The attempt row an Originate needs before it is sent, as at `now`."""

    command: cmd.Originate
    now: float


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order stored as given (`repo.add_order`'s fields, no intake rules), as at `now`; its
    result is the order's `Lead`."""

    fields: Mapping[str, Any]
    now: float


# What the daemon's writer hands to `Store.write_many`.
Write = (
    StartAttempt
    | NewOrder
    | cmd.StoreAttempt
    | cmd.StoreOutcome
    | cmd.StoreInbound
    | cmd.StoreTransfer
)
# What `_write` gives back: the write's result, and what to do once it is committed.
_Written = tuple[object, Callable[[], None] | None]


@dataclass(frozen=True, slots=True)
class _Learned:
    """An operator's outcome, for the metrics and the routing's book once it is stored."""

    operator_id: str | None
    category: str | None
    campaign_id: str
    outcome: str
    value: float


def ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def lead_of(order: Order) -> Lead:
    """The scheduler's view of a stored order."""
    return Lead(
        order_id=str(order.id),
        phone=order.phone_e164,
        campaign_id=order.campaign_id,
        timezone=order.timezone,
        created_at=order.stored_at.timestamp(),
        category=order.category,
        region=order.region,
        amount=float(order.amount),
        attempts=order.attempts,
        attempts_today=order.attempts_today,
        attempts_day=order.attempts_day,
        next_attempt_at=epoch(order.next_attempt_at),
        callback_at=epoch(order.callback_at) if order.status == OrderStatus.CALLBACK else None,
        callback_operator_id=(
            order.callback_operator_id if order.status == OrderStatus.CALLBACK else None
        ),
        lockout_until=epoch(order.abandoned_lockout_until),
        last_outcome=order.last_outcome,
    )


class Store:
    def __init__(
        self,
        db: Database,
        *,
        now: Callable[[], float],
        ami_server: str | None = None,
        on_outcome: Callable[..., None] | None = None,
        metrics: EventMetrics | None = None,
    ) -> None:
        self._db = db
        self._now = now  # the daemon's clock: simulated in the demo
        self._ami_server = ami_server
        # told of every operator outcome once it is stored (learned routing listens)
        self._on_outcome = on_outcome
        self._metrics = metrics

    async def attempt_started(self, command: cmd.Originate, now: float) -> None:
        """Store the attempt row of `command` (in a transaction of its own); raises what the
        database refused."""
        await self._one(StartAttempt(command, now))

    async def apply(self, command: cmd.Command) -> None:
        """Store one of the engine's Store* commands in a transaction of its own."""
        if not isinstance(command, STORE_COMMANDS):
            raise TypeError(f"Store cannot apply {type(command).__name__}")
        await self._one(command)

    async def write_many(self, writes: Sequence[Write]) -> list[object]:
        """Store `writes` in order in one transaction (one commit for many: the daemon's writer
        keeps up at tens of calls a second): a write the database refuses is undone alone and
        its error (an `Exception`) is returned in its place, the others are kept and give
        their result (a `Lead` for a `NewOrder`, else None). If the transaction itself fails,
        that error is raised and nothing is kept.

        Refusals are rare, so the batch is first written straight through; only if a write
        fails is it written again with a savepoint around each write (two more statements
        per write, which would otherwise be paid on every one)."""
        try:
            results, after = await self._batch(writes, isolated=False)
        except _Refused:
            results, after = await self._batch(writes, isolated=True)
        for hook in after:  # metrics and learning hear only of what was committed
            hook()
        return results

    async def _batch(
        self, writes: Sequence[Write], *, isolated: bool
    ) -> tuple[list[object], list[Callable[[], None]]]:
        results: list[object] = []
        after: list[Callable[[], None]] = []
        async with self._db.session() as session:
            session.info[STRAIGHT_THROUGH] = not isolated
            _hold_loaded_objects(session)
            await _prefetch(session, writes)
            for write in writes:
                try:
                    if isolated:
                        async with session.begin_nested():
                            result, done = await self._write(session, write)
                    else:
                        result, done = await self._write(session, write)
                except Exception as exc:
                    if not isolated:
                        raise _Refused from exc  # the transaction is rolled back
                    results.append(exc)  # reported to the caller, in the write's place
                else:
                    results.append(result)
                    if done is not None:
                        after.append(done)
        return results, after

    async def add_order(self, write: NewOrder) -> Lead:
        """Store an order (in a transaction of its own); returns its lead."""
        lead = await self._one(write)
        assert isinstance(lead, Lead)
        return lead

    async def _one(self, write: Write) -> object:
        [result] = await self.write_many([write])
        if isinstance(result, Exception):
            raise result
        return result

    async def _write(self, session: AsyncSession, write: Write) -> _Written:
        """Write one item in `session`: its result, and what to do once it is committed."""
        match write:
            case StartAttempt():
                return None, await self._start(session, write)
            case NewOrder():
                at = datetime.fromtimestamp(write.now, UTC)
                order = await repo.add_order(session, created_at=at, now=at, **write.fields)
                return lead_of(order), None
            case cmd.StoreAttempt():
                return None, await self._attempt(session, write)
            case cmd.StoreOutcome():
                return None, await self._outcome(session, write)
            case cmd.StoreInbound():
                await self._inbound(session, write)
            case cmd.StoreTransfer():
                await self._transfer(session, write)
        return None, None

    async def _start(self, session: AsyncSession, s: StartAttempt) -> Callable[[], None] | None:
        command, at = s.command, ts(s.now)
        assert at is not None
        await repo.start_attempt(
            session,
            order_id=int(command.order_id),
            channel_id=command.call_id,
            now=at,
            ami_server=self._ami_server,
            operator_id=command.operator_id,
            originated_at=at,
        )
        order = await session.get(Order, int(command.order_id))
        metrics = self._metrics
        if metrics is None or order is None or order.attempts != 1:
            return None
        campaign_id, waited = order.campaign_id, s.now - order.stored_at.timestamp()
        return lambda: metrics.first_call(campaign_id, waited)

    async def _attempt(
        self, session: AsyncSession, c: cmd.StoreAttempt
    ) -> Callable[[], None] | None:
        ended = ts(c.ended_at)
        assert ended is not None
        attempt = await repo.update_attempt(
            session,
            c.call_id,
            answered_at=ts(c.answered_at),
            connected_at=ts(c.connected_at),
            operator_id=c.operator_id,
        )
        if attempt.ended_at is not None:
            return None
        # the order's status comes with the StoreOutcome that follows; keep it as it is
        await repo.finish_attempt(
            session,
            c.call_id,
            ended_at=ended,
            outcome=c.outcome,
            hangup_cause=c.hangup_cause,
            order_status=OrderStatus.CALLING,
        )
        order = await session.get(Order, attempt.order_id)
        assert order is not None
        talk = (c.ended_at - c.connected_at) if c.connected_at else 0.0
        wait = ((c.connected_at or c.ended_at) - c.answered_at) if c.answered_at else 0.0
        await add_outbox(
            session,
            order_id=order.id,
            kind="call",
            payload={
                "order_id": order.id,
                "crm": order.crm,
                "external_id": order.external_id,
                "channel_id": c.call_id,
                "phone": order.phone_e164,
                "outcome": c.outcome,
                "operator_id": c.operator_id,
                "started_at": ts(c.originated_at or c.queued_at).isoformat(),  # type: ignore[union-attr]
                "duration_s": round(max(0.0, talk)),
                "waiting_s": round(max(0.0, wait)),
                "recorded": c.connected_at is not None,
            },
            now=ended,
        )
        metrics = self._metrics
        if metrics is None:
            return None
        return lambda: metrics.attempt(c.campaign_id, c.outcome, talk if c.connected_at else None)

    async def _outcome(
        self, session: AsyncSession, c: cmd.StoreOutcome
    ) -> Callable[[], None] | None:
        now = datetime.fromtimestamp(self._now(), UTC)
        details = dict(c.details)
        order = await session.get(Order, int(c.order_id))
        if order is None:
            return None
        if c.outcome not in DISPOSITIONS:
            await self._attempt_outcome(session, order, c, now)
            return None
        amount = Decimal(str(details.get("upsell_amount") or 0))
        outcome = Outcome.UPSELL if c.outcome == "confirmed" and amount > 0 else c.outcome
        lead = c.lead
        operator_id = _str(details.get("operator_id")) or None
        await repo.store_outcome(
            session,
            order_id=order.id,
            outcome=outcome,
            now=now,
            channel_id=c.call_id,
            operator_id=operator_id,
            reason=_str(details.get("reason")) or None,
            upsell_items=[{"sku": s} for s in _seq(details.get("upsell_items"))],
            upsell_amount=amount,
            callback_at=ts(lead.callback_at) if lead is not None else None,
            callback_mine=bool(details.get("callback_mine")),
        )
        learned = _Learned(
            operator_id=operator_id,
            category=order.category,
            campaign_id=order.campaign_id,
            outcome=str(outcome),
            value=float(order.amount + amount),
        )
        return functools.partial(self._learned, learned)

    def _learned(self, learned: _Learned) -> None:
        if self._metrics is not None:
            self._metrics.operator_outcome(learned.operator_id, learned.outcome)
        if self._on_outcome is not None:
            self._on_outcome(
                operator_id=learned.operator_id,
                category=learned.category,
                campaign_id=learned.campaign_id,
                outcome=learned.outcome,
                value=learned.value,
            )

    @staticmethod
    async def _attempt_outcome(
        session: AsyncSession, order: Order, c: cmd.StoreOutcome, now: datetime
    ) -> None:
        """An outcome without an operator's word: a retry, or a final "unreached" (which the
        CRM must learn, so it gets its outbox row in the same transaction)."""
        order.last_outcome = c.outcome
        if not c.final:
            order.status = OrderStatus.SCHEDULED
            order.next_attempt_at = ts(c.next_attempt_at)
            if c.lead is not None and c.lead.lockout_until is not None:
                order.abandoned_lockout_until = ts(c.lead.lockout_until)
            return
        order.status = OrderStatus.UNREACHED
        order.next_attempt_at = None
        await add_outbox(
            session,
            order_id=order.id,
            kind="outcome",
            payload={
                "order_id": order.id,
                "crm": order.crm,
                "external_id": order.external_id,
                "outcome": c.outcome,
                "attempts": order.attempts,
                "at": now.isoformat(),
            },
            now=now,
        )

    @staticmethod
    async def _inbound(session: AsyncSession, c: cmd.StoreInbound) -> None:
        """Write (or, with the disposition, update) the inbound call's record."""
        ended = ts(c.ended_at)
        entered = ts(c.entered_at)
        assert ended is not None and entered is not None
        order_id = await _order_ref(session, c.order_id)
        row = await session.get(InboundCallRow, c.call_id)
        if row is None:
            row = InboundCallRow(channel_id=c.call_id, entered_at=entered, ended_at=ended)
            session.add(row)
        row.line_id = c.line_id
        row.caller_e164 = c.caller
        row.order_id = order_id
        row.priority = c.priority
        row.connected_at = ts(c.connected_at)
        row.ended_at = ended
        row.outcome = c.outcome
        row.operator_id = c.operator_id
        row.hangup_cause = c.hangup_cause
        if c.disposition is not None:
            row.disposition = c.disposition

    @staticmethod
    async def _transfer(session: AsyncSession, c: cmd.StoreTransfer) -> None:
        requested, at = ts(c.requested_at), ts(c.at)
        assert requested is not None and at is not None
        session.add(
            CallTransfer(
                channel_id=c.call_id,
                order_id=await _order_ref(session, c.order_id),
                from_operator_id=c.from_operator_id,
                to_operator_id=c.to_operator_id,
                mode=c.mode,
                target=c.target,
                reason=c.reason,
                requested_at=requested,
                at=at,
            )
        )

    async def callback_order(
        self, c: cmd.RequestCallback, *, campaign_id: str, timezone: str, now: float
    ) -> Lead:
        """A new order to call back an inbound caller who had no open order, due at once;
        what their latest order says (category, region, zone) is copied."""
        at = ts(now)
        assert at is not None
        async with self._db.session() as session:
            previous = None
            if c.order_id is not None and c.order_id.isdigit():
                previous = await session.get(Order, int(c.order_id))
            order = await repo.add_order(
                session,
                crm=LOCAL_CRM,
                external_id=c.call_id,
                phone_e164=c.caller,
                campaign_id=campaign_id,
                timezone=previous.timezone if previous is not None else timezone,
                created_at=at,
                now=at,
                customer_name=previous.customer_name if previous is not None else "",
                region=previous.region if previous is not None else None,
                category=previous.category if previous is not None else None,
                flag_reason=f"callback asked for on line {c.line_id}",
            )
            return lead_of(order)

    async def caller_card(self, caller: str, order_id: str, call_id: str) -> dict[str, Any]:
        """An inbound caller as the operator's screen shows them: the order they are most
        likely calling about (if any) and their recent orders."""
        card: dict[str, Any] = {"call_id": call_id, "inbound": True}
        if order_id.isdigit():
            card |= await self.order_card(order_id, call_id)
            card["inbound"] = True
        async with self._db.reading() as session:
            rows = await session.scalars(
                select(Order)
                .where(Order.phone_e164 == caller)
                .order_by(Order.stored_at.desc())
                .limit(10)
            )
            card["caller_masked"] = mask_phone(caller)
            card["orders"] = [
                {
                    "order_id": str(o.id),
                    "external_id": o.external_id,
                    "status": o.status,
                    "category": o.category,
                    "amount": float(o.amount),
                    "stored_at": o.stored_at.isoformat(),
                }
                for o in rows
            ]
        return card

    async def order_card(self, order_id: str, call_id: str) -> dict[str, Any]:
        """The order as an operator's screen shows it, with its earlier attempts."""
        if not order_id.isdigit():
            return {"call_id": call_id, "order_id": order_id}  # a caller without an order
        async with self._db.reading() as session:
            order = await session.get(Order, int(order_id))
            if order is None:
                return {"call_id": call_id, "order_id": order_id}
            rows = await session.scalars(
                select(CallAttempt)
                .where(CallAttempt.order_id == order.id)
                .order_by(CallAttempt.queued_at)
            )
            history = [
                {"at": a.queued_at.isoformat(), "outcome": a.outcome, "operator_id": a.operator_id}
                for a in rows
                if a.channel_id != call_id
            ]
            flags = [
                name
                for name in ("duplicate", "invalid", "fraud", "prepayment")
                if getattr(order, name)
            ]
            return {
                "call_id": call_id,
                "order_id": str(order.id),
                "external_id": order.external_id,
                "customer_name": order.customer_name,
                "phone_masked": mask_phone(order.phone_e164),
                "address": order.address,
                "region": order.region or "",
                "category": order.category,
                "items": list(order.items),
                "amount": float(order.amount),
                "flags": flags,
                "flag_reason": order.flag_reason,
                "history": history,
            }

    async def recover(self, survivors: Sequence[str], now: float, *, retry_s: float) -> list[str]:
        """End every attempt the database still holds as live (the daemon stopped mid-call).

        The engine's memory of those calls is gone, so each attempt is closed as ``lost`` and its
        order rescheduled `retry_s` later; nothing is dialled twice, nothing is forgotten.
        Returns the ChannelIds among `survivors` (channels Asterisk still has) that were closed:
        the caller decides what to do with their channels.
        """
        at = ts(now)
        assert at is not None
        closed: list[str] = []
        async with self._db.session() as session:
            for attempt in await repo.live_attempts(session):
                await repo.finish_attempt(
                    session,
                    attempt.channel_id,
                    ended_at=at,
                    outcome=LOST,
                    next_attempt_at=ts(now + retry_s),
                )
                if attempt.channel_id in survivors:
                    closed.append(attempt.channel_id)
        return closed

    async def pending_leads(self, campaign_ids: Sequence[str]) -> list[Lead]:
        """Every order still to be called, as leads (for the hopper at start-up)."""
        dialable = (
            OrderStatus.NEW,
            OrderStatus.SCHEDULED,
            OrderStatus.CALLBACK,
            OrderStatus.CALLING,
        )
        async with self._db.reading() as session:
            rows = await session.scalars(
                select(Order).where(
                    Order.status.in_(dialable), Order.campaign_id.in_(list(campaign_ids))
                )
            )
            return [lead_of(o) for o in rows]


class _Refused(Exception):
    """A write of a batch written straight through failed: write it again, write by write."""


def _hold_loaded_objects(session: AsyncSession) -> None:
    """Keep every object the session loads or adds alive until it ends.

    The session's identity map holds objects weakly: an order a write read and dropped would
    be read again by the next write of the same batch (SQLAlchemy's strong-reference recipe).
    """
    held: list[object] = []
    session.info["held"] = held

    def hold(_: object, instance: object) -> None:
        held.append(instance)

    sync = session.sync_session
    event.listen(sync, "loaded_as_persistent", hold)
    event.listen(sync, "pending_to_persistent", hold)


async def _prefetch(session: AsyncSession, writes: Sequence[Write]) -> None:
    """Read the batch's orders and attempts in two queries instead of one or two per write."""
    order_ids: set[int] = set()
    channel_ids: set[str] = set()
    for write in writes:
        match write:
            case StartAttempt():
                order_ids.add(int(write.command.order_id))
            case cmd.StoreAttempt():
                order_ids.add(int(write.order_id))
                channel_ids.add(write.call_id)
            case cmd.StoreOutcome() if write.order_id.isdigit():
                order_ids.add(int(write.order_id))
    if order_ids:
        await session.execute(select(Order).where(Order.id.in_(order_ids)))
    if channel_ids:
        await session.execute(select(CallAttempt).where(CallAttempt.channel_id.in_(channel_ids)))


async def _order_ref(session: AsyncSession, order_id: str | None) -> int | None:
    """The stored order's id for a call's order reference, or None if no such order."""
    if order_id is None or not order_id.isdigit():
        return None
    return int(order_id) if await session.get(Order, int(order_id)) is not None else None


def _str(value: object) -> str:
    return "" if value is None else str(value)


def _seq(value: object) -> Sequence[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []
