"""The report's statistics over seeds against numbers worked out by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pipeline.report import stats


def test_mean_std_and_the_bootstrap_interval_on_fixed_numbers() -> None:
    s = stats.summarize([1.0, 2.0, 3.0, 4.0])
    assert s is not None and s.n == 4 and s.mean == 2.5
    assert s.std == pytest.approx(math.sqrt(5 / 3))  # sum of squares 5, ddof 1
    # The resampled means take values k/4; enumerate all 4^4 equally likely resamples for the
    # exact 2.5% / 97.5% percentiles: the seeded 9,999-resample estimate is within one step.
    means = sorted(sum(c) / 4 for c in itertools.product([1, 2, 3, 4], repeat=4))
    exact_low, exact_high = np.percentile(means, [2.5, 97.5])
    assert abs(s.low - exact_low) <= 0.25 and abs(s.high - exact_high) <= 0.25
    assert s.low < s.mean < s.high
    # The resampler is seeded: the same numbers give the same interval.
    again = stats.summarize([1.0, 2.0, 3.0, 4.0])
    assert (again.low, again.high) == (s.low, s.high)


def test_bootstrap_bounds_where_the_percentiles_are_known_exactly() -> None:
    # Two seeds: resampled means are a, (a+b)/2, b with probability 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% percentiles are a and b.
    s = stats.summarize([1.0, 3.0])
    assert (s.mean, s.low, s.high) == (2.0, 1.0, 3.0)
    assert s.std == pytest.approx(math.sqrt(2))
    # [0, 0, 3]: the mean is 0, 1, 2 or 3 with probability 8/27, 12/27, 6/27, 1/27: the lowest
    # 29.6% are 0 and the top 3.7% are 3.
    s = stats.summarize([0.0, 0.0, 3.0])
    assert (s.mean, s.low, s.high) == (1.0, 0.0, 3.0)
    assert s.std == pytest.approx(math.sqrt(3))


def test_one_seed_has_no_spread_and_equal_values_a_point_interval() -> None:
    one = stats.summarize([7.5])
    assert (one.n, one.mean, one.std, one.low, one.high) == (1, 7.5, None, None, None)
    same = stats.summarize([2.0, 2.0, 2.0])
    assert (same.std, same.low, same.high) == (0.0, 2.0, 2.0)
    assert stats.summarize([]) is None
    assert stats.summarize([1.0, math.nan]).n == 1  # a non-finite score is left out


def test_holm_adjusted_p_values() -> None:
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> 0.06
    # (never below the one before), returned in the input order
    got = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.02, 0.5]) == pytest.approx([0.04, 0.5])
    # capped at 1; a NaN (an untestable comparison) stays NaN and does not count towards m
    got = stats.holm([0.5, math.nan, 0.6])
    assert got[0] == got[2] == 1.0 and math.isnan(got[1])
    assert stats.holm([]) == []


def test_paired_t_test_on_common_seeds() -> None:
    # differences -2, -1, -3: mean -2, sd 1, t = -2 sqrt(3) with 2 degrees of freedom, whose
    # CDF is 1/2 + t / (2 sqrt(2 + t^2)): p = 2 (1/2 - sqrt(12) / (2 sqrt(14)))
    variant = {0: 10.0, 1: 12.0, 2: 11.0, 5: 99.0}  # seed 5: the reference lacks it
    reference = {0: 12.0, 1: 13.0, 2: 14.0}
    c = stats.compare(variant, reference)
    p = 2 * (0.5 - math.sqrt(12) / (2 * math.sqrt(14)))
    assert c.n == 3 and c.diff == -2.0 and c.p == pytest.approx(p)
    assert p == pytest.approx(0.07418, abs=1e-5)
    assert stats.decide(c, c.p, lower_is_better=True).verdict == "not distinguishable"
    assert stats.decide(c, 0.01, lower_is_better=True).verdict == "better"
    assert stats.decide(c, 0.01, lower_is_better=False).verdict == "worse"
    # one common seed: no test
    one = stats.compare({0: 1.0}, {0: 2.0, 1: 3.0})
    assert one.n == 1 and math.isnan(one.p)
    assert stats.decide(one, math.nan, True).verdict == "cannot be tested"
    # the same difference on every seed: no spread to test against
    assert math.isnan(stats.compare({0: 1.0, 1: 2.0}, {0: 2.0, 1: 3.0}).p)


def test_average_rank_and_its_spread_across_metrics() -> None:
    means = {"a": [1.0, 10.0, None], "b": [2.0, 30.0, 5.0], "c": [3.0, 20.0, 6.0]}
    # metric 0 (lower better): a 1, b 2, c 3; metric 1 (higher better): b 1, c 2, a 3;
    # metric 2 is not ranked (a has no value)
    ranks = stats.average_ranks(means, [True, False, True])
    assert ranks["a"] == pytest.approx((2.0, 1.0, 2))
    assert ranks["b"] == pytest.approx((1.5, 0.5, 2))
    assert ranks["c"] == pytest.approx((2.5, 0.5, 2))
    ties = stats.average_ranks({"a": [1.0], "b": [1.0], "c": [2.0]}, [True])
    assert ties == {"a": (1.5, 0.0, 1), "b": (1.5, 0.0, 1), "c": (3.0, 0.0, 1)}
