"""The project's targets for pacing and routing, checked against a comparison's figures.

These are results to report, not tests: a target missed on some scenario is said so in the
tables of `docs/benchmarks.md`, with the figures behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from benchmarks.sim.compare import BASELINE, PacingComparison, RoutingComparison

__all__ = ["Verdict", "pacing_verdicts", "routing_verdicts"]

TALK_SHARE_OF_ORACLE: Final = 0.95
TTFC_P95_S: Final = 60.0
TTFC_FREE_P95_S: Final = 5.0
LIFT_SHARE_OF_ORACLE: Final = 0.80
OCCUPANCY_RATIO: Final = 1.3


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target: what it asks, the measured value, and whether it is met (None: not measurable
    here, e.g. too few live answers for a 24 h rate, or a policy that was not run)."""

    target: str
    value: str
    met: bool | None

    @property
    def mark(self) -> str:
        return {True: "met", False: "missed", None: "n/a"}[self.met]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def pacing_verdicts(cmp: PacingComparison) -> list[Verdict]:
    """The pacing targets for the predictive pacer on this scenario."""
    r = cmp.results
    pred, oracle, adaptive = r.get("predictive"), r.get("oracle"), r.get("adaptive")
    target = cmp.scenario.campaign.abandon_target
    out: list[Verdict] = []
    if pred is not None and oracle is not None and oracle.talk_share > 0:
        share = pred.talk_share / oracle.talk_share
        out.append(
            Verdict(
                "predictive talk share ≥ 95 % of the oracle's",
                f"{100 * share:.1f} % ({_pct(pred.talk_share)} vs {_pct(oracle.talk_share)})",
                share >= TALK_SHARE_OF_ORACLE,
            )
        )
    if pred is not None:
        worst = pred.abandon_rate_max_24h
        out.append(
            Verdict(
                f"predictive max rolling 24 h abandon rate ≤ {_pct(target)}",
                _pct(worst),
                None if worst is None else worst <= target + 1e-12,
            )
        )
    if pred is not None and adaptive is not None:
        p_ab, a_ab = pred.abandon_rate or 0.0, adaptive.abandon_rate or 0.0
        out.append(
            Verdict(
                "predictive talk share ≥ adaptive's at equal or lower abandon rate",
                f"talk {_pct(pred.talk_share)} vs {_pct(adaptive.talk_share)},"
                f" abandon {_pct(p_ab)} vs {_pct(a_ab)}",
                pred.talk_share >= adaptive.talk_share and p_ab <= a_ab,
            )
        )
    if pred is not None:
        p95 = pred.ttfc_p95_s
        out.append(
            Verdict(
                "predictive p95 order → first call < 60 s",
                "—" if p95 is None else f"{p95:.1f} s",
                None if p95 is None else p95 < TTFC_P95_S,
            )
        )
        free = pred.ttfc_free_p95_s
        out.append(
            Verdict(
                "predictive p95 order → first call with an operator free < 5 s",
                "—" if free is None else f"{free:.1f} s",
                None if free is None else free < TTFC_FREE_P95_S,
            )
        )
    return out


def routing_verdicts(cmp: RoutingComparison) -> list[Verdict]:
    """The routing targets for performance routing on this scenario.

    The occupancy ratio is judged on the worst seed: the target asks it of every run, not of
    their average."""
    lift = cmp.lifts.get("performance")
    if lift is None:
        return [Verdict("performance routing ≥ 80 % of the oracle's lift", "not run", None)]
    share, fair = lift.share, lift.fair_share
    ratios = [r.occupancy_ratio for r in cmp.results["performance"]]
    base = max(r.occupancy_ratio for r in cmp.results[BASELINE])
    out = [
        Verdict(
            "performance routing ≥ 80 % of the oracle's revenue lift over longest-idle",
            "—" if share is None else f"{100 * share:.0f} %",
            None if share is None else share >= LIFT_SHARE_OF_ORACLE,
        ),
        Verdict(
            "performance routing occupancy ratio (busiest / least busy) ≤ 1.3 on every seed",
            f"worst {max(ratios):.2f}, mean {sum(ratios) / len(ratios):.2f}"
            f" (longest-idle's worst {base:.2f})",
            max(ratios) <= OCCUPANCY_RATIO,
        ),
    ]
    if fair is not None:
        out.append(
            Verdict(
                "for reference: share of the fair oracle's lift (true rates, same fairness guard)",
                f"{100 * fair:.0f} %",
                None,
            )
        )
    if "oracle" in cmp.results:
        worst = max(r.occupancy_ratio for r in cmp.results["oracle"])
        out.append(
            Verdict(
                "for reference: the oracle's occupancy ratio at worst (no fairness limit)",
                f"{worst:.2f}",
                None,
            )
        )
    return out
