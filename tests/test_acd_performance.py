"""The performance book: priors for newcomers, convergence, decay, persistence, fast reads."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.errors import AcdError, InvalidValue
from acd.performance import (
    ALL_CAMPAIGNS,
    DAY_S,
    PerformanceBook,
    PerformanceRow,
    PerformanceSettings,
)

NO_DECAY = PerformanceSettings(half_life_s=math.inf)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def feed(book: PerformanceBook, op: str, cat: str, wins: int, losses: int, now: float) -> None:
    for i in range(wins + losses):
        book.record(op, cat, "confirm", i < wins, 1000.0, now)


def test_a_new_operator_starts_at_the_category_rate() -> None:
    book = PerformanceBook(NO_DECAY)
    feed(book, "a", "cosmetics", 80, 20, 0.0)
    feed(book, "b", "cosmetics", 60, 40, 0.0)
    feed(book, "a", "supplements", 30, 70, 0.0)
    s = book.settings
    overall = (170 + s.overall_strength * s.prior_rate) / (300 + s.overall_strength)
    cosmetics = (140 + s.category_strength * overall) / (200 + s.category_strength)
    est = book.estimate("newcomer", "cosmetics", 1.0)
    assert est.trials == 0 and est.successes == 0
    assert est.prior_mean == pytest.approx(cosmetics)
    assert est.mean == pytest.approx(cosmetics)
    assert est.alpha + est.beta == pytest.approx(s.strength)


def test_a_new_category_starts_at_the_overall_rate_for_a_newcomer() -> None:
    book = PerformanceBook(NO_DECAY)
    feed(book, "a", "cosmetics", 70, 30, 0.0)
    s = book.settings
    overall = (70 + s.overall_strength * s.prior_rate) / (100 + s.overall_strength)
    assert book.estimate("newcomer", "garden", 1.0).mean == pytest.approx(overall)
    assert PerformanceBook().estimate("x", "y", 0.0).mean == pytest.approx(s.prior_rate)


def test_an_operator_new_to_a_category_starts_at_the_logit_blend_of_category_and_skill() -> None:
    book = PerformanceBook(NO_DECAY)
    # Both categories at 50% over everyone; "star" confirms 90% of supplements.
    feed(book, "star", "supplements", 90, 10, 0.0)
    feed(book, "others", "supplements", 10, 90, 0.0)
    feed(book, "others", "cosmetics", 100, 100, 0.0)
    s = book.settings
    overall = (200 + s.overall_strength * s.prior_rate) / (400 + s.overall_strength)
    rate = {
        "supplements": (100 + s.category_strength * overall) / (200 + s.category_strength),
        "cosmetics": (100 + s.category_strength * overall) / (200 + s.category_strength),
    }
    expected = rate["supplements"]  # what the category rates predict for star's calls
    skill = (90 + s.operator_strength * expected) / (100 + s.operator_strength)
    blend = sigmoid(logit(rate["cosmetics"]) + logit(skill) - logit(expected))
    est = book.estimate("star", "cosmetics", 1.0)
    assert est.trials == 0
    assert est.prior_mean == pytest.approx(blend)
    assert est.mean > rate["cosmetics"] + 0.15  # a strong seller starts above the category
    assert book.estimate("others", "garden", 1.0).mean < book.estimate("star", "garden", 1.0).mean


def test_an_operator_is_not_blamed_for_taking_a_hard_category() -> None:
    book = PerformanceBook(NO_DECAY)
    # "hard" confirms 30% everywhere; "brave" takes only hard calls and confirms 35% of them.
    feed(book, "avg", "hard", 30, 70, 0.0)
    feed(book, "avg", "easy", 80, 20, 0.0)
    feed(book, "brave", "hard", 35, 65, 0.0)
    assert book.estimate("brave", "easy", 1.0).prior_mean > book.estimate("new", "easy", 1.0).mean


def simulate(
    rng: np.random.Generator, book: PerformanceBook, true: np.ndarray, calls: int, t0: float
) -> None:
    ops, cats = true.shape
    for i in range(calls):
        o, c = int(rng.integers(ops)), int(rng.integers(cats))
        book.record(f"op{o}", f"cat{c}", "confirm", bool(rng.random() < true[o, c]), 0.0, t0 + i)


def ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


def test_estimates_converge_to_the_true_rates_and_rank_operators_mostly_right() -> None:
    rng = np.random.default_rng(20260110)
    ops, cats = 20, 5
    skill, difficulty = rng.normal(0, 0.7, ops), rng.normal(0.6, 0.5, cats)
    true = 1 / (1 + np.exp(-(skill[:, None] + difficulty[None, :])))
    book = PerformanceBook()
    simulate(rng, book, true, 4000, 0.0)
    est = np.array(
        [[book.estimate(f"op{o}", f"cat{c}", 4000.0).mean for c in range(cats)] for o in range(ops)]
    )
    raw = np.zeros((ops, cats))
    for row in book.snapshot():
        o, c = int(row.operator_id[2:]), int(row.category[3:])
        raw[o, c] = row.successes / row.trials
    mae = float(np.abs(est - true).mean())
    assert mae < 0.06
    assert mae < float(np.abs(raw - true).mean())  # the hierarchy beats raw shares
    rank_corr = [np.corrcoef(ranks(est[:, c]), ranks(true[:, c]))[0, 1] for c in range(cats)]
    assert min(rank_corr) > 0.7
    best_found = [int(np.argmax(true[:, c])) in np.argsort(est[:, c])[-3:] for c in range(cats)]
    assert sum(best_found) >= 4


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.floats(0.05, 0.95), min_size=12, max_size=12),
    st.integers(0, 2**32 - 1),
)
def test_on_any_true_rates_the_estimates_converge_as_outcomes_accumulate(
    rates: list[float], seed: int
) -> None:
    true = np.array(rates).reshape(4, 3)  # four operators, three categories, any mix of rates
    rng = np.random.default_rng(seed)
    book = PerformanceBook(NO_DECAY)
    errors, done = [], 0
    for total in (240, 960, 3840):  # calls so far: each step quadruples them
        simulate(rng, book, true, total - done, float(done))
        done = total
        est = [[book.estimate(f"op{o}", f"cat{c}", 1e6).mean for c in range(3)] for o in range(4)]
        errors.append(np.abs(np.array(est) - true))
    # About 320 calls a cell at the end: within 0.12 everywhere (a standard error is at most
    # 0.028 there, so over four of them: 12 cells and 15 examples a run would cross 0.09, a
    # bit over three, in about one run in four), and the mean error shrinks as outcomes
    # accumulate (roughly halving per quadrupling).
    assert errors[-1].max() < 0.12
    assert errors[-1].mean() < 0.04
    assert errors[-1].mean() < errors[0].mean()


def test_decay_lets_the_estimate_follow_an_operator_who_changed() -> None:
    decaying, forever = PerformanceBook(), PerformanceBook(NO_DECAY)
    rng = np.random.default_rng(7)
    for book in (decaying, forever):
        feed(book, "peer", "cosmetics", 300, 300, 0.0)
    for day in range(102):
        rate = 0.85 if day < 60 else 0.30  # a good seller who stopped caring, 3 half-lives ago
        for k in range(10):
            won = bool(rng.random() < rate)
            for book in (decaying, forever):
                book.record("ivanova", "cosmetics", "confirm", won, 0.0, day * DAY_S + k * 60)
    now = 102 * DAY_S
    assert decaying.estimate("ivanova", "cosmetics", now).mean < 0.45
    assert forever.estimate("ivanova", "cosmetics", now).mean > 0.58


def test_an_outcome_weighs_half_after_one_half_life() -> None:
    book = PerformanceBook(PerformanceSettings(half_life_s=3600.0))
    book.record("a", "cosmetics", "confirm", True, 500.0, 1_000.0)
    assert book.estimate("a", "cosmetics", 1_000.0).trials == pytest.approx(1.0)
    assert book.estimate("a", "cosmetics", 4_600.0).trials == pytest.approx(0.5)
    assert book.estimate("a", "cosmetics", 8_200.0).successes == pytest.approx(0.25)


def test_a_now_before_the_latest_outcome_reads_as_the_latest() -> None:
    book = PerformanceBook(PerformanceSettings(half_life_s=3600.0))
    book.record("a", "cosmetics", "confirm", True, 0.0, 10_000.0)
    assert book.estimate("a", "cosmetics", 0.0) == book.estimate("a", "cosmetics", 10_000.0)


def test_counts_stay_finite_over_thousands_of_half_lives() -> None:
    book = PerformanceBook(PerformanceSettings(half_life_s=60.0))
    for i in range(3000):
        book.record("a", "cosmetics", "confirm", i % 2 == 0, 100.0, i * 60.0)
    est = book.estimate("a", "cosmetics", 3000 * 60.0)
    assert math.isfinite(est.mean) and 0 < est.mean < 1
    # One call per half-life, read one half-life after the last: sum(2**-k, k >= 1) = 1.
    assert est.trials == pytest.approx(1.0, rel=1e-6)
    assert all(math.isfinite(r.trials) and r.trials > 0 for r in book.snapshot())


def test_value_per_confirmation_follows_the_upsell() -> None:
    book = PerformanceBook(NO_DECAY)
    for i in range(50):
        book.record("upseller", "cosmetics", "confirm", True, 3000.0, float(i))
        book.record("plain", "cosmetics", "confirm", True, 1500.0, float(i))
    up, plain = (book.estimate(op, "cosmetics", 60.0) for op in ("upseller", "plain"))
    assert up.value_per_success > 2500 and plain.value_per_success < 1750
    newcomer = book.estimate("new", "cosmetics", 60.0)
    assert newcomer.value_per_success == pytest.approx(2250, rel=0.05)
    # A call that was not confirmed adds no value, whatever amount it carried.
    book.record("plain", "cosmetics", "confirm", False, 99_999.0, 61.0)
    assert book.estimate("plain", "cosmetics", 61.0).value_per_success < 1750


def test_a_campaign_estimate_starts_from_the_operator_over_all_campaigns() -> None:
    book = PerformanceBook(NO_DECAY)
    feed(book, "a", "cosmetics", 70, 30, 0.0)
    overall = book.estimate("a", "cosmetics", 1.0)
    fresh = book.estimate("a", "cosmetics", 1.0, campaign_id="reminders")
    assert fresh.mean == pytest.approx(overall.mean) and fresh.trials == 0
    for _ in range(40):
        book.record("a", "cosmetics", "reminders", False, 0.0, 2.0)
    assert book.estimate("a", "cosmetics", 3.0, campaign_id="reminders").mean < 0.3
    assert book.estimate("a", "cosmetics", 3.0, campaign_id="confirm").mean > 0.6


def test_sampling_draws_from_the_estimate() -> None:
    book = PerformanceBook(NO_DECAY)
    feed(book, "a", "cosmetics", 30, 10, 0.0)
    rng = np.random.default_rng(3)
    draws = [book.sample("a", "cosmetics", rng, 1.0) for _ in range(4000)]
    assert np.mean(draws) == pytest.approx(book.estimate("a", "cosmetics", 1.0).mean, abs=0.01)


def test_posteriors_of_a_category_agree_with_each_estimate() -> None:
    rng = np.random.default_rng(11)
    book = PerformanceBook(PerformanceSettings(half_life_s=2 * DAY_S))
    simulate(rng, book, rng.uniform(0.2, 0.9, size=(30, 4)), 3000, 0.0)
    now = 5000.0
    for cat in ("cat0", "cat3", "never-seen"):
        post = book.posteriors(cat, now)
        for op in [*book.snapshot()[0:1], None]:
            op_id = op.operator_id if op else "newcomer"
            row = post.index.get(op_id, len(post.alpha) - 1)
            est = book.estimate(op_id, cat, now)
            assert post.alpha[row] == pytest.approx(est.alpha)
            assert post.beta[row] == pytest.approx(est.beta)
            assert post.value_per_success[row] == pytest.approx(est.value_per_success)
        assert not post.alpha.flags.writeable


outcomes = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["cosmetics", "supplements", ""]),
        st.sampled_from([ALL_CAMPAIGNS, "confirm", "delivery"]),
        st.booleans(),
        st.floats(0, 10_000),
        st.floats(0, 30 * DAY_S),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(outcomes, st.floats(0, 60 * DAY_S))
def test_a_restored_book_gives_the_same_rows_and_estimates(
    records: list[tuple[str, str, str, bool, float, float]], later: float
) -> None:
    book = PerformanceBook(PerformanceSettings(half_life_s=7 * DAY_S))
    for op, cat, camp, won, value, at in sorted(records, key=lambda r: r[-1]):
        book.record(op, cat, camp, won, value, at)
    rows = book.snapshot()
    copy = PerformanceBook(PerformanceSettings(half_life_s=7 * DAY_S))
    copy.restore(rows)
    again = copy.snapshot()
    assert [(r.operator_id, r.category, r.campaign_id, r.updated_at) for r in again] == [
        (r.operator_id, r.category, r.campaign_id, r.updated_at) for r in rows
    ]
    for mine, theirs in zip(rows, again, strict=True):
        assert theirs.trials == pytest.approx(mine.trials, rel=1e-9, abs=1e-12)
        assert theirs.successes == pytest.approx(mine.successes, rel=1e-9, abs=1e-12)
        assert theirs.value == pytest.approx(mine.value, rel=1e-9, abs=1e-9)
    for op in ("a", "b", "new"):
        for cat in ("cosmetics", "", "garden"):
            for camp in (ALL_CAMPAIGNS, "confirm"):
                want = book.estimate(op, cat, later, campaign_id=camp)
                got = copy.estimate(op, cat, later, campaign_id=camp)
                assert got.mean == pytest.approx(want.mean, rel=1e-9)
                assert got.alpha == pytest.approx(want.alpha, rel=1e-9)


def row(**kw: object) -> PerformanceRow:
    base: dict[str, object] = dict(
        operator_id="a",
        category="cosmetics",
        campaign_id="",
        successes=1.0,
        trials=2.0,
        value=10.0,
        updated_at=0.0,
    )
    return PerformanceRow(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw",
    [
        {"successes": 3.0},
        {"trials": -1.0},
        {"value": math.nan},
        {"updated_at": math.inf},
        {"operator_id": ""},
    ],
    ids=["more wins than calls", "negative", "not a number", "no time", "no operator"],
)
def test_a_row_that_makes_no_sense_cannot_be_built(kw: dict[str, object]) -> None:
    with pytest.raises(InvalidValue):
        row(**kw)


def test_restore_refuses_a_key_given_twice_and_keeps_what_it_had() -> None:
    book = PerformanceBook()
    book.record("z", "garden", "confirm", True, 5.0, 100.0)
    before = book.snapshot()
    with pytest.raises(InvalidValue):
        book.restore([row(), row(successes=0.5)])
    assert book.snapshot() == before


@pytest.mark.parametrize(
    "kw",
    [
        {"half_life_s": 0.0},
        {"prior_rate": 1.0},
        {"strength": 0.0},
        {"category_strength": math.inf},
    ],
)
def test_settings_refuse_values_that_make_no_sense(kw: dict[str, float]) -> None:
    with pytest.raises(AcdError):
        PerformanceSettings(**kw)


def test_an_outcome_needs_an_operator_and_a_sane_value() -> None:
    book = PerformanceBook()
    with pytest.raises(InvalidValue):
        book.record("", "cosmetics", "confirm", True, 1.0, 0.0)
    with pytest.raises(InvalidValue):
        book.record("a", "cosmetics", "confirm", True, -5.0, 0.0)
    with pytest.raises(InvalidValue):
        book.record("a", "cosmetics", "confirm", True, 1.0, math.inf)
    assert book.snapshot() == []


def test_reused_priors_still_count_each_operators_latest_calls() -> None:
    book = PerformanceBook(NO_DECAY)
    feed(book, "a", "cosmetics", 50, 50, 0.0)
    feed(book, "b", "cosmetics", 50, 50, 0.0)
    before = book.posteriors("cosmetics", 10.0, prior_max_age_s=60.0)
    feed(book, "a", "cosmetics", 40, 0, 20.0)
    row = before.index["a"]
    reused = book.posteriors("cosmetics", 30.0, prior_max_age_s=60.0)
    assert reused.prior_mean[row] == before.prior_mean[row]
    assert reused.alpha[row] == pytest.approx(before.alpha[row] + 40)
    fresh = book.posteriors("cosmetics", 30.0)
    assert fresh.prior_mean[row] != before.prior_mean[row]
    assert fresh.alpha[row] == pytest.approx(book.estimate("a", "cosmetics", 30.0).alpha)
    late = book.posteriors("cosmetics", 100.0, prior_max_age_s=60.0)
    assert late.prior_mean[row] == pytest.approx(fresh.prior_mean[row])
