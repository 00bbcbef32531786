"""The fraud base: phone numbers whose owners did not collect their parcels.

Centres keep such a list (about 1.3 million numbers in a large one); an order from a listed
number is confirmed with prepayment only. The base is loaded from the CSV the centre exports,
once, and then answers a lookup per new order.

Storage is a sorted ``numpy.int64`` array of E.164 numbers without the plus, searched with
``searchsorted``: 8 bytes a number (10 MB for 1.3 M), a lookup of one to two microseconds, a
``.npy`` cache that loads in milliseconds. A Python ``set`` of ints answers faster but takes
about ten times the memory; ``python -m benchmarks.fraud_base`` measures both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crm_bridge.errors import DataFileError
from crm_bridge.intake.phone import ValidPhone, normalise_phone

# Called with (bytes read, bytes in all) as the file is read; for a progress bar.
Progress = Callable[[int, int], None]

# Reason shown to the operator when an order's phone is in the base.
FRAUD_REASON = "phone is in the fraud base (parcels not collected): prepayment only"

# Chunks keep the progress bar moving and the memory flat: a chunk's lines and ints are
# freed before the next is read.
_CHUNK = 2 << 20
_FIRST_FIELD = re.compile(r"[^,;\t]*")
# E.164 allows at most 15 digits; anything under 10 is no subscriber number in the +7 plan.
_MIN_DIGITS, _MAX_DIGITS = 10, 15


@dataclass(frozen=True, slots=True)
class FraudBaseStats:
    """How a load went: numbers kept (distinct), lines skipped as not a phone number."""

    numbers: int
    skipped_lines: int


class FraudBase:
    """A read-only set of E.164 numbers.

    `contains` accepts ``"+79001234567"`` or the integer ``79001234567``. The object never
    changes after construction, so one instance may be shared by every task.
    """

    __slots__ = ("_numbers", "_skipped")

    def __init__(self, numbers: npt.NDArray[np.int64], *, skipped_lines: int = 0) -> None:
        """Wrap `numbers`, which must be a sorted 1-D int64 array without repeats."""
        self._numbers = numbers
        self._skipped = skipped_lines

    @classmethod
    def from_numbers(cls, numbers: Iterable[int | str]) -> FraudBase:
        """Build from E.164 numbers (with or without the plus); repeats are dropped."""
        ints = [n if isinstance(n, int) else int(n.lstrip("+")) for n in numbers]
        return cls(np.unique(np.array(ints, dtype=np.int64)))

    def __len__(self) -> int:
        return int(self._numbers.shape[0])

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int | str) and self.contains(number)

    def contains(self, e164: str | int) -> bool:
        """True if the number is in the base. Malformed input is simply not in it."""
        if isinstance(e164, str):
            digits = e164[1:] if e164.startswith("+") else e164
            if not digits.isdigit() or len(digits) > _MAX_DIGITS:
                return False
            key = int(digits)
        else:
            key = e164
            if not 0 < key < 10**_MAX_DIGITS:
                return False
        numbers = self._numbers
        i = int(numbers.searchsorted(key))
        return i < numbers.shape[0] and int(numbers[i]) == key

    @property
    def nbytes(self) -> int:
        """Memory held by the numbers themselves."""
        return int(self._numbers.nbytes)

    def stats(self) -> FraudBaseStats:
        return FraudBaseStats(numbers=len(self), skipped_lines=self._skipped)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the compact cache (a ``.npy`` file, 8 bytes a number); returns its path."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        # Write beside and rename, so a reader never sees half a file.
        with tmp.open("wb") as fh:
            np.save(fh, self._numbers, allow_pickle=False)
        tmp.replace(target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FraudBase:
        """Read a cache written by `save`; raises `DataFileError` if it is not one."""
        try:
            numbers = np.load(Path(path), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataFileError(f"{path}: not a fraud base cache ({exc})") from exc
        if numbers.dtype != np.int64 or numbers.ndim != 1:
            raise DataFileError(f"{path}: expected a 1-D int64 array, got {numbers.dtype}")
        if numbers.shape[0] > 1 and not bool(np.all(numbers[1:] > numbers[:-1])):
            raise DataFileError(f"{path}: numbers are not sorted and distinct")
        return cls(numbers)


def load_fraud_csv(
    path: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    default_region: str = "RU",
) -> FraudBase:
    """Read a fraud list: one number per line, or numbers in the first CSV column.

    Columns may be separated by commas, semicolons or tabs; a header line, blank lines and
    anything that is not a phone number are skipped and counted (`FraudBase.stats`). The
    digits of the first column are the number, normalised to E.164 as `normalise_phone`
    would for `default_region`: for the +7 plan (RU, KZ) ``8XXXXXXXXXX``, ``7XXXXXXXXXX``,
    ``+7 (XXX) XXX-XX-XX`` and bare ten digits all become ``7XXXXXXXXXX``. `progress` is
    called after every chunk with bytes read and the file size. Raises `DataFileError` if
    the file cannot be read.
    """
    source = Path(path)
    try:
        total = source.stat().st_size
        fh = source.open("rb")
    except OSError as exc:
        raise DataFileError(f"{source}: {exc.strerror or exc}") from exc
    parse = _parse_plus7 if default_region.upper() in _PLUS7_REGIONS else _parse_any(default_region)
    parts: list[npt.NDArray[np.int64]] = []
    skipped = 0
    done = 0
    tail = b""
    with fh:
        while True:
            try:
                chunk = fh.read(_CHUNK)
            except OSError as exc:
                raise DataFileError(f"{source}: {exc.strerror or exc}") from exc
            if not chunk:
                break
            done += len(chunk)
            data = tail + chunk
            cut = data.rfind(b"\n") + 1
            tail = data[cut:]
            if cut:
                numbers, bad = parse(data[:cut])
                parts.append(numbers)
                skipped += bad
            if progress is not None:
                progress(done, total)
    if tail:
        numbers, bad = parse(tail + b"\n")
        parts.append(numbers)
        skipped += bad
    if progress is not None:
        progress(total, total)
    merged = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    merged.sort()
    # Sorting and dropping neighbours is several times faster than np.unique's hashing here.
    distinct = (
        merged[np.concatenate(([True], merged[1:] != merged[:-1]))] if merged.size else merged
    )
    return FraudBase(distinct, skipped_lines=skipped)


_PLUS7_REGIONS = frozenset({"RU", "KZ"})
_POW10 = 10 ** np.arange(19, dtype=np.int64)
_LEAD_PLACE = 10**10
# Bytes-level cleaning runs in C: everything but digits, the plus, separators and newlines
# goes, then separators become commas. "тел. +7 (900) 123-45-67;Иванов" → "+79001234567,".
_SEPARATORS = bytes.maketrans(b";\t", b",,")
_NOISE = bytes(c for c in range(256) if c not in b"0123456789+,;\t\n")
_WHITESPACE = b" \t\r\f\v"


def _parse_plus7(block: bytes) -> tuple[npt.NDArray[np.int64], int]:
    """Numbers and the count of skipped non-blank lines of `block` (whole lines only).

    A Python loop doing a regex per line takes seconds for 1.3 million lines; here the
    cleaning is two ``bytes.translate`` calls, one ``int()`` a line, and the E.164 rules are
    applied to the whole array at once.
    """
    cleaned = block.translate(_SEPARATORS, _NOISE)
    lines = cleaned.split(b"\n")
    if b"," in cleaned:
        lines = [line.partition(b",")[0] for line in lines]
    # A plus becomes the sign, so the rules below can still tell "+7..." from "7...".
    signed = np.array(
        [int(x) if len(x) <= _MAX_DIGITS and x.isdigit() else _signed(x) for x in lines if x],
        dtype=np.int64,
    )
    visible = sum(1 for line in block.translate(None, _WHITESPACE).split(b"\n") if line)
    plus = signed < 0
    value = np.abs(signed)
    digits = np.searchsorted(_POW10, value, side="right")
    lead = value // _LEAD_PLACE
    out = np.full(value.shape, -1, dtype=np.int64)
    international = (plus | (digits >= 12)) & (digits >= _MIN_DIGITS) & (digits <= _MAX_DIGITS)
    out[international] = value[international]
    ten = ~plus & (digits == 10)
    out[ten] = 7 * _LEAD_PLACE + value[ten]
    eleven = ~plus & (digits == 11) & ((lead == 7) | (lead == 8))
    out[eleven] = value[eleven] + (7 - lead[eleven]) * _LEAD_PLACE
    numbers = out[out >= 0]
    return numbers, visible - int(numbers.shape[0])


def _signed(field: bytes) -> int:
    # "+7900..." → -7900...; a lone "+", pluses inside, too many digits → 0 (skipped).
    if field[:1] == b"+" and 1 < len(field) <= _MAX_DIGITS + 1 and field[1:].isdigit():
        return -int(field[1:])
    return 0


def _parse_any(region: str) -> Callable[[bytes], tuple[npt.NDArray[np.int64], int]]:
    # Outside the +7 plan trunk prefixes differ by country (BY: 80, UA: 0); libphonenumber
    # knows them all. Slower (tens of microseconds a line), and such lists are small.
    def parse(block: bytes) -> tuple[npt.NDArray[np.int64], int]:
        numbers: list[int] = []
        skipped = 0
        for line in block.decode("latin-1").splitlines():
            field = _FIRST_FIELD.match(line.strip())
            phone = normalise_phone(field[0] if field else "", default_region=region)
            if isinstance(phone, ValidPhone):
                numbers.append(phone.digits)
            elif line.strip():
                skipped += 1
        return np.array(numbers, dtype=np.int64), skipped

    return parse
