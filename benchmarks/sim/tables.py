"""Comparison tables as rows of text: printed by the CLI (rich) and written to the docs
(Markdown) from the same rows, so the terminal and `docs/benchmarks.md` never disagree."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.sim.compare import PacingComparison, RoutingComparison
from benchmarks.sim.policies import LEARNED
from benchmarks.sim.targets import Verdict

__all__ = ["Table", "markdown", "pacing_table", "routing_table", "verdict_table"]

Table = tuple[list[str], list[list[str]]]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def pacing_table(cmp: PacingComparison) -> Table:
    header = [
        "pacing",
        "talk share",
        "occupancy",
        "abandon",
        "max 24 h abandon",
        "TTFC p50 s",
        "TTFC p95 s",
        "p95 s, operator free",
        "confirmed",
        "revenue",
        "confirmed / op-hour",
        "unreached",
        "calls placed",
        "wall s",
    ]
    rows = [
        [
            name,
            _pct(r.talk_share),
            _pct(r.occupancy),
            _pct(r.abandon_rate),
            _pct(r.abandon_rate_max_24h),
            _s(r.ttfc_p50_s),
            _s(r.ttfc_p95_s),
            _s(r.ttfc_free_p95_s),
            str(r.confirmed),
            f"{r.confirmed_revenue:,.0f}",
            f"{r.confirmed_per_operator_hour:.2f}",
            str(r.unreached),
            str(r.calls_placed),
            f"{r.wall_s:.1f}",
        ]
        for name, r in cmp.results.items()
    ]
    return header, rows


def routing_table(cmp: RoutingComparison) -> Table:
    header = [
        "routing",
        "confirmed",
        "revenue",
        "lift over longest-idle (95 % CI)",
        "share of oracle's lift",
        "share of fair oracle's",
        "talk share",
        "occupancy ratio",
        "abandon",
    ]
    rows: list[list[str]] = []
    for name in cmp.results:
        f = cmp.mean_figures(name)
        lift = cmp.lifts.get(name)
        rows.append(
            [
                name,
                f"{f['confirmed']:.1f}",
                f"{f['confirmed_revenue']:,.0f}",
                "—"
                if lift is None
                else f"{lift.mean:+,.0f} ({lift.low:+,.0f} … {lift.high:+,.0f})",
                "—" if lift is None or lift.share is None else f"{100 * lift.share:.0f} %",
                "—"
                if lift is None or lift.fair_share is None or name not in LEARNED
                else f"{100 * lift.fair_share:.0f} %",
                _pct(f["talk_share"]),
                f"{f['occupancy_ratio']:.2f}",
                _pct(f["abandon_rate"]),
            ]
        )
    return header, rows


def verdict_table(verdicts: Sequence[Verdict]) -> Table:
    return ["target", "measured", ""], [[v.target, v.value, v.mark] for v in verdicts]


def markdown(table: Table) -> str:
    """The table as GitHub Markdown (numbers right-aligned)."""
    header, rows = table
    align = ["---"] + ["--:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
