"""The settings of one obzvon installation, as pydantic models.

Every table and every key is optional: `Settings()` is the demo (the built-in Asterisk simulator,
SQLite in the working directory, one confirmation campaign, no configured operators). Models are
frozen and reject unknown keys. Rules that span several keys (unique ids, references between
campaigns and operators) are checked by `Settings` itself, so a `Settings` built in code obeys
them as well as one read from a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dialer.config.checks import DEFAULT_AMI_NAME, cross_field_problems
from dialer.config.fields import (
    Delays,
    FieldProblems,
    NonEmpty,
    OperatorId,
    Port,
    PositiveSeconds,
    Seconds,
    SkillLevel,
    Slug,
    WebUrl,
    id_text,
    pattern,
    value_range,
)
from dialer.config.window import CallingWindow, WindowField

DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
RETRY_OUTCOMES = ("busy", "no_answer", "congestion", "machine", "failed")


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AmiServer(_Table):
    """One Asterisk server reached over AMI. The default is the built-in simulator."""

    name: str = DEFAULT_AMI_NAME
    host: str = "127.0.0.1"
    port: Port = 5038
    username: str = "obzvon"
    secret: SecretStr = SecretStr("obzvon")
    tls: bool = False
    tls_ca: Path | None = None
    # How a customer's number becomes the channel to Originate: {digits} is the E.164 number
    # without "+", {e164} with it. The default suits a PJSIP trunk named "trunk".
    dial_template: Annotated[
        str,
        pattern(
            r"[A-Za-z0-9]+/[^\s,|&]*\{(digits|e164)\}[^\s,|&]*", "must contain {digits} or {e164}"
        ),
    ] = "PJSIP/{digits}@trunk"
    # Where Asterisk's MixMonitor writes recordings (a path on the Asterisk machine).
    recordings_dir: str = "/var/spool/asterisk/monitor/obzvon"

    @field_validator("tls_ca")
    @classmethod
    def _ca_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Relative paths are relative to the config file; existence is checked only when the
        # settings come from a file (the loader passes its directory as context).
        base = (info.context or {}).get("base_dir")
        if value is None or base is None:
            return value
        path = value if value.is_absolute() else Path(base) / value
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        return path

    @model_validator(mode="after")
    def _ca_needs_tls(self) -> AmiServer:
        if self.tls_ca is not None and not self.tls:
            raise FieldProblems([("tls_ca", "has no effect unless tls = true")])
        return self


class DatabaseSettings(_Table):
    """Where obzvon keeps its state; SQLite (embedded) or PostgreSQL."""

    url: str = "sqlite+aiosqlite:///obzvon.db"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            driver = make_url(value).drivername
        except ArgumentError:
            raise ValueError("is not a database URL") from None
        if driver not in DATABASE_DRIVERS:
            raise ValueError(
                f"unsupported driver {driver!r}; use sqlite+aiosqlite:///FILE "
                "or postgresql+asyncpg://USER@HOST/DB"
            )
        return value


class MqttSettings(_Table):
    """The MQTT broker live events are published to."""

    host: str = "127.0.0.1"
    port: Port = 1883
    username: str | None = None
    password: SecretStr | None = None
    topic_prefix: Annotated[
        str,
        pattern(r"[^/+#\s][^+#\s]*(?<!/)", "must not contain + # or spaces, nor start/end in /"),
    ] = "obzvon"


class HttpSettings(_Table):
    """The HTTP API, wallboard and signed recording links."""

    listen: str = "127.0.0.1:8080"
    # The address CRMs reach this server at (e.g. "https://calls.shop.example"): recording links
    # sent to the CRM start with it. Without it calls reach the CRM without recording links.
    public_url: WebUrl | None = None
    recording_url_secret: SecretStr | None = None
    recording_url_ttl_s: Annotated[int, Field(gt=0)] = 30 * 24 * 3600
    # Recordings of calls that ended longer ago than this are deleted (0 keeps them forever).
    recording_retention_days: Annotated[float, Field(ge=0)] = 90.0

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"must be HOST:PORT (got {value!r})")
        return value

    @property
    def host(self) -> str:
        """The host part of `listen`, without the brackets of an IPv6 address."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port part of `listen`."""
        return int(self.listen.rpartition(":")[2])


CrmAdapter = Literal["none", "retailcrm", "bitrix24", "amocrm", "webhook"]
# What each adapter cannot work without; the rest of its keys are optional.
_CRM_REQUIRES: Mapping[str, tuple[str, ...]] = {
    "retailcrm": ("url", "api_key"),
    "bitrix24": ("url",),
    "amocrm": ("url", "api_key"),
    "webhook": ("url", "webhook_secret"),
}


