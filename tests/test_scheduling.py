"""Who is called when: local windows across zones and DST, retries, limits, callbacks,
the 72 h abandon lockout, and the hopper's order."""

from __future__ import annotations

import time as wallclock
from dataclasses import replace
from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from dialer.engine.campaign import CallingWindow, CampaignRules
from dialer.engine.errors import InvalidRules
from dialer.engine.hopper import Hopper, Pick
from dialer.engine.scheduling import (
    Lead,
    after_attempt,
    in_window,
    local_date,
    next_window_start,
    not_before,
    record_attempt,
    retry_delay,
    with_callback,
    with_lockout,
)

NINE_TO_NINE = CallingWindow(start=time(9), end=time(21))
HOUR = 3600.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def lead(order_id: str = "o-1", *, tz: str = "Europe/Moscow", created_at: float, **kw: Any) -> Lead:
    return Lead(
        order_id=order_id,
        phone="79001234567",
        campaign_id="c",
        timezone=tz,
        created_at=created_at,
        **kw,
    )


# -- calling windows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "tz", "inside"),
    [
        # Berlin, the Saturday before the March switch (CET, UTC+1): 07:30 UTC is 08:30.
        (utc(2024, 3, 30, 7, 30), "Europe/Berlin", False),
        (utc(2024, 3, 30, 8, 0), "Europe/Berlin", True),
        # The Sunday of the switch (CEST, UTC+2): 07:30 UTC is already 09:30.
        (utc(2024, 3, 31, 7, 30), "Europe/Berlin", True),
        (utc(2024, 3, 31, 18, 59), "Europe/Berlin", True),
        (utc(2024, 3, 31, 19, 0), "Europe/Berlin", False),
        # October: CEST on Saturday, CET from Sunday 03:00.
        (utc(2024, 10, 26, 7, 30), "Europe/Berlin", True),
        (utc(2024, 10, 27, 7, 30), "Europe/Berlin", False),
        (utc(2024, 10, 27, 19, 30), "Europe/Berlin", True),
        # Moscow is UTC+3 all year.
        (utc(2024, 1, 15, 6, 0), "Europe/Moscow", True),
        (utc(2024, 7, 15, 5, 59), "Europe/Moscow", False),
        (utc(2024, 7, 15, 17, 59), "Europe/Moscow", True),
        (utc(2024, 7, 15, 18, 0), "Europe/Moscow", False),
        # Novosibirsk is UTC+7: 09:00 local is 02:00 UTC.
        (utc(2024, 7, 15, 1, 59), "Asia/Novosibirsk", False),
        (utc(2024, 7, 15, 2, 0), "Asia/Novosibirsk", True),
        (utc(2024, 7, 15, 14, 0), "Asia/Novosibirsk", False),
    ],
)
def test_window_is_read_on_the_customers_own_clock(now: float, tz: str, inside: bool) -> None:
    assert in_window(now, tz, NINE_TO_NINE) is inside


@pytest.mark.parametrize(
    ("now", "tz", "opens"),
    [
        # Saturday evening before the spring switch: Sunday 09:00 CEST is 07:00 UTC.
        (utc(2024, 3, 30, 22, 0), "Europe/Berlin", utc(2024, 3, 31, 7, 0)),
        # Saturday evening before the autumn switch: Sunday 09:00 CET is 08:00 UTC.
        (utc(2024, 10, 26, 22, 0), "Europe/Berlin", utc(2024, 10, 27, 8, 0)),
        # Early morning the same local day.
        (utc(2024, 10, 27, 5, 0), "Europe/Berlin", utc(2024, 10, 27, 8, 0)),
        (utc(2024, 7, 15, 19, 0), "Europe/Moscow", utc(2024, 7, 16, 6, 0)),
        (utc(2024, 7, 15, 14, 0), "Asia/Novosibirsk", utc(2024, 7, 16, 2, 0)),
        # Inside the window: now.
        (utc(2024, 7, 15, 12, 0), "Europe/Moscow", utc(2024, 7, 15, 12, 0)),
    ],
)
def test_next_window_start_is_dst_correct(now: float, tz: str, opens: float) -> None:
    assert next_window_start(now, tz, NINE_TO_NINE) == opens


