"""The customer's time zone, for calling windows ("09:00-21:00 their time").

Best source first: the delivery region (where the customer will be when the parcel comes),
then the region the phone number was issued for, then the phone's country, then the shop's
default. Russia spans eleven zones, so "Russia" alone is a poor answer: a 09:00-21:00 window
read in Moscow time calls a Vladivostok customer from 16:00 to 04:00.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from crm_bridge.intake.numbering import NumberingPlan
from crm_bridge.intake.phone import ValidPhone
from crm_bridge.intake.region_check import phone_regions
from crm_bridge.intake.regions import COUNTRY_ZONES, RegionDirectory


class ZoneSource(enum.StrEnum):
    DELIVERY_REGION = "delivery_region"
    PHONE_REGION = "phone_region"
    PHONE_COUNTRY = "phone_country"
    DELIVERY_COUNTRY = "delivery_country"
    SHOP_DEFAULT = "shop_default"


@dataclass(frozen=True, slots=True)
class CustomerZone:
    """An IANA zone name and where it was learnt from."""

    tz: str
    source: ZoneSource


def customer_timezone(
    *,
    delivery_region: str | None,
    delivery_country: str | None,
    phone: ValidPhone | None,
    plan: NumberingPlan | None,
    directory: RegionDirectory,
    shop_default: str,
) -> CustomerZone:
    """The zone to use for this customer's calling window. Never fails: the shop's default
    is the last resort. When a source names several regions in different zones (a number
    range for "Moscow and Moscow region" is one zone, but not every pair is), it is skipped.
    """
    zones = {r.tz for r in directory.resolve(delivery_region)}
    if len(zones) == 1:
        return CustomerZone(zones.pop(), ZoneSource.DELIVERY_REGION)
    if phone is not None:
        zones = {r.tz for r in phone_regions(phone, plan=plan, directory=directory)}
        if len(zones) == 1:
            return CustomerZone(zones.pop(), ZoneSource.PHONE_REGION)
        # A +7 number outside the plan could be anywhere from Kaliningrad to Kamchatka, but
        # the delivery country, when it agrees, says no more; the capital's zone is the
        # usual guess and the calling window absorbs an hour or two either way.
        if phone.region in COUNTRY_ZONES:
            return CustomerZone(COUNTRY_ZONES[phone.region], ZoneSource.PHONE_COUNTRY)
    country = (delivery_country or "").upper()
    if country in COUNTRY_ZONES:
        return CustomerZone(COUNTRY_ZONES[country], ZoneSource.DELIVERY_COUNTRY)
    return CustomerZone(shop_default, ZoneSource.SHOP_DEFAULT)
