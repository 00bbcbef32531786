"""Request and response bodies of the HTTP API (pydantic 2).

Every request model forbids unknown keys and checks cross-field rules, so a bad request is
answered with a 422 that names the field and the reason before anything reaches the engine.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Outcome = Literal["confirmed", "rejected", "callback", "invalid", "duplicate"]
Role = Literal["operator", "supervisor", "admin"]

_NO_CONTROL_CHARS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Principal(Strict):
    id: str
    role: Role


class PauseIn(Strict):
    reason: str = Field(default="break", min_length=1, max_length=64, pattern=_NO_CONTROL_CHARS)


class UpsellItem(Strict):
    sku: str = Field(min_length=1, max_length=64, pattern=_NO_CONTROL_CHARS)
    name: str = Field(default="", max_length=200, pattern=_NO_CONTROL_CHARS)
    quantity: int = Field(default=1, ge=1, le=100)
    price: Decimal = Field(ge=0, le=10_000_000, decimal_places=2)


class DispositionIn(Strict):
    """What the operator says the call ended with."""

    outcome: Outcome
    reason: str | None = Field(default=None, max_length=500, pattern=_NO_CONTROL_CHARS)
    upsell_items: list[UpsellItem] = Field(default_factory=list, max_length=50)
    upsell_amount: Decimal = Field(default=Decimal(0), ge=0, le=10_000_000, decimal_places=2)
    callback_at: datetime | None = None
    callback_mine: bool = False

    @model_validator(mode="after")
    def _cross_field(self) -> DispositionIn:
        if self.outcome == "callback":
            if self.callback_at is None:
                raise ValueError("callback_at: required when outcome is callback")
            if self.callback_at.tzinfo is None:
                raise ValueError("callback_at: must include a time zone offset")
        elif self.callback_at is not None or self.callback_mine:
            raise ValueError("callback_at: only allowed when outcome is callback")
        if self.outcome != "confirmed" and (self.upsell_items or self.upsell_amount):
            raise ValueError("upsell_items: only allowed when outcome is confirmed")
        if self.outcome == "rejected" and not self.reason:
            raise ValueError("reason: required when outcome is rejected")
        if self.upsell_items and not self.upsell_amount:
            self.upsell_amount = sum(
                (i.price * i.quantity for i in self.upsell_items), start=Decimal(0)
            )
        return self


class TransferIn(Strict):
    """Hand the customer on: to a colleague qualified for `category`, or to a supervisor
    (``"supervisor": true``, e.g. reason "qualification insufficient"). Without either, to
    any free colleague of the line. ``"mode": "attended"`` first connects the operator to a
    colleague free now while the customer holds; then ``/transfer/complete`` or
    ``/transfer/cancel``."""

    mode: Literal["blind", "attended"] = "blind"
    category: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[\w-]+$")
    supervisor: bool = False
    reason: str = Field(default="", max_length=500, pattern=_NO_CONTROL_CHARS)

    @model_validator(mode="after")
    def _one_target(self) -> TransferIn:
        if self.supervisor and self.category is not None:
            raise ValueError("category: a transfer goes to a category or to a supervisor, not both")
        return self


class OperatorStatus(BaseModel):
    id: str
    state: str
    since: float
    pause_reason: str | None = None
    call_id: str | None = None
    # calls of theirs that ended without a disposition yet (wrap-up or overdue), oldest first
    awaiting_disposition: list[str] = Field(default_factory=list)


class OrderCard(BaseModel):
    """What an operator's screen shows when a call reaches them."""

    call_id: str
    order_id: str
    external_id: str = ""
    customer_name: str = ""
    phone_masked: str = ""
    address: str = ""
    region: str = ""
    category: str | None = None
    items: list[dict[str, Any]] = Field(default_factory=list)
    amount: float = 0.0
    flags: list[str] = Field(default_factory=list)
    flag_reason: str | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    # an inbound call: the caller (masked) and their recent orders
    inbound: bool = False
    caller_masked: str = ""
    orders: list[dict[str, Any]] = Field(default_factory=list)
