"""The daily calling window, written "HH:MM-HH:MM" in the customer's local time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """Minutes since local midnight: `start_minute` inclusive, `end_minute` exclusive.

    A window never crosses midnight; "24:00" is allowed as the end of the day.
    """

    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        if not 0 <= self.start_minute < self.end_minute <= 24 * 60:
            raise ValueError("start must be before end (a window cannot cross midnight)")

    @classmethod
    def parse(cls, text: str) -> CallingWindow:
        """Parse "HH:MM-HH:MM"; `ValueError` with a reason fit for a config problem."""
        match = _WINDOW.fullmatch(text)
        if not match:
            raise ValueError(f"must look like HH:MM-HH:MM (got {text!r})")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        for hour, minute in ((h1, m1), (h2, m2)):
            if minute > 59 or hour > 24 or (hour == 24 and minute):
                raise ValueError(f"no such time of day {hour:02d}:{minute:02d}")
        return cls(h1 * 60 + m1, h2 * 60 + m2)

    def contains(self, local: time) -> bool:
        """True if `local` (the customer's wall-clock time) falls inside the window."""
        minute = local.hour * 60 + local.minute
        return self.start_minute <= minute < self.end_minute

    def __str__(self) -> str:
        return "-".join(f"{m // 60:02d}:{m % 60:02d}" for m in (self.start_minute, self.end_minute))


def _validate(value: Any) -> CallingWindow:
    if isinstance(value, CallingWindow):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string like 09:00-21:00")
    return CallingWindow.parse(value)


WindowField = Annotated[
    CallingWindow, PlainValidator(_validate), PlainSerializer(str, return_type=str)
]
