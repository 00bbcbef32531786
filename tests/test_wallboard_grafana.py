"""The Grafana dashboard in docs/grafana reads only metrics that obzvon exposes, and shows every
one of them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from dialer.metrics import EventMetrics, OperatorTimes, SnapshotCollector, make_registry
from dialer.relay_stats import DeliveryLedger
from tests.test_metrics import DELIVERY, WithQueues, ami
from tests.test_wallboard import T0, floor

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "obzvon.json"


def exposition() -> str:
    """/metrics with every family obzvon has, each with at least one sample."""
    board, engine = floor()
    ledger = DeliveryLedger(sla_s=900, lag_samples=10, publish=lambda *_: None)
    ledger.acknowledged([(1, "outcome", T0 - 5)], T0)
    ledger.waiting(count=1, oldest=T0 - 30, dead=0, overdue=(), now=T0)
    registry = CollectorRegistry(auto_describe=False)
    events = EventMetrics(registry)
    events.first_call("confirm", 3.0)
    events.attempt("confirm", "connected", 95.0)
    events.operator_outcome("1001", "upsell")
    times = OperatorTimes(registry, now=lambda: T0)
    for at, state in ((0, "talking"), (90, "wrap-up"), (100, "ready")):
        times.changed("1001", state, T0 + at)
    collector = SnapshotCollector(
        engine=WithQueues(engine, {"delivery": DELIVERY}, busy=True),
        board=board,
        now=lambda: T0,
        ami=ami(),
        relay=SimpleNamespace(statistics=lambda: ledger.snapshot(T0)),
    )
    _, render = make_registry(collector, registry)
    return render()[0].decode()


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    expressions += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return expressions


def test_every_metric_on_the_dashboard_is_exposed() -> None:
    exposed = {s.name for f in text_string_to_metric_families(exposition()) for s in f.samples}
    used = {name for e in dashboard_expressions() for name in re.findall(r"\bobzvon_\w+", e)}
    assert used, "the dashboard reads no obzvon metric"
    assert used <= exposed, sorted(used - exposed)


def test_every_metric_exposed_is_on_the_dashboard() -> None:
    families = {
        f.name
        for f in text_string_to_metric_families(exposition())
        if not f.name.endswith("_created")  # when a labelled series began: not for a panel
    }
    text = "\n".join(dashboard_expressions())
    shown = {
        name for name in families if re.search(rf"\b{name}(_total|_bucket|_sum|_count)?\b", text)
    }
    assert shown == families, sorted(families - shown)


def test_panels_do_not_overlap() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, p["title"]
        cells |= mine
    assert len({p["id"] for p in panels}) == len(panels)
