"""Statistics over training seeds (scipy.stats): what separates a real difference between
variants from luck. Pure functions on plain numbers; the report's seeds section shows them.

* :func:`summarize`: mean, sample std (ddof 1), a 95% interval of the mean and n, over one
  variant's seeds for one metric. The interval is Student's t (``scipy.stats.t``) below
  :data:`BOOTSTRAP_MIN_N` seeds and a seeded percentile bootstrap (``scipy.stats.bootstrap``)
  from there: at a few seeds the percentile bootstrap is just [min, max] and covers the true
  mean far less often than it claims (see :func:`bootstrap_coverage`).
* :func:`compare`: a paired t-test (``scipy.stats.ttest_rel``) of a variant against the
  reference over the seeds both have, seed by seed (the same seeds, the same latents), and
  how many seeds each difference's sign falls on (identical differences have no spread for
  a t-test, but their sign still says something; :func:`sign_test_min_p` says how much).
* :func:`holm`: Holm's step-down adjustment of a family of p-values (scipy has
  Benjamini-Hochberg in ``false_discovery_control``, not Holm).
* :func:`average_ranks`: each variant's rank per metric (``scipy.stats.rankdata``, ties
  averaged), then the mean and std of its ranks across metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
"""Family-wise error rate of the paired tests (after Holm's adjustment)."""
RESAMPLES = 9999
BOOTSTRAP_SEED = 0
"""The resampler's seed: the same numbers give the same interval, run after run."""
BOOTSTRAP_MIN_N = 20
"""From this many seeds the interval is the percentile bootstrap (it then also follows a
skewed spread); below it, Student's t. On normal data a nominal 95% percentile interval
covers the mean 60% of the time at n = 2, 75% at 3, 85% at 5, 90% at 10 and 93% at 20
(:func:`bootstrap_coverage`); the t interval covers 95% at every n."""

Verdict = Literal["better", "worse", "not distinguishable", "cannot be tested", "same sign"]
Method = Literal["t", "bootstrap"]
METHOD_NAMES: dict[Method, str] = {
    "t": "Student's t (mean ± t₀.₉₇₅,ₙ₋₁ · s / √n)",
    "bootstrap": f"the percentile bootstrap ({RESAMPLES:,} resamples, seeded)",
}


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float | None  # None for one seed
    low: float | None  # interval of the mean; None for fewer than 2 seeds
    high: float | None
    method: Method | None = None  # how low/high were computed; None without an interval


def summarize(values: Sequence[float], seed: int = BOOTSTRAP_SEED) -> Summary | None:
    """Mean ± std and the 95% interval of the mean of ``values`` (one per seed); None for no
    values. Student's t below :data:`BOOTSTRAP_MIN_N` values, else the percentile bootstrap
    (BCa would need more points than seeds usually give)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if x.size == 0:
        return None
    mean = float(x.mean())
    n = int(x.size)
    if n < 2:
        return Summary(1, mean, None, None, None)
    method: Method = "bootstrap" if n >= BOOTSTRAP_MIN_N else "t"
    if np.all(x == x[0]):  # no spread: either method gives the point itself
        return Summary(n, mean, 0.0, mean, mean, method)
    std = float(x.std(ddof=1))
    if method == "t":
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
        return Summary(n, mean, std, mean - half, mean + half, method)
    res = stats.bootstrap(
        (x,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
        method="percentile", rng=np.random.default_rng(seed),
    )  # fmt: skip
    ci = res.confidence_interval
    return Summary(n, mean, std, float(ci.low), float(ci.high), method)


def bootstrap_coverage(n: int, confidence: float = CONFIDENCE) -> float:
    """How often a percentile-bootstrap interval of the mean of ``n`` normal values covers
    the true mean, for large resample counts: the bootstrap means spread like
    s·√((n-1)/n)/√n around the sample mean, so the interval is mean ± z·s·√((n-1)/n)/√n and
    it covers when |T| < z·√((n-1)/n) with T Student's t on n - 1 degrees of freedom."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return float(2 * stats.t.cdf(z * math.sqrt((n - 1) / n), n - 1) - 1)


def sign_test_min_p(n: int) -> float:
    """The smallest two-sided p-value a sign test on ``n`` paired differences can give (all
    n on one side): 2 · 0.5^n, capped at 1. It is 0.25 at n = 3 and first falls below 0.05
    at n = 6 (0.03125): below 6 seeds no two-sided test on signs alone reaches 0.05."""
    return min(1.0, 2 * 0.5**n) if n > 0 else 1.0


def min_seeds_for_sign_test(alpha: float = ALPHA) -> int:
    """The fewest seeds at which all differences on one side give a sign-test p < ``alpha``."""
    n = 1
    while sign_test_min_p(n) >= alpha:
        n += 1
    return n


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: sorted ascending, the k-th smallest
    (k from 0) becomes max over j <= k of min(1, (m - j) p_(j)). NaN stays NaN and does not
    count towards m."""
    finite = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    out = [math.nan] * len(pvalues)
    m = len(finite)
    running = 0.0
    for k, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out


@dataclass(frozen=True)
class Comparison:
    n: int  # seeds both variants have
    diff: float | None  # mean over seeds of (variant - reference)
    p: float  # two-sided paired t-test; NaN when it cannot be computed
    p_holm: float = math.nan
    verdict: Verdict = "cannot be tested"
    above: int = 0  # seeds where variant > reference
    below: int = 0  # seeds where variant < reference
    identical: bool = False  # every seed's difference is the same number (no t-test)

    @property
    def one_sided(self) -> bool:
        """Every seed's difference is nonzero and on the same side."""
        return self.n > 0 and (self.above == self.n or self.below == self.n)


def compare(values: Mapping[int, float], reference: Mapping[int, float]) -> Comparison:
    """Paired t-test of ``values`` against ``reference`` over their common seeds ({seed:
    value}), with the count of seeds on each side. Fewer than 2 common seeds, or differences
    that are all equal (no spread to test against), give p = NaN."""
    seeds = sorted(s for s in values if s in reference)
    a = np.array([values[s] for s in seeds], dtype=float)
    b = np.array([reference[s] for s in seeds], dtype=float)
    if len(seeds) == 0:
        return Comparison(0, None, math.nan)
    d = a - b
    diff = float(np.mean(d))
    above, below = int((d > 0).sum()), int((d < 0).sum())
    if len(seeds) < 2 or np.all(d == d[0]):
        identical = len(seeds) >= 2
        return Comparison(len(seeds), diff, math.nan, above=above, below=below,
                          identical=identical)  # fmt: skip
    p = float(stats.ttest_rel(a, b).pvalue)
    return Comparison(len(seeds), diff, p, above=above, below=below)


def decide(c: Comparison, p_holm: float, lower_is_better: bool) -> Comparison:
    """``c`` with its adjusted p-value and verdict: better / worse when the adjusted p is
    below :data:`ALPHA` (by the sign of the difference); *same sign* when the t-test has no
    spread to work with but every seed's difference points the same way (what the seeds show,
    not a significance claim: :func:`sign_test_min_p` says what their number can support);
    else not distinguishable."""
    if c.n < 2 or c.diff is None:
        verdict: Verdict = "cannot be tested"
    elif c.identical and c.one_sided:
        verdict = "same sign"
    elif math.isnan(p_holm) or p_holm >= ALPHA:
        verdict = "not distinguishable"
    else:
        verdict = "better" if (c.diff < 0) == lower_is_better else "worse"
    return Comparison(c.n, c.diff, c.p, p_holm, verdict, c.above, c.below, c.identical)


def average_ranks(
    means: Mapping[str, Sequence[float | None]], lower_is_better: Sequence[bool]
) -> dict[str, tuple[float, float, int]]:
    """{variant: (mean rank, std of its ranks, metrics ranked)} from {variant: one mean per
    metric}. Rank 1 is best; a metric is ranked only where every variant has a value, ties
    share the average rank. std is over metrics (ddof 0; 0 for one metric)."""
    names = list(means)
    ranks: dict[str, list[float]] = {n: [] for n in names}
    for j, lower in enumerate(lower_is_better):
        column = [means[n][j] for n in names]
        if not names or any(v is None or not math.isfinite(v) for v in column):
            continue
        signed = [v if lower else -v for v in column]  # type: ignore[operator]
        for n, r in zip(names, stats.rankdata(signed), strict=True):
            ranks[n].append(float(r))
    out = {}
    for n, r in ranks.items():
        if r:
            out[n] = (float(np.mean(r)), float(np.std(r)), len(r))
    return out
