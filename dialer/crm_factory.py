"""The CRM adapter and intake rules the settings ask for, built in one place.

`make_adapter(settings.crm)` returns the adapter for ``retailcrm``, ``amocrm``, ``bitrix24``
or ``webhook`` (outcomes and calls posted to the shop's own URL; orders come only through
``POST /orders``), or None for ``none``. The caller owns the adapter and closes it
(`aclose`). `relay_statuses` is the outcome → status table the outbox relay should use with
it; `intake_rules` builds the intake rules from the settings and an optional fraud base;
`first_cursor` is where a CRM poll starts on its very first run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from crm_bridge import retailcrm
from crm_bridge.adapter import CrmAdapter
from crm_bridge.amocrm import AmoCrmAdapter, AmoCrmSettings
from crm_bridge.bitrix24 import Bitrix24Adapter, Bitrix24Settings
from crm_bridge.intake.fraud import FraudBase
from crm_bridge.intake.numbering import NumberingPlan
from crm_bridge.intake.order import IntakeRules
from crm_bridge.retailcrm import RetailCrmAdapter, RetailCrmSettings
from crm_bridge.webhook import WebhookAdapter, WebhookSettings
from dialer.config.models import CrmSettings
from dialer.crm_messages import DEFAULT_STATUSES

# How far back the very first poll of a CRM's history reaches: yesterday's orders are still
# worth a call, last year's are not.
FIRST_RUN_LOOKBACK = timedelta(days=1)

V = TypeVar("V")


def make_adapter(crm: CrmSettings) -> CrmAdapter | None:
    """The adapter `crm.adapter` names, or None when there is none to talk to.

    amoCRM moves leads to `crm.amocrm_statuses` and Bitrix24 deals to `crm.bitrix24_stages`
    (see `status_table`); an outcome with no status configured is refused by the adapter,
    naming the key to set, and waits on the dead-letter list.
    """
    key = crm.api_key.get_secret_value() if crm.api_key is not None else ""
    match crm.adapter:
        case "retailcrm":
            assert crm.url is not None  # CrmSettings requires it for this adapter
            lookup = crm.lookup
            return RetailCrmAdapter(
                RetailCrmSettings(
                    url=str(crm.url),
                    api_key=key,
                    site=crm.site,
                    delivery_days=lookup.delivery_days,
                    category_property=lookup.category_field or "category",
                    open_statuses=_or(lookup.open_statuses, retailcrm.OPEN_STATUSES),
                    delivery_statuses=_or(lookup.delivery_statuses, retailcrm.DELIVERY_STATUSES),
                )
            )
        case "amocrm":
            assert crm.url is not None
            configured = {
                outcome: (status.pipeline_id, status.status_id)
                for outcome, status in crm.amocrm_statuses
                if status is not None
            }
            statuses, unmapped = status_table(configured, key="amocrm_statuses")
            lookup = crm.lookup
            return AmoCrmAdapter(
                AmoCrmSettings(
                    url=str(crm.url),
                    token=key,
                    statuses=statuses,
                    unmapped=unmapped,
                    delivery_statuses=frozenset(
                        (int(p), int(s))
                        for p, _, s in (x.partition(":") for x in lookup.delivery_statuses or ())
                    ),
                    delivery_days=lookup.delivery_days,
                    category_field_id=_field_id(lookup.category_field),
                    region_field_id=_field_id(lookup.region_field),
                )
            )
        case "bitrix24":
            assert crm.url is not None
            stage_ids = {o: stage for o, stage in crm.bitrix24_stages if stage is not None}
            stages, unmapped = status_table(stage_ids, key="bitrix24_stages")
            return Bitrix24Adapter(
                Bitrix24Settings(
                    webhook_url=str(crm.url),
                    user_id=crm.bitrix24_user_id,
                    stages=stages,
                    unmapped=unmapped,
                    delivery_stages=frozenset(crm.lookup.delivery_statuses or ()),
                    delivery_days=crm.lookup.delivery_days,
                    category_field=crm.lookup.category_field,
                    region_field=crm.lookup.region_field,
                )
            )
        case "webhook":
            assert crm.url is not None and crm.webhook_secret is not None
            return WebhookAdapter(
                WebhookSettings(url=str(crm.url), secret=crm.webhook_secret.get_secret_value())
            )
        case _:
            return None


def _or(configured: tuple[str, ...] | None, default: frozenset[str]) -> frozenset[str]:
    return default if configured is None else frozenset(configured)


def _field_id(value: str | None) -> int | None:
    return int(value) if value is not None else None  # digits: checked by CrmSettings


def relay_statuses(crm: CrmSettings) -> Mapping[str, str | None]:
    """The outcome → status table for the outbox relay (`OutboxRelay(statuses=...)`).

    amoCRM and Bitrix24 are sent the outcome's own name, so that each outcome reaches the
    status configured for it; RetailCRM and a shop's webhook are sent RetailCRM's standard
    codes (`DEFAULT_STATUSES`).
    """
    if crm.adapter in ("amocrm", "bitrix24"):
        return {o: (o if status is not None else None) for o, status in DEFAULT_STATUSES.items()}
    return DEFAULT_STATUSES


def status_table(configured: Mapping[str, V], *, key: str) -> tuple[dict[str, V], dict[str, str]]:
    """The adapter's status table for the per-outcome `configured` map, and what to say for
    a status it cannot map.

    The table answers both the outcome's own name (`relay_statuses`) and RetailCRM's code that
    `DEFAULT_STATUSES` gives it, where every outcome sent as that code is configured alike
    (``rejected``, ``invalid`` and ``duplicate`` all go out as ``cancel-other``).
    """
    table: dict[str, V] = dict(configured)
    unmapped = {
        outcome: f"set crm.{key}.{outcome}"
        for outcome, status in DEFAULT_STATUSES.items()
        if status is not None and outcome not in configured
    }
    by_code: dict[str, list[str]] = {}
    for outcome, status in DEFAULT_STATUSES.items():
        if status is not None:
            by_code.setdefault(status, []).append(outcome)
    for code, outcomes in by_code.items():
        missing = [o for o in outcomes if o not in configured]
        values = [configured[o] for o in outcomes if o in configured]
        if missing:
            unmapped[code] = "set " + ", ".join(f"crm.{key}.{o}" for o in missing)
        elif any(v != values[0] for v in values):
            unmapped[code] = (
                f"{', '.join(outcomes)} all reach the CRM as {code!r} but crm.{key} maps them "
                "differently; map them alike, or have the relay send outcome names "
                "(crm_factory.relay_statuses)"
            )
        else:
            table[code] = values[0]
    return table, unmapped


def intake_rules(
    crm: CrmSettings,
    *,
    fraud_base: Path | None = None,
    numbering_plan: tuple[Path, ...] = (),
    shop_timezone: str = "Europe/Moscow",
    verify_after: timedelta = timedelta(hours=2),
) -> IntakeRules:
    """Intake rules for the shop: phones read in `crm.default_region`; the fraud base loaded
    from its ``.npy`` cache (`FraudBase.save`), if given; the numbering plan from the
    registry files, or none (no region check) without them; a phone from another region than
    the delivery is called `verify_after` after being taken in. Raises
    `crm_bridge.DataFileError` for a file that cannot be read: better not to start than to
    take orders in without the checks the admin configured."""
    return IntakeRules(
        default_region=crm.default_region,
        shop_timezone=shop_timezone,
        fraud_base=FraudBase.load(fraud_base) if fraud_base is not None else None,
        numbering_plan=NumberingPlan.load(*numbering_plan) if numbering_plan else None,
        verify_after=verify_after,
    )


def first_cursor(adapter: CrmAdapter, now: datetime) -> str | None:
    """Where the very first poll starts: `FIRST_RUN_LOOKBACK` before `now` where the adapter
    can say so (RetailCRM), else from the start of what the CRM returns."""
    if isinstance(adapter, RetailCrmAdapter):
        return adapter.cursor_since(now - FIRST_RUN_LOOKBACK)
    return None
