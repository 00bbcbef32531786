"""Who may be called, and when: leads, local calling windows, retries, callbacks, lockouts.

Everything here is a pure function of its arguments (a lead, the campaign's rules and `now`,
epoch seconds); nothing reads the clock. Local time is always the lead's own IANA time zone,
through `zoneinfo`, so a window of 09:00–21:00 means nine in the morning for the customer in
Berlin before and after the switch to summer time, in Moscow (no DST) and in Novosibirsk alike.

The rules a caller may rely on:

- a lead is dialled only inside the campaign's calling window in the lead's time zone;
- after a failed attempt the next one waits the retry plan's delay for that outcome and
  attempt number (the last delay repeats); after `max_attempts` attempts the order is final,
  "unreached"; after `max_attempts_per_day` attempts in one local day the next attempt waits
  for the window of the next local day;
- an abandoned number is locked out of predictive dialling for `abandon_lockout_s` (72 h):
  it may be dialled in that time only with an operator reserved for it;
- a callback an operator sets is due at its time; one marked "mine" is placed only with that
  operator reserved for it, i.e. it waits until that operator is free; a callback starts a new
  series of attempts (the customer was reached), the per-day count still applies;
- priority: due callbacks, then fresh orders oldest first, then retries in the order they fell
  due (see `priority`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialer.engine.campaign import CallingWindow, CampaignRules
from dialer.engine.errors import InvalidRules

__all__ = [
    "TIER_CALLBACK",
    "TIER_FRESH",
    "TIER_OVERNIGHT",
    "TIER_RETRY",
    "Lead",
    "after_attempt",
    "in_window",
    "local_date",
    "needs_reserved_operator",
    "next_window_start",
    "not_before",
    "priority",
    "record_attempt",
    "retry_delay",
    "with_callback",
    "with_lockout",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Lead:
    """One order to be called, as the scheduler sees it; validated when built.

    `attempts` counts every attempt placed for the order (in the current series),
    `attempts_today` those placed on the local date `attempts_day`. `next_attempt_at` is the
    earliest time for the next attempt (None: at once); `callback_at` marks an operator-set
    callback and `callback_operator_id` one reserved for that operator; `lockout_until` is the
    end of an abandon lockout.
    """

    order_id: str
    phone: str
    campaign_id: str
    timezone: str
    created_at: float
    category: str | None = None
    region: str | None = None
    language: str | None = None
    amount: float = 0.0
    attempts: int = 0
    attempts_today: int = 0
    attempts_day: date | None = None
    next_attempt_at: float | None = None
    callback_at: float | None = None
    callback_operator_id: str | None = None
    lockout_until: float | None = None
    last_outcome: str | None = None

    def __post_init__(self) -> None:
        for name in ("order_id", "phone", "campaign_id"):
            if not getattr(self, name):
                raise InvalidRules(f"a lead needs a {name}")
        _zone(self.timezone)
        for name in ("created_at", "next_attempt_at", "callback_at", "lockout_until"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise InvalidRules(f"lead {self.order_id}: {name} must be finite")
        if self.attempts < 0 or self.attempts_today < 0:
            raise InvalidRules(f"lead {self.order_id}: attempt counts cannot be negative")
        if self.callback_operator_id is not None and self.callback_at is None:
            raise InvalidRules(f"lead {self.order_id}: an operator callback needs a time")

    @property
    def fresh(self) -> bool:
        """True while no attempt has been placed for the order."""
        return self.attempts == 0 and self.last_outcome is None


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)  # zoneinfo caches instances: cheap on every call
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRules(f"unknown time zone {tz!r}") from exc


def local_date(now: float, tz: str) -> date:
    """The calendar date at `now` in the time zone `tz`."""
    return datetime.fromtimestamp(now, _zone(tz)).date()


def in_window(now: float, tz: str, window: CallingWindow) -> bool:
    """Whether `now` falls inside `window` on the local clock of `tz`."""
    if window.start == window.end:
        return True
    local = datetime.fromtimestamp(now, _zone(tz)).time().replace(tzinfo=None)
    if window.start < window.end:
        return window.start <= local < window.end
    return local >= window.start or local < window.end


def next_window_start(now: float, tz: str, window: CallingWindow) -> float:
    """`now` if it is inside the window, else the epoch time the window next opens in `tz`.

    Computed on local calendar dates (never by adding 86,400 s), so the answer is right across
    DST switches; a start that falls into a spring-forward gap opens when the clock jumps.
    """
    if in_window(now, tz, window):
        return now
    return _start_after(now, _zone(tz), window, datetime.fromtimestamp(now, _zone(tz)).date())


def _start_after(now: float, zone: ZoneInfo, window: CallingWindow, day: date) -> float:
    for offset in range(3):
        local = datetime.combine(day + timedelta(days=offset), window.start, tzinfo=zone)
        start = local.timestamp()
        if start > now:
            return start
    raise AssertionError("a calling window opens at least once in three days")


def _next_day_start(now: float, tz: str, window: CallingWindow) -> float:
    """When the window opens on the local day after the one `now` falls on."""
    zone = _zone(tz)
    tomorrow = datetime.fromtimestamp(now, zone).date() + timedelta(days=1)
    midnight = datetime.combine(tomorrow, datetime.min.time(), tzinfo=zone).timestamp()
    return next_window_start(midnight, tz, window)


def retry_delay(rules: CampaignRules, outcome: str, attempt: int) -> float:
    """Seconds to wait after attempt number `attempt` (1-based) ended with `outcome`."""
    if attempt < 1:
        raise InvalidRules(f"attempt numbers start at 1, got {attempt}")
    delays = rules.retry_delays(outcome)
    return delays[min(attempt, len(delays)) - 1]


def record_attempt(lead: Lead, now: float) -> Lead:
    """The lead after an attempt is placed at `now`: both counters advanced, local-day aware."""
    today = local_date(now, lead.timezone)
    today_count = lead.attempts_today + 1 if lead.attempts_day == today else 1
    return replace(lead, attempts=lead.attempts + 1, attempts_today=today_count, attempts_day=today)


def after_attempt(
    lead: Lead, outcome: str, now: float, rules: CampaignRules, *, abandoned: bool = False
) -> Lead | None:
    """The lead rescheduled after a failed attempt, or None when the order is now "unreached".

    `lead` is the one `record_attempt` returned when the attempt was placed. A callback is
    consumed by the attempt that served it. `abandoned` sets the 72 h lockout.
    """
    if lead.attempts >= rules.max_attempts:
        return None
    at = now + retry_delay(rules, outcome, max(lead.attempts, 1))
    updated = replace(
        lead,
        next_attempt_at=at,
        callback_at=None,
        callback_operator_id=None,
        last_outcome=str(outcome),
    )
    if abandoned:
        updated = with_lockout(updated, now, rules)
    return updated


def with_lockout(lead: Lead, now: float, rules: CampaignRules) -> Lead:
    """The lead locked out of predictive dialling for `rules.abandon_lockout_s` from `now`."""
    return replace(lead, lockout_until=now + rules.abandon_lockout_s)


def with_callback(lead: Lead, at: float, operator_id: str | None) -> Lead:
    """The lead after an operator set a callback at `at` (for themselves if `operator_id`).

    The customer was reached, so the callback starts a new series of attempts; the per-day
    count is kept, as it protects the customer, not the series.
    """
    return replace(
        lead,
        attempts=0,
        next_attempt_at=at,
        callback_at=at,
        callback_operator_id=operator_id,
        last_outcome="callback",
    )


def needs_reserved_operator(lead: Lead, now: float) -> bool:
    """Whether the lead may be dialled only with an operator reserved for it (progressive)."""
    locked = lead.lockout_until is not None and lead.lockout_until > now
    return locked or lead.callback_operator_id is not None


def not_before(lead: Lead, now: float, rules: CampaignRules) -> float:
    """The earliest time at or after `now` the lead may be dialled.

    Honours the retry time, the per-day limit (counted on the lead's local date) and the
    calling window; it does not look at lockouts, which need an operator, not a time.
    """
    at = max(now, lead.next_attempt_at or now)
    if (
        lead.attempts_today >= rules.max_attempts_per_day
        and lead.attempts_day is not None
        and local_date(at, lead.timezone) <= lead.attempts_day
    ):
        at = max(at, _next_day_start(at, lead.timezone, rules.calling_window))
    return next_window_start(at, lead.timezone, rules.calling_window)


# Tiers of `priority`: a promised callback first, then fresh orders stored inside their
# calling window, then those stored outside it, then retries.
TIER_CALLBACK = 0
TIER_FRESH = 1
TIER_OVERNIGHT = 2
TIER_RETRY = 3


def priority(lead: Lead, window: CallingWindow | None = None) -> tuple[int, float, float, str]:
    """Sort key of a due lead; smaller is called first.

    Due callbacks first (earliest promised time first), then fresh orders oldest first, then
    retries in the order they fell due. Given the campaign's `window`, fresh orders stored
    outside their customer's calling window (the night's orders) come after those stored
    inside it, oldest first among themselves: a customer who ordered a minute ago is by the
    phone, and while the morning's queue of night orders is worked through, every minute it
    makes them wait costs far more answers than the same minute costs the night's orders.
    """
    if lead.callback_at is not None:
        return (TIER_CALLBACK, lead.callback_at, lead.created_at, lead.order_id)
    if lead.fresh:
        if window is not None and not in_window(lead.created_at, lead.timezone, window):
            return (TIER_OVERNIGHT, lead.created_at, lead.created_at, lead.order_id)
        return (TIER_FRESH, lead.created_at, lead.created_at, lead.order_id)
    due = lead.next_attempt_at if lead.next_attempt_at is not None else lead.created_at
    return (TIER_RETRY, due, lead.created_at, lead.order_id)
