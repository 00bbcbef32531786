"""Scenario files: the TOML format of `benchmarks/scenarios/*.toml`, validated with pydantic.

`load_scenario(path)` returns a frozen `Scenario` or raises `ScenarioError` whose `problems`
name every bad key by its dotted path (``orders.per_day: needs one number per day (days = 2),
got 3``). Every key of the documented format is required; the keys marked *optional* below have
defaults. `benchmarks/README.md` documents the format for people writing scenarios.
"""

from __future__ import annotations

import math
import re
import tomllib
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "Campaign",
    "Customers",
    "MeanSd",
    "Operators",
    "Orders",
    "Scenario",
    "ScenarioError",
    "Span",
    "load_scenario",
    "parse_scenario",
]

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"

_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
Share = Annotated[float, Field(ge=0.0, lt=1.0)]
Positive = Annotated[float, Field(gt=0.0)]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; `problems` lists each one as `key.path: message`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class MeanSd(_Model):
    """A positive quantity drawn from a lognormal with this mean and standard deviation."""

    mean: Positive
    sd: Annotated[float, Field(ge=0.0)]


class Span(_Model):
    """Local wall-clock hours "HH:MM-HH:MM"; the end may be 24:00 and may be before the start
    (the span crosses midnight); equal ends mean all day."""

    start: time
    end: time
    end_is_midnight: bool = False

    @classmethod
    def parse(cls, text: str) -> Span:
        match = _SPAN.match(text.strip())
        if match is None:
            raise ValueError(f"expected HH:MM-HH:MM, got {text!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
            raise ValueError(f"not a time of day in {text!r}")
        midnight = h2 == 24
        end = time(0, 0) if midnight else time(h2, m2)
        return cls(start=time(h1, m1), end=end, end_is_midnight=midnight)

    def seconds(self) -> tuple[float, float]:
        """(start, end) in seconds after local midnight; end > start (the next day if need be)."""
        start = self.start.hour * 3600 + self.start.minute * 60
        end = self.end.hour * 3600 + self.end.minute * 60
        if end <= start:
            end += 86400
        return float(start), float(end)


class Orders(_Model):
    per_day: list[Annotated[int, Field(ge=0)]]
    hourly_profile: list[Annotated[float, Field(ge=0.0)]]
    invalid_share: Share
    duplicate_share: Share
    categories: dict[str, Positive]
    amount: MeanSd
    timezones: dict[str, Positive]

    @field_validator("hourly_profile")
    @classmethod
    def _day_of_hours(cls, value: list[float]) -> list[float]:
        if len(value) != 24:
            raise ValueError(f"needs 24 weights, one per local hour, got {len(value)}")
        if sum(value) <= 0:
            raise ValueError("needs at least one positive weight")
        return value

    @field_validator("categories")
    @classmethod
    def _some_categories(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("needs at least one category")
        return value

    @field_validator("timezones")
    @classmethod
    def _zones(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("needs at least one time zone")
        for name in value:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {name!r}") from None
        return value


class Customers(_Model):
    answer_prob: Annotated[float, Field(gt=0.0, le=1.0)]
    answer_half_life_min: Positive
    busy_share: Share
    ring_time_s: MeanSd
    no_answer_timeout_s: Positive
    machine_share: Share
    patience_s: MeanSd
    # optional
    amd_delay_s: Positive = 2.5
    abandon_message_s: Positive = 4.0


class Conversion(_Model):
    base: Annotated[float, Field(gt=0.0, lt=1.0)]
    operator_sd: Annotated[float, Field(ge=0.0)]
    category_sd: Annotated[float, Field(ge=0.0)]
    interaction_sd: Annotated[float, Field(ge=0.0)]


class Upsell(_Model):
    prob: Annotated[float, Field(ge=0.0, le=1.0)]
    amount_mean: Annotated[float, Field(ge=0.0)]


class Operators(_Model):
    count: Annotated[int, Field(ge=1, le=2000)]
    shifts: list[str]
    talk_time_s: MeanSd
    wrapup_s: Positive
    conversion: Conversion
    upsell: Upsell
    # optional
    answer_delay_s: MeanSd = MeanSd(mean=0.8, sd=0.4)
    miss_share: Share = 0.0
    admin_noise: Annotated[float, Field(ge=0.0)] = 1.0

    @field_validator("shifts")
    @classmethod
    def _shifts(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one shift")
        for text in value:
            Span.parse(text)
        return value

    def shift_spans(self) -> list[Span]:
        return [Span.parse(text) for text in self.shifts]


class Campaign(_Model):
    abandon_target: Annotated[float, Field(ge=0.0, lt=1.0)]
    calling_window: str
    max_attempts: Annotated[int, Field(ge=1, le=50)]
    # optional
    timezone: str = "Europe/Moscow"
    pacing: str = "predictive"
    routing: str = "longest-idle"
    amd: bool = False
    connect_budget_s: Annotated[float, Field(gt=0.0, le=2.0)] = 2.0
    max_attempts_per_day: Annotated[int, Field(ge=1)] = 3
    operator_ring_timeout_s: Positive = 8.0

    @field_validator("calling_window")
    @classmethod
    def _window(cls, value: str) -> str:
        Span.parse(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def window_span(self) -> Span:
        return Span.parse(self.calling_window)


class Scenario(_Model):
    """One scenario file, validated. Two runs of the same scenario and seed give equal results."""

    name: Annotated[str, Field(min_length=1)]
    seed: int
    days: Annotated[int, Field(ge=1, le=60)]
    orders: Orders
    customers: Customers
    operators: Operators
    campaign: Campaign
    # optional
    start: date = date(2024, 12, 26)
    description: str = ""

    @model_validator(mode="after")
    def _days_match(self) -> Self:
        if len(self.orders.per_day) != self.days:
            raise ValueError(
                f"orders.per_day: needs one number per day (days = {self.days}),"
                f" got {len(self.orders.per_day)}"
            )
        return self

    def with_changes(self, **changes: Any) -> Scenario:
        """A copy with top-level or dotted keys replaced (``{"operators.count": 8}``), validated."""
        data = self.model_dump()
        for key, value in changes.items():
            node = data
            *path, last = key.split(".")
            for part in path:
                node = node[part]
            node[last] = value
        return parse_scenario(data, source=f"{self.name} (changed)")


def _problem(error: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if message.startswith(f"{loc}: "):
        return message
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    return f"{loc}: {message}" if loc else message


def parse_scenario(data: dict[str, Any], *, source: str = "scenario") -> Scenario:
    """Validate a scenario given as a dict (a parsed TOML file); raises `ScenarioError`."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, [_problem(e) for e in exc.errors()]) from None


def resolve(name_or_path: str | Path) -> Path:
    """A scenario file's path: `name_or_path` itself, or a name in `benchmarks/scenarios/`."""
    path = Path(name_or_path)
    if path.exists():
        return path
    candidate = SCENARIO_DIR / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    if candidate.exists():
        return candidate
    raise ScenarioError(str(name_or_path), ["no such scenario file"])


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read and validate a scenario file (a path, or a name in `benchmarks/scenarios/`)."""
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), [f"not valid TOML: {exc}"]) from None
    return parse_scenario(data, source=str(path))


def lognormal_params(spec: MeanSd) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with the given mean and standard deviation."""
    sigma2 = math.log1p((spec.sd / spec.mean) ** 2)
    return math.log(spec.mean) - sigma2 / 2, math.sqrt(sigma2)
