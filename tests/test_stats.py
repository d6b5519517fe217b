"""The report's statistics over seeds against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from pipeline.stages.report import seeds, stats
from pipeline.stages.report.inputs import VariantData


def test_student_t_interval_below_the_bootstrap_threshold() -> None:
    # [1, 2, 3, 4]: mean 2.5, s = sqrt(5/3) = 1.29099; t(0.975, 3 df) = 3.18245 (tables):
    # half-width 3.18245 * 1.29099 / 2 = 2.05426.
    s = stats.summarize([1.0, 2.0, 3.0, 4.0])
    assert s is not None and (s.n, s.mean, s.method) == (4, 2.5, "t")
    assert s.std == pytest.approx(math.sqrt(5 / 3))  # sum of squares 5, ddof 1
    assert (s.low, s.high) == pytest.approx((2.5 - 2.05426, 2.5 + 2.05426), abs=1e-5)
    # Two seeds [1, 3]: s = sqrt 2, so s / sqrt n = 1 and the half-width is t(0.975, 1 df)
    # = 12.7062: the interval is [-10.7062, 14.7062], far wider than the seeds' [1, 3] that
    # the percentile bootstrap gave.
    s = stats.summarize([1.0, 3.0])
    assert (s.mean, s.method) == (2.0, "t") and s.std == pytest.approx(math.sqrt(2))
    assert (s.low, s.high) == pytest.approx((-10.7062, 14.7062), abs=1e-4)
    # [0, 0, 3]: s = sqrt 3, s / sqrt n = 1, t(0.975, 2 df) = 4.30265.
    s = stats.summarize([0.0, 0.0, 3.0])
    assert (s.low, s.high) == pytest.approx((1 - 4.30265, 1 + 4.30265), abs=1e-5)


def test_bootstrap_from_the_threshold_on() -> None:
    values = [float(v) for v in range(stats.BOOTSTRAP_MIN_N)]  # 0..19: mean 9.5
    s = stats.summarize(values)
    assert s is not None and s.method == "bootstrap" and s.n == stats.BOOTSTRAP_MIN_N
    assert s.low < s.mean == 9.5 < s.high
    # The bootstrap means spread like s·sqrt((n-1)/n)/sqrt(n) = 5.916·0.9747/4.472 = 1.289,
    # so the percentile interval is about 9.5 ± 1.96·1.289 = 9.5 ± 2.53 (resampling noise
    # ± 0.1 at 9,999 resamples).
    assert (s.low, s.high) == pytest.approx((9.5 - 2.53, 9.5 + 2.53), abs=0.1)
    # The resampler is seeded: the same numbers give the same interval.
    again = stats.summarize(values)
    assert (again.low, again.high) == (s.low, s.high)
    assert stats.summarize(values[:-1]).method == "t"  # one seed short of the threshold


def test_percentile_bootstrap_coverage_at_small_n() -> None:
    # At n = 2 the bootstrap interval is mean ± 1.95996 · s/√2 · √(1/2), covering when a
    # Cauchy (t, 1 df) variable is below 1.95996/√2 = 1.38590: 2·atan(1.38590)/π = 0.602.
    assert stats.bootstrap_coverage(2) == pytest.approx(2 * math.atan(1.959964 / 2**0.5) / math.pi)
    assert stats.bootstrap_coverage(2) == pytest.approx(0.602, abs=1e-3)
    assert stats.bootstrap_coverage(3) == pytest.approx(0.749, abs=1e-3)
    # The threshold: from there the percentile interval's coverage is within ~2 points of 95%.
    assert stats.bootstrap_coverage(stats.BOOTSTRAP_MIN_N) > 0.925
    assert stats.bootstrap_coverage(10) < 0.91


def test_one_seed_has_no_spread_and_equal_values_a_point_interval() -> None:
    one = stats.summarize([7.5])
    assert (one.n, one.mean, one.std, one.low, one.high) == (1, 7.5, None, None, None)
    assert one.method is None
    same = stats.summarize([2.0, 2.0, 2.0])
    assert (same.std, same.low, same.high, same.method) == (0.0, 2.0, 2.0, "t")
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
    assert (c.above, c.below, c.identical) == (0, 3, False)
    assert stats.decide(c, c.p, lower_is_better=True).below == 3  # decide keeps the counts


def test_identical_differences_say_what_the_seeds_show() -> None:
    # Coverage 9/10 against the reference's 10/10 on every seed: every difference is -1, so
    # the t-test has no spread (p undefined), but all three seeds point the same way.
    c = stats.compare({0: 9.0, 1: 9.0, 2: 9.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert c.n == 3 and c.diff == -1.0 and math.isnan(c.p)
    assert (c.above, c.below, c.identical, c.one_sided) == (0, 3, True, True)
    got = stats.decide(c, math.nan, lower_is_better=False)
    assert got.verdict == "same sign" and got.identical and got.below == 3
    # The same difference of zero: nothing to report but equality, not a sign.
    zero = stats.compare({0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0})
    assert zero.identical and not zero.one_sided
    assert stats.decide(zero, math.nan, True).verdict == "not distinguishable"


def test_what_n_a_sign_test_can_support() -> None:
    # All n differences on one side: two-sided p = 2 · (1/2)^n.
    assert stats.sign_test_min_p(2) == 0.5
    assert stats.sign_test_min_p(3) == 0.25  # at n = 3 no sign-based test reaches 0.05
    assert stats.sign_test_min_p(5) == 0.0625
    assert stats.sign_test_min_p(6) == 0.03125
    assert stats.sign_test_min_p(1) == 1.0 and stats.sign_test_min_p(0) == 1.0
    assert stats.min_seeds_for_sign_test() == 6
    # scipy's exact binomial test agrees at n = 3 and n = 6
    from scipy.stats import binomtest

    assert binomtest(3, 3).pvalue == pytest.approx(0.25)
    assert binomtest(6, 6).pvalue == pytest.approx(0.03125)


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


def _rank_rows(means: dict[str, dict[str, float | None]]) -> dict[str, str]:
    """The seeds section's rank table for {variant: {metric label: mean}}: {variant: rank}."""
    ms = seeds.metrics(["inception", "classifier"])
    summaries = {
        name: [None if (x := got.get(m.label)) is None else stats.Summary(3, x, 0.0, x, x, "t")
               for m in ms]
        for name, got in means.items()
    }  # fmt: skip
    blocks = seeds._ranks([VariantData(n) for n in means], ms, summaries)
    table = next(b.table for b in blocks if b.table is not None)
    return {row.label: row.cells[0].text for row in table.bodies[0].rows} | {
        "_prose": blocks[0].text
    }


