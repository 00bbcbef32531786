"""What /metrics exports from the snapshots: campaigns, inbound queues, operators, the CRM relay
and the AMI link; and the counts kept as things happen (sync lag, operators' talk and wrap-up).

The engine and the board are real (no PBX); the inbound queue comes from a hand-built
`QueueStatistics`, as the engine will report it; the CRM relay's figures come from a real
`DeliveryLedger` told of acknowledgements. The same engine driven over the Asterisk simulator
is in test_metrics_sim.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from dialer.bus import EventBus
from dialer.engine.engine import DialerEngine
from dialer.engine.stats import (
    CampaignStatistics,
    EngineStatistics,
    QueueStatistics,
    TimeToFirstCall,
)
from dialer.metrics import LABELS, OperatorTimes, SnapshotCollector, make_registry
from dialer.relay_stats import DeliveryLedger
from tests.test_wallboard import T0, floor

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

DELIVERY = QueueStatistics(
    line_id="delivery",
    waiting=3,
    longest_wait_s=41.5,
    offered=120,
    answered=100,
    answered_within_sl=85,
    abandoned=12,
    callbacks=5,
    service_level_s=20.0,
    service_level=85 / 117,
    asa_s=9.25,
)


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


class WithQueues:
    """The real engine's statistics, with inbound queues added the way the engine fills them,
    and optionally the figures a busy campaign has (`busy=True`)."""

    def __init__(
        self, engine: DialerEngine, queues: dict[str, QueueStatistics], *, busy: bool = False
    ) -> None:
        self._engine, self._queues, self._busy = engine, queues, busy

    def statistics(self, now: float) -> EngineStatistics:
        stats = self._engine.statistics(now)
        campaigns = {cid: busy(c) if self._busy else c for cid, c in stats.campaigns.items()}
        return dataclasses.replace(stats, queues=self._queues, campaigns=campaigns)


def busy(c: CampaignStatistics) -> CampaignStatistics:
    """`c` with every optional figure filled, as after some hours of calling."""
    return dataclasses.replace(
        c,
        pacer=dataclasses.replace(c.pacer, answer_rate=0.41),
        abandon_rate_1h=0.02,
        abandon_rate_24h=0.018,
        abandon_rate_30d=0.019,
        oldest_lead_age_s=512.0,
        time_to_first_call=TimeToFirstCall(
            count=10, deferred=1, mean_s=3.0, p50_s=2.5, p90_s=6.0, max_s=9.0
        ),
    )


def ami(**overrides: Any) -> SimpleNamespace:
    figures = dict(
        connected=True, reconnects=2, events_per_s=37.5, events_total=4200, events_dropped=0
    )
    return SimpleNamespace(statistics=lambda: SimpleNamespace(**{**figures, **overrides}))


def scrape(collector: SnapshotCollector) -> Samples:
    _, render = make_registry(collector)
    body, content_type = render()
    assert content_type.startswith("text/plain")
    return samples(body.decode())


def test_an_inbound_line_is_exported_by_line() -> None:
    board, engine = floor()
    both = {"delivery": DELIVERY, "complaints": dataclasses.replace(
        DELIVERY, line_id="complaints", waiting=0, longest_wait_s=0.0, service_level=None,
        asa_s=None, offered=0, answered=0, answered_within_sl=0, abandoned=0, callbacks=0,
    )}  # fmt: skip
    found = scrape(
        SnapshotCollector(engine=WithQueues(engine, both), board=board, now=lambda: T0 + 60)
    )
    line = {"line": "delivery"}
    assert value(found, "obzvon_queue_waiting", **line) == 3
    assert value(found, "obzvon_queue_longest_wait_seconds", **line) == 41.5
    assert value(found, "obzvon_queue_service_level", **line) == pytest.approx(85 / 117)
    assert value(found, "obzvon_queue_service_level_threshold_seconds", **line) == 20
    assert value(found, "obzvon_queue_asa_seconds", **line) == 9.25
    for name, n in (("offered", 120), ("answered", 100), ("answered_within_sl", 85),
                    ("abandoned", 12), ("callbacks", 5)):  # fmt: skip
        assert value(found, f"obzvon_queue_{name}_total", **line) == n
    # a line nobody has called yet: counts are 0, the ratios are absent rather than made up
    quiet = {"line": "complaints"}
    assert value(found, "obzvon_queue_waiting", **quiet) == 0
    assert value(found, "obzvon_queue_offered_total", **quiet) == 0
    assert ("obzvon_queue_service_level", frozenset(quiet.items())) not in found
    assert ("obzvon_queue_asa_seconds", frozenset(quiet.items())) not in found


def test_without_inbound_lines_no_queue_series_are_exported() -> None:
    board, engine = floor()
    found = scrape(SnapshotCollector(engine=engine, board=board, now=lambda: T0))
    assert not [name for name, _ in found if name.startswith("obzvon_queue_")]


def test_campaign_operators_and_floor_occupancy() -> None:
    board, engine = floor(operators=4)
    for op in ("1001", "1002", "1003"):
        board.login(op, T0)
        board.ready(op, T0)
    board.reserve("1001", "call-1", T0 + 10)
    found = scrape(SnapshotCollector(engine=engine, board=board, now=lambda: T0 + 60, ami=ami()))
    campaign = {"campaign": "confirm"}
    assert value(found, "obzvon_calls", state="dialing", **campaign) == 0
    assert value(found, "obzvon_orders_waiting", due="all", **campaign) == 0
    assert value(found, "obzvon_campaign_paused", **campaign) == 0
    assert value(found, "obzvon_abandons_total", **campaign) == 0
    assert value(found, "obzvon_operators", state="ready") == 2
    assert value(found, "obzvon_operators", state="reserved") == 1
    assert value(found, "obzvon_operators", state="offline") == 1
    # one of the three logged in is busy with a call
    assert value(found, "obzvon_occupancy") == pytest.approx(1 / 3)
    assert value(found, "obzvon_operators_ready") == 2
    assert value(found, "obzvon_operator_state", operator="1001", state="reserved") == 1
    assert value(found, "obzvon_operator_calls_handled_total", operator="1002") == 0
    assert value(found, "obzvon_ami_connected") == 1
    assert value(found, "obzvon_ami_reconnects_total") == 2
    assert value(found, "obzvon_ami_events_total") == 4200
    assert value(found, "obzvon_ami_events_per_second") == 37.5


def test_a_busy_campaigns_rates_ages_and_time_to_first_call() -> None:
    board, engine = floor()
    collector = SnapshotCollector(
        engine=WithQueues(engine, {}, busy=True), board=board, now=lambda: T0
    )
    found = scrape(collector)
    campaign = {"campaign": "confirm"}
    for window, rate in (("1h", 0.02), ("24h", 0.018), ("30d", 0.019)):
        assert value(found, "obzvon_abandon_rate", window=window, **campaign) == rate
    assert value(found, "obzvon_answer_rate", **campaign) == 0.41
    assert value(found, "obzvon_oldest_order_age_seconds", **campaign) == 512
    for q, seconds in (("0.5", 2.5), ("0.9", 6.0), ("1", 9.0)):
        assert value(found, "obzvon_time_to_first_call_seconds", quantile=q, **campaign) == seconds


def test_every_label_is_one_of_the_bounded_few() -> None:
    board, engine = floor()
    relay = DeliveryLedger(sla_s=900, lag_samples=100, publish=lambda *_: None)
    relay.acknowledged([(1, "outcome", T0)], T0 + 3)
    registry = CollectorRegistry(auto_describe=False)
    collector = SnapshotCollector(
        engine=WithQueues(engine, {"delivery": DELIVERY}),
        board=board,
        now=lambda: T0,
        ami=ami(),
        relay=SimpleNamespace(statistics=lambda: relay.snapshot(T0 + 5)),
    )
    OperatorTimes(registry, now=lambda: T0).changed("1001", "talking", T0)
    _, render = make_registry(collector, registry)
    found = samples(render()[0].decode())
    used = {label for _, labels in found for label, _ in labels}
    assert used <= LABELS | {"le"}, used - LABELS


def test_crm_sync_lag_is_a_histogram_that_counts_each_acknowledgement_once() -> None:
    board, engine = floor()
    ledger = DeliveryLedger(sla_s=900, lag_samples=100, publish=lambda *_: None)
    clock = SimpleNamespace(now=T0)
    relay = SimpleNamespace(statistics=lambda: ledger.snapshot(clock.now))
    collector = SnapshotCollector(engine=engine, board=board, now=lambda: clock.now, relay=relay)
    _, render = make_registry(collector)

    ledger.acknowledged([(1, "outcome", T0 - 4), (2, "call", T0 - 30)], T0)
    first = samples(render()[0].decode())
    again = samples(render()[0].decode())  # nothing new: the same histogram
    ledger.acknowledged([(3, "outcome", T0 - 1000)], T0 + 5)  # over the 15-minute SLA
    clock.now = T0 + 10
    later = samples(render()[0].decode())

    lag = "obzvon_crm_delivery_lag_seconds"
    outcome = {"kind": "outcome"}
    assert value(first, f"{lag}_count", **outcome) == 1
    assert value(first, f"{lag}_bucket", le="5.0", **outcome) == 1
    assert value(first, f"{lag}_bucket", le="2.0", **outcome) == 0
    assert value(first, f"{lag}_count", kind="call") == 1
    assert value(first, f"{lag}_bucket", le="30.0", kind="call") == 1
    assert again == first
    assert value(later, f"{lag}_count", **outcome) == 2
    assert value(later, f"{lag}_sum", **outcome) == pytest.approx(4 + 1005)
    assert value(later, f"{lag}_bucket", le="900.0", **outcome) == 1
    assert value(later, f"{lag}_bucket", le="+Inf", **outcome) == 2
    assert value(later, "obzvon_crm_sla_breaches_total") == 1
    assert value(later, "obzvon_crm_delivered_total") == 3
    assert value(later, "obzvon_crm_backlog") == 0


def test_talk_and_wrapup_are_timed_per_operator_from_their_state_changes() -> None:
    registry = CollectorRegistry(auto_describe=False)
    times = OperatorTimes(registry, now=lambda: T0)
    for at, op, state in [
        (0, "1001", "ready"), (5, "1001", "reserved"), (7, "1001", "ringing"),
        (9, "1001", "talking"), (99, "1001", "talking"),  # a repeat changes nothing
        (129, "1001", "wrap-up"), (141, "1001", "ready"),
        (10, "1002", "talking"), (70, "1002", "wrap-up"),  # still in wrap-up
    ]:  # fmt: skip
        times.changed(op, state, T0 + at)

    def get(name: str, operator: str) -> float | None:
        return registry.get_sample_value(name, {"operator": operator})

    assert get("obzvon_operator_talk_seconds_count", "1001") == 1
    assert get("obzvon_operator_talk_seconds_sum", "1001") == 120
    assert get("obzvon_operator_wrapup_seconds_count", "1001") == 1
    assert get("obzvon_operator_wrapup_seconds_sum", "1001") == 12
    assert get("obzvon_operator_talk_seconds_sum", "1002") == 60
    assert get("obzvon_operator_wrapup_seconds_count", "1002") is None  # not over yet


async def test_operator_times_follow_the_bus() -> None:
    bus = EventBus()
    registry = CollectorRegistry(auto_describe=False)
    clock = SimpleNamespace(now=T0)
    times = OperatorTimes(registry, now=lambda: clock.now)
    task = asyncio.create_task(times.run(bus))
    try:
        await asyncio.sleep(0)
        for at, state in ((0, "talking"), (45, "wrap-up"), (50, "ready")):
            clock.now = T0 + at
            bus.publish("operators/1001/state", {"operator_id": "1001", "state": state})
            await asyncio.sleep(0.01)
        bus.publish("operators/1001/screenpop", {"operator_id": "1001"})  # not a state
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    talk = registry.get_sample_value("obzvon_operator_talk_seconds_sum", {"operator": "1001"})
    wrapup = registry.get_sample_value("obzvon_operator_wrapup_seconds_sum", {"operator": "1001"})
    assert (talk, wrapup) == (45, 5)
