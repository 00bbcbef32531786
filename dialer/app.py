"""The composition root: settings in, a running daemon out. Wiring happens here and only here.

`open_runtime()` builds every object from `Settings` by keyword arguments (database, bus,
board, engine, AMI client, daemon, HTTP app) and tears them down in reverse. `run_daemon()` is
what `obzvon run` executes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry

from acd.board import OperatorBoard
from acd.performance import PerformanceBook, PerformanceSettings
from crm_bridge.adapter import CrmAdapter
from dialer.bus import EventBus, MqttForwarder
from dialer.callers import CallerDirectory, LineRules, PhoneLookup
from dialer.clock import Clock, LiveClock
from dialer.config import Settings
from dialer.control import DaemonControl
from dialer.crm_cursor import CursorFile
from dialer.crm_factory import first_cursor, intake_rules, make_adapter, relay_statuses
from dialer.daemon import Daemon
from dialer.engine import events as ev
from dialer.engine.engine import DialerEngine
from dialer.engine.scheduling import Lead
from dialer.events_schema import floor_snapshot, publish_campaign_stats
from dialer.http.app import create_app
from dialer.http.schemas import Principal
from dialer.http.supervisor import EngineSupervision, supervisor_router
from dialer.http.wallboard import wallboard_router
from dialer.http.webhook import webhook_router
from dialer.intake import IntakeService
from dialer.learning import Learning
from dialer.metrics import EventMetrics, OperatorTimes, SnapshotCollector, make_registry
from dialer.recordings import RecordingLinks, keep_recordings, recordings_router
from dialer.relay import OutboxRelay
from dialer.reports import reports_router, today_by_category
from dialer.settings_map import campaign_rules, operator_profile, routing_policy
from dialer.storage.db import Database
from dialer.storage.migrate import upgrade_async
from dialer.store import NewOrder, Store
from dialer.telephony import AmiTranslator, DialSettings
from pbx.channels import ChannelTracker
from pbx.client import AmiClient
from pbx.commands import Hangup as AmiHangup
from pbx.errors import PbxError

log = logging.getLogger(__name__)

# The zone reports and the wallboard's "today" are counted in.
REPORT_TZ = "Europe/Moscow"


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    db: Database
    bus: EventBus
    board: OperatorBoard
    engine: DialerEngine
    store: Store
    daemon: Daemon
    control: DaemonControl
    ami: AmiClient
    http: uvicorn.Server
    intake: IntakeService
    crm: CrmAdapter | None
    relay: OutboxRelay | None
    learning: Learning
    operator_times: OperatorTimes

    async def add_order(self, **fields: Any) -> int:
        """Store an order as given (`repo.add_order`'s fields, without intake's rules: for
        simulated shops and tests) and hand it to the engine at once; returns its id."""
        now = self.clock.now()
        # In the writer's turn: stored with what queued up meanwhile, in one transaction (an
        # order in a transaction of its own waits for the writer's lock on SQLite anyway).
        lead = await self.daemon.write(NewOrder(fields, now))
        if isinstance(lead, Exception):
            raise lead
        assert isinstance(lead, Lead)
        await self.daemon.submit(ev.OrderArrived(lead=lead, now=now))
        return int(lead.order_id)


def inbound_lines(settings: Settings) -> tuple[dict[str, LineRules], dict[str, str]]:
    """The shop numbers' inbound lines (by digits), and the campaign placing each line's
    callbacks (the configured one, else the first outbound campaign)."""
    outbound = [c.id for c in settings.campaigns if c.inbound is None]
    lines: dict[str, LineRules] = {}
    callbacks: dict[str, str] = {}
    for c in settings.campaigns:
        if c.inbound is None:
            continue
        rules = LineRules(
            line_id=c.id,
            delivery_days=c.inbound.delivery_days,
            crm_timeout_s=c.inbound.crm_lookup_timeout_s,
        )
        for number in c.inbound.numbers:
            lines[number.lstrip("+")] = rules
        target = c.inbound.callback_campaign or (outbound[0] if outbound else None)
        if target is not None:
            callbacks[c.id] = target
    return lines, callbacks


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    server = settings.ami[0]
    if not server.tls:
        return None
    return ssl.create_default_context(cafile=str(server.tls_ca) if server.tls_ca else None)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    migrate: bool = True,
    ami_port: int | None = None,
    tick_s: float = 1.0,
    on_command: Callable[[object], None] | None = None,
    dial: DialSettings | None = None,
) -> AsyncIterator[Runtime]:
    """Everything built and connected (database migrated, AMI logged in); not yet running."""
    clock = clock or LiveClock()
    if migrate:
        await upgrade_async(settings.database.url)
    server = settings.ami[0]
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(Database(settings.database.url))
        bus = EventBus()
        board = OperatorBoard()
        now = clock.now()
        for o in settings.operators:
            board.add(operator_profile(o, settings.campaigns), now)
        book = PerformanceBook(
            PerformanceSettings(half_life_s=settings.routing.half_life_days * 86400)
        )
        learning = Learning(book=book, db=db, now=clock.now, sleep=clock.sleep)
        await learning.load()
        engine = DialerEngine(
            campaigns=[campaign_rules(c) for c in settings.campaigns],
            board=board,
            router=routing_policy(settings.routing, book),
            id_factory=lambda: str(uuid.uuid4()),
        )
        registry = CollectorRegistry(auto_describe=False)
        operator_times = OperatorTimes(registry, now=clock.now)
        store = Store(
            db,
            now=clock.now,
            ami_server=server.name,
            on_outcome=learning.outcome,
            metrics=EventMetrics(registry),
        )
        ami = await stack.enter_async_context(
            AmiClient(
                host=server.host,
                port=ami_port or server.port,
                username=server.username,
                secret=server.secret.get_secret_value(),
                ssl=_ssl_context(settings),
            )
        )
        await recover(ami, store, now=clock.now())
        for lead in await store.pending_leads([c.id for c in settings.campaigns]):
            engine.handle(ev.OrderArrived(lead=lead, now=clock.now()))
        tracker = ChannelTracker()
        translator = AmiTranslator(
            tracker=tracker, operators={o.endpoint: o.id for o in settings.operators}
        )
        daemon = Daemon(
            engine=engine,
            ami_client=ami,
            translator=translator,
            store=store,
            bus=bus,
            clock=clock,
            dial=dial
            or DialSettings(
                dial_template=server.dial_template, recordings_dir=server.recordings_dir
            ),
            tick_s=tick_s,
            on_command=on_command,
        )
        crm = make_adapter(settings.crm)
        if crm is not None:
            stack.push_async_callback(crm.aclose)
        daemon.lines, daemon.callback_campaigns = inbound_lines(settings)
        lookup = crm if isinstance(crm, PhoneLookup) else None
        daemon.callers = CallerDirectory(db, crm=lookup, now=clock.now)
        confirmation = next((c.id for c in settings.campaigns if c.line == "confirmation"), None)
        intake = IntakeService(
            db=db,
            rules=intake_rules(
                settings.crm,
                fraud_base=settings.intake.fraud_base,
                numbering_plan=settings.intake.numbering_plan,
                shop_timezone=settings.intake.shop_timezone,
                verify_after=timedelta(seconds=settings.intake.verify_after_s),
            ),
            campaign_id=settings.intake.campaign or confirmation or settings.campaigns[0].id,
            submit=daemon.submit,
            now=clock.now,
            sleep=clock.sleep,
        )
        secret = settings.http.recording_url_secret
        public = settings.http.public_url
        links = RecordingLinks.from_settings(
            secret.get_secret_value() if secret is not None else None,
            ttl_s=settings.http.recording_url_ttl_s,
            now=clock.now,
            base_url=str(public) if public is not None else "",
        )
        relay = (
            OutboxRelay(
                db,
                crm,
                clock.now,
                clock.sleep,
                publish=bus.publish,
                statuses=relay_statuses(settings.crm),
                # a CRM keeps the link: only a public, signed one is any use to it
                record_url=links.url if public is not None else None,
            )
            if crm is not None
            else None
        )
        tokens = {
            o.token.get_secret_value(): Principal(id=o.id, role=o.role)
            for o in settings.operators
            if o.token is not None
        }
        control = DaemonControl(
            engine=engine,
            board=board,
            submit=daemon.submit,
            now=clock.now,
            tokens=tokens,
            order_card=store.order_card,
            caller_card=store.caller_card,
        )
        for event in await daemon.refresh_devices():
            engine.handle(event)
        _, render = make_registry(
            SnapshotCollector(engine=engine, board=board, now=clock.now, ami=ami, relay=relay),
            registry,
        )
        app = create_app(control, metrics=render)
        abandon_targets = {c.id: c.abandon_target for c in settings.campaigns}
        app.include_router(
            wallboard_router(
                bus=bus,
                snapshot=lambda: floor_snapshot(
                    engine=engine, board=board, now=clock.now(), abandon_targets=abandon_targets
                ),
                authenticate=control.authenticate,
                now=clock.now,
                today=lambda: today_by_category(db, now=clock.now(), tz=REPORT_TZ),
                queues=lambda: engine.statistics(clock.now()).queues,
            )
        )
        supervision = EngineSupervision(
            board=board,
            submit=daemon.submit,
            now=clock.now,
            spy=ami.spy,
            endpoints={o.id: o.endpoint for o in settings.operators if o.role != "operator"},
        )
        app.include_router(
            supervisor_router(
                supervision=supervision, authenticate=control.authenticate, db=db, now=clock.now
            )
        )
        app.include_router(
            recordings_router(
                db=db,
                links=links,
                authenticate=control.authenticate,
                roots=[Path(s.recordings_dir) for s in settings.ami],
            )
        )
        app.include_router(
            reports_router(db=db, authenticate=control.authenticate, now=clock.now, tz=REPORT_TZ)
        )
        if settings.crm.webhook_secret is not None:
            app.include_router(
                webhook_router(
                    intake=intake,
                    secret=settings.crm.webhook_secret.get_secret_value(),
                    now=clock.now,
                )
            )
        http = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.http.host,
                port=settings.http.port,
                log_level="warning",
                lifespan="off",
                # an open wallboard stream must not hold a shutdown
                timeout_graceful_shutdown=2,
            )
        )
        yield Runtime(
            settings=settings,
            clock=clock,
            db=db,
            bus=bus,
            board=board,
            engine=engine,
            store=store,
            daemon=daemon,
            control=control,
            ami=ami,
            http=http,
            intake=intake,
            crm=crm,
            relay=relay,
            learning=learning,
            operator_times=operator_times,
        )


async def recover(ami: AmiClient, store: Store, *, now: float, retry_s: float = 600.0) -> None:
    """Match the attempts left live in the database against Asterisk's channels.

    Every such attempt is closed and its order rescheduled (see `Store.recover`). A customer
    still waiting in silence is hung up; one already talking to an operator is left alone.
    """
    channels = await ami.core_show_channels()
    by_id = {ch.uniqueid: ch for ch in channels}
    closed = await store.recover(list(by_id), now, retry_s=retry_s)
    for call_id in closed:
        ch = by_id[call_id]
        if ch.bridge_id:
            log.warning("call %s survived a restart in a conversation; left to finish", call_id)
            continue
        log.warning("call %s survived a restart with nobody on it; hanging up", call_id)
        try:
            await ami.hangup(AmiHangup(channel=ch.channel))
        except PbxError as exc:
            log.warning("could not hang up %s: %s", call_id, exc)


def background_jobs(rt: Runtime) -> list[Callable[[], Awaitable[None]]]:
    """The HTTP server and, when configured, the MQTT forwarder."""
    jobs: list[Callable[[], Awaitable[None]]] = [rt.http.serve, rt.learning.run]
    jobs.append(lambda: rt.operator_times.run(rt.bus))
    days = rt.settings.http.recording_retention_days
    if days > 0:
        roots = [Path(s.recordings_dir) for s in rt.settings.ami]
        jobs.append(
            lambda: keep_recordings(
                rt.db, retention_days=days, roots=roots, now=rt.clock.now, sleep=rt.clock.sleep
            )
        )
    if rt.settings.mqtt is not None:
        m = rt.settings.mqtt
        forwarder = MqttForwarder(
            rt.bus,
            host=m.host,
            port=m.port,
            username=m.username,
            password=m.password.get_secret_value() if m.password else None,
            prefix=m.topic_prefix,
        )
        jobs.append(forwarder.run)
    if rt.crm is not None and rt.relay is not None:
        crm = rt.crm
        cursor = CursorFile(
            rt.settings.intake.cursor_file,
            initial=first_cursor(crm, datetime.fromtimestamp(rt.clock.now(), UTC)),
        )
        poll_s = rt.settings.crm.poll_interval_s
        jobs.append(lambda: rt.intake.run_pull(crm, cursor, poll_s))
        jobs.append(rt.relay.run)
    targets = {c.id: c.abandon_target for c in rt.settings.campaigns}
    jobs.append(
        lambda: publish_campaign_stats(
            bus=rt.bus,
            engine=rt.engine,
            now=rt.clock.now,
            sleep=rt.clock.sleep,
            abandon_targets=targets,
        )
    )
    return jobs


async def run_daemon(settings: Settings) -> None:
    """`obzvon run`: serve until SIGTERM or SIGINT, then drain (live calls finish)."""
    async with open_runtime(settings) as rt:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, rt.daemon.drain)
        log.info("obzvon running; HTTP on %s", settings.http.listen)
        await rt.daemon.run(extra=background_jobs(rt))
        rt.http.should_exit = True
