"""`AmiClient`: one logged-in AMI connection to Asterisk that survives link loss.

Built on panoramisk's transport (`pbx.link.AmiLink` subclasses its ``AMIProtocol``), but not on
its ``Manager`` nor its ``CallManager``:

- on reconnect ``Manager`` sends again every action that was in flight: an Originate would dial
  the customer a second time. Here an action in flight when the link drops fails with
  `AmiDisconnected` and is never re-sent; the caller decides.
- ``Manager`` retries a refused login forever. Here a wrong secret raises
  `AmiAuthenticationError` from ``__aenter__`` at once.
- panoramisk never reads the Pong: the client runs its own ping watchdog.
- ``CallManager`` correlates calls by panoramisk's own ids; obzvon correlates by the ChannelId it
  sets (see `pbx.channels`).

What a caller may rely on:

- every action has a timeout (`AmiTimeout`); an Originate's is its ring time plus a margin, and
  it returns the OriginateResponse carrying its ActionID, never just "successfully queued";
- ``Response: Error`` raises `AmiRemoteError` with Asterisk's Message;
- after the first login the client reconnects by itself, with capped exponential backoff and
  jitter, until closed; the event stream then shows `LinkLost`, and on return `LinkRestored`
  with the channels alive, followed by the events that arrived since the new login; actions
  are refused with `AmiConnectionError` (never queued) until then;
- events are converted once into typed objects and put in a bounded queue; the reader never
  waits for the consumer: when the queue is full, events are dropped and counted
  (`LinkLost`/`LinkRestored` are kept, the oldest event making room);
- errors from asyncio, sockets and panoramisk leave as `pbx.errors` types.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import ssl as _ssl
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import TracebackType

from .commands import (
    Bridge,
    CoreShowChannels,
    DeviceStateList,
    Fields,
    MixMonitor,
    Originate,
    Redirect,
    Setvar,
    Spy,
    StopMixMonitor,
)
from .commands import Hangup as HangupCommand
from .errors import (
    AmiAuthenticationError,
    AmiConnectionError,
    AmiLocalError,
    AmiRemoteError,
    PbxError,
)
from .events import (
    AmiEvent,
    ChannelEvent,
    CoreShowChannel,
    DeviceStateChange,
    LinkLost,
    LinkRestored,
    OriginateResponse,
)
from .link import ActionResult, AmiLink
from .protocol import DEFAULT_MAX_FRAME_BYTES

log = logging.getLogger(__name__)

RATE_WINDOW_S = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class AmiStatistics:
    """A snapshot of the client; `events_per_s` is averaged over the last few seconds."""

    connected: bool
    reconnects: int
    actions_in_flight: int
    events_total: int
    events_per_s: float
    events_dropped: int
    frames_malformed: int


class AmiClient:
    """An AMI connection: ``async with AmiClient(...) as ami:`` connects and logs in.

    ``__aenter__`` raises `AmiAuthenticationError` for a refused login and `AmiConnectionError`
    when Asterisk cannot be reached; neither is retried. The client is entered once.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int = 5038,
        username: str,
        secret: str,
        ssl: _ssl.SSLContext | None = None,
        ping_interval: float = 5.0,
        action_timeout: float = 5.0,
        originate_margin: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        event_queue_size: int = 10_000,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        rng: random.Random | None = None,
    ) -> None:
        if min(ping_interval, action_timeout, backoff_initial) <= 0 or event_queue_size < 1:
            raise AmiLocalError("intervals, timeouts and the event queue size must be positive")
        if backoff_max < backoff_initial or originate_margin < 0:
            raise AmiLocalError("backoff_max must be >= backoff_initial, margins >= 0")
        self._host, self._port, self._ssl = host, port, ssl
        self._username, self._secret = username, secret
        self._ping_interval = ping_interval
        self._action_timeout = action_timeout
        self._originate_margin = originate_margin
        self._backoff = (backoff_initial, backoff_max)
        self._max_frame_bytes = max_frame_bytes
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[AmiEvent | None] = asyncio.Queue(event_queue_size)
        self._ids = itertools.count(1)
        self._prefix = f"obzvon-{uuid.uuid4().hex[:8]}"
        self._link: AmiLink | None = None  # logged in and handed to the caller
        self._opening: AmiLink | None = None  # logging in or resyncing
        self._held: list[AmiEvent] = []  # events of `_opening`, released after LinkRestored
        self._lost = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._entered = self._closing = False
        self._rate: deque[list[int]] = deque()  # [second, events]
        self._started = 0.0
        self._reconnects = self._dropped = 0
        self._retired_events = self._retired_malformed = 0

    # -- lifetime -----------------------------------------------------------------------

    async def __aenter__(self) -> AmiClient:
        if self._entered:
            raise AmiLocalError("an AmiClient is entered once")
        self._entered = True
        self._started = asyncio.get_running_loop().time()
        link = await self._open()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._install(link, restored=None)
        self._supervisor = self._tasks.create_task(
            self._supervise(), name=f"ami-reconnect {self._host}:{self._port}"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the link and stop reconnecting; `events()` ends after the queued events."""
        if self._closing:
            return
        self._closing = True
        for task in (self._supervisor, self._watchdog):
            if task is not None:
                task.cancel()
        for link in (self._link, self._opening):
            if link is not None:
                link.drop("client closed")
        if self._tasks is not None:
            # exited as if without exception, so the caller's own exception is not wrapped
            # into the group's; a crash of a task of ours still surfaces here
            await self._tasks.__aexit__(None, None, None)
        self._put(None, keep=True)

    # -- actions ------------------------------------------------------------------------

    async def originate(self, cmd: Originate) -> OriginateResponse:
        """Dial; returns the OriginateResponse (`reason` 4 answered, 5 busy, 3 no answer, ...).

        Failure to reach the customer is not an exception: look at `reason`."""
        return await self._originate(cmd.to_fields(), cmd.timeout_ms)

    async def spy(self, cmd: Spy) -> OriginateResponse:
        """Ring the supervisor into ChanSpy; returns the OriginateResponse of that call."""
        return await self._originate(cmd.to_fields(), cmd.timeout_ms)

    async def redirect(self, cmd: Redirect) -> None:
        await self.send(cmd.to_fields())

    async def bridge(self, cmd: Bridge) -> None:
        await self.send(cmd.to_fields())

    async def setvar(self, cmd: Setvar) -> None:
        await self.send(cmd.to_fields())

    async def hangup(self, cmd: HangupCommand) -> tuple[str, ...]:
        """Hang up; returns the names of the channels hung up (for a regex, those matched)."""
        result = await self.send(cmd.to_fields())
        if not cmd.is_regex:
            return (cmd.channel,)
        return tuple(ev.channel for ev in result.events if isinstance(ev, ChannelEvent))

    async def mix_monitor(self, cmd: MixMonitor) -> None:
        await self.send(cmd.to_fields())

    async def stop_mix_monitor(self, cmd: StopMixMonitor) -> None:
        await self.send(cmd.to_fields())

    async def core_show_channels(self) -> list[CoreShowChannel]:
        result = await self.send(CoreShowChannels().to_fields())
        return [ev for ev in result.events if isinstance(ev, CoreShowChannel)]

    async def device_states(self) -> list[DeviceStateChange]:
        """Every device's current state (e.g. ``PJSIP/1001`` UNAVAILABLE when unregistered)."""
        result = await self.send(DeviceStateList().to_fields())
        return [ev for ev in result.events if isinstance(ev, DeviceStateChange)]

    async def send(
        self, fields: Iterable[tuple[str, str]], *, answer_within: float | None = None
    ) -> ActionResult:
        """Send any action: header pairs, ``("Action", name)`` first, no ActionID.

        An Originate must carry ``Async: true``; its result then holds the OriginateResponse.
        """
        pairs = tuple(fields)
        if not pairs or pairs[0][0].lower() != "action":
            raise AmiLocalError("an action starts with an ('Action', name) pair")
        if any(k.lower() == "actionid" for k, _ in pairs):
            raise AmiLocalError("the client sets the ActionID")
        if pairs[0][1].lower() != "originate":
            return await self._request(pairs, answer_within or self._action_timeout)
        if not any(k.lower() == "async" and v.lower() == "true" for k, v in pairs):
            # without it Asterisk holds the AMI session until the customer answers or not
            raise AmiLocalError("an Originate must be sent with Async: true")
        ring = next((v for k, v in pairs if k.lower() == "timeout"), "30000")
        if not ring.isdigit():
            raise AmiLocalError(f"Originate Timeout {ring!r} is not a number of ms")
        wait = answer_within or int(ring) / 1000 + self._originate_margin
        return await self._request(pairs, wait, until_originate_response=True)

    # -- events and statistics ----------------------------------------------------------

    def events(self) -> AsyncIterator[AmiEvent]:
        """The typed events, in arrival order, until the client is closed."""
        return _EventStream(self._queue)

    def statistics(self) -> AmiStatistics:
        now = asyncio.get_running_loop().time()
        links = [lk for lk in (self._link, self._opening) if lk is not None]
        recent = sum(n for sec, n in self._rate if sec >= now - RATE_WINDOW_S)
        span = max(1e-3, min(float(RATE_WINDOW_S), now - self._started))
        return AmiStatistics(
            connected=self._link is not None,
            reconnects=self._reconnects,
            actions_in_flight=sum(lk.in_flight for lk in links),
            events_total=self._retired_events + sum(lk.events_received for lk in links),
            events_per_s=recent / span,
            events_dropped=self._dropped,
            frames_malformed=self._retired_malformed + sum(lk.frames_unusable for lk in links),
        )

    # -- internals ----------------------------------------------------------------------

    async def _originate(self, fields: Fields, ring_ms: int) -> OriginateResponse:
        wait = ring_ms / 1000 + self._originate_margin
        result = await self._request(fields, wait, until_originate_response=True)
        return next(ev for ev in result.events if isinstance(ev, OriginateResponse))

    async def _request(
        self, fields: Fields, wait: float, *, until_originate_response: bool = False
    ) -> ActionResult:
        link = self._link
        if link is None or link.lost:
            raise AmiConnectionError("the AMI link is down; the client is reconnecting")
        return await link.request(
            fields, answer_within=wait, until_originate_response=until_originate_response
        )

    def _next_action_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def _open(self) -> AmiLink:
        """Connect, wait for the greeting and log in; the link is left in `_opening`."""
        loop = asyncio.get_running_loop()
        where = f"{self._host}:{self._port}"

        def factory() -> AmiLink:
            self._opening = AmiLink(
                max_frame_bytes=self._max_frame_bytes,
                next_action_id=self._next_action_id,
                on_event=self._on_event,
                on_lost=self._on_lost,
                on_read=self._count_events,
            )
            self._held = []
            return self._opening

        try:
            try:
                async with asyncio.timeout(self._action_timeout):
                    _, link = await loop.create_connection(
                        factory, self._host, self._port, ssl=self._ssl
                    )
                    await link.banner
            except (OSError, TimeoutError) as exc:
                raise AmiConnectionError(f"cannot reach AMI at {where}: {exc!r}") from exc
            login = (("Action", "Login"), ("Username", self._username), ("Secret", self._secret))
            try:
                await link.request(login, answer_within=self._action_timeout)
            except AmiRemoteError as exc:
                raise AmiAuthenticationError(f"AMI login at {where} refused: {exc}") from None
            if link.lost:  # dropped after the answer was read, before this task resumed
                raise AmiConnectionError(f"AMI link at {where} lost right after the login")
        except BaseException:
            if self._opening is not None:
                self._opening.drop("connect or login failed", abort=True)
            raise
        return link

    def _install(self, link: AmiLink, *, restored: LinkRestored | None) -> None:
        assert self._tasks is not None
        self._opening, self._link = None, link
        if restored is not None:
            self._put(restored, keep=True)
        for ev in self._held:
            self._put(ev)
        self._held = []
        self._watchdog = self._tasks.create_task(
            link.watch(self._ping_interval, ping_id=f"{self._prefix}-ping"),
            name=f"ami-watchdog {self._host}:{self._port}",
        )

    async def _supervise(self) -> None:
        while True:
            await self._lost.wait()
            self._lost.clear()
            await self._reconnect()

    async def _reconnect(self) -> None:
        initial, cap = self._backoff
        for attempt in itertools.count():
            delay = min(cap, initial * 2 ** min(attempt, 32))  # an outage of days: no overflow
            # equal jitter: never sooner than half the delay, and dialers that lost the same
            # Asterisk do not all come back in step
            await asyncio.sleep(self._rng.uniform(delay / 2, delay))
            try:
                link = await self._open()
                result = await link.request(
                    CoreShowChannels().to_fields(), answer_within=self._action_timeout
                )
            except PbxError as exc:
                if self._closing:
                    return
                log.warning("AMI reconnect attempt %d failed: %s", attempt + 1, exc)
                if self._opening is not None:
                    self._opening.drop("resync failed", abort=True)
                continue
            if link.lost:  # dropped after the answer was read, before this task resumed
                continue
            channels = tuple(ev for ev in result.events if isinstance(ev, CoreShowChannel))
            self._reconnects += 1
            log.info("AMI link restored; %d channels alive", len(channels))
            self._install(link, restored=LinkRestored(channels=channels))
            return

    # -- callbacks from the link: synchronous, inside asyncio's reader ------------------

    def _on_event(self, link: AmiLink, ev: AmiEvent) -> None:
        if link is self._link:
            self._put(ev)
        elif link is self._opening:
            self._held.append(ev)

    def _count_events(self, n: int) -> None:
        sec = int(asyncio.get_running_loop().time())
        if self._rate and self._rate[-1][0] == sec:
            self._rate[-1][1] += n
        else:
            self._rate.append([sec, n])
            while self._rate[0][0] < sec - RATE_WINDOW_S:
                self._rate.popleft()

    def _on_lost(self, link: AmiLink, reason: str) -> None:
        self._retired_events += link.events_received
        self._retired_malformed += link.frames_unusable
        if link is self._opening:
            self._opening = None
        if link is not self._link:
            return
        self._link = None
        if self._watchdog is not None:
            self._watchdog.cancel()
        if not self._closing:
            log.warning("AMI link lost: %s", reason)
            self._put(LinkLost(reason=reason), keep=True)
            self._lost.set()

    def _put(self, ev: AmiEvent | None, *, keep: bool = False) -> None:
        if self._queue.full():
            if not keep:
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    log.warning("AMI event queue full: %d events dropped", self._dropped)
                return
            self._queue.get_nowait()  # the oldest event makes room for this one
            self._dropped += 1
        self._queue.put_nowait(ev)


class _EventStream:
    """`AmiClient.events()`: takes queued events without a suspension while there are some
    (an async generator costs about twice as much per event)."""

    __slots__ = ("_queue",)

    def __init__(self, queue: asyncio.Queue[AmiEvent | None]) -> None:
        self._queue = queue

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> AmiEvent:
        try:
            ev = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            ev = await self._queue.get()
        if ev is None:
            self._queue.put_nowait(None)  # let any other reader stop too
            raise StopAsyncIteration
        return ev
