"""Prometheus metrics, read from `statistics()` snapshots at scrape time.

Nothing in the engine counts for Prometheus: at each scrape this collector asks the engine, the
operator board and the AMI client for a frozen snapshot and turns it into metric families.
Labels stay bounded: campaign ids, states and operator ids, never phone numbers or order ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector


class SnapshotCollector(Collector):
    """Collects from `engine.statistics(now)`, `board.statistics(now)`, `ami.statistics()`."""

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

    def collect(self) -> Iterator[Metric]:
        now = self._now()
        stats = self._engine.statistics(now)
        calls = GaugeMetricFamily(
            "obzvon_calls", "Open calls by state", labels=["campaign", "state"]
        )
        dial_level = GaugeMetricFamily(
            "obzvon_dial_level", "Calls in flight per ready operator", labels=["campaign"]
        )
        abandon = GaugeMetricFamily(
            "obzvon_abandon_rate",
            "Abandons / live answers over a window",
            labels=["campaign", "window"],
        )
        answers = CounterMetricFamily(
            "obzvon_live_answers", "Live answers since start", labels=["campaign"]
        )
        abandons = CounterMetricFamily(
            "obzvon_abandons", "Abandoned calls since start", labels=["campaign"]
        )
        originated = CounterMetricFamily(
            "obzvon_originated", "Calls placed since start", labels=["campaign"]
        )
        waiting = GaugeMetricFamily(
            "obzvon_orders_waiting", "Orders in the hopper", labels=["campaign", "due"]
        )
        oldest = GaugeMetricFamily(
            "obzvon_oldest_order_age_seconds",
            "Age of the oldest order waiting",
            labels=["campaign"],
        )
        ttfc = GaugeMetricFamily(
            "obzvon_time_to_first_call_seconds",
            "Order stored to first Originate, recent orders",
            labels=["campaign", "quantile"],
        )
        answer = GaugeMetricFamily(
            "obzvon_answer_rate", "Live answers per attempt, as the pacer estimates it",
            labels=["campaign"],
        )  # fmt: skip
        wait = GaugeMetricFamily(
            "obzvon_longest_wait_seconds", "Longest wait of an answered customer for an operator",
            labels=["campaign"],
        )  # fmt: skip
        totals = CounterMetricFamily(
            "obzvon_calls_total_by_kind", "Machines, connected calls, dispositions, missing ones",
            labels=["campaign", "kind"],
        )  # fmt: skip
        for cid, c in stats.campaigns.items():
            if c.pacer.answer_rate is not None:
                answer.add_metric([cid], c.pacer.answer_rate)
            wait.add_metric([cid], c.longest_wait_s)
            for kind in ("machines", "connected", "dispositions", "missing_dispositions"):
                totals.add_metric([cid, kind], getattr(c, kind))
            for state, n in c.calls_by_state.items():
                calls.add_metric([cid, str(state)], n)
            dial_level.add_metric([cid], c.dial_level)
            for window, rate in (
                ("1h", c.abandon_rate_1h),
                ("24h", c.abandon_rate_24h),
                ("30d", c.abandon_rate_30d),
            ):
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
        yield from (
            calls,
            dial_level,
            abandon,
            answers,
            abandons,
            originated,
            waiting,
            oldest,
            ttfc,
        )

        board = self._board.statistics(now)
        operators = GaugeMetricFamily("obzvon_operators", "Operators by state", labels=["state"])
        for state, n in board.by_state.items():
            operators.add_metric([str(state)], n)
        occupancy = GaugeMetricFamily(
            "obzvon_operator_occupancy", "Share of logged-in time on calls", labels=["operator"]
        )
        for op, share in board.occupancy.items():
            occupancy.add_metric([op], share)
        handled = CounterMetricFamily(
            "obzvon_operator_calls_handled", "Calls handled", labels=["operator"]
        )
        for op, n in board.calls_handled.items():
            handled.add_metric([op], n)
        idle = GaugeMetricFamily(
            "obzvon_longest_idle_seconds", "Longest idle time of a ready operator"
        )
        idle.add_metric([], board.longest_idle_s)
        state = GaugeMetricFamily(
            "obzvon_operator_state", "1 for each operator's current state",
            labels=["operator", "state"],
        )  # fmt: skip
        for view in self._board.all():
            state.add_metric([view.id, str(view.state)], 1)
        yield from (operators, occupancy, handled, idle, state)

        if self._relay is not None:
            yield from _crm(self._relay.statistics())

        if self._ami is not None:
            a = self._ami.statistics()
            yield GaugeMetricFamily("obzvon_ami_connected", "AMI link up", value=int(a.connected))
            yield CounterMetricFamily("obzvon_ami_reconnects", "AMI reconnects", value=a.reconnects)
            yield GaugeMetricFamily(
                "obzvon_ami_events_per_second", "AMI events per second", value=a.events_per_s
            )


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
    lag = GaugeMetricFamily(
        "obzvon_crm_sync_lag_seconds",
        "Stored to acknowledged by the CRM, recent messages",
        labels=["quantile"],
    )
    for q in (0.5, 0.9, 0.99, 1.0):
        if lags:
            lag.add_metric([f"{q:g}"], lags[min(len(lags) - 1, max(0, round(q * len(lags)) - 1))])
    yield lag


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