class AmoCrmStatus(_Table):
    """A status of an amoCRM pipeline: the pipeline's id and the status's id in it (142 and
    143 are amoCRM's own "won" and "lost")."""

    pipeline_id: Annotated[int, Field(ge=1)]
    status_id: Annotated[int, Field(ge=1)]


BitrixStage = Annotated[
    str,
    pattern(
        r"[A-Za-z0-9_]{1,50}(:[A-Za-z0-9_]{1,50})?",
        "must be a STAGE_ID such as PREPARATION, WON or C1:UC_ABC123",
    ),
]


class AmoCrmStatuses(_Table):
    """Per outcome that moves an order, the amoCRM status its lead moves to. The keys are
    the outcomes `dialer.crm_messages.DEFAULT_STATUSES` gives a status; the others (a
    callback, an order not taken in) only leave a comment."""

    confirmed: AmoCrmStatus | None = None
    upsell: AmoCrmStatus | None = None
    rejected: AmoCrmStatus | None = None
    invalid: AmoCrmStatus | None = None
    duplicate: AmoCrmStatus | None = None
    unreached: AmoCrmStatus | None = None


class Bitrix24Stages(_Table):
    """Per outcome that moves an order, the stage (``STAGE_ID``) its deal moves to."""

    confirmed: BitrixStage | None = None
    upsell: BitrixStage | None = None
    rejected: BitrixStage | None = None
    invalid: BitrixStage | None = None
    duplicate: BitrixStage | None = None
    unreached: BitrixStage | None = None


class CrmLookupSettings(_Table):
    """How an inbound caller the database does not know is read from the CRM's orders.

    `category_field` / `region_field`: where the CRM keeps an order's product category and
    delivery region (RetailCRM: the item property's code, "category" by default, the region
    comes from the delivery address; Bitrix24: deal fields such as ``UF_CRM_CATEGORY``;
    amoCRM: lead field ids). `open_statuses` (RetailCRM) are the status codes of an order
    still to be confirmed; `delivery_statuses` those of one confirmed and on its way
    (RetailCRM status codes, Bitrix24 ``STAGE_ID``s, amoCRM ``"pipeline_id:status_id"``),
    "in-delivery" when created in the last `delivery_days` days. Unset: each adapter's
    defaults (docs/crm.md).
    """

    category_field: str | None = None
    region_field: str | None = None
    open_statuses: tuple[str, ...] | None = None
    delivery_statuses: tuple[str, ...] | None = None
    delivery_days: Annotated[int, Field(ge=1)] = 14


class CrmSettings(_Table):
    """The shop's CRM: where orders come from and outcomes go to.

    With ``adapter = "webhook"`` orders come signed to ``POST /orders`` and outcomes go signed
    to `url`, both with `webhook_secret`. `amocrm_statuses` maps an outcome to the amoCRM
    pipeline status the lead moves to, `bitrix24_stages` to the deal's ``STAGE_ID``; an
    outcome without one is refused by the CRM adapter and waits on the dead-letter list.
    `bitrix24_user_id` is the portal user calls are recorded for.
    """

    adapter: CrmAdapter = "none"
    url: WebUrl | None = None
    api_key: SecretStr | None = None
    site: str | None = None
    poll_interval_s: PositiveSeconds = 10.0
    default_region: Annotated[str, pattern(r"[A-Z]{2}", "must be a two-letter country code")] = "RU"
    webhook_secret: SecretStr | None = None
    amocrm_statuses: AmoCrmStatuses = Field(default_factory=AmoCrmStatuses)
    bitrix24_stages: Bitrix24Stages = Field(default_factory=Bitrix24Stages)
    bitrix24_user_id: Annotated[int, Field(ge=1)] = 1
    lookup: CrmLookupSettings = Field(default_factory=CrmLookupSettings)

    @model_validator(mode="after")
    def _adapter_needs(self) -> CrmSettings:
        missing = [k for k in _CRM_REQUIRES.get(self.adapter, ()) if getattr(self, k) is None]
        if missing:
            raise FieldProblems([(k, f"required for adapter {self.adapter!r}") for k in missing])
        if self.adapter == "amocrm":
            problems = _amocrm_lookup_problems(self.lookup)
            if problems:
                raise FieldProblems(problems)
        if self.webhook_secret is not None and len(self.webhook_secret.get_secret_value()) < 16:
            # it signs orders posted to us: a short one can be guessed
            raise FieldProblems([("webhook_secret", "must have at least 16 characters")])
        return self


