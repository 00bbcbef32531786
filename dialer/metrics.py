"""Prometheus metrics, read from `statistics()` snapshots at scrape time.

Nothing in the engine counts for Prometheus: at each scrape `SnapshotCollector` asks the engine,
the operator board, the CRM relay and the AMI client for a frozen snapshot and turns it into
metric families. What happens once and must be counted as it happens (a snapshot cannot give a
histogram) is counted by `EventMetrics` (told by the store) and `OperatorTimes` (which follows
operators' state changes on the event bus).

Labels stay bounded: campaign, line and operator ids from the configuration, and states,
windows, outcomes and kinds from fixed sets (`LABELS` names every label in use); never a phone
number, an order id or a call id. docs/wallboard.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, Summary, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from acd.states import BUSY_STATES, LOGGED_IN_STATES, OperatorState
from dialer.bus import EventBus

# Every label a metric of obzvon carries (the histograms add "le").
LABELS: Final = frozenset(
    {"campaign", "state", "window", "due", "quantile", "kind", "operator", "outcome", "line"}
)
# Seconds from an outbox row being stored to the CRM acknowledging it; 900 s is the CRM's SLA.
CRM_LAG_BUCKETS: Final = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0)
ABANDON_WINDOWS: Final = (("1h", "abandon_rate_1h"), ("24h", "abandon_rate_24h"),
                          ("30d", "abandon_rate_30d"))  # fmt: skip
CALL_KINDS: Final = ("machines", "connected", "dispositions", "missing_dispositions")


def _gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, *labels: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


class SnapshotCollector(Collector):
    """Collects from `engine.statistics(now)`, `board.statistics(now)`, `relay.statistics()`
    and `ami.statistics()` (the last two optional)."""

    def __init__(
        self,
        *,
        engine: Any,
        board: Any,
        now: Callable[[], float],
        ami: Any | None = None,
        relay: Any | None = None,
    ) -> None:
        self._engine, self._board, self._now, self._ami = engine, board, now, ami
        self._relay = relay
        self._crm_lag = _LagHistogram(CRM_LAG_BUCKETS)

    def collect(self) -> Iterator[Metric]:
        now = self._now()
        stats = self._engine.statistics(now)
        yield from _campaigns(stats.campaigns)
        yield from _queues(stats.queues)
        yield from _operators(self._board.statistics(now), self._board.all())
        if self._relay is not None:
            r = self._relay.statistics()
            yield from _crm(r)
            yield self._crm_lag.family(r)
        if self._ami is not None:
            yield from _ami(self._ami.statistics())


def _campaigns(campaigns: Mapping[str, Any]) -> Iterator[Metric]:
    calls = _gauge("obzvon_calls", "Open calls by state", "campaign", "state")
    dial_level = _gauge("obzvon_dial_level", "Calls in flight per ready operator", "campaign")
    abandon = _gauge(
        "obzvon_abandon_rate", "Abandons / live answers over a window", "campaign", "window"
    )
    answers = _counter("obzvon_live_answers", "Live answers since start", "campaign")
    abandons = _counter("obzvon_abandons", "Abandoned calls since start", "campaign")
    originated = _counter("obzvon_originated", "Calls placed since start", "campaign")
    waiting = _gauge("obzvon_orders_waiting", "Orders in the hopper", "campaign", "due")
    oldest = _gauge(
        "obzvon_oldest_order_age_seconds", "Age of the oldest order waiting", "campaign"
    )
    ttfc = _gauge(
        "obzvon_time_to_first_call_seconds",
        "Order stored to first Originate, recent orders",
        "campaign",
        "quantile",
    )
    answer = _gauge(
        "obzvon_answer_rate", "Live answers per attempt, as the pacer estimates it", "campaign"
    )
    wait = _gauge(
        "obzvon_longest_wait_seconds",
        "Longest wait of an answered customer for an operator",
        "campaign",
    )
    paused = _gauge("obzvon_campaign_paused", "1 while the campaign is paused", "campaign")
    totals = _counter(
        "obzvon_calls_total_by_kind",
        "Machines, connected calls, dispositions, missing ones",
        "campaign",
        "kind",
    )
    for cid, c in campaigns.items():
        if c.pacer.answer_rate is not None:
            answer.add_metric([cid], c.pacer.answer_rate)
        wait.add_metric([cid], c.longest_wait_s)
        paused.add_metric([cid], int(c.paused))
        for kind in CALL_KINDS:
            totals.add_metric([cid, kind], getattr(c, kind))
        for state, n in c.calls_by_state.items():
            calls.add_metric([cid, str(state)], n)
        dial_level.add_metric([cid], c.dial_level)
        for window, field in ABANDON_WINDOWS:
            rate = getattr(c, field)
            if rate is not None:
                abandon.add_metric([cid, window], rate)
        answers.add_metric([cid], c.live_answers)
        abandons.add_metric([cid], c.abandons)
        originated.add_metric([cid], c.originated)
        waiting.add_metric([cid, "all"], c.leads_waiting)
        waiting.add_metric([cid, "now"], c.leads_due)
        if c.oldest_lead_age_s is not None:
            oldest.add_metric([cid], c.oldest_lead_age_s)
        t = c.time_to_first_call
        for q, v in (("0.5", t.p50_s), ("0.9", t.p90_s), ("1", t.max_s)):
            if v is not None:
                ttfc.add_metric([cid, q], v)
    yield from (calls, dial_level, abandon, answers, abandons, originated, waiting, oldest)
    yield from (ttfc, answer, wait, paused, totals)


def _queues(queues: Mapping[str, Any]) -> Iterator[Metric]:
    """Inbound lines (`dialer.engine.stats.QueueStatistics`), labelled by line id."""
    waiting = _gauge("obzvon_queue_waiting", "Inbound callers waiting for an operator", "line")
    longest = _gauge(
        "obzvon_queue_longest_wait_seconds", "Wait of the longest-waiting inbound caller", "line"
    )
    level = _gauge(
        "obzvon_queue_service_level",
        "Share of ended waits answered within the threshold (since start)",
        "line",
    )
    threshold = _gauge(
        "obzvon_queue_service_level_threshold_seconds", "The service level's threshold", "line"
    )
    asa = _gauge("obzvon_queue_asa_seconds", "Average speed of answer (since start)", "line")
    counters = {
        "offered": _counter("obzvon_queue_offered", "Inbound callers who entered the line", "line"),
        "answered": _counter("obzvon_queue_answered", "Callers who reached an operator", "line"),
        "answered_within_sl": _counter(
            "obzvon_queue_answered_within_sl", "Callers answered within the threshold", "line"
        ),
        "abandoned": _counter(
            "obzvon_queue_abandoned", "Callers who hung up while waiting", "line"
        ),
        "callbacks": _counter(
            "obzvon_queue_callbacks", "Callers who took the callback offer and left", "line"
        ),
    }
    for line, q in queues.items():
        waiting.add_metric([line], q.waiting)
        longest.add_metric([line], q.longest_wait_s)
        threshold.add_metric([line], q.service_level_s)
        if q.service_level is not None:
            level.add_metric([line], q.service_level)
        if q.asa_s is not None:
            asa.add_metric([line], q.asa_s)
        for field, family in counters.items():
            family.add_metric([line], getattr(q, field))
    yield from (waiting, longest, level, threshold, asa, *counters.values())


def _operators(board: Any, views: list[Any]) -> Iterator[Metric]:
    operators = _gauge("obzvon_operators", "Operators by state", "state")
    for state, n in board.by_state.items():
        operators.add_metric([str(state)], n)
    logged_in = sum(n for s, n in board.by_state.items() if s in LOGGED_IN_STATES)
    busy = sum(n for s, n in board.by_state.items() if s in BUSY_STATES)
    floor = GaugeMetricFamily(
        "obzvon_occupancy",
        "Share of logged-in operators busy with a call now (reserved, ringing, talking, wrap-up)",
        value=busy / logged_in if logged_in else 0.0,
    )
    occupancy = _gauge("obzvon_operator_occupancy", "Share of logged-in time on calls", "operator")
    for op, share in board.occupancy.items():
        occupancy.add_metric([op], share)
    handled = _counter("obzvon_operator_calls_handled", "Calls handled", "operator")
    for op, n in board.calls_handled.items():
        handled.add_metric([op], n)
    idle = GaugeMetricFamily(
        "obzvon_longest_idle_seconds",
        "Longest idle time of a ready operator",
        value=board.longest_idle_s,
    )
    ready = GaugeMetricFamily(
        "obzvon_operators_ready", "Operators who could take a call now", value=board.ready
    )
    state = _gauge(
        "obzvon_operator_state", "1 for each operator's current state", "operator", "state"
    )
    for view in views:
        state.add_metric([view.id, str(view.state)], 1)
    yield from (operators, floor, occupancy, handled, idle, ready, state)


def _crm(r: Any) -> Iterator[Metric]:
    """The CRM relay: what waits, what was refused, how late acknowledgements come."""
    yield GaugeMetricFamily(
        "obzvon_crm_backlog", "Outbox messages not yet delivered", value=r.backlog
    )
    if r.oldest_undelivered_s is not None:
        yield GaugeMetricFamily(
            "obzvon_crm_oldest_undelivered_seconds",
            "Age of the oldest undelivered outbox message",
            value=r.oldest_undelivered_s,
        )
    yield GaugeMetricFamily(
        "obzvon_crm_dead_letters", "Messages the CRM refused", value=r.dead_letters
    )
    yield CounterMetricFamily(
        "obzvon_crm_delivered", "Messages acknowledged by the CRM", value=r.delivered
    )
    yield CounterMetricFamily(
        "obzvon_crm_sla_breaches", "Outcomes acknowledged later than the SLA", value=r.sla_breaches
    )
    lags = sorted(sample.lag_s for sample in r.samples)
    lag = _gauge(
        "obzvon_crm_sync_lag_seconds",
        "Stored to acknowledged by the CRM, recent messages",
        "quantile",
    )
    for q in (0.5, 0.9, 0.99, 1.0):
        if lags:
            lag.add_metric([f"{q:g}"], lags[min(len(lags) - 1, max(0, round(q * len(lags)) - 1))])
    yield lag


class _LagHistogram:
    """The CRM sync lag as a cumulative histogram per message kind, built from the relay's
    recent samples: each scrape adds the samples acknowledged since the last one (the relay
    counts deliveries, and keeps the newest samples, oldest first). Deliveries that fell out of
    the relay's sample window between two scrapes (over `lag_samples`, 1000 by default) are
    not in the histogram."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self._bounds = buckets
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._seen: int | None = None

    def family(self, r: Any) -> HistogramMetricFamily:
        new = r.delivered - (self._seen or 0)
        self._seen = r.delivered
        for sample in r.samples[len(r.samples) - min(new, len(r.samples)) :]:
            self._observe(sample.kind, max(0.0, sample.lag_s))
        family = HistogramMetricFamily(
            "obzvon_crm_delivery_lag_seconds",
            "CRM sync lag: seconds from a message being stored to the CRM acknowledging it",
            labels=["kind"],
        )
        for kind, counts in sorted(self._counts.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*self._bounds, float("inf")), counts, strict=True):
                cumulative += n
                # the "le" text prometheus_client's own histograms give (5.0, +Inf)
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric([kind], buckets, sum_value=self._sums[kind])
        return family

    def _observe(self, kind: str, lag_s: float) -> None:
        counts = self._counts.setdefault(kind, [0] * (len(self._bounds) + 1))
        index = next((i for i, b in enumerate(self._bounds) if lag_s <= b), len(self._bounds))
        counts[index] += 1
        self._sums[kind] = self._sums.get(kind, 0.0) + lag_s


