"""Regions by name: the federal subjects of Russia and the regions of Kazakhstan, Belarus and
Ukraine, each with its main IANA time zone.

Names arrive in every spelling: "Свердловская область" from a checkout form, "Свердловская
обл." from the numbering-plan registry, "г. Москва и Московская область" for a number range
that serves two subjects, "Москва" or "мск" from a CPA network. `RegionDirectory.resolve`
turns any of them into the set of regions meant, or an empty set when it does not know.

The table is ``crm_bridge/data/regions.csv`` (``key;country;tz;name;aliases``); keys are ISO
3166-2 codes where one exists.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from crm_bridge.errors import DataFileError


@dataclass(frozen=True, slots=True)
class Region:
    """One region: `key` (``"RU-SVE"``), ISO country, IANA zone and its Russian name."""

    key: str
    country: str
    tz: str
    name: str


# The main zone of each country, for when only the country is known. Russia and Kazakhstan
# span several zones; these are their capitals'.
COUNTRY_ZONES: Mapping[str, str] = {
    "RU": "Europe/Moscow",
    "KZ": "Asia/Almaty",
    "BY": "Europe/Minsk",
    "UA": "Europe/Kyiv",
    "UZ": "Asia/Tashkent",
    "KG": "Asia/Bishkek",
    "TJ": "Asia/Dushanbe",
    "TM": "Asia/Ashgabat",
    "AM": "Asia/Yerevan",
    "AZ": "Asia/Baku",
    "GE": "Asia/Tbilisi",
    "MD": "Europe/Chisinau",
}

# Words that say what kind of region a name is; dropped so "Свердловская обл." and
# "Свердловская область" meet at "свердловская".
_KIND_WORDS = (
    "автономный округ",
    "автономная область",
    "республика",
    "область",
    "край",
    "город",
    "обл",
    "респ",
    "ао",
    "г",
)
_ABBREVIATIONS = {"обл": "область", "респ": "республика", "г": "город", "а о": "ао"}
# Range registries join two subjects served by one range: "г. Москва и Московская область".
_JOINERS = re.compile(r"\s+и\s+|\s*/\s*|\s*,\s*|\s*;\s*")
_PUNCTUATION = re.compile(r"[^\w\s-]")
_SPACES = re.compile(r"\s+")
_DASHES = re.compile(r"\s*[-–—]\s*")


def normalise_name(name: str) -> str:
    """Lower case, ё → е, punctuation and kind words ("обл.", "край") removed."""
    text = name.casefold().replace("ё", "е").replace("(", " ").replace(")", " ")
    text = _DASHES.sub("-", _PUNCTUATION.sub(" ", text))
    words = _SPACES.sub(" ", text).strip().split(" ")
    joined = " ".join(_ABBREVIATIONS.get(w, w) for w in words if w)
    for kind in _KIND_WORDS:
        joined = re.sub(rf"(?:^|\s){re.escape(kind)}(?=\s|$)", " ", joined)
    return _SPACES.sub(" ", joined).strip()


class RegionDirectory:
    """Regions and their aliases. Immutable after construction; share one instance."""

    def __init__(self, regions: Iterable[tuple[Region, Iterable[str]]]) -> None:
        self._by_key: dict[str, Region] = {}
        self._by_name: dict[str, Region] = {}
        for region, aliases in regions:
            self._by_key[region.key] = region
            for name in (region.name, region.key, *aliases):
                normal = normalise_name(name)
                if normal:
                    self._by_name.setdefault(normal, region)
                self._by_name.setdefault(name.casefold(), region)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> RegionDirectory:
        """Read the table at `path`, or the one shipped with obzvon when None."""
        try:
            if path is None:
                text = (
                    resources.files("crm_bridge.data")
                    .joinpath("regions.csv")
                    .read_text(encoding="utf-8")
                )
            else:
                text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataFileError(f"{path or 'regions.csv'}: {exc}") from exc
        rows = []
        for n, row in enumerate(csv.DictReader(text.splitlines(), delimiter=";"), start=2):
            try:
                region = Region(row["key"], row["country"], row["tz"], row["name"])
            except KeyError as exc:
                raise DataFileError(f"regions table line {n}: no column {exc}") from exc
            rows.append((region, [a for a in (row.get("aliases") or "").split("|") if a]))
        return cls(rows)

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: str) -> Region | None:
        """The region with this key (``"RU-SVE"``), or None."""
        return self._by_key.get(key.upper())

    def resolve(self, name: str | None) -> frozenset[Region]:
        """The regions `name` means; empty when unknown or when it names a whole country.

        A name joining several subjects ("г. Москва и Московская область") resolves to all of
        them; if any part is unknown the whole name is, so a half-understood name never
        narrows the answer.
        """
        if not name or not name.strip():
            return frozenset()
        # The newer registry appends the municipality after a bar: "Свердловская обл.|г. ..."
        name = name.split("|", 1)[0]
        whole = self._lookup(name)
        if whole is not None:
            return frozenset({whole})
        parts = [p for p in _JOINERS.split(name) if p.strip()]
        found = [self._lookup(p) for p in parts]
        if len(found) < 2 or any(r is None for r in found):
            return frozenset()
        return frozenset(r for r in found if r is not None)

    def _lookup(self, name: str) -> Region | None:
        found = self._by_name.get(name.strip().casefold()) or self._by_name.get(
            normalise_name(name)
        )
        if found is None:
            # "Кемеровская область — Кузбасс": the official name before the dash is enough.
            head = re.split(r"\s[-–—]\s", name, maxsplit=1)[0]
            if head != name:
                found = self._by_name.get(normalise_name(head))
        return found
