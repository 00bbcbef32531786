"""The daemon: a thin asyncio driver around the sans-I/O engine.

Inputs become engine events on one bounded inbox; a single task feeds them to the engine in
order and carries out the commands it returns:

- AMI events (through `AmiTranslator`), ticks of the clock, operator requests over HTTP, new
  orders from intake → engine events;
- engine commands → AMI actions (each in its own task of the ``ami-actions`` group, so a slow
  Asterisk never stalls the engine), database writes (in order, by one writer task), live events
  on the bus. The writer stores what has queued up in one transaction.

An Originate is carried out only after its attempt row (with the ChannelId) is stored: after a
crash every call placed can be found again, and the database's one-live-attempt-per-order index
makes a second live attempt impossible. Every task lives in a named TaskGroup. `drain()` (on
SIGTERM) stops new calls, lets live calls finish and then stops.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from crm_bridge.masking import mask_phone
from dialer.bus import EventBus
from dialer.callers import DEFAULT_TIMEZONE, CallerDirectory, LineRules
from dialer.clock import Clock
from dialer.engine import commands as cmd
from dialer.engine import events as ev
from dialer.engine.engine import DialerEngine
from dialer.store import StartAttempt, Store, Write
from dialer.telephony import (
    AmiTranslator,
    DialSettings,
    IncomingCall,
    endpoint_exten,
    originate_action,
)
from pbx import commands as ami
from pbx import dialplan
from pbx.client import AmiClient
from pbx.errors import PbxError
from pbx.events import LinkRestored

log = logging.getLogger(__name__)

INBOX_SIZE = 10_000
WRITE_BATCH = 200  # writes at most in one transaction
FLUSH_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class DaemonStatistics:
    inbox: int
    events_handled: int
    commands_run: int
    ami_errors: int
    draining: bool
    not_dialled: int = 0  # Originates the engine decided whose attempt row was refused


class Daemon:
    """Runs the engine against one AMI connection until drained or cancelled.

    `store` persists what the engine decides (`Store` in `dialer.store`); `on_command` lets a
    caller observe every command (the demo's live view does).
    """

    def __init__(
        self,
        *,
        engine: DialerEngine,
        ami_client: AmiClient,
        translator: AmiTranslator,
        store: Store,
        bus: EventBus,
        clock: Clock,
        dial: DialSettings,
        tick_s: float = 1.0,
        endpoints: dict[str, str] | None = None,
        on_command: Callable[[cmd.Command], None] | None = None,
        lines: Mapping[str, LineRules] | None = None,
        callers: CallerDirectory | None = None,
        callback_campaigns: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.ami = ami_client
        self.translator = translator
        self.store = store
        self.bus = bus
        self.clock = clock
        self.dial = dial
        self.tick_s = tick_s
        self.endpoints = endpoints or {}  # operator id → endpoint
        self.lines = dict(lines or {})  # a shop number's digits → its inbound line
        self.callers = callers
        self.callback_campaigns = dict(callback_campaigns or {})  # line → outbound campaign
        self._on_command = on_command
        self._inbox: asyncio.Queue[tuple[ev.Event, asyncio.Future[None] | None]] = asyncio.Queue(
            INBOX_SIZE
        )
        self._writes: asyncio.Queue[_Queued] = asyncio.Queue(INBOX_SIZE)
        self._actions: asyncio.TaskGroup | None = None
        self._draining = asyncio.Event()
        self._stopped = asyncio.Event()
        self._handled = self._run = self._ami_errors = self._not_dialled = 0

    # -- inputs -----------------------------------------------------------------------------

    async def submit(self, event: ev.Event) -> None:
        """Feed `event` to the engine and wait until it has been handled (commands issued).

        Raises whatever the engine raised for it (e.g. an illegal operator transition).
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._inbox.put((event, done))
        await done

    def submit_nowait(self, event: ev.Event) -> None:
        self._inbox.put_nowait((event, None))

    def drain(self) -> None:
        """Stop placing calls; stop once live calls are over."""
        if not self._draining.is_set():
            self._draining.set()
            self.submit_nowait(ev.Drain(now=self.clock.now()))

    def stop(self) -> None:
        """Stop now: live calls are left to Asterisk (and found again at the next start)."""
        self._stopped.set()

    def statistics(self) -> DaemonStatistics:
        return DaemonStatistics(
            self._inbox.qsize(),
            self._handled,
            self._run,
            self._ami_errors,
            self._draining.is_set(),
            self._not_dialled,
        )

    # -- the run ----------------------------------------------------------------------------

    async def run(self, *, extra: Sequence[Callable[[], Awaitable[None]]] = ()) -> None:
        """Run until drained (live calls over) or cancelled. `extra` coroutines (the HTTP
        server, intake pollers) run in the same task group and stop with it."""
        try:
            async with asyncio.TaskGroup() as actions:
                self._actions = actions
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._engine_loop(), name="engine")
                    tg.create_task(self._ami_events(), name="ami-events")
                    tg.create_task(self._ticker(), name="ticker")
                    tg.create_task(self._writer(), name="db-writer")
                    for i, job in enumerate(extra):
                        tg.create_task(_awaited(job), name=f"extra-{i}")
                    stopper = tg.create_task(self._stopped.wait(), name="stop-signal")
                    await stopper
                    # what the engine decided is stored before we go
                    async with asyncio.timeout(FLUSH_TIMEOUT_S):
                        await self._writes.join()
                    raise _Stop
        except* _Stop:
            pass
        finally:
            self._actions = None

    async def _ticker(self) -> None:
        # Tick every tick_s, and also exactly at the engine's next deadline (an answered
        # customer's connect budget running out), so the 2-second promise is kept to the tick.
        while True:
            now = self.clock.now()
            wake = now + self.tick_s
            deadline = self.engine.next_deadline()
            if deadline is not None and now < deadline < wake:
                wake = deadline
            await self.clock.sleep(wake - now)
            await self._inbox.put((ev.Tick(now=self.clock.now()), None))

    async def refresh_devices(self) -> list[ev.Event]:
        """Ask Asterisk for every device's state (it reports a device only on change) and
        return the registration events for operators' endpoints; after a connect or a
        reconnect the board must not believe a softphone is there when it is not."""
        try:
            states = await self.ami.device_states()
        except PbxError as exc:
            log.warning("cannot read device states: %s", exc)
            return []
        now = self.clock.now()
        return [e for state in states for e in self.translator.translate(state, now)]

    async def _resync_devices(self) -> None:
        for item in await self.refresh_devices():
            await self._inbox.put((item, None))

    async def _ami_events(self) -> None:
        async for event in self.ami.events():
            if isinstance(event, LinkRestored):
                self._spawn(self._resync_devices(), "device-resync")
            try:
                translated = self.translator.translate(event, self.clock.now())
            except Exception:  # one bad event must not stop the calls
                log.exception("cannot translate AMI event %s", event.name)
                continue
            for item in translated:
                await self._inbox.put((item, None))
            for incoming in self.translator.take_incoming():
                self._spawn(self._identify(incoming), f"identify-{incoming.call_id}")

    async def _engine_loop(self) -> None:
        inbox = self._inbox
        while True:
            event, done = await inbox.get()
            if isinstance(event, ev.OrderArrived) and not inbox.empty():
                self._arrivals(event, done)
            else:
                self._handle(event, done)
            if self._draining.is_set() and self._idle():
                self._stopped.set()

    def _arrivals(self, first: ev.OrderArrived, done: asyncio.Future[None] | None) -> None:
        """Orders that queued up one behind another while the engine was busy (a writer's
        batch of them, a CRM's page) are handed over as one `OrdersArrived`: one dialling
        decision for all of them instead of one each. What follows them waits its turn."""
        arrivals, dones = [first], [done]
        inbox, following = self._inbox, None
        while not inbox.empty():
            event, done = inbox.get_nowait()
            if not isinstance(event, ev.OrderArrived):
                following = (event, done)
                break
            arrivals.append(event)
            dones.append(done)
        if len(arrivals) == 1:
            self._handle(first, dones[0])
        else:
            try:
                commands = self.engine.handle(
                    ev.OrdersArrived(arrivals=tuple(arrivals), now=arrivals[-1].now)
                )
            except Exception:
                # one of them is refused: each on its own, so that its sender hears why (those
                # taken in already are known now and change nothing; the next tick dials them)
                log.warning("%d orders at once refused; one by one", len(arrivals), exc_info=True)
                for event, done in zip(arrivals, dones, strict=True):
                    self._handle(event, done)
            else:
                self._handled += len(arrivals)
                self._issue(commands)
                for done in dones:
                    if done is not None and not done.done():
                        done.set_result(None)
        if following is not None:
            self._handle(*following)

    def _handle(self, event: ev.Event, done: asyncio.Future[None] | None) -> None:
        try:
            commands = self.engine.handle(event)
        except Exception as exc:
            if done is not None and not done.done():
                done.set_exception(exc)
            else:
                log.exception("engine refused %s", type(event).__name__)
            return
        self._handled += 1
        self._issue(commands)
        if done is not None and not done.done():
            done.set_result(None)

    def _issue(self, commands: Sequence[cmd.Command]) -> None:
        for command in commands:
            self._dispatch(command)

    def _idle(self) -> bool:
        """No call holds a channel, and no operator is still wrapping one up."""
        stats = self.engine.statistics(self.clock.now())
        wrapping = sum(c.calls_by_state.get("wrap-up", 0) for c in stats.campaigns.values())
        return bool(stats.live_calls == 0 and wrapping == 0)

    async def _writer(self) -> None:
        # One task writes, in the engine's order; what has queued up meanwhile goes in one
        # transaction (a commit per write would not keep up with tens of calls a second).
        while True:
            batch = [await self._writes.get()]
            while len(batch) < WRITE_BATCH and not self._writes.empty():
                batch.append(self._writes.get_nowait())
            try:
                await self._write_batch(batch)
            finally:
                for _ in batch:
                    self._writes.task_done()

    async def _write_batch(self, batch: Sequence[_Queued]) -> None:
        run: list[_Pending] = []
        for item in batch:
            if isinstance(item, _Pending):
                run.append(item)
                continue
            await self._store(run)  # a job runs after what was queued before it
            run = []
            try:
                await item()
            except Exception:
                log.exception("database write failed")
        await self._store(run)

    async def _store(self, run: Sequence[_Pending]) -> None:
        if not run:
            return
        try:
            results = await self.store.write_many([p.write for p in run])
        except Exception as exc:
            if len(run) > 1:  # the transaction failed: one at a time, keep what can be kept
                for pending in run:
                    await self._store([pending])
                return
            results = [exc]
        for pending, result in zip(run, results, strict=True):
            if pending.done is not None:
                if not pending.done.done():
                    pending.done.set_result(result)
            elif isinstance(result, Exception):
                log.error("database write failed: %s", result, exc_info=result)

    async def write(self, write: Write) -> object:
        """Have the writer store `write` in its turn; its result, or the database's refusal
        (an `Exception`, returned, not raised)."""
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        await self._writes.put(_Pending(write, done))
        return await done

    def _write_later(self, write: Write) -> None:
        self._writes.put_nowait(_Pending(write))

    # -- commands ---------------------------------------------------------------------------

    def _dispatch(self, command: cmd.Command) -> None:
        self._run += 1
        if self._on_command is not None:
            self._on_command(command)
        match command:
            case cmd.Originate():
                self._spawn(self._originate(command), f"originate-{command.call_id}")
            case cmd.ConnectToOperator():
                self.translator.connecting[command.call_id] = command.operator_id
                exten = endpoint_exten(command.endpoint)
                if command.on_hold:
                    # a missed operator must send the customer back to music, not to silence
                    self._spawn(
                        self._set_then_redirect(
                            command.call_id,
                            dialplan.VAR_RETURN,
                            dialplan.CONTEXT_INBOUND,
                            dialplan.CONTEXT_CONNECT,
                            exten,
                        ),
                        f"connect-{command.call_id}",
                    )
                else:
                    self._redirect(command.call_id, dialplan.CONTEXT_CONNECT, exten)
            case cmd.Consult():
                self._consult(command)
            case cmd.BridgeToOperator():
                customer = self._channel(command.call_id)
                leg = self.translator.operator_channel(command.call_id, command.operator_id)
                if customer is None or leg is None:
                    log.warning("call %s: nothing to bridge (the call has ended)", command.call_id)
                else:
                    bridge = ami.Bridge(channel1=customer, channel2=leg)
                    self._spawn(self.ami.bridge(bridge), f"bridge-{command.call_id}")
            case cmd.HangupOperatorLeg():
                leg = self.translator.operator_channel(command.call_id, command.operator_id)
                if leg is not None:
                    hangup = ami.Hangup(channel=leg, cause=cmd.NORMAL_CLEARING)
                    self._spawn(self.ami.hangup(hangup), f"hangup-leg-{command.call_id}")
            case cmd.HoldCustomer():
                self._redirect(command.call_id, dialplan.CONTEXT_INBOUND, dialplan.EXTEN_HOLD)
            case cmd.OfferCallback():
                self._redirect(
                    command.call_id, dialplan.CONTEXT_INBOUND, dialplan.EXTEN_CALLBACK_OFFER
                )
            case cmd.SetQueuePosition():
                channel = self._channel(command.call_id)
                if channel:
                    action = ami.Setvar(
                        channel=channel,
                        variable=dialplan.VAR_POSITION,
                        value=str(command.position),
                    )
                    self._spawn(self.ami.setvar(action), f"position-{command.call_id}")
            case cmd.StoreInbound() | cmd.StoreTransfer():
                self._write_later(command)
            case cmd.RequestCallback():
                self._writes.put_nowait(functools.partial(self._callback_order, command))
            case cmd.PlayAbandon():
                self._redirect(command.call_id, dialplan.CONTEXT_ABANDON, dialplan.EXTEN_ABANDON)
            case cmd.StartRecording():
                channel = self._channel(command.call_id)
                if channel:
                    path = f"{self.dial.recordings_dir}/{command.filename}"
                    self._spawn(
                        self.ami.mix_monitor(ami.MixMonitor(channel=channel, file=path)),
                        f"record-{command.call_id}",
                    )
            case cmd.HangupCall():
                channel = self._channel(command.call_id)
                if channel:
                    self._spawn(
                        self.ami.hangup(ami.Hangup(channel=channel, cause=command.cause)),
                        f"hangup-{command.call_id}",
                    )
            case cmd.StoreAttempt() | cmd.StoreOutcome():
                self._write_later(command)
            case cmd.ScreenPop():
                self._spawn(self._screen_pop(command), f"screen-pop-{command.call_id}")
            case cmd.MissingDisposition():
                log.warning(
                    "operator %s gave no disposition for call %s",
                    command.operator_id,
                    command.call_id,
                )
                self.bus.publish(
                    f"operators/{command.operator_id}/alerts",
                    {
                        "kind": "missing-disposition",
                        "call_id": command.call_id,
                        "order_id": command.order_id,
                    },
                )
            case cmd.Publish():
                payload = dict(command.payload)
                match command.kind:
                    case "call":
                        topic = f"calls/{payload.get('call_id')}"
                    case "operator":
                        topic = f"operators/{payload.get('operator_id')}/state"
                    case "campaign":
                        topic = f"campaigns/{payload.get('campaign_id')}/state"
                    case _:
                        topic = f"{command.kind}/state"
                self.bus.publish(topic, payload)
            case _:
                log.error("no handler for command %s", type(command).__name__)

    def _consult(self, command: cmd.Consult) -> None:
        """The customer to music on hold and the operator's leg to the colleague, in one
        Redirect (the two leave their bridge together)."""
        customer = self._channel(command.call_id)
        leg = self.translator.operator_channel(command.call_id, command.operator_id)
        if customer is None or leg is None:
            log.warning("call %s: no live channels to consult from", command.call_id)
            return
        action = ami.Redirect(
            channel=customer,
            context=dialplan.CONTEXT_INBOUND,
            exten=dialplan.EXTEN_HOLD,
            extra_channel=leg,
            extra_context=dialplan.CONTEXT_CONSULT,
            extra_exten=endpoint_exten(command.endpoint),
            extra_priority=1,
        )
        self._spawn(self.ami.redirect(action), f"consult-{command.call_id}")

    def _channel(self, call_id: str) -> str | None:
        """The customer's channel of the call (the one whose Uniqueid is the ChannelId), never
        an operator's that joined it."""
        own = self.translator.tracker.customer_channel(call_id)
        if own is not None:
            return own
        channels = self.translator.tracker.channels_of(call_id)
        main = [c for c in channels if not c.endswith(";2")]
        return min(main) if main else None

    def _spawn(self, coro: Awaitable[object], name: str) -> None:
        assert self._actions is not None
        self._actions.create_task(self._guard(coro, name), name=name)

    async def _guard(self, coro: Awaitable[object], name: str) -> None:
        try:
            await coro
        except PbxError as exc:
            self._ami_errors += 1
            log.warning("%s failed: %s", name, exc)

    def _redirect(self, call_id: str, context: str, exten: str) -> None:
        channel = self._channel(call_id)
        if channel is None:
            log.warning("call %s has no live channel to redirect", call_id)
            return
        self._spawn(
            self.ami.redirect(ami.Redirect(channel=channel, context=context, exten=exten)),
            f"redirect-{call_id}",
        )

    async def _originate(self, command: cmd.Originate) -> None:
        exc = await self.write(StartAttempt(command, self.clock.now()))
        if isinstance(exc, Exception):
            # The row is the guard against dialling twice: without it, no call.
            self._not_dialled += 1
            log.error("not dialling %s: %s", mask_phone(command.phone), exc)
            await self._inbox.put(
                (ev.OriginateResult(call_id=command.call_id, reason=0, now=self.clock.now()), None)
            )
            return
        self.translator.tracker.track(command.call_id)
        reason = 0
        try:
            response = await self.ami.originate(originate_action(command, self.dial))
            reason = response.reason if response.reason is not None else 0
        except PbxError as exc:
            self._ami_errors += 1
            log.warning(
                "originate %s to %s failed: %s", command.call_id, mask_phone(command.phone), exc
            )
        if reason != 4:
            self.translator.tracker.forget(command.call_id)
        await self._inbox.put(
            (ev.OriginateResult(call_id=command.call_id, reason=reason, now=self.clock.now()), None)
        )

    async def _set_then_redirect(
        self, call_id: str, variable: str, value: str, context: str, exten: str
    ) -> None:
        channel = self._channel(call_id)
        if channel is None:
            log.warning("call %s has no live channel to redirect", call_id)
            return
        await self.ami.setvar(ami.Setvar(channel=channel, variable=variable, value=value))
        await self.ami.redirect(ami.Redirect(channel=channel, context=context, exten=exten))

    async def _identify(self, incoming: IncomingCall) -> None:
        """Recognise an inbound caller, then queue them in the engine."""
        line = self.lines.get(incoming.number.lstrip("+"))
        if line is None and len(set(self.lines.values())) == 1:
            line = next(iter(self.lines.values()))  # one line: every shop number is its
        if line is None or self.callers is None:
            log.warning(
                "call from %s to %s: no inbound line has this number; hanging up",
                mask_phone(incoming.caller),
                incoming.number,
            )
            channel = self._channel(incoming.call_id)
            if channel:
                await self.ami.hangup(ami.Hangup(channel=channel, cause=21))
            self.translator.tracker.forget(incoming.call_id)
            return
        event = await self.callers.identify(incoming.call_id, incoming.caller, line)
        await self._inbox.put((event, None))

    async def _callback_order(self, command: cmd.RequestCallback) -> None:
        campaign = self.callback_campaigns.get(command.line_id)
        if campaign is None:
            log.error("line %s has no campaign to place callbacks", command.line_id)
            return
        now = self.clock.now()
        lead = await self.store.callback_order(
            command, campaign_id=campaign, timezone=DEFAULT_TIMEZONE, now=now
        )
        await self._inbox.put((ev.OrderArrived(lead=lead, now=now), None))

    async def _screen_pop(self, command: cmd.ScreenPop) -> None:
        if command.caller:
            card = await self.store.caller_card(command.caller, command.order_id, command.call_id)
        else:
            card = await self.store.order_card(command.order_id, command.call_id)
        if command.transfer_from is not None:
            card["transfer_from"] = command.transfer_from
        self.bus.publish(f"operators/{command.operator_id}/screenpop", card, qos=1)


async def _awaited(job: Callable[[], Awaitable[None]]) -> None:
    await job()


class _Stop(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Pending:
    """A write for the writer; `done` (if any) is told its result or the database's refusal."""

    write: Write
    done: asyncio.Future[object] | None = None


# The writer's queue: writes it batches, and jobs it runs in their turn (a callback order).
_Queued = _Pending | Callable[[], Awaitable[None]]
