"""The payloads of live events, built in one place from the engine's and the board's snapshots.

Topics (relative to the MQTT prefix; `docs/events.md` documents each with an example):

- ``operators/{id}/state``, ``calls/{id}``, ``operators/{id}/screenpop``,
  ``operators/{id}/alerts``, ``campaigns/{id}/state``: published by the daemon;
- ``campaigns/{id}/stats``: published every few seconds by `publish_campaign_stats()`;
- ``crm/stats``: published by the CRM bridge (`CRM_STATS_TOPIC`); the wallboard shows its
  ``sync_lag_s``.

The bus adds the version field ``v`` (`dialer.bus.PAYLOAD_VERSION`) to every payload. A payload
only ever gains keys within a version; a key is removed or changes meaning only with a new ``v``.
`floor_snapshot()` is what the wallboard's stream sends on connect: every operator's tile and
every campaign's figures, JSON-ready.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

from acd.board import BoardStatistics, OperatorView
from dialer.bus import EventBus
from dialer.engine.stats import CampaignStatistics, EngineStatistics

log = logging.getLogger(__name__)

CRM_STATS_TOPIC: Final = "crm/stats"
STATS_INTERVAL_S: Final = 5.0
# States of a call that hold a line: what the wallboard counts as "in progress".
LIVE_CALL_STATES: Final = frozenset(
    {"dialing", "ringing", "screening", "answered-waiting", "connecting", "connected"}
)
WAITING_STATE: Final = "answered-waiting"


class _Engine(Protocol):
    def statistics(self, now: float) -> EngineStatistics: ...


class _Board(Protocol):
    def all(self) -> list[OperatorView]: ...

    def statistics(self, now: float) -> BoardStatistics: ...


def operator_tile(view: OperatorView) -> dict[str, Any]:
    """One operator as the wallboard shows them; `since` is epoch seconds of the daemon's
    clock, when they entered `state`."""
    return {
        "operator_id": view.id,
        "state": view.state.value,
        "since": view.since,
        "call_id": view.call_id,
        "pause_reason": view.pause_reason,
        "registered": view.registered,
        "calls_handled": view.calls_handled,
        "supervisor": view.profile.supervisor,
        "campaigns": sorted(view.profile.campaigns),
    }


def campaign_stats_payload(
    c: CampaignStatistics, *, abandon_target: float | None = None
) -> dict[str, Any]:
    """The ``campaigns/{id}/stats`` payload of one campaign (also the wallboard's figures).

    Rates are fractions (0.03 = 3 %) or None before the first live answer; ages and waits are
    seconds. `abandon_warning` is "over" when the 24-hour abandon rate is above the target,
    "near" from 80 % of it, else "ok" (also when there is no rate or target yet).
    """
    t = c.time_to_first_call
    in_progress = sum(n for s, n in c.calls_by_state.items() if s in LIVE_CALL_STATES)
    return {
        "campaign_id": c.campaign_id,
        "paused": c.paused,
        "pacer": c.pacer.name,
        "pacing_mode": c.pacer.mode,
        "dial_level": round(c.dial_level, 3),
        "answer_rate": c.pacer.answer_rate,
        "calls_by_state": dict(c.calls_by_state),
        "calls_in_progress": in_progress,
        "calls_waiting": c.calls_by_state.get(WAITING_STATE, 0),
        "longest_wait_s": round(c.longest_wait_s, 1),
        "originated": c.originated,
        "live_answers": c.live_answers,
        "abandons": c.abandons,
        "abandon_rate_1h": c.abandon_rate_1h,
        "abandon_rate_24h": c.abandon_rate_24h,
        "abandon_rate_30d": c.abandon_rate_30d,
        "abandon_target": abandon_target,
        "abandon_warning": abandon_warning(c.abandon_rate_24h, abandon_target),
        "orders_waiting": c.leads_waiting,
        "orders_due": c.leads_due,
        "oldest_order_age_s": _round(c.oldest_lead_age_s),
        "ttfc": {
            "count": t.count,
            "p50_s": _round(t.p50_s),
            "p90_s": _round(t.p90_s),
            "max_s": _round(t.max_s),
        },
    }


def abandon_warning(rate: float | None, target: float | None) -> str:
    """The warning colour's name: "over" above the target, "near" from 80 % of it, else "ok"."""
    if rate is None or not target:
        return "ok"
    if rate > target:
        return "over"
    return "near" if rate >= 0.8 * target else "ok"


def board_payload(b: BoardStatistics) -> dict[str, Any]:
    """Operators by state, how many could take a call now, and the longest idle time."""
    return {
        "by_state": {s.value: n for s, n in b.by_state.items()},
        "ready": b.ready,
        "longest_idle_s": round(b.longest_idle_s, 1),
        "unregistered": b.unregistered,
        "calls_handled": b.total_calls_handled,
    }


def floor_figures(
    *,
    engine: _Engine,
    board: _Board,
    now: float,
    abandon_targets: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The floor's figures without the operator tiles: `now`, `campaigns`, `board`."""
    targets = abandon_targets or {}
    stats = engine.statistics(now)
    return {
        "now": now,
        "campaigns": {
            cid: campaign_stats_payload(c, abandon_target=targets.get(cid))
            for cid, c in stats.campaigns.items()
        },
        "board": board_payload(board.statistics(now)),
    }


def floor_snapshot(
    *,
    engine: _Engine,
    board: _Board,
    now: float,
    abandon_targets: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """`floor_figures()` plus `operators`: every operator's tile, in board order."""
    figures = floor_figures(engine=engine, board=board, now=now, abandon_targets=abandon_targets)
    figures["operators"] = [operator_tile(v) for v in board.all()]
    return figures


async def publish_campaign_stats(
    *,
    bus: EventBus,
    engine: _Engine,
    now: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    abandon_targets: Mapping[str, float] | None = None,
    interval_s: float = STATS_INTERVAL_S,
) -> None:
    """Publish ``campaigns/{id}/stats`` for every campaign every `interval_s`, until cancelled.

    `sleep` is the daemon clock's (`Clock.sleep`), so a scaled clock publishes in its own time.
    A failing snapshot is logged and skipped; the next round tries again.
    """
    while True:
        try:
            stats = engine.statistics(now())
            targets = abandon_targets or {}
            for cid, c in stats.campaigns.items():
                payload = campaign_stats_payload(c, abandon_target=targets.get(cid))
                bus.publish(f"campaigns/{cid}/stats", payload)
        except Exception:  # a wallboard figure must never stop the daemon
            log.exception("campaign statistics not published")
        await sleep(interval_s)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
