"""The Grafana dashboard in docs/grafana reads only metrics that obzvon exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from dialer.metrics import SnapshotCollector, make_registry
from tests.test_wallboard import T0, floor

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "obzvon.json"


def exposed_names() -> set[str]:
    board, engine = floor()
    ami = SimpleNamespace(
        statistics=lambda: SimpleNamespace(connected=True, reconnects=0, events_per_s=0.0)
    )
    registry, _ = make_registry(
        SnapshotCollector(engine=engine, board=board, now=lambda: T0, ami=ami)
    )
    names = set()
    for family in registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_every_metric_on_the_dashboard_is_exposed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    expressions += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = {name for e in expressions for name in re.findall(r"\bobzvon_[a-z0-9_]+", e)}
    assert used, "the dashboard reads no obzvon metric"
    assert used <= exposed_names(), sorted(used - exposed_names())


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
