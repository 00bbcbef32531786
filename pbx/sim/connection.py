"""One AMI client connection to the simulator: banner, login, actions in, events out.

Like Asterisk: the banner first; every action but Login / Logoff before a successful login is
refused; a wrong secret is answered after `login_failure_delay` seconds (real ones) and the
connection is closed; a successful login is followed by FullyBooted. ``Events: off`` at login
(or the Events action) stops events; a list of classes (``call,user``) keeps only those. A
client that stops reading is cut off once its backlog passes `MAX_BACKLOG` bytes, as Asterisk
drops clients that cannot keep up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from pbx.protocol import AmiParser, Frame, encode_banner

from . import frames
from .actions import dispatch
from .switch import Switch

log = logging.getLogger(__name__)

MAX_BACKLOG: Final = 4 << 20
READ_SIZE: Final = 65536

FrameObserver = Callable[[Frame, bool], None]
"""Called with every action read from a client (false) and every event written to it (true),
as it is read or written: lets a benchmark time a client's reactions on the simulator's side."""


class AmiSession:
    """Serves one client until it logs off, fails to log in, disconnects or is closed."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        switch: Switch,
        user: str,
        secret: str,
        login_failure_delay: float,
        uptime: Callable[[], int],
        observer: FrameObserver | None = None,
    ) -> None:
        self.switch = switch
        self._reader = reader
        self._writer = writer
        self._user = user
        self._secret = secret
        self._login_failure_delay = login_failure_delay
        self._uptime = uptime
        self._observer = observer
        self.authenticated = False
        self._classes: frozenset[str] | None = frozenset()
        self._closed = False

    # -- what handlers and the simulator call --------------------------------------------

    def send(self, frame: Frame) -> None:
        """Send a response (or a list item) to this client."""
        self._write(frame.encode())

    def deliver(self, frame: Frame, data: bytes) -> None:
        """Send an event (already encoded as `data`) if this client wants it."""
        if not self.authenticated or self._classes == frozenset():
            return
        if self._classes is not None:
            privilege = frame.get("Privilege") or ""
            if not self._classes & set(privilege.split(",")):
                return
        if self._observer is not None:
            self._observer(frame, True)
        self._write(data)

    def set_events(self, mask: str) -> bool:
        """Apply an ``Events`` login header or EventMask; true if any events will be sent."""
        mask = mask.strip().lower()
        if mask in ("on", "yes", "true", "1", "all", ""):
            self._classes = None
        elif mask in ("off", "no", "false", "0", "none"):
            self._classes = frozenset()
        else:
            self._classes = frozenset(c.strip() for c in mask.split(",") if c.strip())
        return self._classes != frozenset()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()

    # -- the connection --------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._closed or self._writer.transport.is_closing():
            return
        self._writer.write(data)
        if self._writer.transport.get_write_buffer_size() > MAX_BACKLOG:
            log.warning("AMI client is not reading; disconnecting it")
            self._closed = True
            self._writer.transport.abort()

    async def serve(self) -> None:
        parser = AmiParser(expect_banner=False)
        self._write(encode_banner())
        try:
            while not self._closed:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    break
                for message in parser.feed(data):
                    if not isinstance(message, Frame):
                        continue
                    if self._observer is not None:
                        self._observer(message, False)
                    if not await self._handle(message):
                        return
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()

    async def _handle(self, frame: Frame) -> bool:
        """Answer one message; false when the connection is to be closed."""
        if frame.kind != "action":
            self.send(
                frames.response(
                    "Error", frame.action_id, [("Message", "Missing action in request")]
                )
            )
            return True
        action = frame.name.lower()
        if action == "login":
            return await self._login(frame)
        if action == "logoff":
            self.send(
                frames.response(
                    "Goodbye", frame.action_id, [("Message", "Thanks for all the fish.")]
                )
            )
            return False
        if not self.authenticated:
            self.send(frames.response("Error", frame.action_id, [("Message", "Permission denied")]))
            return True
        try:
            await dispatch(self, frame)
        except Exception as exc:
            # a bug in the simulator: keep serving, and make `AsteriskSim.close()` raise it
            log.exception("simulator failed on %s", frame.name)
            self.switch.errors.append(exc)
            self.send(frames.response("Error", frame.action_id, [("Message", "Internal error")]))
        return True

    async def _login(self, frame: Frame) -> bool:
        if frame.get("Username") != self._user or frame.get("Secret") != self._secret:
            # Asterisk sleeps a second before refusing a login, then drops the connection
            await asyncio.sleep(self._login_failure_delay)
            self.send(
                frames.response("Error", frame.action_id, [("Message", "Authentication failed")])
            )
            return False
        first = not self.authenticated
        self.authenticated = True
        self.set_events(frame.get("Events") or "on")
        self.send(
            frames.response("Success", frame.action_id, [("Message", "Authentication accepted")])
        )
        if first:
            booted = frames.fully_booted(self._uptime())
            self.deliver(booted, booted.encode())
        return True
