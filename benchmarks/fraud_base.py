"""Fraud base benchmark: load 1.3 million numbers from CSV, look numbers up, count memory.

    python -m benchmarks.fraud_base [--numbers 1300000] [--lookups 100000] [--no-write]

Generates the CSV in a temporary directory (numbers in the habits real exports have:
``79001234567``, ``89001234567``, ``+7 (900) 123-45-67``, and a ``number;name;date`` column
layout), then measures:

- load time of `load_fraud_csv` (median of three runs),
- lookup time per number, p50 and p99 over `--lookups` lookups, half hits and half misses,
- memory: the peak traced by tracemalloc during a load, and the size of the loaded base;
- the same lookups and memory for a plain Python ``set`` of ints, for comparison.

Prints a table and rewrites the "Fraud base" section of docs/benchmarks.md (other sections
are left as they are). Exits 1 if a target is missed: load < 3 s, a typical (p50) lookup
< 5 µs, peak memory < 150 MB. The p99 is printed too; on a shared machine it follows the load
of whatever else runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import machine, write_section
from crm_bridge.intake.fraud import FraudBase, load_fraud_csv

SECTION = "## Fraud base (`crm_bridge/intake/fraud.py`)"
TARGET_LOAD_S, TARGET_LOOKUP_US, TARGET_MB = 3.0, 5.0, 150.0


@dataclass(frozen=True)
class Result:
    numbers: int
    file_mb: float
    load_s: float
    load_peak_mb: float
    base_mb: float
    lookup_p50_us: float
    lookup_p99_us: float
    set_mb: float
    set_p50_us: float
    set_p99_us: float


def generate(path: Path, count: int, rng: random.Random) -> list[int]:
    """Write `count` distinct numbers in mixed formats; return them as E.164 integers."""
    subscribers = rng.sample(range(9_000_000_000, 10_000_000_000), count)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("phone;name;added\n")
        for i, n in enumerate(subscribers):
            s = str(n)
            form = i % 10
            if form < 5:
                fh.write(f"7{s}\n")
            elif form < 8:
                fh.write(f"8{s}\n")
            elif form == 8:
                fh.write(f"+7 ({s[:3]}) {s[3:6]}-{s[6:8]}-{s[8:]}\n")
            else:
                fh.write(f"{s};Покупатель {i};2025-11-0{i % 9 + 1}\n")
    return [70_000_000_000 + n for n in subscribers]


def percentile_us(samples_ns: list[int], q: float) -> float:
    ordered = sorted(samples_ns)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def time_lookups(contains: Callable[[int], bool], keys: list[int]) -> tuple[float, float]:
    clock = time.perf_counter_ns
    samples = []
    for key in keys:
        start = clock()
        contains(key)
        samples.append(clock() - start)
    return percentile_us(samples, 0.50), percentile_us(samples, 0.99)


def run(count: int, lookups: int) -> Result:
    rng = random.Random(20260110)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fraud.csv"
        numbers = generate(path, count, rng)
        file_mb = path.stat().st_size / 1e6
        times = []
        base: FraudBase | None = None
        for _ in range(3):
            start = time.perf_counter()
            base = load_fraud_csv(path)
            times.append(time.perf_counter() - start)
        assert base is not None and len(base) == count, "the base lost numbers"
        tracemalloc.start()
        traced = load_fraud_csv(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del traced
    hits = rng.sample(numbers, lookups // 2)
    known = set(numbers)
    misses: list[int] = []
    while len(misses) < lookups - len(hits):
        candidate = 79_000_000_000 + rng.randrange(1_000_000_000)
        if candidate not in known:
            misses.append(candidate)
    keys = hits + misses
    rng.shuffle(keys)
    assert all(base.contains(k) for k in hits) and not any(base.contains(k) for k in misses)
    p50, p99 = time_lookups(base.contains, keys)
    del known
    fresh = np.array(numbers, dtype=np.int64)
    tracemalloc.start()
    # From fresh int objects, so the set's memory includes its ints, as a loader's would.
    as_set = set(fresh.tolist())
    set_bytes, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    s50, s99 = time_lookups(as_set.__contains__, keys)
    return Result(
        numbers=count,
        file_mb=file_mb,
        load_s=statistics.median(times),
        load_peak_mb=peak / 1e6,
        base_mb=base.nbytes / 1e6,
        lookup_p50_us=p50,
        lookup_p99_us=p99,
        set_mb=set_bytes / 1e6,
        set_p50_us=s50,
        set_p99_us=s99,
    )


def report(result: Result, command: str, where: str) -> str:
    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    r = result
    rows = [
        ("load (median of 3)", f"{r.load_s:.2f} s", f"< {TARGET_LOAD_S:.0f} s"),
        ("lookup p50", f"{r.lookup_p50_us:.2f} µs", f"< {TARGET_LOOKUP_US:.0f} µs"),
        ("lookup p99", f"{r.lookup_p99_us:.2f} µs", ""),
        ("memory: peak during load", f"{r.load_peak_mb:.0f} MB", f"< {TARGET_MB:.0f} MB"),
        ("memory: the loaded base", f"{r.base_mb:.1f} MB", ""),
        ("for comparison, Python set: memory", f"{r.set_mb:.0f} MB", ""),
        (
            "for comparison, Python set: lookup p50 / p99",
            f"{r.set_p50_us:.2f} / {r.set_p99_us:.2f} µs",
            "",
        ),
    ]
    # One verdict per row with a target, in row order.
    checks = [
        r.load_s < TARGET_LOAD_S,
        r.lookup_p50_us < TARGET_LOOKUP_US,
        r.load_peak_mb < TARGET_MB,
    ]
    lines = [
        SECTION,
        "",
        f"`{command}` — {r.numbers:,} numbers in a {r.file_mb:.0f} MB CSV (mixed formats: "
        "`7…`, `8…`, `+7 (…) …-…-…`, `number;name;date`); lookups half hits, half misses.",
        "",
        f"Machine: {where}.",
        "",
        "| measure | value | target | |",
        "| --- | --- | --- | --- |",
    ]
    verdicts = iter(checks)
    for name, value, target in rows:
        verdict = mark(next(verdicts)) if target else ""
        lines.append(f"| {name} | {value} | {target} | {verdict} |")
    lines += [
        "",
        "The base is a sorted `numpy.int64` array searched with `searchsorted` (8 bytes a "
        "number); the CSV is cleaned with `bytes.translate` and the E.164 rules run on whole "
        "arrays, so no regular expression runs per line. A `set` of ints looks up faster "
        "(one hash probe against numpy's call overhead) but holds ten times the memory, close "
        "to the 150 MB budget; the array also saves to a `.npy` cache that loads in "
        "milliseconds. The p99 follows the machine's load average (others' work on the same "
        "two cores), not the data structure.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fraud_base")
    parser.add_argument("--numbers", type=int, default=1_300_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--no-write", action="store_true", help="do not update the docs")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.fraud_base" + (
        f" --numbers {args.numbers}" if args.numbers != 1_300_000 else ""
    )
    where = machine()
    result = run(args.numbers, args.lookups)
    text = report(result, command, where)
    print(text)
    if not args.no_write:
        write_section("fraud_base", text)
    met = (
        result.load_s < TARGET_LOAD_S
        and result.lookup_p50_us < TARGET_LOOKUP_US
        and result.load_peak_mb < TARGET_MB
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