def _amocrm_lookup_problems(lookup: CrmLookupSettings) -> list[tuple[str, str]]:
    """amoCRM names fields by number and statuses by pipeline and status ids."""
    problems = [
        (f"lookup.{key}", "must be an amoCRM field id (digits)")
        for key in ("category_field", "region_field")
        if (value := getattr(lookup, key)) is not None and not value.isdigit()
    ]
    for status in lookup.delivery_statuses or ():
        pipeline, _, status_id = status.partition(":")
        if not (pipeline.isdigit() and status_id.isdigit()):
            problems.append(
                ("lookup.delivery_statuses", f"{status!r} must be 'pipeline_id:status_id'")
            )
    return problems


class RetryPolicy(_Table):
    """Delays in seconds before the next attempt, per outcome of the last one."""

    busy: Delays = (300,)
    no_answer: Delays = (900, 1800, 3600, 7200)
    congestion: Delays = (120,)
    machine: Delays = (3600,)
    failed: Delays = (600,)

    def delay_s(self, outcome: str, attempt: int) -> float:
        """The delay after failed attempt number `attempt` (1 = the first call) with `outcome`.

        The last delay of a list repeats for every later attempt. Raises `ValueError` for an
        outcome outside `RETRY_OUTCOMES` or an attempt number below 1.
        """
        if outcome not in RETRY_OUTCOMES or attempt < 1:
            raise ValueError(f"no retry delay for outcome {outcome!r}, attempt {attempt}")
        delays: tuple[float, ...] = getattr(self, outcome)
        return delays[min(attempt, len(delays)) - 1]


Line = Literal["confirmation", "reminder", "complaints", "delivery"]
Pacing = Literal["progressive", "adaptive", "predictive"]


class OverflowSettings(_Table):
    """After a caller waited `after_s`, operators of `lines` may take them too."""

    after_s: Seconds
    lines: tuple[Slug, ...]


class InboundSettings(_Table):
    """What makes a campaign an inbound line (delivery questions, complaints).

    `numbers` are the shop numbers (the dialled extension as Asterisk sees it, digits with or
    without "+") whose calls queue here. `priorities` maps a caller tag to a priority, higher
    served first: ``known`` (any order with us), ``open-order`` (an order still to be
    confirmed), ``in-delivery`` (an order confirmed in the last `delivery_days` days).
    `callback_offer_after_s` (0: never) offers a waiting caller to be called back;
    `callback_campaign` is the outbound campaign that places the callback of a caller with no
    open order (the first outbound campaign when not given). `crm_lookup_timeout_s` bounds the
    CRM lookup of a caller the database does not know.
    """

    numbers: Annotated[
        tuple[Annotated[str, pattern(r"\+?[0-9]{3,15}", "must be digits")], ...], NonEmpty
    ]
    priorities: dict[str, int] = Field(default_factory=lambda: {"in-delivery": 10, "open-order": 5})
    overflow: tuple[OverflowSettings, ...] = ()
    callback_offer_after_s: Seconds = 120.0
    callback_campaign: Slug | None = None
    service_level_s: PositiveSeconds = 20.0
    delivery_days: Annotated[int, Field(ge=1)] = 14
    crm_lookup_timeout_s: Annotated[float, Field(gt=0, le=5)] = 1.5


class CampaignSettings(_Table):
    """One campaign (one of the four lines) and how it is dialled.

    `abandon_target` is the highest share of live answers that may be abandoned; 0 forbids
    abandoning, so only progressive pacing is allowed then. `calling_window` is in the
    customer's local time. `operators` lists operator ids; empty means every operator whose own
    `campaigns` names this one.
    """

    id: Slug
    name: str = ""  # the id when not given
    line: Line = "confirmation"
    pacing: Pacing = "predictive"
    abandon_target: Annotated[float, value_range(0, 0.05)] = 0.03
    calling_window: WindowField = CallingWindow.parse("09:00-21:00")
    record: bool = True
    wrapup_s: Seconds = 15.0
    connect_budget_s: Annotated[float, value_range(0, 2, lo_open=True)] = 2.0
    ring_timeout_s: Annotated[float, Field(gt=0, le=300)] = 25.0
    amd: bool = False
    max_attempts: Annotated[int, Field(ge=1)] = 6
    max_attempts_per_day: Annotated[int, Field(ge=1)] = 4
    caller_id: str | None = None
    shop_name: str | None = None
    operators: tuple[OperatorId, ...] = ()
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    inbound: InboundSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "name" not in data and isinstance(data.get("id"), str):
            return {**data, "name": data["id"]}
        return data

    @model_validator(mode="after")
    def _pacing_fits_target(self) -> CampaignSettings:
        if self.abandon_target == 0 and self.pacing != "progressive":
            reason = (
                f"{self.pacing} pacing abandons calls; abandon_target = 0 allows progressive only"
            )
            raise FieldProblems([("pacing", reason)])
        return self


