"""Inputs -> the page: scores, samples, progression, curves (the sections with figures);
hyperparameters, tuning and MLflow live in pipeline.stages.report.sections.

Over 300 lines: the page's figure sections in reading order, each a short function."""

from __future__ import annotations

from pathlib import Path

from pipeline.infra import layout
from pipeline.infra.config import Params
from pipeline.infra.metrics import EXTRACTORS
from pipeline.stages.report import fmt, sections
from pipeline.stages.report.assets import Asset, Picture, copy_asset, gif_asset
from pipeline.stages.report.groups import (
    FLOOR_LABEL,
    PUBLISHED_SOURCE,
    figures_section,
    score_groups,
)
from pipeline.stages.report.inputs import Inputs, rel
from pipeline.stages.report.page import (
    Block,
    Page,
    Section,
    footnotes,
    gallery,
    h3,
    md_text,
    notes,
    plot,
    prose,
    table,
)
from pipeline.stages.report.plots import curves_plot, scores_plot
from pipeline.stages.report.quality import quality_section
from pipeline.stages.report.seeds import seeds_section
from pipeline.stages.report.tables import (
    COUNTS,
    COVERAGE_MIN_SHARE,
    DIGIT_COLUMNS,
    SAMPLES,
    TRAINING_COLUMNS,
    build,
    schema_columns,
)
from pipeline.stages.report.toy import toy_section

TITLE = "Generative models on MNIST: comparison"
EXTRACTOR_PROSE = {
    "inception": "Inception-v3 features (torch-fidelity)",
    "classifier": "the project's MNIST classifier",
}


def shown_extractors(inputs: Inputs) -> list[str]:
    """Extractors with columns: those configured in params plus any a metrics file holds."""
    docs = [v.metrics for v in inputs.variants] + [inputs.floor]
    ran = {e for d in docs if d is not None for e in d.computed()}
    wanted = set(inputs.params.evaluate.extractors) | ran
    return [e for e in EXTRACTORS if e in wanted]


def budget_text(params: Params) -> str:
    """Which budget the comparison holds equal (train.budget), for the scores section."""
    t = params.train
    if t.budget == "g_updates":
        return (
            f"**Budget: matched in generator updates** (`train.budget: g_updates`): every "
            f"run trains the fewest whole epochs that give it {t.g_updates:,} generator "
            "updates, so critic models (n_critic > 1) see more epochs and images than the "
            "others. The Training columns give each run's actual counts and wall time."
        )
    return (
        "**Budget: matched in epochs** (`train.budget: epochs`): every variant trains its "
        "own `epochs`, so generator updates differ: a model with n_critic = 5 makes one "
        "generator update per 5 critic updates, a fifth of an n_critic = 1 model's over "
        "the same epochs. The Training columns give each run's generator and critic "
        "updates, images seen and wall time; `train.budget: g_updates` matches generator "
        "updates instead."
    )


