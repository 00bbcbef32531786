"""A call whose acknowledgement is lost is sent again, and the CRM still has it once.

Each CRM's contract server sits behind `LossyLink`, which lets the request through, lets the
CRM process it, and then loses its answer: the connection is reset as the answer starts
("reset"), or the answer never comes and the client times out ("stall"). The outbox relay
delivers rows stored as the daemon stores them, in a real SQLite database, on a virtual clock;
what is checked is what the CRM ends up with.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from crm_bridge.adapter import CrmAdapter
from crm_bridge.amocrm import AmoCrmAdapter, AmoCrmSettings
from crm_bridge.bitrix24 import Bitrix24Adapter, Bitrix24Settings
from crm_bridge.http import RetryPolicy
from crm_bridge.retailcrm import RetailCrmAdapter, RetailCrmSettings
from dialer.relay import OutboxRelay, RelayPolicy
from dialer.storage import repo
from dialer.storage.db import Database
from tests.crm_servers import amocrm, bitrix24, retailcrm
from tests.crm_servers.lossy import LossyLink
from tests.crm_servers.serve import LoopbackServer

SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
POLICY = RelayPolicy(poll_s=5.0, stats_interval_s=60.0, backoff_initial_s=10.0)
RETRY = RetryPolicy(attempts=2, backoff_initial_s=0.01, backoff_max_s=0.01)
_channels = itertools.count()


class VirtualClock:
    """The relay's and the adapter's clock: sleeping moves time on at once."""

    def __init__(self) -> None:
        self.t = T0.timestamp()
        self.until: Callable[[], bool] = lambda: False
        self.done = asyncio.Event()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        if self.until():
            self.done.set()
        await asyncio.sleep(0)


async def no_wait(_: float) -> None:
    await asyncio.sleep(0)


async def served(app: object) -> tuple[LoopbackServer, LossyLink]:
    server = LoopbackServer(app)
    await server.start()
    link = LossyLink(server.port)
    await link.start()
    return server, link


@pytest.fixture
async def links() -> AsyncIterator[list[tuple[LoopbackServer, LossyLink]]]:
    opened: list[tuple[LoopbackServer, LossyLink]] = []
    yield opened
    for server, link in opened:
        await link.stop()
        await server.stop()


async def store_calls(
    db: Database, clock: VirtualClock, *, crm: str, order: str, phone: str, calls: int
) -> list[str]:
    """`calls` finished, recorded calls of one order, stored as the daemon stores them;
    returns their ChannelIds."""
    now = datetime.fromtimestamp(clock.now(), UTC)
    channels = [f"chan-{next(_channels):06d}" for _ in range(calls)]
    async with db.session() as s:
        stored = await repo.add_order(
            s,
            crm=crm,
            external_id=order,
            phone_e164=phone,
            campaign_id="confirm",
            timezone="Europe/Moscow",
            created_at=now,
            now=now,
        )
        for channel in channels:
            await repo.add_outbox(
                s,
                kind="call",
                order_id=stored.id,
                now=now,
                payload={
                    "order_id": stored.id,
                    "crm": crm,
                    "external_id": order,
                    "channel_id": channel,
                    "phone": phone,
                    "outcome": "connected",
                    "operator_id": "1001",
                    "started_at": now.isoformat(),
                    "duration_s": 95,
                    "waiting_s": 1,
                    "recorded": True,
                },
            )
    return channels


async def deliver(
    db: Database, adapter: CrmAdapter, clock: VirtualClock, count: int
) -> OutboxRelay:
    """Run the relay until `count` rows are delivered; returns it for its statistics."""
    relay = OutboxRelay(
        db,
        adapter,
        clock.now,
        clock.sleep,
        policy=POLICY,
        record_url=lambda channel: f"https://obzvon.example/recordings/{channel}",
    )
    clock.until = lambda: relay.statistics().delivered >= count
    task = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(30):
            await clock.done.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert relay.statistics().dead_lettered == 0, relay.statistics().last_error
    return relay


# -- Bitrix24 ---------------------------------------------------------------------------------


def bitrix(link: LossyLink, clock: VirtualClock, timeout_s: float = 10.0) -> Bitrix24Adapter:
    settings = Bitrix24Settings(
        webhook_url=f"{link.url}/rest/1/webhook-key/",
        user_id=7,
        rate_per_s=500.0,
        timeout_s=timeout_s,
        retry=RETRY,
    )
    return Bitrix24Adapter(settings, sleep=no_wait, now=clock.now)


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("method", "lost", "mode"),
    [
        ("register", 1, "reset"),  # retried at once: the same CALL_ID comes back
        ("finish", 1, "reset"),  # retried at once: "Call is not found", so it went through
        ("finish", 3, "reset"),  # lost past the adapter's retries: the relay tries later
        ("finish", 3, "stall"),
        ("attachRecord", 3, "stall"),  # the call is finished; only the record goes again
    ],
)
async def test_bitrix24_records_a_call_once_when_its_answers_are_lost(
    database: Database,
    links: list[tuple[LoopbackServer, LossyLink]],
    method: str,
    lost: int,
    mode: str,
) -> None:
    state = bitrix24.Bitrix24State()
    deal = state.add_deal("89121234567")
    server, link = await served(bitrix24.create_app(state))
    links.append((server, link))
    clock = VirtualClock()
    channels = await store_calls(
        database, clock, crm="bitrix24", order=str(deal), phone="+79121234567", calls=3
    )
    link.lose_next(lost, f"telephony.externalCall.{method}".encode(), mode)  # type: ignore[arg-type]

    async with bitrix(link, clock, timeout_s=0.6 if mode == "stall" else 10.0) as crm:
        await deliver(database, crm, clock, 3)

    assert link.lost and link.budget == 0  # every loss happened
    assert sorted(r["EXTERNAL_CALL_ID"] for r in state.statistics) == channels
    assert len(state.records) == 3 and not state.open_calls


@SQLITE_ONLY
async def test_bitrix24_a_new_adapter_finds_a_call_another_one_finished(
    database: Database, links: list[tuple[LoopbackServer, LossyLink]]
) -> None:
    # As after a crash: the first adapter's finish went through, its answer was lost, and the
    # relay that sent it stopped. The row comes back after its lease to another adapter.
    state = bitrix24.Bitrix24State()
    deal = state.add_deal("89121234567")
    server, link = await served(bitrix24.create_app(state))
    links.append((server, link))
    clock = VirtualClock()
    [channel] = await store_calls(
        database, clock, crm="bitrix24", order=str(deal), phone="+79121234567", calls=1
    )
    link.lose_next(2, b"telephony.externalCall.finish")
    async with bitrix(link, clock) as first:
        relay = OutboxRelay(database, first, clock.now, clock.sleep, policy=POLICY)
        assert await relay.deliver_once() == 1  # put back for a retry
    assert relay.statistics().retried == 1 and len(state.statistics) == 1

    clock.t += POLICY.lease_s
    async with bitrix(link, clock) as second:
        await deliver(database, second, clock, 1)
    assert [r["EXTERNAL_CALL_ID"] for r in state.statistics] == [channel]


# -- amoCRM -----------------------------------------------------------------------------------


def amo(link: LossyLink, clock: VirtualClock, timeout_s: float = 10.0) -> AmoCrmAdapter:
    settings = AmoCrmSettings(
        url=link.url, token="amo-token", rate_per_s=500.0, timeout_s=timeout_s, retry=RETRY
    )
    return AmoCrmAdapter(settings, sleep=no_wait, now=clock.now)


@SQLITE_ONLY
@pytest.mark.parametrize("dedupe_uniq", [False, True], ids=["uniq-ignored", "uniq-honoured"])
@pytest.mark.parametrize("mode", ["reset", "stall"])
async def test_amocrm_records_a_call_once_when_its_answer_is_lost(
    database: Database,
    links: list[tuple[LoopbackServer, LossyLink]],
    dedupe_uniq: bool,
    mode: str,
) -> None:
    state = amocrm.AmoCrmState(limit_per_s=1000, dedupe_uniq=dedupe_uniq)
    lead = state.add_lead("89121234567", created_at=int(T0.timestamp()))
    server, link = await served(amocrm.create_app(state))
    links.append((server, link))
    clock = VirtualClock()
    state.clock = clock.now
    channels = await store_calls(
        database, clock, crm="amocrm", order=str(lead), phone="+79121234567", calls=5
    )
    link.lose_next(1, b"POST /api/v4/calls", mode)  # type: ignore[arg-type]

    async with amo(link, clock, timeout_s=0.6 if mode == "stall" else 10.0) as crm:
        relay = await deliver(database, crm, clock, 5)

    assert link.lost == ["POST /api/v4/calls HTTP/1.1"]
    assert relay.statistics().retried >= 5  # the relay sent the batch again
    assert sorted(state.uniqs()) == channels  # ... and amoCRM has each call once
    assert all(n["entity_type"] == "leads" and n["entity_id"] == lead for n in state.call_notes)


@SQLITE_ONLY
async def test_amocrm_a_new_adapter_finds_a_call_another_one_sent(
    database: Database, links: list[tuple[LoopbackServer, LossyLink]]
) -> None:
    state = amocrm.AmoCrmState(limit_per_s=1000)
    lead = state.add_lead("89121234567", created_at=int(T0.timestamp()))
    server, link = await served(amocrm.create_app(state))
    links.append((server, link))
    clock = VirtualClock()
    state.clock = clock.now
    channels = await store_calls(
        database, clock, crm="amocrm", order=str(lead), phone="+79121234567", calls=2
    )
    link.lose_next(1, b"POST /api/v4/calls")
    async with amo(link, clock) as first:
        relay = OutboxRelay(database, first, clock.now, clock.sleep, policy=POLICY)
        assert await relay.deliver_once() == 2
    assert sorted(state.uniqs()) == channels

    clock.t += POLICY.lease_s
    async with amo(link, clock) as second:
        await deliver(database, second, clock, 2)
    assert sorted(state.uniqs()) == channels


# -- RetailCRM --------------------------------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize("mode", ["reset", "stall"])
async def test_retailcrm_records_a_call_once_when_its_answer_is_lost(
    database: Database, links: list[tuple[LoopbackServer, LossyLink]], mode: str
) -> None:
    state = retailcrm.RetailCrmState()
    order = state.add_order("89121234567", created_at=T0)
    server, link = await served(retailcrm.create_app(state))
    links.append((server, link))
    clock = VirtualClock()
    channels = await store_calls(
        database, clock, crm="retailcrm", order=str(order), phone="+79121234567", calls=5
    )
    link.lose_next(3, b"/telephony/calls/upload", mode)  # type: ignore[arg-type]
    settings = RetailCrmSettings(
        url=link.url,
        api_key="test-key",
        site="shop1",
        retry=RETRY,
        timeout_s=0.6 if mode == "stall" else 10.0,
    )
    async with RetailCrmAdapter(settings, sleep=no_wait) as crm:
        await deliver(database, crm, clock, 5)

    assert link.budget == 0
    assert sorted(state.calls) == channels
    assert state.upload_sizes.count(5) >= 2  # the same batch reached the CRM more than once