def test_average_rank_counts_each_property_once() -> None:
    # a leads on Inception FID and KID and on classifier FID and FID∞ (two properties, four
    # columns); b leads on both IS and the KL; precision, recall and coverage tie. Over every
    # column a would lead 4 to 3; on the declared set (KID and FID∞ out) b leads 3 to 2:
    # a's mean rank (1 + 2 + 1.5 + 1.5 + 1 + 2 + 2) / 7 = 11/7, b's 10/7.
    common = {
        "Inception Precision† ↑": 0.8,
        "Inception Recall† ↑": 0.7,
        "Classifier Coverage ↑": 10,
    }
    a = {"Inception FID ↓": 10.0, "Inception IS ↑": 2.0, "Inception KID ×10³ ↓": 5.0,
         "Classifier FID ↓": 1.0, "Classifier IS ↑": 9.0, "Classifier FID∞ ↓": 0.9,
         "Classifier KL to test labels ↓": 0.02} | common  # fmt: skip
    b = {"Inception FID ↓": 12.0, "Inception IS ↑": 2.1, "Inception KID ×10³ ↓": 7.0,
         "Classifier FID ↓": 1.5, "Classifier IS ↑": 9.5, "Classifier FID∞ ↓": 1.4,
         "Classifier KL to test labels ↓": 0.01} | common  # fmt: skip
    ms = seeds.metrics(["inception", "classifier"])
    assert set(a) | {"Classifier Label acc. ↑"} == {m.label for m in ms}  # every column named
    rows = _rank_rows({"a": a, "b": b})
    assert rows["a"] == f"{11 / 7:.2f}" and rows["b"] == f"{10 / 7:.2f}"
    text = rows["_prose"]
    assert "(7 of 7)" in text  # label accuracy (conditional only) is not in the set
    for label in ("Inception FID ↓", "Inception IS ↑", "Classifier KL to test labels ↓"):
        assert label in text
    assert "Inception KID ×10³ ↓," not in text and "Classifier FID∞ ↓," not in text
    # Over every column a would have led: the declared set is what changes the order.
    every = stats.average_ranks(
        {"a": [a[m.label] for m in ms if m.label in a], "b": [b[m.label] for m in ms if m.label in b]},
        [m.lower for m in ms if m.label in a],
    )  # fmt: skip
    assert every["a"][0] < every["b"][0]


def test_the_declared_rank_set_names_real_directed_scores() -> None:
    shown = {(m.extractor, m.field) for m in seeds.metrics(["inception", "classifier"])}
    assert set(seeds.RANKED) <= shown
    assert ("inception", "kid_mean") not in seeds.RANKED
    assert ("classifier", "fid_inf") not in seeds.RANKED
    assert {("inception", "fid"), ("classifier", "fid")} <= set(seeds.RANKED)
