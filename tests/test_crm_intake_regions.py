from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crm_bridge.errors import DataFileError
from crm_bridge.intake.numbering import NumberingPlan
from crm_bridge.intake.phone import ValidPhone, normalise_phone
from crm_bridge.intake.region_check import RegionCheck, RegionOutcome, check_region
from crm_bridge.intake.regions import RegionDirectory
from crm_bridge.intake.timezone import CustomerZone, ZoneSource, customer_timezone

NOW = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
DIRECTORY = RegionDirectory.load()
PLAN = NumberingPlan.load()


def phone(raw: str) -> ValidPhone:
    result = normalise_phone(raw)
    assert isinstance(result, ValidPhone)
    return result


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("Свердловская область", {"RU-SVE"}),
        ("Свердловская обл.", {"RU-SVE"}),
        ("свердловская", {"RU-SVE"}),
        ("г. Москва", {"RU-MOW"}),
        ("Москва", {"RU-MOW"}),
        ("г. Москва и Московская область", {"RU-MOW", "RU-MOS"}),
        ("Респ. Башкортостан", {"RU-BA"}),
        ("Республика Татарстан (Татарстан)", {"RU-TA"}),
        ("Кемеровская область — Кузбасс", {"RU-KEM"}),
        ("Ханты-Мансийский автономный округ - Югра", {"RU-KHM"}),
        ("Алтайский край", {"RU-ALT"}),
        ("Республика Алтай", {"RU-AL"}),
        ("Свердловская обл.|г.о. Екатеринбург", {"RU-SVE"}),
        ("Одеська область", {"UA-51"}),
        ("Мангистауская область", {"KZ-MAN"}),
        ("RU-NVS", {"RU-NVS"}),
        ("Российская Федерация", set()),
        ("Москва и Атлантида", set()),
        ("", set()),
        (None, set()),
    ],
)
def test_region_names_in_every_spelling_resolve_to_the_same_regions(
    name: str | None, keys: set[str]
) -> None:
    assert {r.key for r in DIRECTORY.resolve(name)} == keys


def test_every_region_has_a_time_zone_that_exists() -> None:
    assert len(DIRECTORY) >= 83 + 17 + 7 + 25
    for key in ("RU-MOW", "RU-KGD", "RU-KAM", "KZ-ALA", "BY-HM", "UA-30"):
        region = DIRECTORY.get(key)
        assert region is not None
        ZoneInfo(region.tz)


def test_numbering_plan_places_numbers_in_their_ranges() -> None:
    info = PLAN.lookup("+79121234567")
    assert info is not None
    assert info.region == "Свердловская обл."
    assert PLAN.lookup("+79991500000") is None  # between listed ranges
    assert PLAN.lookup("+77011234567") is None  # Kazakhstan shares +7 but not the plan
    assert PLAN.lookup("+375291234567") is None


def test_registry_files_in_cp1251_with_extra_columns_are_read(tmp_path: Path) -> None:
    text = (
        "АВС/ DEF;От;До;Емкость;Оператор;Регион;ИНН\r\n"
        '913;0000000;0999999;1000000;ПАО "МТС";Новосибирская обл.;7740000076\r\n'
    )
    path = tmp_path / "DEF-9xx.csv"
    path.write_bytes(text.encode("cp1251"))
    plan = NumberingPlan.load(path)
    info = plan.lookup("+79130500000")
    assert info is not None
    assert (info.operator, info.region) == ('ПАО "МТС"', "Новосибирская обл.")


def test_registry_with_an_english_header_is_read(tmp_path: Path) -> None:
    path = tmp_path / "plan.csv"
    path.write_text(
        "ABC/DEF;From;To;Capacity;Operator;Region\n343;0;999999;1;X;Свердловская обл.\n"
    )
    assert NumberingPlan.load(path).lookup("+73430000001") is not None


def test_a_broken_registry_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "plan.csv"
    path.write_text("ABC/DEF;From;To;Capacity;Operator;Region\n343;x;9;1;X;Y\n")
    with pytest.raises(DataFileError, match="line 2"):
        NumberingPlan.load(path)
    path.write_text("code;start\n")
    with pytest.raises(DataFileError, match="no column"):
        NumberingPlan.load(path)


def check(raw_phone: str, region: str | None, country: str | None = None) -> RegionCheck:
    return check_region(
        phone(raw_phone),
        delivery_region=region,
        delivery_country=country,
        plan=PLAN,
        directory=DIRECTORY,
        now=NOW,
        verify_after=timedelta(hours=2),
    )


def test_a_phone_from_the_delivery_region_matches() -> None:
    decision = check("8 912 123 45 67", "Свердловская область")
    assert decision.outcome is RegionOutcome.MATCH
    assert decision.verify_at is None


def test_a_range_serving_two_subjects_matches_either() -> None:
    assert check("8 916 123 45 67", "Московская обл.").outcome is RegionOutcome.MATCH
    assert check("8 916 123 45 67", "г. Москва").outcome is RegionOutcome.MATCH


def test_a_mismatch_flags_the_order_and_schedules_a_verification_call() -> None:
    decision = check("8 913 123 45 67", "г. Москва")
    assert decision.outcome is RegionOutcome.MISMATCH
    assert decision.verify_at == NOW + timedelta(hours=2)
    assert decision.phone_regions == {"RU-NVS"}
    assert decision.delivery_regions == {"RU-MOW"}
    assert "Новосибирская" in decision.reason


def test_a_phone_of_another_country_is_a_mismatch() -> None:
    decision = check("+7 701 123 45 67", "Свердловская область")
    assert decision.outcome is RegionOutcome.MISMATCH
    assert decision.phone_regions == {"KZ"}
    assert check("+7 701 123 45 67", "Алматы").outcome is RegionOutcome.UNKNOWN


def test_unknown_sides_raise_no_flag() -> None:
    assert check("8 912 123 45 67", "Нарния").outcome is RegionOutcome.UNKNOWN
    assert check("8 912 123 45 67", None).outcome is RegionOutcome.UNKNOWN
    assert check("8 958 050 00 00", "г. Москва").outcome is RegionOutcome.UNKNOWN  # nationwide


def zone(region: str | None, raw_phone: str | None, country: str | None = None) -> CustomerZone:
    return customer_timezone(
        delivery_region=region,
        delivery_country=country,
        phone=phone(raw_phone) if raw_phone else None,
        plan=PLAN,
        directory=DIRECTORY,
        shop_default="Europe/Moscow",
    )


def test_time_zone_comes_from_the_delivery_region_first() -> None:
    result = zone("Приморский край", "8 912 123 45 67")
    assert (result.tz, result.source) == ("Asia/Vladivostok", ZoneSource.DELIVERY_REGION)


def test_time_zone_falls_back_to_the_phone_region_then_country_then_shop() -> None:
    assert zone(None, "8 913 123 45 67").tz == "Asia/Novosibirsk"
    assert zone(None, "8 913 123 45 67").source is ZoneSource.PHONE_REGION
    assert zone("Нарния", "+375 29 123 45 67").tz == "Europe/Minsk"
    assert zone(None, None, "KZ").source is ZoneSource.DELIVERY_COUNTRY
    assert zone(None, "+49 30 1234567") == zone(None, None)
    assert zone(None, None).source is ZoneSource.SHOP_DEFAULT