def _scores(inputs: Inputs, shown: list[str], acc_text: str) -> tuple[Section, list[Asset]]:
    params = inputs.params
    columns = [SAMPLES] + [c for e in shown for c in schema_columns(e, "score")]
    bodies = score_groups(inputs, published="inception" in shown)
    score_table = build("score-table", columns + TRAINING_COLUMNS, bodies)
    floor_n = (inputs.floor.n_generated if inputs.floor else None) or params.evaluate.floor_n
    seed = params.train.first_seed
    notes_ = [
        f"One run per variant: seed {seed}, the first of train.seeds; the Seeds section "
        "below has every seed's scores, their spread and the paired tests.",
        "★ and bold: best of our variants in that column (↓ lower is better, ↑ higher is "
        f"better); the floor and the published rows are not ranked. {fmt.MISSING} : input "
        f"missing; {fmt.NOT_COMPUTED}: that extractor did not run for this file; "
        f"{fmt.NOT_APPLICABLE}: not applicable (label accuracy of an unconditional variant).",
    ]
    if "inception" in shown:
        notes_.append(
            "† Precision and recall (Kynkäänniemi et al. 2019) are computed by torch-fidelity "
            "on VGG16 features, not Inception-v3."
        )
    notes_.append("IS and KID are mean ± std over subsets; KID is shown ×10³.")
    if "classifier" in shown:
        notes_.append(
            "MNIST-classifier scores use the penultimate features of the evaluator CNN (IS on "
            "its softmax, at most 10); coverage counts the digits that get at least "
            f"{COVERAGE_MIN_SHARE:.0%} of the samples, KL is the divergence (nats) of the "
            f"predicted-class histogram from the test set's label shares (MNIST's digits "
            "are not uniform: a uniform label sampler is not ideal). Evaluator test accuracy: "
            f"{acc_text}. "
            "FID∞ is FID extrapolated to infinitely many samples (Chong & Forsyth 2020: FID "
            "at several sample sizes N, a line in 1/N), free of FID's bias for the sample "
            "size. Its KID is computed on the features centred and scaled by the real set's "
            "statistics (the cubic kernel's scale; the raw features' KID is noise). Density "
            "and k-NN coverage (Naeem et al. 2020): density 1 means samples spread like the "
            "real set, coverage is the share of real images with a sample among their k "
            "nearest neighbours; the sample counts of each are in the second table."
        )
    notes_.append(
        f"The real-vs-real row scores {floor_n:,} MNIST train images against the test set: "
        "the best a generator can reasonably reach."
    )
    if "inception" in shown:
        notes_.append(
            f"Published reference rows (italic, not our runs), each beside our matching model: "
            f"{PUBLISHED_SOURCE}, MNIST Inception FID, best of 100 hyperparameter settings per "
            "model, 10k samples vs the test set."
        )
    nets = _networks(inputs)
    if nets:
        notes_.append("Feature networks — " + "; ".join(nets) + ".")
    notes_.append(
        "Rows are grouped by model family. Sampling s/1k: seconds to generate 1,000 samples "
        "in the sample stage (on its device), the cost to weigh against quality."
    )
    notes_.append("Every score at full precision: scores.csv, beside this report.")
    blocks: list[Block] = [
        prose(budget_text(params)),
        prose("On a narrow screen the table scrolls sideways; the variant column stays in place.", "hint"),
        table(score_table),
        footnotes([md_text(n) for n in notes_]),
    ]  # fmt: skip
    assets = []
    png = scores_plot(inputs)
    if png is not None:
        assets.append(Asset("plots/scores.png", png))
        blocks.append(
            plot(assets[-1], "Bar charts of FID and IS per variant, with the real-vs-real floor")
        )
    else:
        blocks.append(prose("*No scores yet: no variant has metrics.*"))
    if "classifier" in shown:
        detail = build(
            "classifier-table",
            schema_columns("classifier", "detail") + [COUNTS] + DIGIT_COLUMNS,
            score_groups(inputs, notes=False),
        )
        blocks += [
            h3("MNIST classifier: class balance and the other scores"),
            prose(
                "Share of the generated samples the evaluator assigns to each digit: 10% each "
                f"is perfectly balanced; red marks a digit below {COVERAGE_MIN_SHARE:.0%}, not "
                "covered (mode collapse)."
            ),
            table(detail),
        ]
    return Section("scores", "Scores", "Scores", blocks), assets


def _networks(inputs: Inputs) -> list[str]:
    out = []
    for extractor in EXTRACTORS:
        seen: list[str] = []
        for doc in [v.metrics for v in inputs.variants] + [inputs.floor]:
            section = doc.section(extractor) if doc is not None else None
            if section is not None and section.network and section.network not in seen:
                seen.append(section.network)
        if seen:
            out.append(f"{extractor} scores: {', '.join(seen)}")
    return out


def caption(name: str, description: str = "", extra: str = "") -> str:
    parts = [p for p in (description, extra) if p]
    tail = " — " + "; ".join(parts) if parts else ""
    return f"**{md_text(name)}**{md_text(tail)}"


def _missing(inputs: Inputs, what: str, path: Path) -> str:
    return f"No {what} ({rel(path, inputs.params.root)} missing)"


