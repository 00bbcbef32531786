from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_bridge.intake.phone import InvalidPhone, InvalidReason, ValidPhone, normalise_phone


@pytest.mark.parametrize(
    "raw",
    [
        "8 (900) 123-45-67",
        "+7 900 123 45 67",
        "9001234567",
        "79001234567",
        "89001234567",
        "+7(900)123-45-67",
        "тел.: 8-900-123-45-67",
        "8 900 123 45 67 доб. 12",
        "\u00a0+7\u00a0900\u00a0123\u00a04567\u00a0",
        "８９００１２３４５６７",  # full-width digits from a phone keyboard
        "+7 900 123+45 67",
    ],
)
def test_russian_habits_all_normalise_to_one_e164_number(raw: str) -> None:
    result = normalise_phone(raw)
    assert isinstance(result, ValidPhone), result
    assert result.e164 == "+79001234567"
    assert result.region == "RU"
    assert result.kind == "mobile"
    assert result.digits == 79001234567


def test_plus7_numbers_are_told_apart_by_country() -> None:
    kz = normalise_phone("8 701 123 45 67")
    assert isinstance(kz, ValidPhone)
    assert (kz.e164, kz.region) == ("+77011234567", "KZ")


def test_default_region_applies_only_to_numbers_without_a_plus() -> None:
    by = normalise_phone("8 029 123 45 67", default_region="BY")
    assert isinstance(by, ValidPhone)
    assert by.e164 == "+375291234567"
    ua = normalise_phone("+380 50 123 45 67", default_region="BY")
    assert isinstance(ua, ValidPhone)
    assert ua.region == "UA"


def test_moscow_landline_is_diallable() -> None:
    result = normalise_phone("8 (495) 123-45-67")
    assert isinstance(result, ValidPhone)
    assert result.kind == "fixed_line"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", InvalidReason.EMPTY),
        ("   ", InvalidReason.EMPTY),
        ("не скажу", InvalidReason.NOT_A_NUMBER),
        ("123", InvalidReason.TOO_SHORT),
        ("8 900 123 45", InvalidReason.TOO_SHORT),
        ("+7 900 123 45 67 89 01 23", InvalidReason.TOO_LONG),
        ("+7 900 123 45 67 89", InvalidReason.INVALID_LENGTH),
        ("8 900 123 45 67 89 01", InvalidReason.NOT_ASSIGNED),
        ("+7 000 123 45 67", InvalidReason.NOT_ASSIGNED),
        ("8 800 555 35 35", InvalidReason.NOT_A_CUSTOMER_TYPE),
        ("8 809 505 12 34", InvalidReason.NOT_A_CUSTOMER_TYPE),
        ("+999 123 456 789", InvalidReason.INVALID_COUNTRY_CODE),
        ("1" * 200, InvalidReason.TOO_LONG_INPUT),
    ],
)
def test_invalid_numbers_say_why_and_are_never_valid(raw: str, reason: InvalidReason) -> None:
    result = normalise_phone(raw)
    assert isinstance(result, InvalidPhone)
    assert result.reason is reason
    assert result.message == reason.value


def test_invalid_result_keeps_the_input_for_the_operator() -> None:
    result = normalise_phone("8 900 123 45")
    assert isinstance(result, InvalidPhone)
    assert result.raw == "8 900 123 45"


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80), st.sampled_from(["RU", "KZ", "BY", "UA", "DE"]))
def test_any_text_gives_a_verdict_and_valid_numbers_are_e164(raw: str, region: str) -> None:
    result = normalise_phone(raw, default_region=region)
    if isinstance(result, ValidPhone):
        assert result.e164.startswith("+") and result.e164[1:].isdigit()
        assert 8 <= len(result.e164) <= 16
        assert normalise_phone(result.e164) == result  # normalising is idempotent
    else:
        assert isinstance(result.reason, InvalidReason)
