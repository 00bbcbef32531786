"""`DaemonControl`: what the HTTP API may do, carried out through the daemon's engine.

Operator requests become engine events submitted to the daemon (and awaited, so the answer
reflects the new state); the engine's refusals become HTTP errors that say why. Tokens are
compared by their SHA-256 digests in constant time; a token is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC
from typing import Any

from acd.board import OperatorBoard
from acd.errors import AcdError
from dialer.engine import events as ev
from dialer.engine.engine import DialerEngine
from dialer.engine.errors import EngineError, OperatorActionRejected, UnknownCall
from dialer.engine.session import INBOUND
from dialer.http.control import Conflict, Forbidden, NotFound, OperatorAction
from dialer.http.schemas import DispositionIn, OperatorStatus, OrderCard, Principal, TransferIn


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class DaemonControl:
    def __init__(
        self,
        *,
        engine: DialerEngine,
        board: OperatorBoard,
        submit: Callable[[ev.Event], Awaitable[None]],
        now: Callable[[], float],
        tokens: Mapping[str, Principal],
        order_card: Callable[[str, str], Awaitable[dict[str, Any]]],
        caller_card: Callable[[str, str, str], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self._engine, self._board, self._submit, self._now = engine, board, submit, now
        self._principals = [(_digest(t), p) for t, p in tokens.items() if t]
        self._order_card = order_card
        self._caller_card = caller_card

    def authenticate(self, token: str) -> Principal | None:
        digest = _digest(token)
        found = None
        for known, principal in self._principals:  # no early exit: constant time per request
            if hmac.compare_digest(known, digest):
                found = principal
        return found

    def operator_status(self, operator_id: str) -> OperatorStatus:
        try:
            view = self._board.get(operator_id)
        except AcdError as exc:
            raise NotFound(str(exc)) from None
        return OperatorStatus(
            id=view.id,
            state=str(view.state),
            since=view.since,
            pause_reason=view.pause_reason,
            call_id=view.call_id,
            awaiting_disposition=self._engine.awaiting_disposition(operator_id),
        )

    async def operator_action(
        self, operator_id: str, action: OperatorAction, *, reason: str | None = None
    ) -> OperatorStatus:
        now = self._now()
        event: ev.Event
        match action:
            case "login":
                event = ev.OperatorLogin(operator_id=operator_id, now=now)
            case "ready":
                event = ev.OperatorReady(operator_id=operator_id, now=now)
            case "pause":
                event = ev.OperatorPause(operator_id=operator_id, reason=reason or "break", now=now)
            case "logout":
                event = ev.OperatorLogout(operator_id=operator_id, now=now)
        await self._run(event)
        return self.operator_status(operator_id)

    async def current_call(self, operator_id: str) -> OrderCard | None:
        call_id = self.operator_status(operator_id).call_id
        session = self._engine.call(call_id) if call_id else None
        if session is None or call_id is None:
            return None
        if session.direction == INBOUND and self._caller_card is not None:
            card = await self._caller_card(session.lead.phone, session.lead.order_id, call_id)
            return OrderCard(**card)
        return OrderCard(**await self._order_card(session.lead.order_id, call_id))

    async def dispose(self, operator_id: str, call_id: str, disposition: DispositionIn) -> None:
        callback_at = None
        if disposition.callback_at is not None:
            callback_at = disposition.callback_at.astimezone(UTC).timestamp()
        event = ev.Disposition(
            call_id=call_id,
            operator_id=operator_id,
            outcome=ev.DispositionOutcome(disposition.outcome),
            reason=disposition.reason or "",
            upsell_items=tuple(i.sku for i in disposition.upsell_items),
            upsell_amount=float(disposition.upsell_amount),
            callback_at=callback_at,
            callback_mine=disposition.callback_mine,
            now=self._now(),
        )
        await self._run(event, call_id=call_id)

    async def transfer(self, operator_id: str, call_id: str, transfer: TransferIn) -> None:
        event = ev.TransferRequested(
            call_id=call_id,
            operator_id=operator_id,
            category=transfer.category,
            supervisor=transfer.supervisor,
            reason=transfer.reason,
            mode=transfer.mode,
            now=self._now(),
        )
        await self._run(event, call_id=call_id)

    async def decide_transfer(self, operator_id: str, call_id: str, complete: bool) -> None:
        event = ev.TransferDecision(
            call_id=call_id, operator_id=operator_id, complete=complete, now=self._now()
        )
        await self._run(event, call_id=call_id)

    async def _run(self, event: ev.Event, *, call_id: str | None = None) -> None:
        try:
            await self._submit(event)
        except UnknownCall:
            raise Forbidden("no such call of yours", field="call_id") from None
        except OperatorActionRejected as exc:
            if call_id is not None and "not operator" in str(exc):
                raise Forbidden("no such call of yours", field="call_id") from None
            raise Conflict(str(exc)) from None
        except (EngineError, AcdError) as exc:
            raise Conflict(str(exc)) from None
