"""Tables as data, rendered by both templates: the score tables derive their columns from
the metrics schema (pipeline.infra.metrics), showing only the extractors that ran.

Over 300 lines: the table model and every column the report shows, read as one catalogue."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.infra.metrics import EXTRACTORS, MetricsDoc, Show, value
from pipeline.stages.report import fmt

RowKind = Literal["variant", "floor", "published", "plain"]
COVERAGE_MIN_SHARE = 0.05
"""A digit counts as covered from this share of the samples (pipeline.stages.evaluate's rule)."""
GROUP = {"inception": "Inception-v3 (torch-fidelity)", "classifier": "MNIST classifier"}
SHORT_GROUP = {"inception": "Inception", "classifier": "Classifier"}
TRAINING = "Training"
DIGITS = "Share of samples classified as digit (%)"


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False
    warn: bool = False
    state: Literal["", "missing", "not-computed"] = ""
    code: bool = False  # a literal (run id): monospace
    href: str = ""  # a link (the run in the MLflow UI)


@dataclass(frozen=True)
class Col:
    header: str
    md_header: str  # with its group's short name: the Markdown table has one header row
    align: Literal["num", "text"] = "num"
    title: str = ""
    group_start: bool = False


@dataclass(frozen=True)
class Row:
    key: str  # data-row attribute: "variant:gan", "floor", "published:NS GAN"
    kind: RowKind
    label: str
    cells: list[Cell]
    note: str = ""

    @property
    def md_label(self) -> str:
        return f"*{self.label} — {self.note}*" if self.kind == "published" else self.label


@dataclass(frozen=True)
class Body:
    css: str
    rows: list[Row]
    title: str = ""  # a heading row over the group (the family of the models in it)


@dataclass(frozen=True)
class Table:
    id: str
    label_header: str
    columns: list[Col]
    bodies: list[Body]
    groups: list[tuple[str, int]] = field(default_factory=list)  # none: one header row
    compact: bool = False


def plain_table(
    table_id: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str | Cell]],
    text_cols: set[int] = frozenset(),  # type: ignore[assignment]
    compact: bool = False,
) -> Table:
    """A one-header table; column 0 is the row label, ``text_cols`` are left-aligned."""
    cols = [Col(h, h, "text" if i in text_cols else "num") for i, h in enumerate(headers) if i]
    body = []
    for row in rows:
        label = row[0] if isinstance(row[0], str) else row[0].text
        cells = [c if isinstance(c, Cell) else _plain(c) for c in row[1:]]
        body.append(Row(f"{table_id}:{label}", "plain", label, cells))
    return Table(table_id, headers[0], cols, [Body("plain", body)], compact=compact)


def _plain(text: str) -> Cell:
    return Cell(text, state="missing" if text == fmt.MISSING else "")


# --------------------------------------------------------------------------------------------
# Score tables


@dataclass(frozen=True)
class Subject:
    """A row's inputs: a scored set (variant, floor or published) and a training summary."""

    key: str
    kind: RowKind
    label: str
    metrics: MetricsDoc | None
    summary: dict[str, Any] | None = None
    note: str = ""


@dataclass(frozen=True)
class Group:
    """Rows that belong together (a family of models, the floor), with an optional title."""

    css: str
    subjects: list[Subject]
    title: str = ""


@dataclass(frozen=True)
class ScoreColumn:
    group: str
    label: str
    better: Literal["lower", "higher"] | None
    text: Callable[[Subject], Cell]
    value: Callable[[Subject], float | None] = lambda s: None  # what "best" compares
    kinds: tuple[RowKind, ...] = ("variant", "floor")
    title: str = ""

    @property
    def header(self) -> str:
        return self.label + {"lower": " ↓", "higher": " ↑", None: ""}[self.better]


def _absent(s: Subject, extractor: str) -> Cell | None:
    """The cell when the document or its section is absent: missing vs not computed."""
    if s.metrics is None:
        return Cell(fmt.MISSING, state="missing")
    if s.metrics.section(extractor) is None:
        return Cell(fmt.NOT_COMPUTED, state="not-computed")
    return None


