"""The CRM adapter and intake rules the settings ask for, built in one place.

`make_adapter(settings.crm)` returns the adapter for ``retailcrm``, ``amocrm`` or
``bitrix24``, or None for ``none`` and ``webhook`` (orders then come only through
``POST /orders``, and no adapter sends outcomes back). The caller owns the adapter and closes
it (`aclose`). `intake_rules` builds the intake rules from the settings and an optional fraud
base; `first_cursor` is where a CRM poll starts on its very first run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from crm_bridge.adapter import CrmAdapter
from crm_bridge.amocrm import AmoCrmAdapter, AmoCrmSettings
from crm_bridge.bitrix24 import Bitrix24Adapter, Bitrix24Settings
from crm_bridge.intake.fraud import FraudBase
from crm_bridge.intake.numbering import NumberingPlan
from crm_bridge.intake.order import IntakeRules
from crm_bridge.retailcrm import RetailCrmAdapter, RetailCrmSettings
from dialer.config.models import CrmSettings

# How far back the very first poll of a CRM's history reaches: yesterday's orders are still
# worth a call, last year's are not.
FIRST_RUN_LOOKBACK = timedelta(days=1)


def make_adapter(
    crm: CrmSettings,
    *,
    statuses: Mapping[str, tuple[int, int]] | None = None,
    stages: Mapping[str, str] | None = None,
    bitrix_user_id: int = 1,
) -> CrmAdapter | None:
    """The adapter `crm.adapter` names, or None when there is none to talk to.

    amoCRM needs `statuses` (obzvon status name → (pipeline id, status id)) and Bitrix24
    `stages` (→ deal STAGE_ID) to move orders; without them an outcome's status change is
    refused by the adapter and dead-lettered, naming the missing mapping.
    """
    key = crm.api_key.get_secret_value() if crm.api_key is not None else ""
    match crm.adapter:
        case "retailcrm":
            assert crm.url is not None  # CrmSettings requires it for this adapter
            return RetailCrmAdapter(RetailCrmSettings(url=str(crm.url), api_key=key, site=crm.site))
        case "amocrm":
            assert crm.url is not None
            return AmoCrmAdapter(
                AmoCrmSettings(url=str(crm.url), token=key, statuses=dict(statuses or {}))
            )
        case "bitrix24":
            assert crm.url is not None
            return Bitrix24Adapter(
                Bitrix24Settings(
                    webhook_url=str(crm.url), user_id=bitrix_user_id, stages=dict(stages or {})
                )
            )
        case _:
            return None


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
