"""What the HTTP layer may ask of the daemon, and the errors it may get back.

The HTTP handlers never touch the engine or the database directly: they call a `Control`
(implemented by the daemon), which turns requests into engine events and waits until the
engine has processed them. Errors carry the HTTP status they map to and, where a request field
is at fault, its name.
"""

from __future__ import annotations

from typing import Literal, Protocol

from .schemas import DispositionIn, OperatorStatus, OrderCard, Principal, TransferIn

OperatorAction = Literal["login", "logout", "ready", "pause"]


class ControlError(Exception):
    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(ControlError):
    status = 404


class Forbidden(ControlError):
    status = 403


class Conflict(ControlError):
    """The request is valid but not now (e.g. pausing during a call)."""

    status = 409


class Control(Protocol):
    def authenticate(self, token: str) -> Principal | None:
        """The principal owning `token`, or None. Must compare in constant time."""
        ...

    async def operator_action(
        self, operator_id: str, action: OperatorAction, *, reason: str | None = None
    ) -> OperatorStatus: ...

    def operator_status(self, operator_id: str) -> OperatorStatus: ...

    async def current_call(self, operator_id: str) -> OrderCard | None: ...

    async def dispose(self, operator_id: str, call_id: str, disposition: DispositionIn) -> None:
        """Record the operator's disposition for their call (raises Forbidden if not theirs)."""
        ...

    async def transfer(self, operator_id: str, call_id: str, transfer: TransferIn) -> None:
        """Hand the operator's connected customer on (Forbidden if not theirs, Conflict if the
        call is not connected or no supervisor is on the floor)."""
        ...

    async def decide_transfer(self, operator_id: str, call_id: str, complete: bool) -> None:
        """Complete or call off the operator's attended transfer (Forbidden if not theirs,
        Conflict if there is no consultation, or the colleague has not answered yet)."""
        ...
