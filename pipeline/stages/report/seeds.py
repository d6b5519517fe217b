"""The seeds section: every variant's scores over its training seeds (mean ± std, the
interval of the mean, each seed's value), paired tests against the reference variant with
Holm's correction and each difference's sign per seed, and the average rank across a declared
set of non-redundant metrics (:data:`RANKED`). The numbers come from pipeline.stages.report.stats.

Over 300 lines: one report section, its tables and prose together."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.infra.metrics import EXTRACTORS, Show, parse, value
from pipeline.stages.report import fmt, stats
from pipeline.stages.report.assets import Asset
from pipeline.stages.report.inputs import Inputs, VariantData
from pipeline.stages.report.page import Block, Section, footnotes, md_text, plot, prose, table
from pipeline.stages.report.plots import seeds_plot
from pipeline.stages.report.tables import SHORT_GROUP, Cell, plain_table

RANKED: tuple[tuple[str, str], ...] = (
    ("inception", "fid"),
    ("inception", "is_mean"),
    ("inception", "precision"),
    ("inception", "recall"),
    ("classifier", "fid"),
    ("classifier", "is_mean"),
    ("classifier", "kl_test_labels"),
)
"""(extractor, field) of the scores the average rank counts, one per thing measured, so no
property is counted twice. Left out: Inception KID (it ranks like Inception FID on the same
features), classifier FID∞ (classifier FID extrapolated in the sample count: at the same 10k
samples per variant it ranks alike), class coverage (a coarser reading of the digit histogram
the KL already scores) and label accuracy (conditional variants only)."""


@dataclass(frozen=True)
class Metric:
    extractor: str
    field: str
    show: Show

    @property
    def label(self) -> str:
        return f"{SHORT_GROUP[self.extractor]} {self.show.label} {'↓' if self.lower else '↑'}"

    @property
    def lower(self) -> bool:
        return self.show.better == "lower"

    def per_seed(self, v: VariantData) -> dict[int, float]:
        """{seed: value} for the seeds whose metrics file has this score (scaled as shown)."""
        out = {}
        for seed, doc in v.runs.items():
            x = value(doc, self.extractor, self.field)
            if x is not None and math.isfinite(x):
                out[seed] = x * self.show.scale
        return out

    def text(self, x: float | None, sign: bool = False) -> str:
        if x is None:
            return fmt.MISSING
        percent = self.show.fmt == "percent"
        digits = 1 if percent or self.show.fmt == "of10" else self.show.digits
        return f"{100 * x if percent else x:{'+' if sign else ''}.{digits}f}" + (
            "%" if percent else ""
        )


def metrics(shown: list[str]) -> list[Metric]:
    """The main table's scores with a direction, per extractor shown."""
    return [
        Metric(e, name, show)
        for e in shown
        for name, show in EXTRACTORS[e].scores()
        if show.better is not None and show.table == "score"
    ]


def _methods(summaries: dict[str, list[stats.Summary | None]]) -> str:
    """The interval methods the table's cells used, named for the page."""
    used = {s.method for per in summaries.values() for s in per if s and s.method}
    if not used:
        return "no interval (one seed)"
    named = [stats.METHOD_NAMES[m] for m in ("t", "bootstrap") if m in used]
    return " or ".join(named)


def _interval_cell(m: Metric, s: stats.Summary | None) -> Cell:
    if s is None:
        return Cell(fmt.MISSING, state="missing")
    text = m.text(s.mean)
    if s.std is not None:
        text += f" ± {m.text(s.std)}"
    if s.low is not None and s.high is not None:
        text += f" [{m.text(s.low)}, {m.text(s.high)}]"
    return Cell(text)


def _signs(m: Metric, c: stats.Comparison) -> str:
    """How many seeds put the variant ahead, as the seeds show it ("3/3 seeds better")."""
    ahead, behind = (c.below, c.above) if m.lower else (c.above, c.below)
    if ahead == behind == 0:
        return f"equal on {c.n}/{c.n} seeds"
    if ahead >= behind:
        return f"{ahead}/{c.n} seeds better"
    return f"{behind}/{c.n} seeds worse"


def _compare_cell(m: Metric, c: stats.Comparison) -> Cell:
    if c.verdict == "cannot be tested":
        return Cell(f"cannot be tested (n = {c.n})", state="not-computed")
    delta = m.text(c.diff, sign=True)
    if c.verdict == "same sign":
        # Identical differences: the t-test has no spread (p undefined), but the sign is data.
        return Cell(f"{_signs(m, c)}, all by Δ {delta} (no spread: no t-test; sign test "
                    f"p ≥ {stats.sign_test_min_p(c.n):.3g})")  # fmt: skip
    p = "n/a" if math.isnan(c.p_holm) else f"{c.p_holm:.3f}"
    return Cell(f"{c.verdict} (Δ {delta}, p_Holm {p}; {_signs(m, c)})",
                warn=c.verdict == "worse")  # fmt: skip