def _ami(a: Any) -> Iterator[Metric]:
    yield GaugeMetricFamily("obzvon_ami_connected", "AMI link up", value=int(a.connected))
    yield CounterMetricFamily("obzvon_ami_reconnects", "AMI reconnects", value=a.reconnects)
    yield GaugeMetricFamily(
        "obzvon_ami_events_per_second", "AMI events per second", value=a.events_per_s
    )
    yield CounterMetricFamily("obzvon_ami_events", "AMI events received", value=a.events_total)
    yield CounterMetricFamily(
        "obzvon_ami_events_dropped", "AMI events dropped by a full queue", value=a.events_dropped
    )


class EventMetrics:
    """What happens once and is counted as it happens (a snapshot cannot give a histogram):
    time to first call, attempts by outcome, operator outcomes. Registered on the daemon's
    registry; the store calls these after it has written what they count."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ttfc = Histogram(
            "obzvon_order_to_first_call_seconds",
            "Order stored to its first Originate",
            ["campaign"],
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600),
            registry=registry,
        )
        self.attempts = Counter(
            "obzvon_attempts", "Call attempts by how they ended", ["campaign", "outcome"],
            registry=registry,
        )  # fmt: skip
        self.outcomes = Counter(
            "obzvon_operator_outcomes", "Operator dispositions", ["operator", "outcome"],
            registry=registry,
        )  # fmt: skip
        self.talk = Histogram(
            "obzvon_talk_seconds", "Talk time of connected calls", ["campaign"],
            buckets=(15, 30, 60, 90, 120, 180, 240, 300, 450, 600, 900), registry=registry,
        )  # fmt: skip

    def first_call(self, campaign_id: str, seconds: float) -> None:
        self.ttfc.labels(campaign_id).observe(max(0.0, seconds))

    def attempt(self, campaign_id: str, outcome: str, talk_s: float | None) -> None:
        self.attempts.labels(campaign_id, outcome).inc()
        if talk_s is not None:
            self.talk.labels(campaign_id).observe(talk_s)

    def operator_outcome(self, operator_id: str | None, outcome: str) -> None:
        if operator_id:
            self.outcomes.labels(operator_id, outcome).inc()


class OperatorTimes:
    """Per operator, the time spent talking and in wrap-up, from the operators' state changes
    (``operators/{id}/state`` on the bus): ``obzvon_operator_talk_seconds`` and
    ``obzvon_operator_wrapup_seconds``, each a summary (``_sum`` / ``_count``, so the average
    is their ratio, per operator or summed over the floor).

    `changed()` is the whole logic (a state that lasted from one change to the next is observed
    when it ends); `run()` feeds it from the bus until cancelled, stamping each change with the
    daemon's clock `now` as it arrives.
    """

    TOPIC: Final = "operators/+/state"

    def __init__(self, registry: CollectorRegistry, *, now: Callable[[], float]) -> None:
        self._now = now
        self.talk = Summary(
            "obzvon_operator_talk_seconds", "Time in the talking state", ["operator"],
            registry=registry,
        )  # fmt: skip
        self.wrapup = Summary(
            "obzvon_operator_wrapup_seconds", "Time in the wrap-up state", ["operator"],
            registry=registry,
        )  # fmt: skip
        self._timed = {
            OperatorState.TALKING.value: self.talk,
            OperatorState.WRAPUP.value: self.wrapup,
        }
        self._current: dict[str, tuple[str, float]] = {}

    def changed(self, operator_id: str, state: str, now: float) -> None:
        """`operator_id` is in `state` from `now`. A repeated state changes nothing."""
        previous = self._current.get(operator_id)
        if previous is not None and previous[0] == state:
            return
        self._current[operator_id] = (state, now)
        if previous is not None and previous[0] in self._timed:
            self._timed[previous[0]].labels(operator_id).observe(max(0.0, now - previous[1]))

    async def run(self, bus: EventBus) -> None:
        sub = bus.subscribe(self.TOPIC, maxsize=10_000)
        try:
            async for message in sub:
                p = message.payload
                operator_id = p.get("operator_id") or message.topic.split("/")[1]
                if p.get("state"):
                    self.changed(str(operator_id), str(p["state"]), self._now())
        finally:
            bus.unsubscribe(sub)


def make_registry(
    collector: Collector, registry: CollectorRegistry | None = None
) -> tuple[CollectorRegistry, Callable[[], tuple[bytes, str]]]:
    """A registry holding `collector` (added to `registry` if given), and a function rendering
    it for the /metrics route."""
    registry = registry or CollectorRegistry(auto_describe=False)
    registry.register(collector)

    def render() -> tuple[bytes, str]:
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return registry, render