@pytest.mark.parametrize(
    ("local_hour", "inside"), [(21, False), (22, True), (0, True), (1, True), (2, False)]
)
def test_window_across_midnight(local_hour: int, inside: bool) -> None:
    night = CallingWindow(start=time(22), end=time(2))
    now = utc(2024, 7, 15, local_hour, 30) if local_hour >= 12 else utc(2024, 7, 16, local_hour)
    assert in_window(now, "UTC", night) is inside


def test_equal_start_and_end_mean_all_day() -> None:
    always = CallingWindow(start=time(0), end=time(0))
    assert all(in_window(utc(2024, 7, 15, h), "Asia/Novosibirsk", always) for h in range(24))


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(InvalidRules):
        lead(tz="Mars/Olympus", created_at=0.0)


# -- retries and limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "attempt", "delay"),
    [
        ("busy", 1, 300),
        ("busy", 4, 300),
        ("no_answer", 1, 900),
        ("no_answer", 2, 1800),
        ("no_answer", 3, 3600),
        ("no_answer", 4, 7200),
        ("no_answer", 6, 7200),
        ("congestion", 1, 120),
        ("machine", 1, 3600),
        ("failed", 2, 600),
        ("something-new", 1, 600),
    ],
)
def test_retry_delay_by_outcome_and_attempt_number(
    outcome: str, attempt: int, delay: float
) -> None:
    assert retry_delay(CampaignRules(id="c"), outcome, attempt) == delay


def test_a_campaign_may_override_one_outcome_of_the_plan() -> None:
    rules = CampaignRules(id="c", retry_plan={"busy": (60.0, 120.0)})
    assert retry_delay(rules, "busy", 2) == 120
    assert retry_delay(rules, "no_answer", 1) == 900


@pytest.mark.parametrize("budget", [0.0, 2.5, -1.0])
def test_connect_budget_over_two_seconds_is_refused(budget: float) -> None:
    with pytest.raises(InvalidRules):
        CampaignRules(id="c", connect_budget_s=budget)


def test_order_is_unreached_after_max_attempts() -> None:
    rules = CampaignRules(id="c", max_attempts=3, max_attempts_per_day=10)
    now = utc(2024, 7, 15, 8)
    current = lead(created_at=now)
    for n in range(1, 4):
        current = record_attempt(current, now)
        rescheduled = after_attempt(current, "no_answer", now, rules)
        if n < 3:
            assert rescheduled is not None
            assert rescheduled.attempts == n
            current = rescheduled
            now = rescheduled.next_attempt_at or now
        else:
            assert rescheduled is None


def test_per_day_limit_moves_the_next_attempt_to_the_next_local_morning() -> None:
    rules = CampaignRules(id="c", max_attempts_per_day=2)
    now = utc(2024, 7, 15, 8)  # 11:00 in Moscow
    current = record_attempt(record_attempt(lead(created_at=now), now), now + 60)
    assert current.attempts_today == 2
    rescheduled = after_attempt(current, "busy", now + 60, rules)
    assert rescheduled is not None
    assert not_before(rescheduled, now + 120, rules) == utc(2024, 7, 16, 6)


def test_attempts_today_restart_on_the_customers_new_day() -> None:
    # 16:30 UTC is 23:30 in Novosibirsk; 17:30 UTC is already the next day there.
    late_evening, next_day = utc(2024, 7, 15, 16, 30), utc(2024, 7, 15, 17, 30)
    first = record_attempt(lead(tz="Asia/Novosibirsk", created_at=0.0), late_evening)
    second = record_attempt(first, next_day)
    assert first.attempts_day == date(2024, 7, 15)
    assert second.attempts_day == date(2024, 7, 16) == local_date(next_day, "Asia/Novosibirsk")
    assert (second.attempts, second.attempts_today) == (2, 1)


# -- the hopper ----------------------------------------------------------------------------------


def rules_9_21() -> CampaignRules:
    return CampaignRules(id="c", calling_window=NINE_TO_NINE)


