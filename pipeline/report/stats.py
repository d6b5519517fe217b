"""Statistics over training seeds (scipy.stats): what separates a real difference between
variants from luck. Pure functions on plain numbers; the report's seeds section shows them.

* :func:`summarize`: mean, sample std (ddof 1), a 95% percentile-bootstrap interval of the
  mean (``scipy.stats.bootstrap``, seeded) and n, over one variant's seeds for one metric.
* :func:`compare`: a paired t-test (``scipy.stats.ttest_rel``) of a variant against the
  reference over the seeds both have, seed by seed (the same seeds, the same latents).
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

Verdict = Literal["better", "worse", "not distinguishable", "cannot be tested"]


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float | None  # None for one seed
    low: float | None  # bootstrap interval of the mean; None for fewer than 2 seeds
    high: float | None


def summarize(values: Sequence[float], seed: int = BOOTSTRAP_SEED) -> Summary | None:
    """Mean ± std and the 95% bootstrap interval of the mean of ``values`` (one per seed);
    None for no values. Percentile intervals: BCa needs more points than a few seeds give."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if x.size == 0:
        return None
    mean = float(x.mean())
    if x.size < 2:
        return Summary(1, mean, None, None, None)
    if np.all(x == x[0]):  # every resample is the same number: the interval is that number
        return Summary(int(x.size), mean, 0.0, mean, mean)
    res = stats.bootstrap(
        (x,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
        method="percentile", rng=np.random.default_rng(seed),
    )  # fmt: skip
    ci = res.confidence_interval
    return Summary(int(x.size), mean, float(x.std(ddof=1)), float(ci.low), float(ci.high))


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


def compare(values: Mapping[int, float], reference: Mapping[int, float]) -> Comparison:
    """Paired t-test of ``values`` against ``reference`` over their common seeds ({seed:
    value}). Fewer than 2 common seeds, or differences that are all equal (no spread to
    test against), give p = NaN."""
    seeds = sorted(s for s in values if s in reference)
    a = np.array([values[s] for s in seeds], dtype=float)
    b = np.array([reference[s] for s in seeds], dtype=float)
    if len(seeds) == 0:
        return Comparison(0, None, math.nan)
    diff = float(np.mean(a - b))
    if len(seeds) < 2 or np.all(a - b == (a - b)[0]):
        return Comparison(len(seeds), diff, math.nan)
    return Comparison(len(seeds), diff, float(stats.ttest_rel(a, b).pvalue))


def decide(c: Comparison, p_holm: float, lower_is_better: bool) -> Comparison:
    """``c`` with its adjusted p-value and verdict: better / worse when the adjusted p is
    below :data:`ALPHA` (by the sign of the difference), else not distinguishable."""
    if c.n < 2 or c.diff is None:
        verdict: Verdict = "cannot be tested"
    elif math.isnan(p_holm) or p_holm >= ALPHA:
        verdict = "not distinguishable"
    else:
        verdict = "better" if (c.diff < 0) == lower_is_better else "worse"
    return Comparison(c.n, c.diff, c.p, p_holm, verdict)


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
