"""The tables obzvon keeps, as SQLAlchemy 2 declarative models.

The same models serve SQLite and PostgreSQL. Every timestamp is a timezone-aware datetime in
UTC when read back; storing a naive datetime raises, because a time without a zone cannot be
compared across customers in different zones. The schema itself is created by the migrations in
`dialer/storage/migrations` (`obzvon db upgrade`), never by `create_all`; a test checks that
the two agree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored in UTC; SQLite keeps it as naive UTC text, which sorts."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: obzvon stores only aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Money = Numeric(12, 2)


class Base(DeclarativeBase):
    """The base of every obzvon table; `Base.metadata` is what the migrations must match."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute as is
        datetime: UtcDateTime(),
        Decimal: Money,
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class OrderStatus(StrEnum):
    """Where an order stands. `FINAL` ones are never called again."""

    NEW = "new"  # never called
    SCHEDULED = "scheduled"  # to be called again at next_attempt_at
    CALLING = "calling"  # a call attempt is live
    CALLBACK = "callback"  # the customer asked to be called at callback_at
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    UNREACHED = "unreached"  # attempts exhausted without reaching the customer
    CANCELLED = "cancelled"  # cancelled in the CRM


FINAL_STATUSES = frozenset(
    {
        OrderStatus.CONFIRMED,
        OrderStatus.REJECTED,
        OrderStatus.INVALID,
        OrderStatus.DUPLICATE,
        OrderStatus.CANCELLED,
    }
)
# Statuses `due_orders` picks from.
DIALABLE_STATUSES = (OrderStatus.NEW, OrderStatus.SCHEDULED, OrderStatus.CALLBACK)


class Outcome(StrEnum):
    """What the operator recorded at the end of a conversation."""

    CONFIRMED = "confirmed"
    UPSELL = "upsell"  # confirmed with extra items
    REJECTED = "rejected"
    CALLBACK = "callback"
    INVALID = "invalid"
    DUPLICATE = "duplicate"


