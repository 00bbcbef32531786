from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crm_bridge.errors import DataFileError
from crm_bridge.intake.fraud import FraudBase, load_fraud_csv


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "fraud.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_every_russian_habit_loads_as_the_same_e164_number(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "79001234567\n89001234567\n9001234567\n+7 (900) 123-45-67\n тел. 8-900-123-45-67 \n",
    )
    base = load_fraud_csv(path)
    assert len(base) == 1
    assert base.contains("+79001234567")
    assert base.contains(79001234567)


def test_first_column_of_a_csv_is_the_number_and_the_header_is_skipped(tmp_path: Path) -> None:
    text = "Телефон;ФИО;Дата\n89001112233;Иванов И.И.;2024-05-01\n+375291234567,x\n"
    base = load_fraud_csv(write(tmp_path, text, "cp1251"))
    assert base.contains("+79001112233")
    assert base.contains("+375291234567")
    assert base.stats().skipped_lines == 1


def test_number_in_a_later_column_only_is_not_taken(tmp_path: Path) -> None:
    base = load_fraud_csv(write(tmp_path, "Иванов;89001112233\n"))
    assert len(base) == 0
    assert base.stats().skipped_lines == 1


def test_blank_lines_are_not_counted_as_skipped(tmp_path: Path) -> None:
    base = load_fraud_csv(write(tmp_path, "\n\n  \r\n89001112233\r\n\n"))
    assert len(base) == 1
    assert base.stats().skipped_lines == 0


def test_junk_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    text = "12345\n+\n" + "9" * 40 + "\n+7900+1234567\n8 900 123 45 67\n9001234567"
    base = load_fraud_csv(write(tmp_path, text))
    assert len(base) == 1
    assert base.stats().skipped_lines == 4


def test_numbers_not_in_the_base_are_not_found(tmp_path: Path) -> None:
    base = load_fraud_csv(write(tmp_path, "89001112233\n89001112235\n"))
    for number in ("+79001112234", "+79001112232", "+79001112236", "+1", "junk", "", -5, 0):
        assert not base.contains(number)
    assert "+79001112233" in base
    assert 3.5 not in base


def test_progress_reports_bytes_up_to_the_file_size(tmp_path: Path) -> None:
    path = write(tmp_path, "89001112233\n" * 1000)
    seen: list[tuple[int, int]] = []
    load_fraud_csv(path, progress=lambda done, total: seen.append((done, total)))
    size = path.stat().st_size
    assert seen[-1] == (size, size)
    assert all(total == size and 0 < done <= size for done, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_lines_split_across_read_chunks_are_read_whole(tmp_path: Path) -> None:
    # More than one 2 MB chunk, so lines straddle chunk boundaries.
    numbers = [79000000000 + i * 7 for i in range(250_000)]
    path = write(tmp_path, "\n".join(f"8{n - 70000000000}" for n in numbers))
    base = load_fraud_csv(path)
    assert len(base) == len(numbers)
    assert all(base.contains(n) for n in numbers[::997])
    assert base.contains(numbers[-1])


def test_other_default_regions_use_their_trunk_prefix(tmp_path: Path) -> None:
    base = load_fraud_csv(write(tmp_path, "80291234567\n+380501234567\n"), default_region="BY")
    assert base.contains("+375291234567")
    assert base.contains("+380501234567")


def test_saved_cache_loads_back_identical(tmp_path: Path) -> None:
    base = FraudBase.from_numbers(["+79001112233", 79001112233, "79005556677"])
    path = base.save(tmp_path / "fraud.npy")
    again = FraudBase.load(path)
    assert len(again) == 2
    assert again.contains("+79005556677")


def test_a_cache_that_is_not_one_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(DataFileError):
        FraudBase.load(bad)
    unsorted = tmp_path / "unsorted.npy"
    np.save(unsorted, np.array([3, 1, 2], dtype=np.int64))
    with pytest.raises(DataFileError, match="sorted"):
        FraudBase.load(unsorted)
    floats = tmp_path / "floats.npy"
    np.save(floats, np.array([1.0]))
    with pytest.raises(DataFileError, match="int64"):
        FraudBase.load(floats)


def test_a_missing_file_is_a_data_file_error(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"missing\.csv"):
        load_fraud_csv(tmp_path / "missing.csv")
