"""The abandon ledger: exact counts over 1 h / 24 h / 30 d windows, edges included, bounded."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dialer.engine.abandon import DAY, HOUR, MONTH_30D, AbandonLedger, SlidingCounts

T0 = 1_700_000_000.0


def _brute(events: list[tuple[float, int]], now: float, window: float, kind: int) -> int:
    lo, hi = math.floor(now - window), math.floor(now)
    return sum(1 for t, k in events if k == kind and lo < math.floor(t) <= hi)


@pytest.mark.parametrize(
    ("answers_at", "abandons_at", "now", "window", "expected"),
    [
        # The window is (now - window, now]: the left edge is out, the right edge is in.
        ([T0], [], T0 + HOUR, HOUR, (0, 0)),
        ([T0 + 1], [], T0 + HOUR, HOUR, (0, 1)),
        ([T0 + HOUR], [T0 + HOUR], T0 + HOUR, HOUR, (1, 1)),
        ([T0 + HOUR + 1], [], T0 + HOUR, HOUR, (0, 0)),
        ([T0, T0 + DAY - 1, T0 + DAY], [T0 + 5], T0 + DAY, DAY, (1, 2)),
        ([T0, T0 + 10, T0 + MONTH_30D], [T0, T0 + 10], T0 + MONTH_30D, MONTH_30D, (1, 2)),
        # Stamps are resolved to whole seconds.
        ([T0 + 0.9], [], T0 + HOUR + 0.2, HOUR, (0, 0)),
        ([T0 + 1.2], [], T0 + HOUR + 0.9, HOUR, (0, 1)),
    ],
)
def test_window_edges_are_exact(
    answers_at: list[float],
    abandons_at: list[float],
    now: float,
    window: float,
    expected: tuple[int, int],
) -> None:
    ledger = AbandonLedger()
    for t in sorted(answers_at):
        ledger.record_live_answer(t)
    for t in sorted(abandons_at):
        ledger.record_abandon(t)
    assert ledger.counts(now, window) == expected


def test_rate_is_abandons_over_live_answers_and_none_without_answers() -> None:
    ledger = AbandonLedger()
    assert ledger.rate(T0, DAY) is None
    for i in range(40):
        ledger.record_live_answer(T0 + i)
    ledger.record_abandon(T0 + 3)
    assert ledger.rate(T0 + 100, DAY) == pytest.approx(1 / 40)
    assert ledger.rate(T0 + 2 * DAY, DAY) is None


@pytest.mark.parametrize("window", [HOUR, DAY, MONTH_30D, 0.5, 61.0])
def test_counts_match_a_brute_force_count_over_a_random_stream(window: float) -> None:
    rng = np.random.default_rng(7)
    # Five weeks of irregular traffic, with some stamps slightly out of order.
    times = np.sort(rng.uniform(T0, T0 + 35 * DAY, 4000))
    times[::97] -= rng.uniform(0, 30, times[::97].shape[0])
    kinds = (rng.random(times.shape[0]) < 0.05).astype(int)
    ledger = AbandonLedger()
    events: list[tuple[float, int]] = []
    for t, k in zip(times.tolist(), kinds.tolist(), strict=True):
        (ledger.record_abandon if k else ledger.record_live_answer)(t)
        events.append((t, k))
    last = max(times.tolist())
    for now in [last, last - 0.5, last - HOUR, last - 3 * DAY + 0.25, T0 + 34 * DAY]:
        kept = [(t, k) for t, k in events if math.floor(t) > math.floor(last) - MONTH_30D]
        expected = (_brute(kept, now, window, 1), _brute(kept, now, window, 0))
        assert ledger.counts(now, window) == expected


def test_late_events_are_counted_in_their_own_second() -> None:
    ledger = AbandonLedger()
    ledger.record_live_answer(T0 + 100)
    ledger.record_live_answer(T0 + 50)
    ledger.record_abandon(T0 + 50)
    ledger.record_live_answer(T0 + 100)
    assert ledger.counts(T0 + 100, 51) == (1, 3)
    assert ledger.counts(T0 + 100, 50) == (0, 2)
    assert ledger.counts(T0 + 60, 20) == (1, 1)


def test_memory_stays_bounded_at_5000_answers_a_day() -> None:
    ledger = AbandonLedger()
    per_day = 5000
    step = DAY / per_day
    days = 32
    for i in range(per_day * days):
        ledger.record_live_answer(T0 + i * step)
        if i % 40 == 0:
            ledger.record_abandon(T0 + i * step)
    now = T0 + (per_day * days - 1) * step
    assert ledger.bucket_count <= 30 * per_day + 1
    assert ledger.bucket_count >= 30 * per_day - 1
    abandons, answers = ledger.counts(now, MONTH_30D)
    assert answers == 30 * per_day
    assert abandons == 30 * per_day // 40
    assert ledger.counts(now, DAY)[1] == per_day


def test_capacity_grows_within_a_constant_factor_of_what_is_stored() -> None:
    counts = SlidingCounts(kinds=1, retention_s=HOUR)
    for i in range(20 * 3600):
        counts.add(T0 + i, 0)
        assert counts.bucket_count <= 3600
    assert counts.capacity <= 4 * 3600


def test_windows_longer_than_the_retention_are_refused() -> None:
    ledger = AbandonLedger()
    with pytest.raises(ValueError, match="window_s"):
        ledger.rate(T0, MONTH_30D + 1)
    with pytest.raises(ValueError, match="window_s"):
        ledger.counts(T0, 0)


def test_events_older_than_the_retention_are_ignored() -> None:
    counts = SlidingCounts(kinds=2, retention_s=HOUR)
    counts.add(T0 + 2 * HOUR, 0)
    counts.add(T0, 1)
    assert counts.counts(T0 + 2 * HOUR, HOUR) == (1, 0)
    assert counts.bucket_count == 1
