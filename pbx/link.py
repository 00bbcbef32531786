"""`AmiLink`: one TCP connection to AMI, with its ActionID → Future map.

The transport is panoramisk's `AMIProtocol`, with its reading replaced: bytes are cut into
frames by `pbx.protocol.AmiParser` (panoramisk decodes every read on its own and drops a UTF-8
character split between two reads), and panoramisk's response map, which re-queues in-flight
actions for a resend, is not used.

What a caller may rely on:

- `request()` resolves with Asterisk's answer, collects list answers (``EventList: start`` …
  ``…Complete``), and for an ``Async: true`` Originate waits for the OriginateResponse event
  with its ActionID; ``Response: Error`` raises `AmiRemoteError` with Asterisk's Message; no
  answer within the timeout raises `AmiTimeout`;
- when the link drops, every request in flight fails with `AmiDisconnected`, at once;
- the callbacks given to the link run synchronously inside asyncio's reader: they get typed
  events only, and nothing they or a malformed frame raise stops the reader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from panoramisk.ami_protocol import AMIProtocol

from .commands import Fields
from .errors import AmiConnectionError, AmiDisconnected, AmiRemoteError, AmiTimeout
from .events import AmiEvent, Headers, OriginateResponse, parse_event
from .protocol import DEFAULT_MAX_FRAME_BYTES, AmiParser, Banner, Frame, encode

log = logging.getLogger(__name__)

_OK = frozenset({"success", "follows", "goodbye"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionResult:
    """Asterisk's answer to an action: its Response line, Message, other headers, and the
    events of a list answer (e.g. the CoreShowChannel items) or the OriginateResponse."""

    response: str
    message: str = ""
    headers: Headers = field(default_factory=Headers)
    events: tuple[AmiEvent, ...] = ()


@dataclass(slots=True, eq=False)
class _Pending:
    action: str
    future: asyncio.Future[ActionResult]
    until_originate_response: bool
    response: Frame | None = None
    items: list[AmiEvent] = field(default_factory=list)


class AmiLink(AMIProtocol):  # type: ignore[misc]  # panoramisk ships no type information
    """One connection. Build it through ``loop.create_connection(lambda: AmiLink(...))``.

    `on_event` gets every event that is not part of an answer to a request (and every
    OriginateResponse); `on_read` the number of events in each read that had some; `on_lost`
    is called exactly once, whoever closed the link.
    """

    def __init__(
        self,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        next_action_id: Callable[[], str],
        on_event: Callable[[AmiLink, AmiEvent], None],
        on_lost: Callable[[AmiLink, str], None],
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self.parser = AmiParser(max_frame_bytes=max_frame_bytes)
        self._next_id = next_action_id
        self._on_event = on_event
        self._on_lost = on_lost
        self._on_read = on_read
        self._pending: dict[str, _Pending] = {}
        # None until connected (a TLS handshake may fail before that)
        self._transport: asyncio.Transport | None = None
        self.banner: asyncio.Future[str] = self._loop.create_future()
        self.last_rx = self._loop.time()
        self.lost = False
        self.reason = ""
        self.events_received = 0
        self._unusable = 0

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def frames_unusable(self) -> int:
        """Garbage lines, oversize frames and frames that could not be handled."""
        stats = self.parser.statistics
        return self._unusable + stats.garbage_lines + stats.oversize_frames

    async def request(
        self, fields: Fields, *, answer_within: float, until_originate_response: bool = False
    ) -> ActionResult:
        """Send one action (no ActionID in `fields`); its answer, within `answer_within` s."""
        action_id = self._next_id()
        data = encode((*fields, ("ActionID", action_id)))
        future: asyncio.Future[ActionResult] = self._loop.create_future()
        action = fields[0][1]
        self._pending[action_id] = _Pending(action, future, until_originate_response)
        try:
            self.write(data)
            # not asyncio.wait_for: on 3.11 it swallows a cancellation that races with the
            # future's completion, and a client being closed must stop
            async with asyncio.timeout(answer_within):
                return await future
        except TimeoutError:
            raise AmiTimeout(f"{action} got no answer within {answer_within:.1f} s") from None
        finally:
            self._pending.pop(action_id, None)

    def write(self, data: bytes) -> None:
        transport = self._transport
        if self.lost or transport is None or transport.is_closing():
            raise AmiConnectionError("the AMI link is closed")
        try:
            transport.write(data)
        except (OSError, RuntimeError) as exc:
            raise AmiConnectionError(f"AMI write failed: {exc}") from exc

    def drop(self, reason: str, *, abort: bool = False) -> None:
        """Close now and report the loss at once, without waiting for asyncio's callback."""
        self.reason = self.reason or reason
        if self._transport is not None:
            if abort:
                self._transport.abort()
            else:
                self.close()
        self.connection_lost(None)

    async def watch(self, interval: float, *, ping_id: str) -> None:
        """Ping every `interval` s; after three intervals without a byte from Asterisk, drop
        the link (the owner learns it through `on_lost`). Returns when the link is lost."""
        ping = encode((("Action", "Ping"), ("ActionID", ping_id)))
        next_ping = self._loop.time() + interval
        while not self.lost:
            now = self._loop.time()
            silent = now - self.last_rx
            if silent >= 3 * interval:
                log.warning("AMI link silent for %.1f s; declaring it dead", silent)
                self.drop(f"no data from Asterisk for {silent:.1f} s", abort=True)
                return
            if now >= next_ping:
                next_ping = now + interval
                try:
                    # nobody waits for the Pong: any byte received proves the link alive
                    self.write(ping)
                except AmiConnectionError:
                    return
            await asyncio.sleep(min(next_ping, self.last_rx + 3 * interval) - now)

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.last_rx = self._loop.time()

    def data_received(self, data: bytes) -> None:
        self.last_rx = self._loop.time()
        try:
            frames = self.parser.feed(data)
        except Exception:  # an exception here would make asyncio close the transport
            log.exception("AMI bytes could not be parsed; the reader goes on")
            return
        before = self.events_received
        for item in frames:
            try:
                self._frame(item)
            except Exception:
                self._unusable += 1
                log.exception("AMI frame %r could not be handled; skipped", item)
        if self._on_read is not None and self.events_received != before:
            self._on_read(self.events_received - before)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = self.closed = True
        reason = self.reason or (f"{exc}" if exc else "closed by Asterisk")
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(
                    AmiDisconnected(
                        f"AMI link lost ({reason}) while {pending.action} was in flight; "
                        "its outcome is unknown and it was not re-sent"
                    )
                )
        if not self.banner.done():
            self.banner.set_exception(AmiConnectionError(f"closed before the greeting: {reason}"))
            self.banner.exception()  # marked retrieved: the opener may be gone already
        self._on_lost(self, reason)

    # -- frames -------------------------------------------------------------------------

    def _frame(self, item: Banner | Frame) -> None:
        if isinstance(item, Banner):
            if not self.banner.done():
                self.banner.set_result(item.version)
        elif item.kind == "event":
            self.events_received += 1
            self._event(item)
        elif item.kind == "response":
            self._response(item)
        else:
            self._unusable += 1

    def _response(self, frame: Frame) -> None:
        action_id = frame.action_id
        pending = self._pending.get(action_id) if action_id else None
        if pending is None or pending.future.done():
            return  # a Pong, or the answer to an action that timed out
        if frame.name.lower() not in _OK:
            message = frame.get("Message") or f"{pending.action} failed"
            err = AmiRemoteError(message, action=pending.action, response=frame.name)
            pending.future.set_exception(err)
        elif pending.until_originate_response:
            pending.response = frame  # "successfully queued": the outcome comes as an event
        elif (frame.get("EventList") or "").lower() == "start":
            pending.response = frame
        else:
            pending.future.set_result(_result(frame, ()))

    def _event(self, frame: Frame) -> None:
        ev = parse_event(frame)
        # from the typed event: a dict lookup, where Frame.action_id scans every header
        action_id = getattr(ev, "action_id", None) or ev.extra.get("ActionID")
        pending = self._pending.get(action_id) if action_id else None
        if pending is not None and not pending.future.done():
            if pending.until_originate_response:
                if isinstance(ev, OriginateResponse):
                    pending.future.set_result(_result(pending.response, (ev,)))
            elif pending.response is not None:
                # an item of a list answer, or its end (…Complete, EventList: Complete)
                if ev.name.endswith("Complete") or frame.get("EventList") == "Complete":
                    pending.future.set_result(_result(pending.response, tuple(pending.items)))
                else:
                    pending.items.append(ev)
                return
        self._on_event(self, ev)


def _result(response: Frame | None, events: tuple[AmiEvent, ...]) -> ActionResult:
    if response is None:
        return ActionResult(response="Success", events=events)
    extra = {k: v for k, v in response.fields[1:] if k not in ("ActionID", "Message")}
    return ActionResult(
        response=response.name,
        message=response.get("Message") or "",
        headers=Headers(extra),
        events=events,
    )
