"""The report's figures, drawn with matplotlib (Agg) into PNG files.

Each function takes comparison results and a path, draws one figure and returns the path; the
figures depend only on the numbers, so a re-run on the same results draws the same picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from benchmarks.sim.compare import PacingComparison, RoutingComparison
from benchmarks.sim.metrics import RunResult

__all__ = ["routing_lift", "spike_day", "talk_vs_abandon", "ttfc_distribution"]

COLOURS = {
    "progressive": "#7f7f7f",
    "adaptive": "#ff7f0e",
    "predictive": "#1f77b4",
    "oracle": "#2ca02c",
}
MARKERS = {"progressive": "s", "adaptive": "^", "predictive": "o", "oracle": "*"}
_META = {"Software": None}


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata=_META)
    plt.close(fig)
    return path


def talk_vs_abandon(comparisons: Sequence[PacingComparison], path: Path) -> Path:
    """Talk share against the run's abandon rate, one panel per scenario."""
    n = len(comparisons)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), squeeze=False)
    for ax, cmp in zip(axes.flat, comparisons, strict=False):
        target = cmp.scenario.campaign.abandon_target
        ax.axvline(100 * target, color="#d62728", lw=0.8, ls="--")
        for name, r in cmp.results.items():
            ax.scatter(
                100 * (r.abandon_rate or 0.0),
                100 * r.talk_share,
                color=COLOURS.get(name, "black"),
                marker=MARKERS.get(name, "x"),
                s=60 if name != "oracle" else 120,
                label=name,
                zorder=3,
            )
        ax.set_title(cmp.scenario.name, fontsize=9)
        ax.set_xlabel("abandon rate, % of live answers", fontsize=8)
        ax.set_ylabel("talk share, %", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.suptitle(
        "Talk share against abandon rate (dashed: the abandon target; talk-share axes zoomed)",
        y=0.995,
    )
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.965),
        ncol=len(labels),
        fontsize=8,
        frameon=False,
    )
    return _save(fig, path)


def _hours_of_day(result: RunResult, day: date, zone: str) -> np.ndarray:
    """Each sample's time in hours after local midnight of `day` in `zone`."""
    midnight = datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).timestamp()
    return (np.array([s.at for s in result.samples]) - midnight) / 3600.0


def spike_day(cmp: PacingComparison, path: Path, *, day: int) -> Path:
    """Dial level, abandon rate and leads due over one day (5-minute samples)."""
    zone = cmp.scenario.campaign.timezone
    date_of_day = cmp.scenario.start + timedelta(days=day)
    fig, (top, mid, low) = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    for name, r in cmp.results.items():
        if not r.samples:
            continue
        hours = _hours_of_day(r, date_of_day, zone)
        keep = (hours >= 0.0) & (hours <= 24.0)
        x = hours[keep]
        colour = COLOURS.get(name, "black")
        top.plot(
            x,
            [s.dial_level for s, k in zip(r.samples, keep, strict=True) if k],
            color=colour,
            lw=1,
            label=name,
        )
        rate = [
            np.nan if s.abandon_rate_1h is None else 100 * s.abandon_rate_1h
            for s, k in zip(r.samples, keep, strict=True)
            if k
        ]
        mid.plot(x, rate, color=colour, lw=1, label=name)
        low.plot(
            x,
            [s.leads_due for s, k in zip(r.samples, keep, strict=True) if k],
            color=colour,
            lw=1,
            label=name,
        )
    mid.axhline(100 * cmp.scenario.campaign.abandon_target, color="#d62728", lw=0.8, ls="--")
    top.set_ylabel("dial level\n(lines per ready operator)")
    mid.set_ylabel("abandon rate,\nlast hour, %")
    low.set_ylabel("leads due")
    low.set_xlabel(f"hour of day {day + 1}, {date_of_day:%d %b} ({zone})")
    low.set_xlim(0, 24)
    low.set_xticks(range(0, 25, 2))
    for ax in (top, mid, low):
        ax.grid(alpha=0.3)
    top.legend(fontsize=8, ncol=4)
    fig.suptitle(f"{cmp.scenario.name}: day {day + 1}, sampled every 5 minutes")
    fig.tight_layout()
    return _save(fig, path)


def ttfc_distribution(comparisons: Sequence[PacingComparison], path: Path) -> Path:
    """The share of orders first called within t seconds of being stored, per policy."""
    fig, axes = plt.subplots(
        1, len(comparisons), figsize=(4.6 * len(comparisons), 3.4), squeeze=False
    )
    for ax, cmp in zip(axes.flat, comparisons, strict=True):
        for name, r in cmp.results.items():
            values = np.sort(np.asarray(r.ttfc_samples))
            if values.size == 0:
                continue
            share = np.arange(1, values.size + 1) / values.size
            ax.step(
                np.maximum(values, 0.1),
                100 * share,
                where="post",
                color=COLOURS.get(name, "black"),
                label=name,
                lw=1.2,
            )
        ax.axvline(60, color="#d62728", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlim(0.1, 3600 * 4)
        ax.set_ylim(0, 101)
        ax.set_xlabel("seconds from order stored to first call (log)")
        ax.set_ylabel("% of orders stored in the calling window")
        ax.set_title(cmp.scenario.name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def routing_lift(comparisons: Sequence[RoutingComparison], path: Path) -> Path:
    """Each policy's lift in confirmed revenue over longest-idle, with its 95 % interval."""
    cols = min(4, len(comparisons))
    rows = -(-len(comparisons) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(comparisons) :]:
        ax.set_visible(False)
    for ax, cmp in zip(axes.flat, comparisons, strict=False):
        names = list(cmp.lifts)
        means = np.array([cmp.lifts[n].mean for n in names])
        errs = np.array(
            [
                [cmp.lifts[n].mean - cmp.lifts[n].low, cmp.lifts[n].high - cmp.lifts[n].mean]
                for n in names
            ]
        ).T
        y = np.arange(len(names))
        ax.errorbar(means / 1000, y, xerr=errs / 1000, fmt="o", color="#1f77b4", capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlabel("confirmed revenue over longest-idle, thousands")
        ax.set_title(f"{cmp.scenario.name} ({len(cmp.seeds)} seeds, 95 % CI)", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, path)