def order_ids(picks: list[Pick]) -> list[str]:
    return [p.lead.order_id for p in picks]


def test_night_orders_are_called_first_thing_in_the_morning_oldest_first() -> None:
    hopper = Hopper(rules_9_21())
    night = utc(2024, 7, 15, 20)  # 23:00 in Moscow
    for i, minutes in enumerate([50, 10, 30]):
        hopper.put(lead(f"night-{i}", created_at=night + minutes * 60), night + minutes * 60)
    assert hopper.next_leads(night + HOUR, 10) == []
    morning = utc(2024, 7, 16, 6)  # 09:00 in Moscow
    assert hopper.next_leads(morning - 1, 10) == []
    assert order_ids(hopper.next_leads(morning, 10)) == ["night-1", "night-2", "night-0"]
    assert len(hopper) == 0


def test_fresh_orders_come_before_retries_and_the_oldest_fresh_first() -> None:
    hopper = Hopper(rules_9_21())
    now = utc(2024, 7, 15, 9)
    hopper.put(
        lead(
            "retry",
            created_at=now - 5 * HOUR,
            attempts=1,
            last_outcome="busy",
            next_attempt_at=now - HOUR,
        ),
        now,
    )
    hopper.put(lead("fresh-new", created_at=now - 60), now)
    hopper.put(lead("fresh-old", created_at=now - 600), now)
    assert order_ids(hopper.next_leads(now, 2)) == ["fresh-old", "fresh-new"]
    assert order_ids(hopper.next_leads(now, 2)) == ["retry"]


def test_orders_stored_in_the_window_come_before_the_nights_orders_still_waiting() -> None:
    hopper = Hopper(rules_9_21())
    night = utc(2024, 7, 15, 20)  # 23:00 in Moscow
    for i in range(3):
        hopper.put(lead(f"night-{i}", created_at=night + i * 60), night + i * 60)
    morning = utc(2024, 7, 16, 6)  # 09:00 in Moscow
    assert order_ids(hopper.next_leads(morning, 1)) == ["night-0"]
    hopper.put(
        lead(
            "retry",
            created_at=night - HOUR,
            attempts=1,
            last_outcome="busy",
            next_attempt_at=morning,
        ),
        morning,
    )
    hopper.put(lead("new-1", created_at=morning + 120), morning + 120)
    hopper.put(lead("new-0", created_at=morning + 60), morning + 60)
    picked = order_ids(hopper.next_leads(morning + 180, 10))
    assert picked == ["new-0", "new-1", "night-1", "night-2", "retry"]


def test_a_retry_waits_for_its_time() -> None:
    hopper = Hopper(rules_9_21())
    now = utc(2024, 7, 15, 9)
    hopper.put(
        lead("r", created_at=now, attempts=1, last_outcome="busy", next_attempt_at=now + 300), now
    )
    assert hopper.next_leads(now + 299, 1) == []
    assert order_ids(hopper.next_leads(now + 300, 1)) == ["r"]


def test_a_callback_to_anyone_is_due_at_its_time_and_comes_first() -> None:
    hopper = Hopper(rules_9_21())
    now = utc(2024, 7, 15, 9)
    called = with_callback(lead("cb", created_at=now - HOUR, attempts=1), now + 600, None)
    hopper.put(called, now)
    hopper.put(lead("fresh", created_at=now - 7200), now)
    assert order_ids(hopper.next_leads(now, 5)) == ["fresh"]
    hopper.put(lead("fresh-2", created_at=now - 7200), now + 600)
    picks = hopper.next_leads(now + 600, 5)
    assert order_ids(picks) == ["cb", "fresh-2"]
    assert picks[0].operator_id is None


def test_a_callback_for_one_operator_waits_for_that_operator() -> None:
    hopper = Hopper(rules_9_21())
    now = utc(2024, 7, 15, 9)
    hopper.put(with_callback(lead("mine", created_at=now, attempts=1), now, "op-7"), now)
    assert hopper.next_leads(now, 5, ["op-1", "op-2"]) == []
    picks = hopper.next_leads(now + 10, 5, ["op-1", "op-7"])
    assert [(p.lead.order_id, p.operator_id) for p in picks] == [("mine", "op-7")]


