"""Value types and validators shared by the settings models.

Reasons are written for a config problem line (``key.path: reason``); they never quote a value
that might be a secret.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field


class FieldProblems(ValueError):
    """Problems found by one validator, each at a key path relative to the table it checked."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in problems))
        self.problems = problems


def value_range(lo: float, hi: float, *, lo_open: bool = False) -> AfterValidator:
    """A validator for lo <= value <= hi (lo < value with `lo_open`), saying the range."""

    def check(value: float) -> float:
        if (value <= lo if lo_open else value < lo) or value > hi:
            if lo_open:
                raise ValueError(f"must be greater than {lo:g} and at most {hi:g}")
            raise ValueError(f"must be between {lo:g} and {hi:g}")
        return value

    return AfterValidator(check)


def id_text(value: Any) -> Any:
    """An integer id (TOML lets `id = 1001` through) as text; anything else unchanged."""
    # TOML lets `id = 1001` through as an integer; operator ids are names, not numbers.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def pattern(regex: str, reason: str, *, quote: bool = True) -> AfterValidator:
    """A validator for strings matching `regex` in full; `reason` says what is expected.

    The offending value is quoted in the reason unless `quote` is false (for values that may
    hold a credential, such as a URL with a token in it).
    """
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{reason} (got {value!r})" if quote else reason)
        return value

    return AfterValidator(check)


Slug = Annotated[
    str, pattern(r"[a-z0-9][a-z0-9_-]{0,63}", "must be lowercase letters, digits, - or _")
]
OperatorId = Annotated[
    str,
    BeforeValidator(id_text),
    pattern(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", "must be letters, digits, '.', '-' or '_'"),
]
# A URL may carry a token (a Bitrix24 webhook does), so it is never quoted back.
WebUrl = Annotated[str, pattern(r"https?://\S+", "must be an http:// or https:// URL", quote=False)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(ge=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]
SkillLevel = Annotated[int, Field(ge=1, le=10)]


def _non_empty(items: tuple[Any, ...]) -> tuple[Any, ...]:
    # Not Field(min_length=1): pydantic would also report a list whose items are all invalid
    # as empty, on top of the items' own problems.
    if not items:
        raise ValueError("must not be empty")
    return items


NonEmpty = AfterValidator(_non_empty)
Delays = Annotated[tuple[PositiveSeconds, ...], NonEmpty]
