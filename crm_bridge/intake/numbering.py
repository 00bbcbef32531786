"""The Russian numbering plan: which region a +7 number was issued for.

Rossvyaz (now the Ministry of Digital Development) publishes the registry of number ranges
as semicolon-separated files, one per kind (ABC-3xx, 4xx, 8xx, DEF-9xx), with the header
``АВС/ DEF;От;До;Емкость;Оператор;Регион`` (newer files add columns such as ``ИНН``, which are
ignored). Files come in cp1251 or UTF-8. An English header
``ABC/DEF;From;To;Capacity;Operator;Region`` is read too.

A sample of a few dozen ranges ships as ``crm_bridge/data/numbering_sample.csv``; production
loads the full registry (about 400,000 ranges) with `NumberingPlan.load`.

Mobile numbers are portable between operators since 2013 but keep their region in the
registry, and people move and travel, so the region found here is a hint for a verification
call, never a reason to reject an order.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crm_bridge.errors import DataFileError

_HEADERS = {
    "code": ("авс/ def", "авс/def", "abc/ def", "abc/def", "abc", "def"),
    "start": ("от", "from"),
    "end": ("до", "to"),
    "operator": ("оператор", "operator"),
    "region": ("регион", "region"),
}
_SUBSCRIBER_DIGITS = 7


@dataclass(frozen=True, slots=True)
class NumberRange:
    """A registry row: numbers ``+7 <code> <start..end>`` (seven-digit subscriber part)."""

    code: int
    start: int
    end: int
    operator: str
    region: str


@dataclass(frozen=True, slots=True)
class RangeInfo:
    """What the registry says of one number: its operator and region as written there."""

    operator: str
    region: str


class NumberingPlan:
    """Ranges sorted for lookup. Immutable after construction; share one instance."""

    def __init__(self, ranges: Iterable[NumberRange]) -> None:
        rows = sorted(ranges, key=lambda r: (r.code, r.start))
        self._starts: npt.NDArray[np.int64] = np.array(
            [r.code * 10**_SUBSCRIBER_DIGITS + r.start for r in rows], dtype=np.int64
        )
        self._ends: npt.NDArray[np.int64] = np.array(
            [r.code * 10**_SUBSCRIBER_DIGITS + r.end for r in rows], dtype=np.int64
        )
        # Operators and regions repeat thousands of times in the full registry: keep each once.
        names: dict[tuple[str, str], int] = {}
        self._info_index = np.array(
            [names.setdefault((r.operator, r.region), len(names)) for r in rows], dtype=np.int32
        )
        self._infos = [RangeInfo(operator=o, region=g) for o, g in names]

    def __len__(self) -> int:
        return int(self._starts.shape[0])

    @classmethod
    def load(cls, *paths: str | os.PathLike[str]) -> NumberingPlan:
        """Read registry files (any number of them, e.g. the ABC and DEF files together).

        Without paths, reads the sample shipped with obzvon. Raises `DataFileError` naming
        the file and line of the first problem.
        """
        if not paths:
            sample = resources.files("crm_bridge.data").joinpath("numbering_sample.csv")
            return cls(parse_registry(sample.read_bytes(), source="numbering_sample.csv"))
        ranges: list[NumberRange] = []
        for path in paths:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise DataFileError(f"{path}: {exc.strerror or exc}") from exc
            ranges.extend(parse_registry(data, source=str(path)))
        return cls(ranges)

    def lookup(self, e164: str) -> RangeInfo | None:
        """The range ``+7XXXXXXXXXX`` falls in, or None (not +7, not ten digits, unlisted)."""
        if not e164.startswith("+7") or len(e164) != 12 or not e164[2:].isdigit():
            return None
        key = int(e164[2:])
        i = int(self._starts.searchsorted(key, side="right")) - 1
        if i < 0 or key > int(self._ends[i]):
            return None
        return self._infos[int(self._info_index[i])]


def parse_registry(data: bytes, *, source: str) -> list[NumberRange]:
    """Rows of one registry file given as bytes (cp1251 or UTF-8, with or without BOM)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1251")
    reader = csv.reader(io.StringIO(text), delimiter=";")
    header = next(reader, None)
    if header is None:
        raise DataFileError(f"{source}: empty file")
    columns = _columns(header, source)
    ranges: list[NumberRange] = []
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            cells = {name: row[i].strip() for name, i in columns.items()}
            ranges.append(
                NumberRange(
                    code=int(cells["code"]),
                    start=int(cells["start"]),
                    end=int(cells["end"]),
                    operator=cells["operator"],
                    region=cells["region"],
                )
            )
        except (IndexError, ValueError) as exc:
            raise DataFileError(f"{source} line {line}: not a number range ({exc})") from exc
        if ranges[-1].start > ranges[-1].end:
            raise DataFileError(f"{source} line {line}: range ends before it starts")
    return ranges


def _columns(header: list[str], source: str) -> dict[str, int]:
    names = [h.strip().casefold() for h in header]
    columns: dict[str, int] = {}
    for column, accepted in _HEADERS.items():
        for i, name in enumerate(names):
            if name in accepted:
                columns[column] = i
                break
        else:
            raise DataFileError(
                f"{source}: no column {accepted[0]!r} in the header {';'.join(header)!r}"
            )
    return columns