Role = Literal["operator", "supervisor", "admin"]


class OperatorSettings(_Table):
    """An operator as the admin configured them.

    `skills` maps a product category to a level from 1 (weakest) to 10 (best).
    `categories_only`, when set, is the complete list of categories the operator may take (for
    new hires); `None` means no restriction. `wrapup_s` overrides the campaign's when set.
    `token` authenticates the operator on the HTTP API; without one they cannot log in there.
    """

    id: OperatorId
    name: str = ""  # the id when not given
    endpoint: Annotated[
        str, pattern(r"[A-Za-z0-9]+/[^\s,|&]+", "must look like TECH/resource, e.g. PJSIP/1001")
    ] = ""  # PJSIP/<id> when not given
    token: SecretStr | None = None
    role: Role = "operator"
    campaigns: tuple[Slug, ...] = ()
    skills: dict[str, SkillLevel] = Field(default_factory=dict)
    regions: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    categories_only: tuple[str, ...] | None = None
    wrapup_s: Seconds | None = None

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_id(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("id") not in (None, ""):
            op_id = id_text(data["id"])
            return {"name": op_id, "endpoint": f"PJSIP/{op_id}", **data}
        return data


class IntakeSettings(_Table):
    """How new orders are taken in (docs/crm.md, "In the daemon").

    `campaign` receives new orders (default: the first confirmation campaign); `fraud_base` is
    the file `obzvon fraud load` writes; `numbering_plan` the numbering-plan registry files (none:
    no phone-region check); `cursor_file` where the CRM poll keeps its place; `verify_after_s`
    how long after a phone/delivery region mismatch the verification call is placed.
    """

    campaign: Slug | None = None
    fraud_base: Path | None = None
    numbering_plan: tuple[Path, ...] = ()
    cursor_file: Path = Path("obzvon-crm-cursor.json")
    shop_timezone: str = "Europe/Moscow"
    verify_after_s: PositiveSeconds = 7200.0


class RoutingSettings(_Table):
    """Which free operator gets an answered call (docs/acd.md).

    `performance` learns from outcomes who sells each category best (Thompson sampling over a
    decayed Bayesian record, `half_life_days`), held fair: operators' occupancy (time on calls /
    time on calls and ready, weighted over a day) stays within `max_load_ratio` of each other,
    and, as a backstop, nobody ready idles past `max_idle_s` while calls are routed.
    The others are the baselines: longest idle, fewest calls, random, static skill tiers.
    """

    policy: Literal["performance", "longest-idle", "fewest-calls", "random", "static-tiers"] = (
        "performance"
    )
    max_idle_s: PositiveSeconds = 1800.0
    max_load_ratio: Annotated[float, Field(ge=1.0, le=10.0)] = 1.3
    half_life_days: Annotated[float, Field(gt=0)] = 14.0


def _default_campaigns() -> tuple[CampaignSettings, ...]:
    return (CampaignSettings(id="confirmation", name="Order confirmation", shop_name="Demo shop"),)


class Settings(_Table):
    """Everything obzvon reads from its config file; `Settings()` is the demo."""

    ami: Annotated[tuple[AmiServer, ...], NonEmpty] = (AmiServer(name="sim"),)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    mqtt: MqttSettings | None = None
    http: HttpSettings = Field(default_factory=HttpSettings)
    crm: CrmSettings = Field(default_factory=CrmSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    campaigns: Annotated[tuple[CampaignSettings, ...], NonEmpty] = Field(
        default_factory=_default_campaigns
    )
    operators: tuple[OperatorSettings, ...] = ()

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Settings:
        # The loader runs the same checks on the raw file itself, so that they are reported
        # even when other keys are broken; it asks not to have them twice.
        if (info.context or {}).get("cross_checked"):
            return self
        problems = cross_field_problems(self.model_dump())
        if problems:
            raise FieldProblems(problems)
        return self

    def campaign(self, campaign_id: str) -> CampaignSettings:
        """The campaign with this id; `KeyError` if there is none."""
        for campaign in self.campaigns:
            if campaign.id == campaign_id:
                return campaign
        raise KeyError(campaign_id)

    def operator(self, operator_id: str) -> OperatorSettings:
        """The operator with this id; `KeyError` if there is none."""
        for operator in self.operators:
            if operator.id == operator_id:
                return operator
        raise KeyError(operator_id)
