"""The abandon target is a promise: the guard stops dialling ahead before the next abandon
would cross it, not only after it has."""

from __future__ import annotations

import pytest

from dialer.engine.pacing import AbandonGuard, PacingSnapshot


class AlwaysThree:
    """A pacer that always wants three calls: whatever is below it decides."""

    name = "three"

    def calls_to_place(self, snap: PacingSnapshot) -> int:
        return 3

    def on_attempt_result(self, **_: object) -> None: ...

    def on_abandon(self, **_: object) -> None: ...

    def on_call_finished(self, **_: object) -> None: ...

    def statistics(self) -> object:
        return None


def snap(abandons: int, answers: int) -> PacingSnapshot:
    return PacingSnapshot(
        now=1000.0,
        hour_of_day=12,
        ready_operators=1,
        leads_available=10,
        abandon_rate=abandons / answers if answers else None,
        abandon_target=0.03,
        abandon_counts=(abandons, answers),
    )


@pytest.mark.parametrize(
    ("abandons", "answers", "calls"),
    [
        (0, 0, 3),  # no answer yet: nothing to protect, the pacer decides
        (0, 10, 1),  # one abandon now would be 1/11 = 9 %: progressive
        (0, 32, 1),  # 1/33 = 3.03 %: progressive
        (0, 33, 3),  # 1/34 = 2.94 %: room for one abandon, the pacer decides
        (1, 40, 1),  # 2/41 = 4.9 %: progressive
        (2, 100, 3),  # 3/101 = 2.97 %: room left
        (3, 100, 1),  # the rate is at the target
    ],
)
def test_guard_dials_progressively_while_one_more_abandon_would_cross_the_target(
    abandons: int, answers: int, calls: int
) -> None:
    guard = AbandonGuard(AlwaysThree())  # type: ignore[arg-type]
    assert guard.calls_to_place(snap(abandons, answers)) == calls