def _reference(inputs: Inputs) -> tuple[VariantData | None, str]:
    wanted = inputs.params.report.reference
    for v in inputs.variants:
        if v.name == wanted:
            return v, ""
    return None, (
        f"The reference variant `{md_text(wanted)}` (`report.reference`) is not among the "
        "variants in params.yaml: no paired comparisons."
    )


def seeds_section(inputs: Inputs, shown: list[str]) -> tuple[Section, list[Asset]]:
    params = inputs.params
    seeds = params.train.seeds
    ms = metrics(shown)
    variants = inputs.variants
    values = {v.name: [m.per_seed(v) for m in ms] for v in variants}
    summaries = {n: [stats.summarize(list(d.values())) for d in per] for n, per in values.items()}
    seed_text = ", ".join(map(str, seeds))
    blocks: list[Block] = [
        prose(
            f"Every variant is trained once per seed in `train.seeds` ({seed_text}: "
            f"{len(seeds)} run{'s' if len(seeds) != 1 else ''} per variant), with the same "
            "seeds for every variant and, for each seed, the same sampling latents, so "
            "variants can be compared seed by seed. Cells: mean ± standard deviation over "
            f"the seeds, then the {stats.CONFIDENCE:.0%} interval of the mean by "
            f"{_methods(summaries)}. Below {stats.BOOTSTRAP_MIN_N} seeds the interval is "
            "Student's t: a percentile bootstrap of a few seeds is just their [min, max] and "
            f"covers the mean far less often than {stats.CONFIDENCE:.0%} (on normal data "
            f"{stats.bootstrap_coverage(3):.0%} at 3 seeds, "
            f"{stats.bootstrap_coverage(10):.0%} at 10); from {stats.BOOTSTRAP_MIN_N} seeds "
            f"the percentile bootstrap ({stats.RESAMPLES:,} resamples, seeded). KID is ×10³."
        )
    ]
    rows = []
    for v in variants:
        n = sum(doc is not None for doc in v.runs.values())
        rows.append([v.name, f"{n} / {len(seeds)}",
                     *(_interval_cell(m, s) for m, s in zip(ms, summaries[v.name], strict=True))])  # fmt: skip
    headers = ["Variant", "Seeds", *(m.label for m in ms)]
    blocks.append(table(plain_table("seeds-table", headers, rows)))
    assets = []
    png = seeds_plot(
        [m.label for m in ms], [v.name for v in variants],
        [[(list(values[v.name][j].values()), summaries[v.name][j]) for v in variants]
         for j in range(len(ms))],
    )  # fmt: skip
    if png is not None:
        assets.append(Asset("plots/seeds.png", png))
        blocks.append(plot(assets[-1], "Each seed's score (dots), the mean (bar) and its "
                                       "interval of the mean (line) per variant and metric"))  # fmt: skip
    blocks += _paired(inputs, ms, values)
    blocks += _ranks(variants, ms, summaries)
    blocks += _noise(inputs, ms, summaries)
    return Section("seeds", "Seeds: spread, intervals and paired tests", "Seeds", blocks), assets


def _paired(
    inputs: Inputs, ms: list[Metric], values: dict[str, list[dict[int, float]]]
) -> list[Block]:
    ref, missing = _reference(inputs)
    if ref is None:
        return [prose(missing)]
    others = [v for v in inputs.variants if v.name != ref.name]
    cells: dict[str, list[Cell]] = {v.name: [] for v in others}
    for j, m in enumerate(ms):
        tests = [stats.compare(values[v.name][j], values[ref.name][j]) for v in others]
        adjusted = stats.holm([t.p for t in tests])  # the family: this metric's comparisons
        for v, t, p in zip(others, tests, adjusted, strict=True):
            cells[v.name].append(_compare_cell(m, stats.decide(t, p, m.lower)))
    n = len(inputs.params.train.seeds)
    rows = [[v.name, *cells[v.name]] for v in others]
    return [
        prose(
            f"**Against `{md_text(ref.name)}`** (`report.reference`), seed by seed: a paired "
            "t-test over the seeds both have, two-sided; Holm's correction over the variants "
            f"compared on each metric; *better* / *worse* when the adjusted p is below "
            f"{stats.ALPHA}, else *not distinguishable at this budget*. Δ is the mean "
            "difference (variant − reference); *k/n seeds better* counts the seeds on which "
            "the variant beats the reference. When every seed's difference is the same "
            "number the t-test has no spread to work with (p undefined): the cell says what "
            "the seeds show instead, the same sign on all of them."
        ),
        table(
            plain_table(
                "paired-table",
                ["Variant", *(m.label for m in ms)],
                rows,
                text_cols=set(range(1, len(ms) + 1)),
            )
        ),  # fmt: skip
        prose(
            f"With {n} seed{'s' if n != 1 else ''} the tests have little power: only large, "
            "consistent differences come out as better or worse, and *not distinguishable* "
            "is not evidence that two variants are equal. A t-test needs at least 2 seeds; "
            "5–10 seeds make moderate differences detectable. By signs alone, the same sign "
            f"on all {n} seed{'s' if n != 1 else ''} gives at best a two-sided sign-test p of "
            f"{stats.sign_test_min_p(n):.3g}: no test on signs reaches {stats.ALPHA} below "
            f"{stats.min_seeds_for_sign_test()} seeds.",
            "callout",
        ),
    ]