def _score_text(extractor: str, name: str, show: Show) -> Callable[[Subject], Cell]:
    def text(s: Subject) -> Cell:
        absent = _absent(s, extractor)
        if absent is not None:
            return absent
        v = value(s.metrics, extractor, name)
        if v is None:
            na = show.fmt == "percent"  # null label accuracy: unconditional samples
            return Cell(fmt.NOT_APPLICABLE if na else fmt.MISSING, state="" if na else "missing")
        if show.fmt == "of10":
            return Cell(f"{int(v)} / 10")
        if show.fmt == "percent":
            return Cell(f"{v:.2%}")
        if show.fmt == "pm":
            std = value(s.metrics, extractor, show.std) if show.std else None
            scaled = None if std is None else std * show.scale
            return Cell(fmt.plus_minus(v * show.scale, scaled, show.digits) or fmt.MISSING)
        return Cell(fmt.fixed(v * show.scale, show.digits) or fmt.MISSING)

    return text


def schema_columns(extractor: str, table: str) -> list[ScoreColumn]:
    """One column per displayed score of ``extractor`` in ``table`` (score/detail)."""
    return [
        ScoreColumn(
            GROUP[extractor],
            show.label,
            show.better,
            _score_text(extractor, name, show),
            (lambda n: lambda s: value(s.metrics, extractor, n))(name),
            kinds=("variant", "floor", "published")
            if extractor == "inception" and name == "fid"
            else ("variant", "floor"),
            title=show.title,
        )
        for name, show in EXTRACTORS[extractor].scores()
        if show.table == table
    ]


def _samples(s: Subject) -> Cell:
    if s.metrics is None:
        return Cell(fmt.MISSING, state="missing")
    gen, real = s.metrics.n_generated, s.metrics.n_real
    if gen is None and real is None:
        return Cell(fmt.MISSING, state="missing")
    return Cell(f"{fmt.integer(gen) or fmt.MISSING} / {fmt.integer(real) or fmt.MISSING}")


def _counts(s: Subject) -> Cell:
    """The sample counts of the classifier scores that do not use every image once."""
    absent = _absent(s, "classifier")
    if absent is not None:
        return absent
    c = s.metrics.classifier  # type: ignore[union-attr]
    parts = []
    if c.kid_subsets and c.kid_subset_size:
        parts.append(f"KID {c.kid_subsets} × {c.kid_subset_size:,}")
    if c.fid_inf_points and c.fid_inf_n_min and c.fid_inf_n_max:
        parts.append(f"FID∞ {c.fid_inf_points} N, {c.fid_inf_n_min:,}–{c.fid_inf_n_max:,}")
    if c.prdc_k:
        parts.append(f"k = {c.prdc_k}")
    return Cell(" · ".join(parts)) if parts else Cell(fmt.MISSING, state="missing")


COUNTS = ScoreColumn(
    GROUP["classifier"], "Sample counts", None, _counts,
    title="KID: subsets × images per subset (each set); FID∞: how many subset sizes N, and "
    "their range; density and coverage: neighbours k (over all images)",
)  # fmt: skip


def _summary(key: str, show: Callable[[float | None], str | None]) -> Callable[[Subject], Cell]:
    def text(s: Subject) -> Cell:
        shown = show(fmt.num(s.summary, key))
        return Cell(shown) if shown is not None else Cell(fmt.MISSING, state="missing")

    return text


SAMPLES = ScoreColumn(
    "", "Samples (gen / real)", None, _samples, kinds=("variant", "floor", "published"),
    title="Images scored: generated (or MNIST train for the floor) / MNIST test",
)  # fmt: skip


def _critic_updates(s: Subject) -> Cell:
    """Critic/discriminator updates: n/a for a model without a critic (the summary says
    null), "—" for a summary from before the count was recorded."""
    if s.summary is not None and "d_iters" in s.summary and s.summary["d_iters"] is None:
        return Cell(fmt.NOT_APPLICABLE)
    return _summary("d_iters", fmt.integer)(s)


