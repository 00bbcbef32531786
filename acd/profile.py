"""Who an operator is: the admin-set profile that routing reads and the board never changes.

The profile is a value. Changing an operator's skills means building a new profile; the board
holds whichever profile it was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from acd.errors import InvalidValue

MIN_SKILL_LEVEL = 1
MAX_SKILL_LEVEL = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorProfile:
    """An operator as the admin configured them.

    `skills` maps a product category to the admin's level for it, 1 (weakest) to 10 (best); a
    category that is not listed has no level, and every operator may still take it unless
    `categories_only` says otherwise. `categories_only` (for new hires) is the complete list of
    categories the operator may take; `None` means no such restriction. The collections are
    copied on construction, so the caller's dict or set may change afterwards without effect.
    """

    id: str
    endpoint: str
    campaigns: frozenset[str]
    # Excluded from the hash (not from equality): a mapping is not hashable, and equal profiles
    # still hash alike from the other fields.
    skills: Mapping[str, int] = field(default_factory=dict, hash=False)
    regions: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    categories_only: frozenset[str] | None = None
    supervisor: bool = False
    wrapup_s: float = 15.0

    def __post_init__(self) -> None:
        if not self.id:
            raise InvalidValue("an operator needs a non-empty id")
        if not self.endpoint:
            raise InvalidValue(f"operator {self.id!r} needs a non-empty endpoint")
        if not self.wrapup_s >= 0:  # also rejects NaN
            raise InvalidValue(f"operator {self.id!r}: wrapup_s must be >= 0, got {self.wrapup_s}")
        for category, level in self.skills.items():
            if not MIN_SKILL_LEVEL <= level <= MAX_SKILL_LEVEL:
                raise InvalidValue(
                    f"operator {self.id!r}: skill level for {category!r} must be "
                    f"{MIN_SKILL_LEVEL}..{MAX_SKILL_LEVEL}, got {level}"
                )
        object.__setattr__(self, "skills", MappingProxyType(dict(self.skills)))
        object.__setattr__(self, "campaigns", frozenset(self.campaigns))
        object.__setattr__(self, "regions", frozenset(self.regions))
        object.__setattr__(self, "languages", frozenset(self.languages))
        if self.categories_only is not None:
            object.__setattr__(self, "categories_only", frozenset(self.categories_only))

    def qualified_for(self, category: str | None) -> bool:
        """True if the operator may take a call of `category` (`None`: any operator may)."""
        if category is None or self.categories_only is None:
            return True
        return category in self.categories_only

    def serves(self, campaign_id: str, category: str | None) -> bool:
        """True if the operator works in `campaign_id` and is qualified for `category`."""
        return campaign_id in self.campaigns and self.qualified_for(category)

    def level(self, category: str | None) -> int | None:
        """The admin's level for `category`, or `None` if the operator has none for it."""
        if category is None:
            return None
        return self.skills.get(category)