def _ranks(
    variants: list[VariantData], ms: list[Metric], summaries: dict[str, list[stats.Summary | None]]
) -> list[Block]:
    keep = [j for j, m in enumerate(ms) if (m.extractor, m.field) in RANKED]
    means = {v.name: [s.mean if (s := summaries[v.name][j]) else None for j in keep]
             for v in variants}  # fmt: skip
    ranks = stats.average_ranks(means, [ms[j].lower for j in keep])
    ranked = sorted(ranks.items(), key=lambda kv: kv[1][0])
    rows = [[name, f"{r:.2f}", f"{sd:.2f}", str(k)] for name, (r, sd, k) in ranked]
    used = next((k for _, (_, _, k) in ranked), 0)
    names = ", ".join(ms[j].label for j in keep) or "none shown"
    blocks: list[Block] = [
        prose(
            "**Average rank** across a declared set of non-redundant metrics, one per "
            f"property ({names}; not Inception KID beside Inception FID, nor classifier FID∞ "
            "beside classifier FID, nor class coverage beside the KL: near-duplicates would "
            "count one property twice), 1 = best on a metric, ties share the average "
            "rank, from each variant's mean over seeds; the spread is the standard deviation "
            "of its ranks across the metrics. Only metrics every variant has are ranked"
            f" ({used} of {len(keep)})."
        ),
        table(
            plain_table(
                "rank-table", ["Variant", "Mean rank", "Std", "Metrics"], rows, compact=True
            )
        ),  # fmt: skip
    ]
    if not rows:
        blocks.append(footnotes(["No metric has a value for every variant yet."]))
    return blocks


def _noise(
    inputs: Inputs, ms: list[Metric], summaries: dict[str, list[stats.Summary | None]]
) -> list[Block]:
    """The best run's scores on fresh latent draws beside its variant's spread over seeds."""
    noise = inputs.noise
    if not noise or not noise.get("draws") or noise.get("variant") not in summaries:
        return []
    name, seed = str(noise["variant"]), noise.get("seed")
    docs = [parse(d, "noise.json") for d in noise["draws"]]
    scored = parse(noise.get("scored") or {"variant": name}, "noise.json")
    rows = []
    for m, over_seeds in zip(ms, summaries[name], strict=True):
        draws = [
            x * m.show.scale for d in docs if (x := value(d, m.extractor, m.field)) is not None
        ]
        if not draws:
            continue
        first = value(scored, m.extractor, m.field)
        s = stats.summarize(draws)
        spread = (
            f"{m.text(s.mean)} ± {m.text(s.std)}"
            if s and s.std is not None
            else m.text(s.mean if s else None)
        )
        rows.append([m.label, m.text(first * m.show.scale if first is not None else None), spread,
                     f"{m.text(min(draws))} – {m.text(max(draws))}",
                     m.text(over_seeds.std if over_seeds else None)])  # fmt: skip
    k = len(docs)
    return [
        prose(
            f"**Evaluation noise.** The best run, `{md_text(name)}` seed {seed} (lowest "
            f"{md_text(str(noise.get('picked_by', 'FID')))}), sampled {k} more time"
            f"{'s' if k != 1 else ''} on fresh latents (`evaluate.noise_draws`) and scored "
            "each time: the spread over these draws is the metric's own; the spread over "
            "seeds adds training's. Where the two are alike, the seeds' spread is mostly "
            "measurement noise (more samples per score would shrink it); where the seeds' is "
            "larger, training decides."
        ),
        table(
            plain_table(
                "noise-table",
                [
                    "Metric",
                    "Scored sample",
                    f"{k} re-draws: mean ± std",
                    "Re-draws: range",
                    f"Std over {name}'s seeds",
                ],
                rows,
                compact=True,
            )
        ),  # fmt: skip
    ]
