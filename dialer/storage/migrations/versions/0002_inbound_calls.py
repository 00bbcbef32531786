"""Inbound calls and call transfers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_calls",
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("line_id", sa.String(length=64), nullable=False),
        sa.Column("caller_e164", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("disposition", sa.String(length=16), nullable=True),
        sa.Column("operator_id", sa.String(length=64), nullable=True),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_inbound_calls_order_id_orders"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("channel_id", name=op.f("pk_inbound_calls")),
    )
    op.create_index(op.f("ix_inbound_calls_line_id"), "inbound_calls", ["line_id"], unique=False)
    op.create_index(
        op.f("ix_inbound_calls_entered_at"), "inbound_calls", ["entered_at"], unique=False
    )
    op.create_table(
        "call_transfers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("from_operator_id", sa.String(length=64), nullable=False),
        sa.Column("to_operator_id", sa.String(length=64), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_call_transfers_order_id_orders"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_transfers")),
    )
    op.create_index(
        op.f("ix_call_transfers_channel_id"), "call_transfers", ["channel_id"], unique=False
    )
    op.create_index(
        op.f("ix_call_transfers_from_operator_id"),
        "call_transfers",
        ["from_operator_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_call_transfers_from_operator_id"), table_name="call_transfers")
    op.drop_index(op.f("ix_call_transfers_channel_id"), table_name="call_transfers")
    op.drop_table("call_transfers")
    op.drop_index(op.f("ix_inbound_calls_entered_at"), table_name="inbound_calls")
    op.drop_index(op.f("ix_inbound_calls_line_id"), table_name="inbound_calls")
    op.drop_table("inbound_calls")