class Order(Base):
    """An order to confirm by phone, as taken in from a CRM."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("crm", "external_id"),
        Index("ix_orders_due", "campaign_id", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    crm: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(64))
    phone_e164: Mapped[str] = mapped_column(String(16), index=True)
    customer_name: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(Text, default="")
    region: Mapped[str | None] = mapped_column(String(16))  # ISO 3166-2, e.g. RU-MOW
    timezone: Mapped[str] = mapped_column(String(64))  # IANA name, e.g. Asia/Yekaterinburg
    category: Mapped[str | None] = mapped_column(String(64))
    items: Mapped[list[Any]] = mapped_column(default=list)
    amount: Mapped[Decimal] = mapped_column(default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.NEW)
    duplicate: Mapped[bool] = mapped_column(default=False)
    invalid: Mapped[bool] = mapped_column(default=False)
    fraud: Mapped[bool] = mapped_column(default=False)
    prepayment: Mapped[bool] = mapped_column(default=False)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    flag_reason: Mapped[str | None] = mapped_column(Text)
    campaign_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]  # when the customer placed it
    stored_at: Mapped[datetime]  # when obzvon took it in
    next_attempt_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    attempts_today: Mapped[int] = mapped_column(default=0)
    # The customer-local day `attempts_today` counts for; a call on a later day starts over.
    attempts_day: Mapped[date | None]
    last_outcome: Mapped[str | None] = mapped_column(String(16))
    callback_at: Mapped[datetime | None]
    callback_operator_id: Mapped[str | None] = mapped_column(String(64))
    abandoned_lockout_until: Mapped[datetime | None]
    first_call_at: Mapped[datetime | None]


class CallAttempt(Base):
    """One call placed to a customer, keyed by the ChannelId obzvon chose before dialling.

    At most one attempt per order is live (`ended_at` is NULL); the database enforces it.
    """

    __tablename__ = "call_attempts"
    __table_args__ = (
        Index(
            "uq_call_attempts_live_order",
            "order_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    campaign_id: Mapped[str] = mapped_column(String(64))
    queued_at: Mapped[datetime]
    originated_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    connected_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    hangup_cause: Mapped[int | None]  # Q.850 cause code as Asterisk reports it
    operator_id: Mapped[str | None] = mapped_column(String(64))
    recording_path: Mapped[str | None] = mapped_column(Text)
    ami_server: Mapped[str | None] = mapped_column(String(64))


class Operator(Base):
    """An operator as last configured; kept so that history can name them."""

    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16), default="operator")
    active: Mapped[bool] = mapped_column(default=True)
    wrapup_s: Mapped[float | None]
    categories_only: Mapped[list[Any] | None]
    updated_at: Mapped[datetime]
    skills: Mapped[list[OperatorSkill]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )


class OperatorSkill(Base):
    """One qualification: `kind` is category, campaign, region or language; level 1..10."""

    __tablename__ = "operator_skills"
    __table_args__ = (
        CheckConstraint("level BETWEEN 1 AND 10", name="level"),
        CheckConstraint("kind IN ('category', 'campaign', 'region', 'language')", name="kind"),
    )

    operator_id: Mapped[str] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    level: Mapped[int] = mapped_column(default=1)


class Disposition(Base):
    """The outcome an operator recorded for an order, at most one per call."""

    __tablename__ = "dispositions"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    operator_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    upsell_items: Mapped[list[Any]] = mapped_column(default=list)
    upsell_amount: Mapped[Decimal] = mapped_column(default=Decimal(0))
    callback_at: Mapped[datetime | None]
    callback_mine: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]


class OutboxEntry(Base):
    """A message for the CRM, written in the same transaction as the change it reports."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "next_try_at",
            sqlite_where=text("delivered_at IS NULL"),
            postgresql_where=text("delivered_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # "outcome", "recording", ...
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    next_try_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    dead: Mapped[bool] = mapped_column(default=False)  # given up on; needs a person


class CampaignSetting(Base):
    """Changes made to a campaign at run time (pause, pacing), over its config file settings."""

    __tablename__ = "campaign_settings"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    paused: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str | None] = mapped_column(String(64))


class OperatorPerformance(Base):
    """Decayed success counts of an operator per category and campaign, for learned routing.

    `campaign_id` is "" for the figures over all campaigns.
    """

    __tablename__ = "operator_performance"

    operator_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    successes: Mapped[float] = mapped_column(default=0.0)
    trials: Mapped[float] = mapped_column(default=0.0)
    value: Mapped[float] = mapped_column(default=0.0)  # decayed sum of order value won
    updated_at: Mapped[datetime]


class AuditEntry(Base):
    """Who did what, for supervisors' and admins' actions."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    who: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class InboundCall(Base):
    """One call a customer made to a shop's number, keyed by its channel's Uniqueid.

    `outcome` is connected, abandoned (hung up while waiting) or callback (took the callback
    offer); `disposition` is the operator's word once given. `order_id` is the caller's order
    when the database or the CRM knew them.
    """

    __tablename__ = "inbound_calls"

    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    line_id: Mapped[str] = mapped_column(String(64), index=True)
    caller_e164: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    priority: Mapped[int] = mapped_column(default=0)
    entered_at: Mapped[datetime] = mapped_column(index=True)
    connected_at: Mapped[datetime | None]
    ended_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    disposition: Mapped[str | None] = mapped_column(String(16))
    operator_id: Mapped[str | None] = mapped_column(String(64))
    hangup_cause: Mapped[int | None]


class CallTransfer(Base):
    """An operator handing a customer on to a colleague or a supervisor, on any call."""

    __tablename__ = "call_transfers"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(64), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    from_operator_id: Mapped[str] = mapped_column(String(64), index=True)
    to_operator_id: Mapped[str | None] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime]
    at: Mapped[datetime]
