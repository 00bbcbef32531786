"""What the engine tells a pacer about the age of its leads: the ages of the next orders the
hopper would hand out, and of the orders of the calls dialing when they were dialled."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time

from acd.board import OperatorBoard
from acd.profile import OperatorProfile
from acd.routing import LongestIdle
from dialer.engine.campaign import CallingWindow, CampaignRules
from dialer.engine.engine import NEXT_LEADS_TOLD, DialerEngine
from dialer.engine.events import OperatorLogin, OperatorReady, OrderArrived, OriginateResult, Tick
from dialer.engine.pacing import PacingSnapshot, PacingStatistics
from dialer.engine.scheduling import Lead

T0 = datetime(2024, 7, 15, 9, tzinfo=UTC).timestamp()


def lead(order_id: str, created_at: float) -> Lead:
    return Lead(
        order_id=order_id,
        phone="79001234567",
        campaign_id="confirm",
        timezone="Europe/Moscow",
        created_at=created_at,
    )


class Recorder:
    """Places one call per ready operator and keeps every snapshot it is shown."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[PacingSnapshot] = []

    def calls_to_place(self, snap: PacingSnapshot) -> int:
        self.seen.append(snap)
        return min(snap.ready_operators, snap.leads_available)

    def on_attempt_result(
        self, *, now: float, hour_of_day: int, answered: bool, ring_s: float
    ) -> None:
        return None

    def on_abandon(self, *, now: float) -> None:
        return None

    def on_call_finished(self, *, now: float, talk_s: float, wrapup_s: float) -> None:
        return None

    def statistics(self) -> PacingStatistics:
        return PacingStatistics(name=self.name, mode="test", dial_level=1.0, last_reason="")


class Watcher(Recorder):
    """Keeps the snapshots and places no call."""

    def calls_to_place(self, snap: PacingSnapshot) -> int:
        self.seen.append(snap)
        return 0


def test_the_engine_tells_the_pacer_how_old_the_next_orders_and_those_dialing_are() -> None:
    rules = CampaignRules(id="confirm", calling_window=CallingWindow(start=time(0), end=time(0)))
    board = OperatorBoard()
    for op in ("a", "b"):
        board.add(OperatorProfile(id=op, endpoint=f"ep-{op}", campaigns=frozenset({"confirm"})), T0)
    pacer = Recorder()
    counter = itertools.count(1)
    engine = DialerEngine(
        campaigns=[rules],
        board=board,
        router=LongestIdle(),
        pacers={"confirm": pacer},
        id_factory=lambda: f"call-{next(counter)}",
    )
    for i, age in enumerate((600.0, 7200.0, 60.0)):
        engine.handle(OrderArrived(now=T0 - age, lead=lead(f"o-{i}", T0 - age)))
    engine.handle(OperatorLogin(now=T0, operator_id="a"))
    engine.handle(OperatorReady(now=T0, operator_id="a"))
    engine.handle(Tick(now=T0))
    first = pacer.seen[-1]
    assert first.next_lead_ages_s == (7200.0, 600.0, 60.0)  # oldest fresh order first
    assert first.dialing_lead_ages_s == () and first.dialing_elapsed_s == ()
    engine.handle(OperatorLogin(now=T0 + 4, operator_id="b"))
    engine.handle(OperatorReady(now=T0 + 4, operator_id="b"))
    engine.handle(Tick(now=T0 + 5))
    later = pacer.seen[-1]
    assert later.dialing_elapsed_s == (5.0,)
    assert later.dialing_lead_ages_s == (7200.0,)  # the order's age when it was dialled
    assert later.next_lead_ages_s == (605.0, 65.0)
    engine.handle(OriginateResult(now=T0 + 6, call_id="call-1", reason=5))  # busy
    engine.handle(Tick(now=T0 + 7))
    assert sorted(pacer.seen[-1].dialing_lead_ages_s or ()) == [65.0, 605.0]


def test_a_big_floor_is_told_the_next_256_orders_and_the_rest_count_as_fresh() -> None:
    # Walking the hopper for thousands of leads cost milliseconds a step; past the first
    # NEXT_LEADS_TOLD the pacer assumes the likeliest to answer, so it never plans more calls
    # than the truth would allow.
    rules = CampaignRules(id="confirm", calling_window=CallingWindow(start=time(0), end=time(0)))
    board = OperatorBoard()
    for i in range(100):
        board.add(
            OperatorProfile(id=f"op{i}", endpoint=f"ep-{i}", campaigns=frozenset({"confirm"})), T0
        )
    pacer = Watcher()
    counter = itertools.count(1)
    engine = DialerEngine(
        campaigns=[rules],
        board=board,
        router=LongestIdle(),
        pacers={"confirm": pacer},
        id_factory=lambda: f"call-{next(counter)}",
    )
    for i in range(1000):
        engine.handle(OrderArrived(now=T0 - 3600 + i, lead=lead(f"o-{i}", T0 - 3600 + i)))
    for i in range(100):
        engine.handle(OperatorLogin(now=T0, operator_id=f"op{i}"))
        engine.handle(OperatorReady(now=T0, operator_id=f"op{i}"))
    engine.handle(Tick(now=T0))
    snap = pacer.seen[-1]
    assert snap.leads_available == 1000
    ages = snap.next_lead_ages_s
    assert ages is not None and len(ages) == NEXT_LEADS_TOLD + 1
    assert ages[:3] == (3600.0, 3599.0, 3598.0)  # oldest first, as handed out
    assert ages[-1] == 0.0  # the rest: as fresh as can be
