"""How well each operator confirms each product category: decayed counts and Bayesian estimates.

`PerformanceBook` keeps, per operator × category (and per operator × category × campaign),
the decayed number of calls the operator handled, how many of them were confirmed, and the
confirmed value (order amount including upsell). Each outcome's weight halves every
`half_life_s`, so an operator whose results change is followed within a few half-lives.

The estimate of a cell is a Beta posterior whose prior is centred on a blend of two wider
records, so that a new operator or a new category starts sensibly:

    prior mean = sigmoid(logit(category rate) + logit(operator skill) - logit(expected rate))

(category rate: over all operators; skill: the operator over their other categories; expected
rate: what the category rates predict for that mix, so hard categories are not held against
anyone). Each level is shrunk toward the one above by pseudo-calls (`PerformanceSettings`); a
cell's own calls stay out of its prior. The posterior is `Beta(k·m + s, k·(1 - m) + n - s)`.
docs/acd.md ("Learned routing") explains the choices.

Nothing here reads a clock: every method takes `now`. Time never runs backwards inside the book:
a `now` earlier than the latest one seen is taken as that latest one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Final

import numpy as np
from numpy.typing import NDArray

from acd.errors import InvalidValue

ALL_CAMPAIGNS: Final = ""
"""The `campaign_id` of the figures over all campaigns, as in the `operator_performance` table."""

DAY_S: Final = 86_400.0
_RESCALE_AT: Final = 64.0  # half-lives past the reference time before counts are renormalised
_TINY: Final = 1e-9
_N: Final = 1  # trials, on the first axis of the count arrays (successes, trials, value)

_STRENGTHS: Final = (
    "strength overall_strength category_strength operator_strength value_strength campaign_strength"
).split()

Floats = NDArray[np.float64]
Rows = slice | NDArray[np.intp]
PriorPair = tuple[Floats, Floats]
Computed = tuple[Floats, Floats, Floats, Floats, Floats, Floats, Floats]


@dataclass(frozen=True, slots=True, kw_only=True)
class PerformanceSettings:
    """How fast the book forgets and how strongly each level of the prior pulls.

    Strengths are in pseudo-calls: a category with `category_strength` real calls weighs as
    much as the overall rate in its own rate. `half_life_s` may be `math.inf` (never forget).
    """

    half_life_s: float = 14 * DAY_S
    prior_rate: float = 0.5
    strength: float = 10.0
    overall_strength: float = 10.0
    category_strength: float = 20.0
    operator_strength: float = 30.0
    value_strength: float = 5.0
    campaign_strength: float = 10.0

    def __post_init__(self) -> None:
        if not self.half_life_s > 0:
            raise InvalidValue(f"half_life_s must be > 0, got {self.half_life_s}")
        if not 0 < self.prior_rate < 1:
            raise InvalidValue(f"prior_rate must be in (0, 1), got {self.prior_rate}")
        for name in _STRENGTHS:
            if not 0 < getattr(self, name) < math.inf:
                raise InvalidValue(f"{name} must be a positive number, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    """The posterior of one operator × category (× campaign) at a given time.

    `mean = alpha / (alpha + beta)` is the estimated confirmed share; `prior_mean` is where the
    operator stood before their own calls in the category counted. `trials` and `successes`
    are the decayed counts behind it; `value_per_success` is the estimated value of one
    confirmation (shrunk toward the category's), 1.0 until any value was recorded.
    """

    mean: float
    alpha: float
    beta: float
    prior_mean: float
    trials: float
    successes: float
    value_per_success: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PerformanceRow:
    """One row of the `operator_performance` table, as plain data.

    `successes`, `trials` and `value` are decayed to `updated_at`, which is on the same clock
    as the `now` given to the book (seconds; the daemon converts to and from its datetime).
    `campaign_id` is `ALL_CAMPAIGNS` for the figures over all campaigns. Raises `InvalidValue`
    for a missing operator id, a negative or non-finite number, or more successes than trials.
    """

    operator_id: str
    category: str
    campaign_id: str
    successes: float
    trials: float
    value: float
    updated_at: float

    def __post_init__(self) -> None:
        numbers = (self.successes, self.trials, self.value, self.updated_at)
        if not self.operator_id or not all(math.isfinite(x) for x in numbers):
            raise InvalidValue(f"{self}: needs an operator id and finite numbers")
        if min(numbers[:3]) < 0 or self.successes > self.trials * (1 + 1e-9) + 1e-9:
            raise InvalidValue(f"{self}: counts must be >= 0, successes at most trials")


@dataclass(frozen=True, slots=True, kw_only=True)
class Posteriors:
    """Every known operator's posterior for one category, as read-only arrays.

    Row `index[operator_id]` holds that operator; the last row is the prior of an operator the
    book has never seen. `index` is the book's own and may grow later: a row past the last
    means a new operator too.
    """

    category: str
    alpha: Floats
    beta: Floats
    prior_mean: Floats
    value_per_success: Floats
    index: Mapping[str, int] = field(repr=False)


_ROW_FIELDS: Final = tuple(f.name for f in fields(PerformanceRow))


class PerformanceBook:
    """Decayed outcomes per operator × category (× campaign) and their Bayesian estimates.

    `record` adds one handled call; `estimate` and `sample` read one cell; `posteriors` reads
    one category for every operator at once. `snapshot` and `restore` carry the counts over a
    restart.
    """

    def __init__(self, settings: PerformanceSettings | None = None) -> None:
        self.settings = settings or PerformanceSettings()
        self._clear()

    def _clear(self) -> None:
        self._ops: dict[str, int] = {}
        self._op_ids: list[str] = []
        self._cats: dict[str, int] = {}
        self._cat_names: list[str] = []
        # Counts are kept scaled to the reference time `_t_ref`: an outcome at time t adds
        # 2**((t - t_ref) / half_life), and every count is read times the same factor for
        # `now`. Decay then costs nothing per cell, and every cell decays alike.
        self._m = np.zeros((3, 8, 8))  # [successes|trials|value, category, operator]
        self._at = np.full((8, 8), np.nan)  # [category, operator]: the cell's last outcome
        self._by_op = np.zeros((2, 8))  # [successes|trials, operator]
        self._by_cat = np.zeros((3, 8))  # [successes|trials|value, category]
        self._all = np.zeros(3)
        self._t_ref = 0.0
        self._latest = -math.inf
        # Per campaign: (successes, trials, value, at), decayed to `at`; few and read rarely.
        self._campaigns: dict[tuple[str, str, str], tuple[float, float, float, float]] = {}
        # Per category: (when, prior mean, category value) from the last `posteriors`.
        self._priors: dict[str, tuple[float, Floats, Floats]] = {}

    # --- writing ----------------------------------------------------------------------------

    def record(
        self,
        operator_id: str,
        category: str,
        campaign_id: str,
        success: bool,
        value: float,
        now: float,
    ) -> None:
        """Count one call `operator_id` handled (talked to the customer) at `now`.

        Record only calls that reached the operator: one that never did says nothing about
        them. `value` is the confirmed amount including upsell and counts only when `success`.
        `campaign_id` may be `ALL_CAMPAIGNS`; the figures over all campaigns count every call.
        """
        if not (operator_id and math.isfinite(value) and value >= 0 and math.isfinite(now)):
            raise InvalidValue(f"outcome of {operator_id!r}: value {value}, now {now}")
        if self._latest == -math.inf:
            self._t_ref = now
        now = self._latest = max(now, self._latest)
        o, c = self._op_row(operator_id), self._cat_col(category)
        won = 1.0 if success else 0.0
        added = np.array([won, 1.0, won * value]) * self._weight(now)
        self._m[:, c, o] += added
        self._at[c, o] = now
        self._by_op[:, o] += added[:2]
        self._by_cat[:, c] += added
        self._all += added
        if campaign_id != ALL_CAMPAIGNS:
            key = (operator_id, category, campaign_id)
            s, n, v, at = self._campaigns.get(key, (0.0, 0.0, 0.0, now))
            d = self._decay(now - at)
            self._campaigns[key] = (s * d + won, n * d + 1.0, v * d + won * value, now)

    def restore(self, rows: Iterable[PerformanceRow]) -> None:
        """Replace everything in the book by `rows` (from `snapshot`, or the database).

        Estimates read the rows over all campaigns (`ALL_CAMPAIGNS`, as `snapshot` writes
        them); the per-campaign rows only feed `estimate(..., campaign_id=...)`. Raises
        `InvalidValue` for a key given twice, and then leaves the book as it was.
        """
        cells: dict[tuple[str, str, str], tuple[float, float, float, float]] = {}
        for row in rows:
            key = (row.operator_id, row.category, row.campaign_id)
            if key in cells:
                raise InvalidValue(f"row {key} given twice")
            cells[key] = (row.successes, row.trials, row.value, row.updated_at)
        overall = {k[:2]: cell for k, cell in cells.items() if k[2] == ALL_CAMPAIGNS}
        self._clear()
        self._campaigns = {k: cell for k, cell in cells.items() if k[2] != ALL_CAMPAIGNS}
        if not overall:
            return
        self._t_ref = self._latest = max(cell[3] for cell in overall.values())
        for (op, cat), (s, n, v, at) in overall.items():
            o, c = self._op_row(op), self._cat_col(cat)
            self._m[:, c, o] = np.array([s, n, v]) * self._decay(self._t_ref - at)
            self._at[c, o] = at
        self._by_op = self._m[:2].sum(axis=1)
        self._by_cat = self._m.sum(axis=2)
        self._all = self._by_cat.sum(axis=1)

    # --- reading ----------------------------------------------------------------------------

    def snapshot(self) -> list[PerformanceRow]:
        """Every cell with calls as plain rows, those over all campaigns first, sorted by key.

        `restore(snapshot())` gives a book with the same estimates at any later `now`.
        """
        cells = []
        for c, o in zip(*np.nonzero(self._m[_N] > 0), strict=True):
            at = float(self._at[c, o])
            s, n, v = (float(x) for x in self._m[:, c, o] * self._decay(at - self._t_ref))
            cells.append(((self._op_ids[o], self._cat_names[c], ALL_CAMPAIGNS), (s, n, v, at)))
        cells.sort()
        cells += sorted(self._campaigns.items())
        # The key and the cell list the row's fields in the order they are declared.
        return [
            PerformanceRow(**dict(zip(_ROW_FIELDS, (*k, *cell), strict=True))) for k, cell in cells
        ]

    def estimate(
        self, operator_id: str, category: str, now: float, *, campaign_id: str = ALL_CAMPAIGNS
    ) -> Estimate:
        """The posterior of `operator_id` in `category` at `now` (see the module doc).

        With a `campaign_id`, the operator's figures over all campaigns are the prior (with
        `campaign_strength` pseudo-calls) and their calls in that campaign the evidence.
        """
        row = self._ops.get(operator_id, len(self._op_ids))  # past the last: the zero row
        alpha, beta, value, prior, _, s, n = self._compute(category, now, np.array([row]))
        est = _estimate(alpha[0], beta[0], prior[0], n[0], s[0], value[0])
        if campaign_id == ALL_CAMPAIGNS:
            return est
        cs, cn, cv, at = self._campaigns.get((operator_id, category, campaign_id), (0.0,) * 4)
        d = self._decay(max(now, self._latest) - at)
        k, kv = self.settings.campaign_strength, self.settings.value_strength
        a, b = k * est.mean + cs * d, k * (1.0 - est.mean) + max(cn - cs, 0.0) * d
        per_success = (cv * d + kv * est.value_per_success) / (cs * d + kv)
        return _estimate(a, b, est.mean, cn * d, cs * d, per_success)

    def sample(
        self, operator_id: str, category: str, rng: np.random.Generator, now: float
    ) -> float:
        """One draw from the posterior of `estimate(...)`, using `rng` (Thompson sampling)."""
        est = self.estimate(operator_id, category, now)
        return float(rng.beta(est.alpha, est.beta))

    def posteriors(self, category: str, now: float, *, prior_max_age_s: float = 0.0) -> Posteriors:
        """Every known operator's posterior for `category`, and a new operator's (last row).

        The same numbers as `estimate` over all campaigns, for all operators in a few array
        operations. The priors (which blend the whole floor's calls) may be reused from a call
        at most `prior_max_age_s` earlier in the book's time, which saves most of the cost;
        each operator's own counts are always current.
        """
        now = max(now, self._latest)
        size = len(self._ops) + 1  # one row past the last operator is all zeros: a newcomer's
        hit = self._priors.get(category)
        fresh = hit is not None and now - hit[0] <= prior_max_age_s and len(hit[1]) == size
        alpha, beta, value, prior, cat_value, _, _ = self._compute(
            category, now, slice(0, size), hit[1:] if hit is not None and fresh else None
        )
        if not fresh:
            prior.flags.writeable = cat_value.flags.writeable = False
            self._priors[category] = (now, prior, cat_value)
        for array in (alpha, beta, value):
            array.flags.writeable = False
        return Posteriors(
            category=category,
            alpha=alpha,
            beta=beta,
            prior_mean=prior,
            value_per_success=value,
            index=self._ops,
        )

    # --- internals --------------------------------------------------------------------------

    def _compute(
        self, category: str, now: float, rows: Rows, prior: PriorPair | None = None
    ) -> Computed:
        """alpha, beta, value per success, prior mean, category value, successes and trials of
        `rows`; `prior` (prior mean, category value) skips the costly part."""
        st = self.settings
        f = self._decay(max(now, self._latest) - self._t_ref)
        c = self._cats.get(category)
        if c is None:
            s = n = v = np.zeros_like(self._by_op[0, rows])
        else:
            s, n, v = self._m[:, c, rows] * f
        mean, cat_value = prior or self._prior(c, f, rows, s, n, v)
        alpha = st.strength * mean + s
        beta = st.strength * (1.0 - mean) + np.maximum(n - s, 0.0)
        value = (v + st.value_strength * cat_value) / (s + st.value_strength)
        return alpha, beta, value, mean, cat_value, s, n

    def _prior(
        self, c: int | None, f: float, rows: Rows, s: Floats, n: Floats, v: Floats
    ) -> PriorPair:
        """The prior mean of each row's cell in category `c` and the category's value per
        confirmation, both without that cell's own calls (so that they count once)."""
        st = self.settings
        kc, ko, kv = st.category_strength, st.operator_strength, st.value_strength
        nc = len(self._cat_names)
        all_s, all_n, all_v = (float(x) for x in self._all * f)
        r = (all_s + st.overall_strength * st.prior_rate) / (all_n + st.overall_strength)
        cat_s, cat_n, cat_v = self._by_cat[:, :nc] * f
        rates = (cat_s + kc * r) / (cat_n + kc)
        e_op = (rates @ self._m[_N][:nc, rows]) * f  # successes the category rates predict
        s_op, n_op = self._by_op[:, rows] * f
        c_s, c_n, c_v, c_rate = (
            (0.0, 0.0, 0.0, r) if c is None else (cat_s[c], cat_n[c], cat_v[c], rates[c])
        )
        # The cell is part of every total, so what is left without it is >= 0 up to rounding.
        won, lost = np.maximum(c_s - s, 0.0), np.maximum((c_n - c_s) - (n - s), 0.0)
        so, no = np.maximum(s_op - s, 0.0), np.maximum(n_op - n, 0.0)
        eo = np.maximum(e_op - n * c_rate, 0.0)
        # The rate the category rates predict for their other calls; r when there are none.
        e = np.clip((eo + _TINY * r) / (no + _TINY), _TINY, 1 - _TINY)
        # logit(category rate) + logit(skill) - logit(e), each rate shrunk by its pseudo-calls.
        z = np.log(won + kc * r) - np.log(lost + kc * (1 - r))
        z += np.log(so + ko * e) - np.log(np.maximum(no - so, 0.0) + ko * (1 - e))
        z += np.log1p(-e) - np.log(e)
        # Until any value is recorded one confirmation is worth 1, so revenue ranks as rate.
        per_success = all_v / all_s if all_v > 0 and all_s > 0 else 1.0
        cat_value = (np.maximum(c_v - v, 0.0) + kv * per_success) / (won + kv)
        return 1.0 / (1.0 + np.exp(-z)), cat_value

    def _decay(self, dt: float) -> float:
        return float(np.exp2(-dt / self.settings.half_life_s))

    def _weight(self, now: float) -> float:
        exponent = (now - self._t_ref) / self.settings.half_life_s
        if exponent > _RESCALE_AT:
            # Bring the reference time forward before the scaled counts overflow a float.
            factor = float(np.exp2(-exponent))
            for counts in (self._m, self._by_op, self._by_cat, self._all):
                counts *= factor
            self._t_ref, exponent = now, 0.0
        return float(np.exp2(exponent))

    def _op_row(self, operator_id: str) -> int:
        o = self._ops.get(operator_id)
        if o is None:
            o = self._ops[operator_id] = len(self._op_ids)
            self._op_ids.append(operator_id)
            # Keep a spare zero row past the last operator: it is the new operator's.
            if o + 1 >= self._m.shape[2]:
                self._grow(ops=2 * self._m.shape[2], cats=self._m.shape[1])
        return o

    def _cat_col(self, category: str) -> int:
        c = self._cats.get(category)
        if c is None:
            c = self._cats[category] = len(self._cat_names)
            self._cat_names.append(category)
            if c >= self._m.shape[1]:
                self._grow(ops=self._m.shape[2], cats=2 * self._m.shape[1])
        return c

    def _grow(self, *, ops: int, cats: int) -> None:
        _, c0, o0 = self._m.shape
        m, at = np.zeros((3, cats, ops)), np.full((cats, ops), np.nan)
        by_op, by_cat = np.zeros((2, ops)), np.zeros((3, cats))
        m[:, :c0, :o0], at[:c0, :o0] = self._m, self._at
        by_op[:, :o0], by_cat[:, :c0] = self._by_op, self._by_cat
        self._m, self._at, self._by_op, self._by_cat = m, at, by_op, by_cat


def _estimate(a: float, b: float, prior: float, n: float, s: float, value: float) -> Estimate:
    a, b = float(a), float(b)
    return Estimate(
        mean=a / (a + b),
        alpha=a,
        beta=b,
        prior_mean=float(prior),
        trials=float(n),
        successes=float(s),
        value_per_success=float(value),
    )