def _samples(inputs: Inputs) -> tuple[list[Section], list[Asset]]:
    params = inputs.params
    grids, previews, gifs = [], [], []
    max_bytes = int(params.report.gif_max_mb * 1024 * 1024)
    for v in inputs.variants:
        arrangement = (
            "rows are digits 0–9" if v.conditional else "fixed noise shared by all variants"
        )
        epochs = fmt.num(v.summary, "epochs")
        extra = f"{arrangement}; after {int(epochs)} epochs" if epochs is not None else arrangement
        grids.append(Picture(
            f"grid-{v.name}", caption(v.name, v.description, extra),
            copy_asset(v.grid, f"grids/{v.name}.png"),
            _missing(inputs, "final grid", layout.final_grid(params, v.name)),
            f"{v.name}: final sample grid",
        ))  # fmt: skip
        previews.append(Picture(
            f"preview-{v.name}", caption(v.name, "", "preview of the scored samples"),
            copy_asset(v.samples, f"grids/{v.name}_samples.png"),
            _missing(inputs, "preview", layout.sample_grid(params, v.name)),
            f"{v.name}: scored samples",
        ))  # fmt: skip
        asset, stride = gif_asset(v.progress, f"grids/{v.name}_progress.gif", max_bytes)
        extra = "sample grid over training"
        if stride > 1:
            extra += f" (one frame in {stride}, to keep the page small)"
        gifs.append(Picture(
            f"progress-{v.name}", caption(v.name, "", extra), asset,
            _missing(inputs, "progression GIF", layout.progress_gif(params, v.name)),
            f"{v.name}: training progression",
        ))  # fmt: skip
    scale = (
        "Shown at their own pixel size (or a whole multiple of it) without smoothing; click a "
        "grid to enlarge it."
    )
    out = [
        Section("samples", "Samples", "Samples", [
            prose("Final 10×10 sample grid of each generator: the same fixed noise for every "
                  f"unconditional variant; conditional variants show the digits 0–9 in rows. {scale}"),
            gallery(grids),
            h3("Previews of the scored samples"),
            gallery(previews),
        ]),
        Section("progress", "Training progression", "Training progression", [
            prose("The fixed-noise grid after each epoch, as an animation."),
            gallery(gifs),
        ]),
    ]  # fmt: skip
    assets = [p.asset for p in grids + previews + gifs if p.asset is not None]
    return out, assets


def _curves(inputs: Inputs) -> tuple[Section, list[Asset]]:
    figs, assets = [], []
    for i, v in enumerate(inputs.variants):
        png = curves_plot(v, i)
        asset = Asset(f"plots/curves_{v.name}.png", png) if png else None
        if asset:
            assets.append(asset)
        path = rel(layout.curves_path(inputs.params, v.name), inputs.params.root)
        figs.append(Picture(
            f"curves-{v.name}", caption(v.name, "", "per-epoch means"), asset,
            f"No training curves ({path} missing or empty)", f"{v.name}: training curves",
            sample_grid=False,
        ))  # fmt: skip
    intro = (
        "One panel per quantity the variant logs, from the columns of its curves file: the "
        "losses together, the mean discriminator outputs D(x) and D(G(z)) together, the "
        "critic's Wasserstein estimate, penalties and gradient norms, and any other metric on "
        "its own. Loss scales differ between objectives: compare shapes, not values."
    )
    return Section(
        "curves", "Training curves", "Training curves", [prose(intro), gallery(figs, wide=True)]
    ), assets


def build_page(inputs: Inputs) -> Page:
    """The whole page in memory (no file is written)."""
    shown = shown_extractors(inputs)
    acc = fmt.num(inputs.classifier, "test_accuracy")
    acc_text = f"{acc:.2%}" if acc is not None else fmt.MISSING
    names = ", ".join(v.name for v in inputs.variants) or "No variants in params.yaml"
    how = " and with ".join(EXTRACTOR_PROSE[e] for e in shown)
    not_run = [e for e in EXTRACTORS if e not in shown]
    lead = f"{md_text(names)} — scored against the MNIST test set with {how}."
    if not_run:
        lead += (
            " Not computed: "
            + ", ".join(f"{e} metrics" for e in not_run)
            + " (`evaluate.extractors`)."
        )
    scores, assets = _scores(inputs, shown, acc_text)
    seeds, seed_assets = seeds_section(inputs, shown)
    samples, sample_assets = _samples(inputs)
    figures, figure_assets = figures_section(inputs)
    curves, curve_assets = _curves(inputs)
    quality, quality_assets = quality_section(inputs)
    toy = toy_section(inputs)
    toy_assets = [
        a for b in (toy.blocks if toy else []) for p in b.pictures for a in (p.asset, p.zoom) if a
    ]
    body = [scores, seeds, *samples, *([figures] if figures else []), curves,
            *([quality] if quality else []), *([toy] if toy else []),
            *sections.rest(inputs, acc_text)]  # fmt: skip
    if inputs.notes:
        body.append(Section("inputs", "Missing inputs", "Missing inputs", [
            prose(f"These inputs were missing or unreadable; their cells show “{fmt.MISSING}”."),
            notes(inputs.notes),
        ]))  # fmt: skip
    footer = (
        "Built by `pipeline report` from params.yaml and the outputs of the DVC stages; "
        "rebuilding from the same inputs gives the same bytes. The self-contained page is "
        "`index.html`; its Markdown twin `comparison.md`."
    )
    return Page(TITLE, [prose(lead, "lead")], body, footer,
                assets + seed_assets + sample_assets + figure_assets + curve_assets + quality_assets
                + toy_assets)  # fmt: skip


__all__ = ["FLOOR_LABEL", "build_page", "shown_extractors"]
