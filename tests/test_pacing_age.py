"""Pacing by the age of the leads: the answer-by-age model, pairing results with the ages of
their orders, the pacer's response to an old or a fresh queue, and the hopper's view of the
next leads."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, time

import numpy as np
import pytest

from dialer.engine.campaign import CallingWindow, CampaignRules
from dialer.engine.hopper import Hopper
from dialer.engine.pacing import BusyOperator, PacingSnapshot
from dialer.engine.pacing_age import AgeAnswerModel, DialledAges
from dialer.engine.pacing_predictive import PredictivePacer, PredictiveSettings
from dialer.engine.scheduling import Lead

T0 = datetime(2024, 7, 15, 9, tzinfo=UTC).timestamp()
HOUR = 3600.0


def model(**kw: float) -> AgeAnswerModel:
    options: dict[str, float] = dict(
        prior_rate=0.5,
        prior_strength=2.0,
        prior_no_decay=0.5,
        hour_prior_strength=20.0,
        recent_half_life_s=HOUR,
        hourly_half_life_s=3 * 86400.0,
    )
    options.update(kw)
    return AgeAnswerModel(**options)


def feed(m: AgeAnswerModel, *, p0: float, half_life_s: float, n: int, seed: int) -> None:
    """`n` attempts on orders from a minute to a day old, answered as p0 * 2^(-age / H)."""
    rng = np.random.default_rng(seed)
    ages = np.exp(rng.uniform(math.log(60.0), math.log(86400.0), n))
    answered = rng.random(n) < p0 * 0.5 ** (ages / half_life_s)
    for i, (age, hit) in enumerate(zip(ages, answered, strict=True)):
        m.record(T0 + i, 10, float(age), bool(hit))
    m.fit()


# -- the model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("p0", "half_life_s"), [(0.55, 3 * HOUR), (0.3, 45 * 60.0)])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_model_finds_the_half_life_of_simulated_answers(
    p0: float, half_life_s: float, seed: int
) -> None:
    m = model()
    feed(m, p0=p0, half_life_s=half_life_s, n=4000, seed=seed)
    assert 0.8 * half_life_s <= m.half_life_s() <= 1.25 * half_life_s
    assert m.fresh_rate() == pytest.approx(p0, abs=0.05)
    ages = np.array([60.0, half_life_s, 3 * half_life_s])
    mean, sd = m.curve(ages)
    assert mean == pytest.approx(p0 * 0.5 ** (ages / half_life_s), abs=0.04)
    assert (sd < 0.05).all()


def test_the_model_learns_that_age_changes_nothing_when_it_does_not() -> None:
    m = model()
    feed(m, p0=0.4, half_life_s=math.inf, n=3000, seed=3)
    assert m.half_life_s() > 7 * 86400.0
    mean, _ = m.curve(np.array([60.0, 12 * HOUR]))
    assert mean[0] == pytest.approx(0.4, abs=0.03)
    assert mean[1] == pytest.approx(0.4, abs=0.04)


def test_without_attempts_the_model_is_unsure_and_leans_to_no_fading() -> None:
    mean, sd = model().curve(np.array([0.0, 12 * HOUR]))
    assert mean[0] == pytest.approx(0.5, abs=0.01)
    assert mean[1] > 0.25  # half the prior's weight says age changes nothing
    assert (sd > 0.2).all()


def test_an_hour_that_answers_half_as_often_is_told_apart_from_the_age_curve() -> None:
    m = model()
    rng = np.random.default_rng(4)
    for i in range(6000):
        hour = 10 if i % 2 else 20
        age = float(np.exp(rng.uniform(math.log(60.0), math.log(86400.0))))
        p = 0.6 * 0.5 ** (age / (3 * HOUR)) * (1.0 if hour == 10 else 0.5)
        m.record(T0 + i, hour, age, bool(rng.random() < p))
    m.fit()
    now = T0 + 6000
    ages = np.array([60.0, 2 * HOUR])
    day, _ = m.estimate(now, 10, ages)
    evening, _ = m.estimate(now, 20, ages)
    assert evening / day == pytest.approx([0.5, 0.5], abs=0.1)


# -- pairing results with ages -----------------------------------------------------------------


def dialing(
    now: float, *calls: tuple[float, float], ahead: tuple[float, ...] = ()
) -> PacingSnapshot:
    """A snapshot with calls dialing given as (placed at, age of the order when dialled)."""
    return PacingSnapshot(
        now=now,
        hour_of_day=10,
        ready_operators=1,
        calls_dialing=len(calls),
        dialing_elapsed_s=tuple(now - at for at, _ in calls),
        dialing_lead_ages_s=tuple(age for _, age in calls),
        next_lead_ages_s=ahead,
        leads_available=len(ahead),
    )


def test_each_result_is_paired_with_the_call_that_left_the_dialing_list() -> None:
    pairs = DialledAges()
    batch = T0 - 5  # two calls placed together, on a night order and a fresh one
    pairs.observe(dialing(T0, (batch, 36000.0), (batch, 60.0), (T0 - 2, 600.0)))
    pairs.result(now=T0 + 1, hour_of_day=10, answered=False, ring_s=3.0)  # the call of T0 - 2
    # answered with answering-machine detection: the result comes 2.5 s after the pick-up
    pairs.result(now=T0 + 2.5, hour_of_day=10, answered=True, ring_s=5.0)
    pairs.result(now=T0 + 2.5, hour_of_day=10, answered=False, ring_s=1.0)  # not listed
    paired = [
        (r.hour_of_day, r.answered, r.age_s) for r in pairs.observe(dialing(T0 + 3, (batch, 60.0)))
    ]
    assert sorted(paired, key=str) == sorted(
        [(10, False, 600.0), (10, True, 36000.0), (10, False, None)], key=str
    )
    assert pairs.observe(dialing(T0 + 4, (batch, 60.0))) == []


def test_a_call_that_ends_before_the_next_snapshot_is_paired_from_the_placement() -> None:
    pairs = DialledAges()
    pairs.observe(dialing(T0, ahead=(7200.0, 30.0)))
    pairs.placed(T0, (7200.0, 30.0))
    pairs.result(now=T0 + 0.8, hour_of_day=10, answered=False, ring_s=0.8)
    (result,) = pairs.observe(dialing(T0 + 1, (T0, 30.0)))
    assert (result.placed_at, result.answered, result.age_s) == (T0, False, 7200.0)


# -- the pacer ---------------------------------------------------------------------------------


def age_trained(*, p0: float = 0.6, half_life_s: float = 3 * HOUR) -> PredictivePacer:
    pacer = PredictivePacer()
    feed(pacer.answer_by_age, p0=p0, half_life_s=half_life_s, n=3000, seed=5)
    rng = np.random.default_rng(6)
    for i in range(300):
        answered = bool(rng.random() < 0.5)
        ring = rng.lognormal(math.log(10), 0.4) if answered else rng.uniform(4, 30)
        pacer.on_attempt_result(now=T0 - 600 + i, hour_of_day=10, answered=answered, ring_s=ring)
    for i in range(300):
        pacer.on_call_finished(
            now=T0 - 600 + i, talk_s=rng.lognormal(math.log(90), 0.5), wrapup_s=10
        )
    return pacer


def queue(ages: float, *, ready: int = 3) -> PacingSnapshot:
    busy = tuple(BusyOperator(phase="talking", elapsed_s=e) for e in np.linspace(10, 170, 17))
    return PacingSnapshot(
        now=T0,
        hour_of_day=10,
        ready_operators=ready,
        busy_operators=busy,
        calls_dialing=0,
        dialing_elapsed_s=(),
        dialing_lead_ages_s=(),
        next_lead_ages_s=(ages,) * 80,
        leads_available=200,
    )


def test_the_pacer_dials_more_into_a_queue_of_night_orders_than_of_fresh_ones() -> None:
    pacer = age_trained()
    fresh = pacer.calls_to_place(queue(60.0))
    fresh_rate = pacer.statistics().answer_rate
    night = pacer.calls_to_place(queue(10 * HOUR))
    night_rate = pacer.statistics().answer_rate
    assert night > 2 * fresh >= 6
    assert fresh_rate == pytest.approx(0.6, abs=0.05)
    assert night_rate == pytest.approx(0.6 * 0.5 ** (10 / 3), abs=0.03)


def test_the_pacer_ignores_ages_when_told_to() -> None:
    pacer = PredictivePacer(PredictiveSettings(by_lead_age=False))
    trained = age_trained()
    pacer.answer_time, pacer.failure_time = trained.answer_time, trained.failure_time
    pacer.handle_time, pacer.answer_rate = trained.handle_time, trained.answer_rate
    assert pacer.calls_to_place(queue(60.0)) == pacer.calls_to_place(queue(10 * HOUR))


def test_the_pacer_learns_the_half_life_from_what_the_engine_shows_it() -> None:
    """Snapshots list the calls dialing with their ages; results name none: the pacer pairs them."""
    pacer = PredictivePacer(PredictiveSettings(model_refresh_s=0.0))
    rng = np.random.default_rng(7)
    in_flight: dict[int, tuple[float, float, float, bool]] = {}  # id -> placed, age, end, answered
    ids = itertools.count()
    for t in range(6000):
        now = T0 + t
        for key, (placed, _age, end, answered) in list(in_flight.items()):
            if end <= now:
                del in_flight[key]
                pacer.on_attempt_result(
                    now=end, hour_of_day=10, answered=answered, ring_s=end - placed
                )
        ahead = tuple(float(a) for a in np.exp(rng.uniform(math.log(60), math.log(86400), 6)))
        calls = sorted(in_flight.values())
        snap = PacingSnapshot(
            now=now,
            hour_of_day=10,
            ready_operators=2,
            calls_dialing=len(calls),
            dialing_elapsed_s=tuple(now - c[0] for c in calls),
            dialing_lead_ages_s=tuple(c[1] for c in calls),
            next_lead_ages_s=ahead,
            leads_available=len(ahead),
            abandon_target=0.0,  # progressive: only the pairing is under test
        )
        for age in ahead[: pacer.calls_to_place(snap)]:
            answered = bool(rng.random() < 0.5 * 0.5 ** (age / (2 * HOUR)))
            ring = rng.uniform(1.0, 6.0)
            in_flight[next(ids)] = (now, age, now + ring, answered)
    pacer.answer_by_age.fit()
    assert pacer.answer_by_age.attempts > 0.95 * (next(ids) - len(in_flight))
    assert 0.75 * 2 * HOUR <= pacer.answer_by_age.half_life_s() <= 1.3 * 2 * HOUR


# -- what the hopper shows the pacer -----------------------------------------------------------

NINE_TO_NINE = CallingWindow(start=time(9), end=time(21))


def lead(order_id: str, created_at: float, tz: str = "Europe/Moscow") -> Lead:
    return Lead(
        order_id=order_id,
        phone="79001234567",
        campaign_id="confirm",
        timezone=tz,
        created_at=created_at,
    )


def test_the_hopper_shows_the_next_leads_in_the_order_it_hands_them_out() -> None:
    hopper = Hopper(CampaignRules(id="confirm", calling_window=NINE_TO_NINE))
    now = datetime(2024, 7, 15, 8, tzinfo=UTC).timestamp()  # 11:00 in Moscow, 04:00 in New York
    created = [now - 60 * m for m in (5, 50, 20, 110, 1, 90)]  # all stored inside the window
    for i, at in enumerate(created):
        hopper.put(lead(f"o-{i}", at), now)
    hopper.put(lead("asleep", now - 9000, tz="America/New_York"), now)
    hopper.put(lead("gone", now - 8000), now)
    hopper.discard("gone")
    shown = hopper.peek_created_at(now, 4)
    assert shown == sorted(created)[:4]
    assert len(hopper) == 7  # nothing handed out
    assert [p.lead.created_at for p in hopper.next_leads(now, 4)] == shown
    assert hopper.peek_created_at(now, 10) == sorted(created)[4:]