def test_a_locked_out_number_is_dialled_only_with_an_operator_reserved() -> None:
    rules = rules_9_21()
    hopper = Hopper(rules)
    now = utc(2024, 7, 15, 9)
    dropped = with_lockout(
        lead("dropped", created_at=now - 60, attempts=1, last_outcome="abandoned"), now, rules
    )
    hopper.put(dropped, now)
    assert hopper.next_leads(now, 5) == []  # predictive: no operator offered
    picks = hopper.next_leads(now, 5, ["op-1"])
    assert [(p.lead.order_id, p.operator_id) for p in picks] == [("dropped", "op-1")]


def test_the_lockout_lasts_72_hours_then_predictive_dialling_may_resume() -> None:
    rules = CampaignRules(id="c", calling_window=CallingWindow(start=time(0), end=time(0)))
    hopper = Hopper(rules)
    now = utc(2024, 7, 15, 9)
    hopper.put(
        with_lockout(
            lead("dropped", created_at=now, attempts=1, last_outcome="abandoned"), now, rules
        ),
        now,
    )
    assert hopper.next_leads(now + 72 * HOUR - 1, 5) == []
    picks = hopper.next_leads(now + 72 * HOUR, 5)
    assert [(p.lead.order_id, p.operator_id) for p in picks] == [("dropped", None)]


def test_each_reserved_operator_goes_to_one_pick_only() -> None:
    rules = rules_9_21()
    hopper = Hopper(rules)
    now = utc(2024, 7, 15, 9)
    for i in range(3):
        hopper.put(
            with_lockout(
                lead(f"d{i}", created_at=now + i, attempts=1, last_outcome="abandoned"), now, rules
            ),
            now,
        )
    picks = hopper.next_leads(now, 5, ["op-a", "op-b"])
    assert [(p.lead.order_id, p.operator_id) for p in picks] == [("d0", "op-a"), ("d1", "op-b")]
    assert len(hopper) == 1


def test_a_lead_whose_window_closed_goes_back_to_waiting() -> None:
    hopper = Hopper(rules_9_21())
    now = utc(2024, 7, 15, 13)  # 16:00 Moscow, 20:00 Novosibirsk
    hopper.put(lead("nsk", tz="Asia/Novosibirsk", created_at=now), now)
    hopper.put(lead("msk", created_at=now + 1), now)
    later = utc(2024, 7, 15, 14, 30)  # 21:30 in Novosibirsk: closed there
    assert order_ids(hopper.next_leads(later, 5)) == ["msk"]
    assert "nsk" in hopper
    assert hopper.due_count(later) == 0
    assert order_ids(hopper.next_leads(utc(2024, 7, 16, 2), 5)) == ["nsk"]


def test_replacing_and_discarding_a_lead() -> None:
    hopper = Hopper(rules_9_21())
    now = utc(2024, 7, 15, 9)
    hopper.put(lead("a", created_at=now), now)
    hopper.put(replace(lead("a", created_at=now), next_attempt_at=now + 60), now)
    assert len(hopper) == 1
    assert hopper.next_leads(now, 5) == []
    assert hopper.discard("a") is not None
    assert hopper.next_leads(now + 60, 5) == [] and len(hopper) == 0
    assert hopper.oldest_created_at() is None


def test_hopper_stays_cheap_at_ten_thousand_leads() -> None:
    hopper = Hopper(rules_9_21())
    now = utc(2024, 7, 15, 10)  # every order below was stored inside its calling window
    zones = ["Europe/Moscow", "Asia/Novosibirsk", "Europe/Berlin", "Asia/Almaty"]
    for i in range(10_000):
        hopper.put(lead(f"o{i}", tz=zones[i % 4], created_at=now - i), now)
    started = wallclock.perf_counter()
    handed = 0
    for tick in range(200):
        handed += len(hopper.next_leads(now + tick, 5))
    elapsed = wallclock.perf_counter() - started
    assert handed == 1000
    assert elapsed < 0.5
    assert hopper.oldest_created_at() == now - 8999  # the 1,000 oldest were handed out