TRAINING_COLUMNS = [
    # The budget each row trained with, read from the run's summary.json (the trainer's
    # counts, not recomputed here): what "matched by epochs" leaves unequal.
    ScoreColumn(
        TRAINING, "G updates", None, _summary("g_iters", fmt.integer), kinds=("variant",),
        title="Generator updates (steps that step a non-critic optimiser)",
    ),
    ScoreColumn(
        TRAINING, "D updates", None, _critic_updates, kinds=("variant",),
        title="Critic/discriminator updates (n/a: the model has no critic)",
    ),
    ScoreColumn(
        TRAINING, "Images seen", None, _summary("images_seen", fmt.integer),
        kinds=("variant",), title="Real training images consumed: steps × batch size",
    ),
    ScoreColumn(
        TRAINING, "Time", None, _summary("train_time_s", fmt.duration), kinds=("variant",),
        title="Wall-clock training time (sampling and scoring not included)",
    ),
    ScoreColumn(
        TRAINING, "Steps/s", None, _summary("steps_per_s", lambda v: fmt.fixed(v, 1)),
        kinds=("variant",),
    ),
    ScoreColumn(
        TRAINING, "Sampling s/1k", None,
        _summary("sampling_s_per_1000", lambda v: fmt.fixed(v, 2)), kinds=("variant",),
        title="Seconds to generate 1,000 samples (the sample stage, on its device)",
    ),
]  # fmt: skip


def histogram(doc: MetricsDoc | None) -> list[float] | None:
    """Shares per digit (counts or fractions normalised), None when absent or malformed."""
    hist = doc.classifier.histogram if doc is not None and doc.classifier else None
    if not hist or len(hist) != 10:
        return None
    total = sum(hist)
    return [v / total if total > 0 else 0.0 for v in hist]


def _digit(d: int) -> Callable[[Subject], Cell]:
    def text(s: Subject) -> Cell:
        absent = _absent(s, "classifier")
        if absent is not None:
            return absent
        hist = histogram(s.metrics)
        if hist is None:
            return Cell(fmt.MISSING, state="missing")
        return Cell(f"{hist[d] * 100:.1f}", warn=hist[d] < COVERAGE_MIN_SHARE)

    return text


DIGIT_COLUMNS = [ScoreColumn(DIGITS, str(d), None, _digit(d)) for d in range(10)]


def build(table_id: str, columns: list[ScoreColumn], bodies: list[Group]) -> Table:
    """Cells for every subject; the best variant per ranked column is marked (the floor and
    published rows are not ranked; one value, or all equal, marks nothing)."""
    best: dict[int, set[str]] = {}
    variants = [s for g in bodies for s in g.subjects if s.kind == "variant"]
    for i, col in enumerate(columns):
        if col.better is None:
            continue
        finite = [
            (s.key, v) for s in variants if (v := col.value(s)) is not None and math.isfinite(v)
        ]
        distinct = {v for _, v in finite}
        if len(distinct) < 2:
            continue
        target = min(distinct) if col.better == "lower" else max(distinct)
        best[i] = {k for k, v in finite if v == target}

    groups: list[tuple[str, int]] = []
    for col in columns:
        if groups and groups[-1][0] == col.group:
            groups[-1] = (col.group, groups[-1][1] + 1)
        else:
            groups.append((col.group, 1))
    starts, i = set(), 0
    for _, span in groups:
        starts.add(i)
        i += span
    short = {GROUP[e]: SHORT_GROUP[e] for e in GROUP} | {DIGITS: "% digit"}
    cols = [
        Col(c.header, f"{short.get(c.group, c.group)} {c.header}".strip(), title=c.title,
            group_start=i in starts)
        for i, c in enumerate(columns)
    ]  # fmt: skip
    out = []
    for group in bodies:
        rows = []
        for s in group.subjects:
            cells = []
            for i, col in enumerate(columns):
                if s.kind not in col.kinds:
                    cells.append(Cell(""))
                    continue
                cell = col.text(s)
                if s.key in best.get(i, set()):
                    cell = Cell(cell.text, best=True, warn=cell.warn, state=cell.state)
                cells.append(cell)
            rows.append(Row(s.key, s.kind, s.label, cells, s.note))
        out.append(Body(group.css, rows, group.title))
    return Table(table_id, "Variant", cols, out, groups if any(g for g, _ in groups) else [])
