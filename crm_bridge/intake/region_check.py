"""Does the phone's region agree with the delivery address?

An order from a Novosibirsk number for delivery to Moscow is often fine (people travel, move,
send gifts) but is also how fraudulent orders look. A mismatch therefore flags the order and
asks for a second, verification call some time after the first; it never rejects it.

Pure: takes the phone, the delivery region and the reference tables, returns a decision.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from crm_bridge.intake.numbering import NumberingPlan
from crm_bridge.intake.phone import ValidPhone
from crm_bridge.intake.regions import Region, RegionDirectory


class RegionOutcome(enum.StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    UNKNOWN = "unknown"  # one side could not be placed: no flag


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionCheck:
    """The decision. `verify_at` is set exactly when the outcome is a mismatch.

    `phone_regions` and `delivery_regions` are region keys (``"RU-SVE"``), or a bare country
    code (``"KZ"``) when only the country is known.
    """

    outcome: RegionOutcome
    phone_regions: frozenset[str]
    delivery_regions: frozenset[str]
    verify_at: datetime | None = None
    reason: str = ""


def phone_regions(
    phone: ValidPhone, *, plan: NumberingPlan | None, directory: RegionDirectory
) -> frozenset[Region]:
    """The regions a number was issued for, per the numbering plan; empty if not known."""
    if plan is None or phone.region != "RU":
        return frozenset()
    info = plan.lookup(phone.e164)
    return directory.resolve(info.region) if info is not None else frozenset()


def check_region(
    phone: ValidPhone,
    *,
    delivery_region: str | None,
    delivery_country: str | None,
    plan: NumberingPlan | None,
    directory: RegionDirectory,
    now: datetime,
    verify_after: timedelta,
) -> RegionCheck:
    """Compare the phone's region with the delivery region.

    Countries are compared first (a Kazakh number for delivery in Russia is a mismatch);
    within Russia the numbering plan places the number. A number range serving two subjects
    ("Moscow and Moscow region") matches either. A mismatch schedules the verification call
    at ``now + verify_after``.
    """
    delivery = directory.resolve(delivery_region)
    country = (delivery_country or "").upper() or next(iter({r.country for r in delivery}), "")
    from_phone = phone_regions(phone, plan=plan, directory=directory)
    phone_keys = frozenset(r.key for r in from_phone) or frozenset({phone.region})
    delivery_keys = frozenset(r.key for r in delivery) or (
        frozenset({country}) if country else frozenset()
    )
    if country and country != phone.region:
        return _mismatch(
            phone_keys,
            delivery_keys,
            now + verify_after,
            f"phone is from {phone.region}, delivery to {country}",
        )
    if not from_phone or not delivery:
        return RegionCheck(
            outcome=RegionOutcome.UNKNOWN,
            phone_regions=phone_keys,
            delivery_regions=delivery_keys,
        )
    if from_phone & delivery:
        return RegionCheck(
            outcome=RegionOutcome.MATCH, phone_regions=phone_keys, delivery_regions=delivery_keys
        )
    names = ", ".join(sorted(r.name for r in from_phone))
    return _mismatch(
        phone_keys,
        delivery_keys,
        now + verify_after,
        f"phone issued for {names}, delivery to {', '.join(sorted(r.name for r in delivery))}",
    )


def _mismatch(
    phone_keys: frozenset[str], delivery_keys: frozenset[str], verify_at: datetime, reason: str
) -> RegionCheck:
    return RegionCheck(
        outcome=RegionOutcome.MISMATCH,
        phone_regions=phone_keys,
        delivery_regions=delivery_keys,
        verify_at=verify_at,
        reason=reason,
    )
