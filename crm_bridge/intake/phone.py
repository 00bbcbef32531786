"""Phone numbers as customers type them, normalised to E.164.

Shops in Russia and the CIS receive numbers in every local habit: ``8 (900) 123-45-67`` (the
trunk prefix 8), ``+7 900 123 45 67``, ``79001234567`` without the plus, ten bare digits
``9001234567`` (a Russian mobile without any prefix), or the same with words and punctuation
around it. `normalise_phone` turns all of them into one E.164 string or says why it cannot.

A number that is not `ValidPhone` is never dialled: invalid numbers cost a trunk attempt and,
for premium-rate numbers, money.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

# Longer than any real number with its punctuation, short enough that a pasted paragraph is
# rejected before it reaches the parser.
MAX_RAW_LENGTH = 64

# What a customer's phone can be. Toll-free, premium-rate and the like belong to businesses;
# an order with one is junk traffic, and a premium-rate number costs money to call.
DIALLABLE_TYPES = frozenset(
    {
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.PERSONAL_NUMBER,
        PhoneNumberType.VOIP,
    }
)

_NOT_DIGITS = re.compile(r"[^\d+]")


class InvalidReason(enum.StrEnum):
    """Why a number is not dialled; the value is what an admin sees."""

    EMPTY = "empty"
    TOO_LONG_INPUT = "too long to be a phone number"
    NOT_A_NUMBER = "not a phone number"
    INVALID_COUNTRY_CODE = "unknown country code"
    TOO_SHORT = "too short"
    TOO_LONG = "too long"
    INVALID_LENGTH = "impossible length for its country"
    NOT_ASSIGNED = "not an assigned number range"
    NOT_A_CUSTOMER_TYPE = "toll-free, premium-rate or service number"


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidPhone:
    """A number that may be dialled.

    `e164` is ``+<country code><national number>``; `region` the ISO 3166 code of the country
    the number belongs to (``"RU"``, ``"KZ"``: both share +7); `kind` phonenumbers' type name
    in lower case (``"mobile"``, ``"fixed_line"``...).
    """

    e164: str
    region: str
    country_code: int
    national_number: str
    kind: str

    @property
    def digits(self) -> int:
        """The E.164 number as an integer (no plus): the key the fraud base uses."""
        return int(self.e164[1:])


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidPhone:
    """A number that must not be dialled, with the reason and the input as received."""

    raw: str
    reason: InvalidReason

    @property
    def message(self) -> str:
        return self.reason.value


PhoneResult = ValidPhone | InvalidPhone

_POSSIBLE_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: InvalidReason.INVALID_COUNTRY_CODE,
    ValidationResult.TOO_SHORT: InvalidReason.TOO_SHORT,
    ValidationResult.TOO_LONG: InvalidReason.TOO_LONG,
    ValidationResult.INVALID_LENGTH: InvalidReason.INVALID_LENGTH,
}

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: InvalidReason.INVALID_COUNTRY_CODE,
    NumberParseException.NOT_A_NUMBER: InvalidReason.NOT_A_NUMBER,
    NumberParseException.TOO_SHORT_AFTER_IDD: InvalidReason.TOO_SHORT,
    NumberParseException.TOO_SHORT_NSN: InvalidReason.TOO_SHORT,
    NumberParseException.TOO_LONG: InvalidReason.TOO_LONG,
}


def _clean(raw: str) -> str:
    # Keep digits and a plus; everything else ("тел.", brackets, dashes, NBSPs, "доб. 12"
    # extensions) is noise for dialling. Unicode digits (full-width, Arabic-Indic) are folded
    # to ASCII first so they are not silently dropped.
    folded = "".join(
        str(unicodedata.digit(ch)) if ch.isdigit() and not ch.isascii() else ch for ch in raw
    )
    # An extension is not part of the number we dial; drop it with its digits.
    folded = re.split(r"(?i)(?:доб|ext|вн|x)\.?\s*\d", folded, maxsplit=1)[0]
    digits = _NOT_DIGITS.sub("", folded)
    # Only a leading plus means "international"; stray pluses inside are typos.
    return ("+" if digits.startswith("+") else "") + digits.replace("+", "")


def normalise_phone(raw: str, *, default_region: str = "RU") -> PhoneResult:
    """Parse `raw` as typed by a customer; `default_region` applies when it has no ``+``.

    Returns `ValidPhone` only for a number that is possible, assigned (per Google's
    libphonenumber metadata) and of a type a customer has (mobile, fixed line, VoIP,
    personal). Anything else is `InvalidPhone` naming the first reason found. Never raises
    for any string input.
    """
    if len(raw) > MAX_RAW_LENGTH:
        return InvalidPhone(raw=raw[:MAX_RAW_LENGTH], reason=InvalidReason.TOO_LONG_INPUT)
    cleaned = _clean(raw)
    if not cleaned.lstrip("+"):
        reason = InvalidReason.EMPTY if not raw.strip() else InvalidReason.NOT_A_NUMBER
        return InvalidPhone(raw=raw, reason=reason)
    try:
        number = phonenumbers.parse(cleaned, default_region.upper())
    except NumberParseException as exc:
        return InvalidPhone(
            raw=raw, reason=_PARSE_REASONS.get(exc.error_type, InvalidReason.NOT_A_NUMBER)
        )
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible in _POSSIBLE_REASONS:
        return InvalidPhone(raw=raw, reason=_POSSIBLE_REASONS[possible])
    if not phonenumbers.is_valid_number(number):
        return InvalidPhone(raw=raw, reason=InvalidReason.NOT_ASSIGNED)
    kind = phonenumbers.number_type(number)
    if kind not in DIALLABLE_TYPES:
        return InvalidPhone(raw=raw, reason=InvalidReason.NOT_A_CUSTOMER_TYPE)
    region = phonenumbers.region_code_for_number(number) or default_region.upper()
    return ValidPhone(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=region,
        country_code=int(number.country_code or 0),
        national_number=str(number.national_number),
        kind=_type_name(kind),
    )


def _type_name(kind: int) -> str:
    for name, value in vars(PhoneNumberType).items():
        if value == kind and not name.startswith("_"):
            return name.lower()
    return "unknown"
