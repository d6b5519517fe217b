"""Comparison report: one self-contained HTML page, its Markdown twin and the plots.

Reads what the other stages wrote (``metrics/``, ``models/``, ``samples/``, the optional
``reports/tuning/``) and never fails on a missing input: a missing number is shown as "—", a
missing image as a note, and the page lists every input it could not read, so a half-run
pipeline still gives a useful page. The same inputs give byte-identical outputs: there is no
timestamp, and the PNGs are written without matplotlib's version metadata.

Everything is rendered in memory first and written afterwards: ``plots/`` and ``grids/`` each
swapped in whole (:func:`pipeline.io.atomic_dir`), then ``comparison.md`` and last
``index.html``, each by one rename (:func:`pipeline.io.atomic_path`), so a failure never leaves
a half-written page.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipeline.config import Params
from pipeline.errors import first_line
from pipeline.io import atomic_dir, atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MISSING = "—"
"""Shown where an input that should exist is absent or unreadable."""
NOT_APPLICABLE = "n/a"
"""Shown where a score does not apply (label accuracy of an unconditional variant)."""

FLOOR_LABEL = "real vs real (MNIST train subset vs test)"
PUBLISHED_SOURCE = 'Lucic et al. 2018, "Are GANs Created Equal? A Large-Scale Study" (NeurIPS 2018)'
PUBLISHED_FID: tuple[tuple[str, float], ...] = (
    ("NS GAN", 6.8),
    ("WGAN", 6.7),
    ("LSGAN", 7.8),
    ("WGAN-GP", 20.3),
)
"""Their MNIST Inception FIDs: best of 100 hyperparameter settings, 10k samples vs test set."""
PUBLISHED_N = 10_000

COVERAGE_MIN_SHARE = 0.05
"""A digit counts as covered from this share of the samples (pipeline.evaluate's rule)."""

# Matplotlib settings for every plot; the hash salt keeps any SVG ids stable too.
_RC: dict[str, Any] = {
    "svg.hashsalt": "pipeline-report",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "figure.dpi": 100,
}
_PALETTE = (
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
)


# --------------------------------------------------------------------------------------------
# Reading the inputs


@dataclass
class VariantData:
    """Everything the report knows about one variant; any field may be missing."""

    name: str
    description: str = ""
    conditional: bool = False
    configured: dict[str, Any] | None = None  # hyperparameters from params.yaml + defaults
    metrics: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    curves: dict[str, list[float | None]] | None = None
    grid: Path | None = None
    progress: Path | None = None
    samples: Path | None = None
    tuning: dict[str, Any] | None = None
    tuning_plots: list[Path] = field(default_factory=list)


@dataclass
class Inputs:
    params: Params
    variants: list[VariantData]
    floor: dict[str, Any] | None
    classifier: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)  # inputs that were missing or unreadable


class _Reader:
    """Reads optional files, recording a one-line note for each one missing or unreadable."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.notes: list[str] = []

    def rel(self, path: Path) -> str:
        return _rel(path, self.params.root)

    def file(self, path: Path) -> Path | None:
        if path.is_file():
            return path
        self.notes.append(f"{self.rel(path)}: not found")
        return None

    def json(self, path: Path) -> dict[str, Any] | None:
        if self.file(path) is None:
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            self.notes.append(f"{self.rel(path)}: unreadable ({first_line(err)})")
            return None
        if not isinstance(data, dict):
            self.notes.append(f"{self.rel(path)}: unreadable (not a JSON object)")
            return None
        return data

    def curves(self, path: Path) -> dict[str, list[float | None]] | None:
        if self.file(path) is None:
            return None
        try:
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            self.notes.append(f"{self.rel(path)}: unreadable ({first_line(err)})")
            return None
        if not rows:
            self.notes.append(f"{self.rel(path)}: no rows")
            return None
        columns = list(rows[0].keys())
        return {col: [_to_float(row.get(col)) for row in rows] for col in columns if col}


def _to_float(text: Any) -> float | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _variant_info(name: str, block: Any) -> tuple[str, bool, dict[str, Any] | None]:
    """Description, conditional flag and configured hyperparameters from the registry."""
    from pipeline.variants import registry

    try:
        variant = registry.get(name)
    except KeyError:
        return "", False, None
    hyper = variant.resolve(block)
    configured = {
        "epochs": hyper.epochs,
        "lr": hyper.lr,
        "betas": list(hyper.betas),
        "n_critic": hyper.n_critic,
        "optimizer": hyper.optimizer,
        "options": dict(hyper.options),
    }
    return variant.description, variant.conditional, configured


def read_inputs(params: Params) -> Inputs:
    """Collect every input of the report; nothing here raises for a missing file."""
    reader = _Reader(params)
    metrics_dir = params.path(params.evaluate.out_dir)
    models_dir = params.path(params.train.out_dir)
    samples_dir = params.path(params.sample.out_dir)
    tuning_dir = params.path(params.tune.out_dir)

    variants = []
    for name, block in params.variants.items():
        description, conditional, configured = _variant_info(name, block)
        data = VariantData(
            name=name, description=description, conditional=conditional, configured=configured
        )
        data.metrics = reader.json(metrics_dir / f"{name}.json")
        data.summary = reader.json(models_dir / name / "summary.json")
        data.curves = reader.curves(metrics_dir / "curves" / f"{name}.csv")
        data.grid = reader.file(models_dir / name / "grid.png")
        data.progress = reader.file(models_dir / name / "progress.gif")
        data.samples = reader.file(samples_dir / name / "grid.png")
        # Tuning is optional: its absence is not worth a note.
        best = tuning_dir / name / "best.json"
        if best.is_file():
            data.tuning = reader.json(best)
        if (tuning_dir / name).is_dir():
            data.tuning_plots = sorted((tuning_dir / name).glob("*.png"))
        variants.append(data)

    floor = reader.json(metrics_dir / "floor.json")
    classifier = reader.json(params.path(params.classifier.out_dir) / "metrics.json")
    return Inputs(params, variants, floor, classifier, reader.notes)


# --------------------------------------------------------------------------------------------
# Number formatting


def _get(data: dict[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _num(data: dict[str, Any] | None, *keys: str) -> float | None:
    value = _get(data, *keys)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _fmt(value: float | None, digits: int) -> str | None:
    if value is None:
        return None
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.{digits}f}"


def _fmt_pm(mean: float | None, std: float | None, digits: int) -> str | None:
    if mean is None:
        return None
    text = _fmt(mean, digits)
    return text if std is None else f"{text} ± {_fmt(std, digits)}"


def _fmt_int(value: float | None) -> str | None:
    return None if value is None else f"{int(value):,}"


def _fmt_duration(seconds: float | None) -> str | None:
    if seconds is None or not math.isfinite(seconds):
        return None
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _fmt_sci(value: Any) -> str:
    if isinstance(value, float):
        return (
            f"{value:.3g}"
            if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4)
            else f"{value:g}"
        )
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_fmt_sci(v) for v in value) + ")"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt_sci(v)}" for k, v in value.items()) or "none"
    return str(value)


# --------------------------------------------------------------------------------------------
# Tables: one model, rendered both as HTML and as Markdown

RowKind = Literal["variant", "floor", "published"]


@dataclass(frozen=True)
class Row:
    key: str  # data-row attribute: "variant:gan", "floor", "published:NS GAN"
    label: str
    kind: RowKind
    metrics: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    note: str = ""


@dataclass(frozen=True)
class Column:
    group: str
    label: str
    better: Literal["lower", "higher"] | None
    value: Callable[[Row], float | None]  # what "best" compares
    text: Callable[[Row], str | None]  # None: missing input
    kinds: tuple[RowKind, ...] = ("variant", "floor")  # rows the column applies to
    title: str = ""
    warn: Callable[[Row], bool] | None = None  # highlight a worrying value (a missing digit)

    @property
    def header(self) -> str:
        arrow = {"lower": " ↓", "higher": " ↑", None: ""}[self.better]
        return self.label + arrow


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False
    warn: bool = False


@dataclass(frozen=True)
class Table:
    id: str
    groups: list[tuple[str, int]]  # (group header, span) after the label column
    columns: list[Column]
    label_header: str
    bodies: list[tuple[str, list[tuple[Row, list[Cell]]]]]  # (tbody class, rows)


def _samples_text(row: Row) -> str | None:
    if row.kind == "published":
        return f"{PUBLISHED_N:,} / {PUBLISHED_N:,}"
    gen, real = _num(row.metrics, "n_generated"), _num(row.metrics, "n_real")
    if gen is None and real is None:
        return None
    return f"{_fmt_int(gen) or MISSING} / {_fmt_int(real) or MISSING}"


def _label_accuracy_text(row: Row) -> str | None:
    clf = _get(row.metrics, "classifier")
    if not isinstance(clf, dict):
        return None
    value = _num(clf, "label_accuracy")
    if value is None:
        return NOT_APPLICABLE
    return f"{value:.2%}"


def _coverage_text(row: Row) -> str | None:
    value = _num(row.metrics, "classifier", "coverage")
    return None if value is None else f"{int(value)} / 10"


def _scalar(group: str, key: str, digits: int) -> Callable[[Row], str | None]:
    return lambda row: _fmt(_num(row.metrics, group, key), digits)


def _pm(group: str, key: str, digits: int, scale: float = 1.0) -> Callable[[Row], str | None]:
    def text(row: Row) -> str | None:
        mean, std = _num(row.metrics, group, f"{key}_mean"), _num(row.metrics, group, f"{key}_std")
        return _fmt_pm(
            None if mean is None else mean * scale, None if std is None else std * scale, digits
        )

    return text


def _val(group: str, key: str) -> Callable[[Row], float | None]:
    return lambda row: _num(row.metrics, group, key)


INCEPTION = "Inception-v3 (torch-fidelity)"
CLASSIFIER = "MNIST classifier"
TRAINING = "Training"

SCORE_COLUMNS: list[Column] = [
    Column(
        "",
        "Samples (gen / real)",
        None,
        lambda r: None,
        _samples_text,
        kinds=("variant", "floor", "published"),
        title="Images scored: generated (or MNIST train for the floor) / MNIST test",
    ),
    Column(
        INCEPTION,
        "FID",
        "lower",
        _val("inception", "fid"),
        _scalar("inception", "fid", 2),
        kinds=("variant", "floor", "published"),
    ),
    Column(INCEPTION, "IS", "higher", _val("inception", "is_mean"), _pm("inception", "is", 2)),
    Column(
        INCEPTION,
        "KID ×10³",
        "lower",
        _val("inception", "kid_mean"),
        _pm("inception", "kid", 2, scale=1e3),
    ),
    Column(
        INCEPTION,
        "Precision†",
        "higher",
        _val("inception", "precision"),
        _scalar("inception", "precision", 3),
    ),
    Column(
        INCEPTION,
        "Recall†",
        "higher",
        _val("inception", "recall"),
        _scalar("inception", "recall", 3),
    ),
    Column(
        CLASSIFIER,
        "FID",
        "lower",
        _val("classifier", "fid"),
        _scalar("classifier", "fid", 2),
    ),
    Column(CLASSIFIER, "IS", "higher", _val("classifier", "is_mean"), _pm("classifier", "is", 2)),
    Column(CLASSIFIER, "Coverage", "higher", _val("classifier", "coverage"), _coverage_text),
    Column(
        CLASSIFIER,
        "KL to uniform",
        "lower",
        _val("classifier", "kl_uniform"),
        _scalar("classifier", "kl_uniform", 4),
    ),
    Column(
        CLASSIFIER,
        "Label acc.",
        "higher",
        _val("classifier", "label_accuracy"),
        _label_accuracy_text,
    ),
    Column(
        TRAINING,
        "Time",
        None,
        lambda r: None,
        lambda r: _fmt_duration(_num(r.summary, "train_time_s")),
        kinds=("variant",),
    ),
    Column(
        TRAINING,
        "Steps/s",
        None,
        lambda r: None,
        lambda r: _fmt(_num(r.summary, "steps_per_s"), 1),
        kinds=("variant",),
    ),
]

DIGITS = "Share of samples classified as digit (%)"

DETAIL_COLUMNS: list[Column] = [
    Column(
        CLASSIFIER,
        "KID ×10³",
        "lower",
        _val("classifier", "kid_mean"),
        _pm("classifier", "kid", 2, scale=1e3),
    ),
    Column(
        CLASSIFIER,
        "Precision",
        "higher",
        _val("classifier", "precision"),
        _scalar("classifier", "precision", 3),
    ),
    Column(
        CLASSIFIER,
        "Recall",
        "higher",
        _val("classifier", "recall"),
        _scalar("classifier", "recall", 3),
    ),
    *[
        Column(
            DIGITS,
            str(digit),
            None,
            lambda r: None,
            (lambda d: lambda r: _histogram_text(r, d))(digit),
            warn=(lambda d: lambda r: (_histogram(r) or [1.0] * 10)[d] < COVERAGE_MIN_SHARE)(digit),
        )
        for digit in range(10)
    ],
]


def _histogram(row: Row) -> list[float] | None:
    hist = _get(row.metrics, "classifier", "histogram")
    if not isinstance(hist, list) or len(hist) != 10:
        return None
    values = [_to_float(v) for v in hist]
    if any(v is None for v in values):
        return None
    total = sum(values)  # type: ignore[arg-type]
    # Counts or fractions: shown as shares either way.
    return [v / total if total > 0 else 0.0 for v in values]  # type: ignore[operator]


def _histogram_text(row: Row, digit: int) -> str | None:
    hist = _histogram(row)
    return None if hist is None else f"{hist[digit] * 100:.1f}"


def _build_table(
    table_id: str,
    label_header: str,
    columns: list[Column],
    bodies: list[tuple[str, list[Row]]],
) -> Table:
    best: dict[int, set[str]] = {}
    variant_rows = [row for _, rows in bodies for row in rows if row.kind == "variant"]
    for i, col in enumerate(columns):
        if col.better is None:
            continue
        values = [(row.key, col.value(row)) for row in variant_rows]
        finite = [(k, v) for k, v in values if v is not None and math.isfinite(v)]
        distinct = {v for _, v in finite}
        if len(distinct) < 2:  # one value, or all equal: nothing to single out
            continue
        target = min(distinct) if col.better == "lower" else max(distinct)
        best[i] = {k for k, v in finite if v == target}

    rendered: list[tuple[str, list[tuple[Row, list[Cell]]]]] = []
    for css, rows in bodies:
        out_rows = []
        for row in rows:
            cells = []
            for i, col in enumerate(columns):
                if row.kind not in col.kinds:
                    cells.append(Cell(""))
                    continue
                text = col.text(row)
                cells.append(
                    Cell(
                        MISSING if text is None else text,
                        best=row.key in best.get(i, set()),
                        warn=bool(col.warn and text is not None and col.warn(row)),
                    )
                )
            out_rows.append((row, cells))
        rendered.append((css, out_rows))

    groups: list[tuple[str, int]] = []
    for col in columns:
        if groups and groups[-1][0] == col.group:
            groups[-1] = (col.group, groups[-1][1] + 1)
        else:
            groups.append((col.group, 1))
    return Table(table_id, groups, columns, label_header, rendered)


def _variant_rows(inputs: Inputs, notes: bool = True) -> list[Row]:
    return [
        Row(
            f"variant:{v.name}",
            v.name,
            "variant",
            v.metrics,
            v.summary,
            note=v.description if notes else "",
        )
        for v in inputs.variants
    ]


def _floor_row(inputs: Inputs) -> Row:
    return Row("floor", FLOOR_LABEL, "floor", inputs.floor)


def _published_rows() -> list[Row]:
    return [
        Row(
            f"published:{name}",
            name,
            "published",
            {"inception": {"fid": fid}},
            note="Lucic et al. 2018 (published)",
        )
        for name, fid in PUBLISHED_FID
    ]


def score_table(inputs: Inputs) -> Table:
    return _build_table(
        "score-table",
        "Variant",
        SCORE_COLUMNS,
        [
            ("variants", _variant_rows(inputs)),
            ("floor", [_floor_row(inputs)]),
            ("published", _published_rows()),
        ],
    )


def detail_table(inputs: Inputs) -> Table:
    return _build_table(
        "classifier-table",
        "Variant",
        DETAIL_COLUMNS,
        [("variants", _variant_rows(inputs, notes=False)), ("floor", [_floor_row(inputs)])],
    )


def _table_html(table: Table, caption: str = "") -> str:
    e = html.escape
    out = [f'<div class="table-wrap"><table id="{e(table.id)}">']
    if caption:
        out.append(f"<caption>{caption}</caption>")
    out.append("<thead>")
    if any(group for group, _ in table.groups):
        out.append('<tr class="groups"><th rowspan="2" scope="col" class="label">')
        out.append(f"{e(table.label_header)}</th>")
        for group, span in table.groups:
            if group:
                out.append(f'<th colspan="{span}" scope="colgroup">{e(group)}</th>')
            else:
                out.append(f'<th colspan="{span}" class="blank"></th>')
        out.append("</tr><tr>")
    else:
        out.append(f'<tr><th scope="col" class="label">{e(table.label_header)}</th>')
    starts = _group_starts(table)
    for i, col in enumerate(table.columns):
        cls = "num group-start" if i in starts else "num"
        title = f' title="{e(col.title)}"' if col.title else ""
        out.append(f'<th scope="col" class="{cls}"{title}>{e(col.header)}</th>')
    out.append("</tr></thead>")
    for css, rows in table.bodies:
        out.append(f'<tbody class="{e(css)}">')
        for row, cells in rows:
            note = f'<span class="row-note">{e(row.note)}</span>' if row.note else ""
            out.append(
                f'<tr class="{row.kind}" data-row="{e(row.key)}">'
                f'<th scope="row" class="label">{e(row.label)}{note}</th>'
            )
            for i, cell in enumerate(cells):
                classes = ["num"]
                if i in starts:
                    classes.append("group-start")
                text = e(cell.text)
                if cell.best:
                    classes.append("best")
                    text = f'<strong>{text}</strong><span class="mark" title="best">★</span>'
                if cell.text == MISSING:
                    classes.append("missing")
                if cell.warn:
                    classes.append("warn")
                out.append(f'<td class="{" ".join(classes)}">{text}</td>')
            out.append("</tr>")
        out.append("</tbody>")
    out.append("</table></div>")
    return "".join(out)


def _group_starts(table: Table) -> set[int]:
    starts, i = set(), 0
    for _, span in table.groups:
        starts.add(i)
        i += span
    return starts


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table_md(table: Table, short_groups: dict[str, str] | None = None) -> str:
    short_groups = short_groups or {}
    headers = [table.label_header]
    for col in table.columns:
        prefix = short_groups.get(col.group, col.group)
        headers.append(f"{prefix} {col.header}".strip())
    lines = [
        "| " + " | ".join(_md_cell(h) for h in headers) + " |",
        "|" + "|".join([":---"] + ["---:"] * len(table.columns)) + "|",
    ]
    for _, rows in table.bodies:
        for row, cells in rows:
            label = f"*{row.label} — {row.note}*" if row.kind == "published" else row.label
            texts = [label]
            for cell in cells:
                texts.append(f"**{cell.text}** ★" if cell.best else cell.text)
            lines.append("| " + " | ".join(_md_cell(t) for t in texts) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Plots (matplotlib's object API: no pyplot, no global backend switch)


@contextmanager
def _plotting() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(_RC):
        yield


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # No "Software" entry: the PNG bytes then depend on the inputs only.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _color(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]


def _series(curves: dict[str, list[float | None]], col: str) -> tuple[list[float], list[float]]:
    xs = curves.get("epoch") or curves.get("step") or []
    ys = curves.get(col) or []
    pairs = [(x, y) for x, y in zip(xs, ys, strict=False) if x is not None and y is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def curves_plot(data: VariantData, index: int) -> bytes | None:
    """Losses per epoch and, beside them, the Wasserstein estimate (critic variants) or the
    mean discriminator outputs D(x), D(G(z)); None without curve data."""
    from matplotlib.figure import Figure

    curves = data.curves
    if not curves:
        return None
    critic = bool(_series(curves, "wasserstein")[0])
    losses = [("d_loss", "critic loss" if critic else "D loss"), ("g_loss", "G loss")]
    losses = [(c, lbl) for c, lbl in losses if _series(curves, c)[0]]
    if critic:
        second = ("Wasserstein estimate", [("wasserstein", "W estimate")])
    elif _series(curves, "d_real")[0] or _series(curves, "d_fake")[0]:
        second = ("Discriminator outputs", [("d_real", "D(x)"), ("d_fake", "D(G(z))")])
    else:
        second = None
    panels = [("Losses", losses)] if losses else []
    if second:
        panels.append(second)
    if not panels:
        return None
    x_name = "epoch" if curves.get("epoch") else "step"
    with _plotting():
        fig = Figure(figsize=(6.0, 2.6), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, series) in zip(axes, panels, strict=True):
            for j, (col, label) in enumerate(series):
                xs, ys = _series(curves, col)
                if not xs:
                    continue
                color = _color(index) if j == 0 else "#555555"
                ax.plot(
                    xs,
                    ys,
                    label=label,
                    color=color,
                    lw=1.4,
                    marker="o" if len(xs) < 15 else None,
                    ms=3,
                )
            ax.set_title(title)
            ax.set_xlabel(x_name)
            ax.legend(loc="best", fontsize=8)
        fig.suptitle(
            f"{data.name}" + (f" — {data.description}" if data.description else ""), fontsize=10
        )
        return _png(fig)


def scores_plot(inputs: Inputs) -> bytes | None:
    """Bars per variant for Inception FID, classifier FID and classifier IS; the real-vs-real
    floor as a dashed line. None when no variant has any of these scores."""
    from matplotlib.figure import Figure

    specs = [
        ("Inception FID (lower is better)", ("inception", "fid")),
        ("MNIST-classifier FID (lower is better)", ("classifier", "fid")),
        ("MNIST-classifier IS (higher is better, max 10)", ("classifier", "is_mean")),
    ]
    names = [v.name for v in inputs.variants]
    panels = []
    for title, keys in specs:
        values = [_num(v.metrics, *keys) for v in inputs.variants]
        if any(val is not None for val in values):
            panels.append((title, values, _num(inputs.floor, *keys)))
    if not panels:
        return None
    with _plotting():
        fig = Figure(figsize=(3.6 * len(panels), 3.0), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, values, floor) in zip(axes, panels, strict=True):
            xs = list(range(len(names)))
            heights = [v if v is not None and math.isfinite(v) else 0.0 for v in values]
            bars = ax.bar(xs, heights, color=[_color(i) for i in xs], width=0.7)
            labels = [_fmt(v, 2) if v is not None else "n/a" for v in values]
            # White boxes keep the labels readable where they cross the floor line.
            box = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"}
            ax.bar_label(bars, labels=labels, fontsize=8, padding=2, bbox=box)
            if floor is not None and math.isfinite(floor):
                ax.axhline(floor, color="black", ls="--", lw=1, label=f"real vs real ({floor:.2f})")
                ax.legend(loc="upper left", fontsize=8)
            finite = [v for v in heights if v > 0] + ([floor] if floor is not None else [])
            if finite and all(math.isfinite(v) for v in finite):
                # Headroom for the value labels and the legend above the tallest bar.
                ax.set_ylim(0, max(finite) * 1.3)
            ax.set_xticks(xs, names, rotation=30, ha="right")
            ax.set_title(title)
            ax.grid(axis="x", visible=False)
        return _png(fig)


# --------------------------------------------------------------------------------------------
# Assets: files copied/written beside comparison.md and embedded into index.html


@dataclass(frozen=True)
class Asset:
    rel: str  # path under the report directory, e.g. "grids/gan.png"
    data: bytes

    @property
    def mime(self) -> str:
        return "image/gif" if self.rel.endswith(".gif") else "image/png"

    def data_uri(self) -> str:
        return f"data:{self.mime};base64," + base64.b64encode(self.data).decode("ascii")


@dataclass(frozen=True)
class Picture:
    """One image with its caption, or a note saying why it is missing."""

    caption: str  # HTML-safe plain text
    asset: Asset | None
    missing: str = ""
    alt: str = ""
    sample_grid: bool = True  # black backdrop while loading
    link: str = ""  # Markdown path when the image lives outside the report's own folders


def _copy_asset(path: Path | None, rel: str) -> Asset | None:
    if path is None:
        return None
    try:
        return Asset(rel, path.read_bytes())
    except OSError:
        return None


def _gif_asset(path: Path | None, rel: str, max_bytes: int) -> tuple[Asset | None, int]:
    """The GIF as is, or, above ``max_bytes``, every k-th frame counted back from the last one
    (the final grid matters most), k growing until it fits; returns the asset and k. index.html embeds every GIF, so one long training run must not make the page
    hundreds of MB."""
    asset = _copy_asset(path, rel)
    if asset is None or len(asset.data) <= max_bytes:
        return asset, 1
    from PIL import Image, ImageSequence

    stride = math.ceil(len(asset.data) / max_bytes)
    try:
        with Image.open(io.BytesIO(asset.data)) as im:
            frames = [f.copy() for f in ImageSequence.Iterator(im)]
            duration = int(im.info.get("duration", 200))
    except (OSError, ValueError, EOFError):
        return asset, 1  # unreadable as a GIF: embed the bytes and let the browser decide
    if len(frames) <= 1:
        return asset, 1
    while True:
        kept = frames[::-1][::stride][::-1]
        buf = io.BytesIO()
        kept[0].save(
            buf,
            format="GIF",
            save_all=True,
            append_images=kept[1:],
            duration=min(duration * stride, 1000),
            loop=0,
        )
        if buf.tell() <= max_bytes or len(kept) == 1:
            return Asset(rel, buf.getvalue()), stride
        stride *= 2


# --------------------------------------------------------------------------------------------
# Page assembly

CSS = """
:root {
  --fg: #1f2328; --muted: #59636e; --border: #d1d9e0; --alt: #f6f8fa;
  --accent: #0969da; --best: #116329; --published: #fff8e1; --floor: #eef5ff;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", "DejaVu Sans", sans-serif;
}
main { max-width: 1320px; margin: 0 auto; padding: 28px 32px 64px; }
h1 { font-size: 1.8rem; line-height: 1.25; margin: 0 0 4px; }
h2 {
  font-size: 1.3rem; margin: 40px 0 12px; padding-bottom: 6px;
  border-bottom: 1px solid var(--border);
}
h3 { font-size: 1.05rem; margin: 24px 0 8px; }
p { margin: 8px 0; max-width: 80ch; }
a { color: var(--accent); }
.lead { color: var(--muted); margin: 0 0 16px; }
.hint { color: var(--muted); font-size: 13px; margin: 0 0 4px; }
nav.toc { font-size: 14px; margin: 12px 0 8px; }
nav.toc a { margin-right: 14px; white-space: nowrap; text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
.table-wrap {
  overflow-x: auto; margin: 12px 0; border: 1px solid var(--border); border-radius: 8px;
}
.table-wrap.compact { display: inline-block; max-width: 100%; vertical-align: top; }
table { border-collapse: collapse; font-size: 13.5px; width: max-content; min-width: 100%; }
caption { caption-side: bottom; text-align: left; padding: 8px 12px; color: var(--muted);
  font-size: 13px; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--border); white-space: nowrap;
  text-align: left; }
thead th { background: var(--alt); font-weight: 600; vertical-align: bottom; }
thead tr.groups th { text-align: center; border-bottom: 1px solid var(--border); }
th.label { text-align: left; position: sticky; left: 0; background: #fff; z-index: 1;
  border-right: 1px solid var(--border); white-space: normal; min-width: 9em; max-width: 15em; }
thead th.label { background: var(--alt); }
.row-note { display: block; font-weight: 400; font-size: 12px; color: var(--muted); }
tbody th.label { font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.group-start { border-left: 1px solid var(--border); }
td.best { color: var(--best); background: #e8f5ec; }
td.best .mark { margin-left: 3px; font-size: 11px; }
td.missing { color: #8c959f; }
td.warn { color: #b42318; background: #fdecea; font-weight: 600; }
tbody.floor td, tbody.floor th.label { background: var(--floor); }
tbody.floor tr { border-top: 2px solid var(--border); }
tbody.published td, tbody.published th.label { background: var(--published); color: #5c4500; }
tbody.published th.label { font-style: italic; font-weight: 500; }
tbody tr:last-child td, tbody tr:last-child th { border-bottom: 1px solid var(--border); }
.footnotes { font-size: 13px; color: var(--muted); margin: 6px 0 0; padding-left: 18px; }
.footnotes li { margin: 3px 0; max-width: 100ch; }
.gallery {
  display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 14px;
  margin: 12px 0;
}
.gallery.wide { grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); }
figure { margin: 0; padding: 8px; border: 1px solid var(--border); border-radius: 8px;
  background: #fff; }
figure img { display: block; width: 100%; height: auto; }
figure img.sample-grid { background: #000; }
/* Grids are shown near their native size (302 px for 10x10 MNIST): smooth scaling reads
   better than pixelated when they are shrunk to fit five across. */
figcaption { font-size: 13px; color: var(--muted); margin-top: 6px; line-height: 1.4; }
figcaption strong { color: var(--fg); }
.placeholder {
  aspect-ratio: 1 / 1; display: flex; align-items: center; justify-content: center;
  padding: 12px; text-align: center; font-size: 13px; color: var(--muted);
  background: var(--alt); border: 1px dashed var(--border); border-radius: 4px;
}
.gallery.wide .placeholder { aspect-ratio: 8 / 3; }
.plot { margin: 12px 0; }
.plot img { max-width: 100%; height: auto; display: block; }
pre { background: var(--alt); padding: 12px 14px; border-radius: 8px; overflow-x: auto; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono",
  monospace; font-size: 13px; }
p code, li code, td code { background: var(--alt); padding: 1px 4px; border-radius: 4px; }
.callout { border-left: 4px solid #d4a72c; background: var(--published); padding: 8px 12px;
  border-radius: 4px; font-size: 14px; max-width: 100ch; }
.notes li { font-size: 13px; color: var(--muted); }
footer { margin-top: 48px; font-size: 12px; color: var(--muted); }
""".strip()


@dataclass
class Report:
    """The rendered report, before anything is written."""

    html: str
    markdown: str
    assets: list[Asset]
    scores_csv: str = ""


SCORES_CSV_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("n_generated", ("n_generated",)),
    ("n_real", ("n_real",)),
    *(
        (f"inception_{key}", ("inception", key))
        for key in ("fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall")
    ),
    *(
        (f"classifier_{key}", ("classifier", key))
        for key in (
            "fid",
            "is_mean",
            "is_std",
            "kid_mean",
            "kid_std",
            "precision",
            "recall",
            "coverage",
            "kl_uniform",
            "label_accuracy",
        )
    ),
)
FLOOR_CSV_NAME = "floor (real vs real)"


def scores_csv(inputs: Inputs) -> str:
    """One row per variant plus the floor, every score as a full-precision number (empty when
    missing): the data of `dvc plots show` and of any further analysis."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["variant", *(name for name, _ in SCORES_CSV_FIELDS), "train_time_s", "steps_per_s"]
    )
    rows = [(v.name, v.metrics, v.summary) for v in inputs.variants]
    rows.append((FLOOR_CSV_NAME, inputs.floor, None))
    for name, metrics, summary in rows:
        values = [_num(metrics, *keys) for _, keys in SCORES_CSV_FIELDS]
        values += [_num(summary, "train_time_s"), _num(summary, "steps_per_s")]
        writer.writerow([name, *("" if v is None else repr(v) for v in values)])
    return buf.getvalue()


def _figure_html(fig: Picture) -> str:
    e = html.escape
    if fig.asset is None:
        body = f'<div class="placeholder">{e(fig.missing)}</div>'
    else:
        cls = ' class="sample-grid"' if fig.sample_grid else ""
        body = f'<img src="{fig.asset.data_uri()}" alt="{e(fig.alt)}"{cls}>'
    return f"<figure>{body}<figcaption>{fig.caption}</figcaption></figure>"


def _gallery_html(figs: list[Picture], wide: bool = False) -> str:
    cls = "gallery wide" if wide else "gallery"
    return f'<div class="{cls}">' + "".join(_figure_html(f) for f in figs) + "</div>"


def _figure_md(fig: Picture, plain_caption: str) -> str:
    if fig.asset is None:
        return f"- {plain_caption}: *{fig.missing}*"
    target = fig.link or fig.asset.rel
    return f"![{fig.alt}]({target})  \n*{plain_caption}*"


def _caption(name: str, description: str, extra: str = "") -> tuple[str, str]:
    e = html.escape
    parts = [p for p in (description, extra) if p]
    tail = " — " + "; ".join(parts) if parts else ""
    return f"<strong>{e(name)}</strong>{e(tail)}", f"{name}{tail}"


def _networks(inputs: Inputs) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"inception": [], "classifier": []}
    for metrics in [v.metrics for v in inputs.variants] + [inputs.floor]:
        for group in seen:
            net = _get(metrics, group, "network")
            if isinstance(net, str) and net not in seen[group]:
                seen[group].append(net)
    return seen


def render(inputs: Inputs) -> Report:
    """Build the HTML page, the Markdown twin and the image assets in memory."""
    params = inputs.params
    e = html.escape
    out_dir = params.path(params.report.out_dir)
    assets: list[Asset] = []
    h: list[str] = []  # HTML body
    md: list[str] = []  # Markdown

    names = [v.name for v in inputs.variants]
    h.append("<h1>GAN variants on MNIST: comparison</h1>")
    h.append(
        '<p class="lead">'
        + (e(", ".join(names)) if names else "No variants in params.yaml")
        + " — scored against the MNIST test set with Inception-v3 features (torch-fidelity) "
        "and with the project's MNIST classifier.</p>"
    )
    sections = [
        ("scores", "Scores"),
        ("samples", "Samples"),
        ("progress", "Training progression"),
        ("curves", "Training curves"),
        ("hyper", "Hyperparameters"),
    ]
    if any(v.tuning or v.tuning_plots for v in inputs.variants):
        sections.append(("tuning", "Tuning"))
    sections.append(("mlflow", "MLflow"))
    if inputs.notes:
        sections.append(("inputs", "Missing inputs"))
    h.append(
        '<nav class="toc">' + "".join(f'<a href="#{a}">{e(t)}</a>' for a, t in sections) + "</nav>"
    )
    md.append("# GAN variants on MNIST: comparison\n")
    md.append(
        "Scored against the MNIST test set with Inception-v3 features (torch-fidelity) and with "
        "the project's MNIST classifier. The self-contained page is `index.html`.\n"
    )

    # ---- scores
    table = score_table(inputs)
    details = detail_table(inputs)
    nets = _networks(inputs)
    acc = _num(inputs.classifier, "test_accuracy")
    acc_text = f"{acc:.2%}" if acc is not None else MISSING
    floor_n = int(_num(inputs.floor, "n_generated") or params.evaluate.floor_n)
    net_notes = []
    for group, label in (("inception", "Inception"), ("classifier", "classifier")):
        if nets[group]:
            net_notes.append(f"{label} scores: {', '.join(nets[group])}")
    footnotes = [
        "★ and bold: best of our variants in that column (↓ lower is better, ↑ higher is "
        "better); the floor and the published rows are not ranked. — : input missing; "
        f"{NOT_APPLICABLE}: not applicable (label accuracy of an unconditional variant).",
        "† Precision and recall (Kynkäänniemi et al. 2019) are computed by torch-fidelity on "
        "VGG16 features, not Inception-v3.",
        "IS and KID are mean ± std over subsets; KID is shown ×10³. MNIST-classifier scores "
        "use the penultimate features of the evaluator CNN (IS on its softmax, at most 10); coverage counts the "
        f"digits that get at least {COVERAGE_MIN_SHARE:.0%} of the samples, KL is the "
        "divergence (nats) of the predicted-class histogram from uniform. Evaluator test "
        f"accuracy: {acc_text}.",
        f"The real-vs-real row scores {floor_n:,} MNIST train images against "
        "the test set: the best a generator can reasonably reach.",
        f"Published reference rows (italic, not our runs): {PUBLISHED_SOURCE}, MNIST Inception "
        "FID, best of 100 hyperparameter settings per model, 10k samples vs the test set.",
    ]
    if net_notes:
        footnotes.append("Feature networks — " + "; ".join(net_notes) + ".")
    footnotes.append("Every score at full precision: scores.csv, beside this report.")
    h.append('<h2 id="scores">Scores</h2>')
    h.append(
        '<p class="hint">On a narrow screen the table scrolls sideways; the variant column '
        "stays in place.</p>"
    )
    h.append(_table_html(table))
    h.append('<ul class="footnotes">' + "".join(f"<li>{e(n)}</li>" for n in footnotes) + "</ul>")

    md.append("## Scores\n")
    md.append(_table_md(table, {INCEPTION: "Inception", CLASSIFIER: "Classifier"}) + "\n")
    md.extend(f"- {n}" for n in footnotes)
    md.append("")

    plot = scores_plot(inputs)
    if plot is not None:
        asset = Asset("plots/scores.png", plot)
        assets.append(asset)
        h.append(
            '<div class="plot"><img src="'
            + asset.data_uri()
            + '" alt="Bar charts of FID and IS per variant, with the real-vs-real floor"></div>'
        )
        md.append(f"![Scores per variant]({asset.rel})\n")
    else:
        h.append("<p>No scores yet: no variant has metrics.</p>")
        md.append("*No scores yet: no variant has metrics.*\n")

    h.append("<h3>MNIST classifier: class balance and the other scores</h3>")
    h.append(
        "<p>Share of the generated samples the evaluator assigns to each digit: 10% each is "
        f"perfectly balanced; red marks a digit below {COVERAGE_MIN_SHARE:.0%}, not covered "
        "(mode collapse).</p>"
    )
    h.append(_table_html(details))
    md.append("### MNIST classifier: class balance and the other scores\n")
    md.append(_table_md(details, {CLASSIFIER: "Classifier", DIGITS: "% digit"}) + "\n")

    # ---- samples
    grid_figs, sample_figs, progress_figs, md_samples, md_scored, md_progress = (
        [],
        [],
        [],
        [],
        [],
        [],
    )
    for v in inputs.variants:
        layout = "rows are digits 0–9" if v.conditional else "fixed noise shared by all variants"
        epochs = _num(v.summary, "epochs")
        extra = f"{layout}; after {int(epochs)} epochs" if epochs is not None else layout
        cap_html, cap_md = _caption(v.name, v.description, extra)
        asset = _copy_asset(v.grid, f"grids/{v.name}.png")
        grid_figs.append(
            Picture(
                cap_html,
                asset,
                f"No final grid ({params.train.out_dir}/{v.name}/grid.png missing)",
                f"{v.name}: final sample grid",
            )
        )
        md_samples.append(_figure_md(grid_figs[-1], cap_md))

        cap_html, cap_md = _caption(v.name, "", "preview of the scored samples")
        asset = _copy_asset(v.samples, f"grids/{v.name}_samples.png")
        sample_figs.append(
            Picture(
                cap_html,
                asset,
                f"No preview ({params.sample.out_dir}/{v.name}/grid.png missing)",
                f"{v.name}: scored samples",
            )
        )
        md_scored.append(_figure_md(sample_figs[-1], cap_md))

        max_bytes = int(params.report.gif_max_mb * 1024 * 1024)
        asset, stride = _gif_asset(v.progress, f"grids/{v.name}_progress.gif", max_bytes)
        extra = "sample grid over training"
        if stride > 1:
            extra += f" (one frame in {stride}, to keep the page small)"
        cap_html, cap_md = _caption(v.name, "", extra)
        progress_figs.append(
            Picture(
                cap_html,
                asset,
                f"No progression GIF ({params.train.out_dir}/{v.name}/progress.gif missing)",
                f"{v.name}: training progression",
            )
        )
        md_progress.append(_figure_md(progress_figs[-1], cap_md))
    for fig in grid_figs + sample_figs + progress_figs:
        if fig.asset is not None:
            assets.append(fig.asset)

    h.append('<h2 id="samples">Samples</h2>')
    h.append(
        "<p>Final 10×10 sample grid of each generator: the same fixed noise for every "
        "unconditional variant; conditional variants show the digits 0–9 in rows.</p>"
    )
    h.append(_gallery_html(grid_figs))
    h.append("<h3>Previews of the scored samples</h3>")
    h.append(_gallery_html(sample_figs))
    md.append("## Samples\n")
    md.append(
        "Final 10×10 sample grids (same fixed noise for unconditional variants; conditional: digits 0–9 in rows).\n"
    )
    md.extend(s + "\n" for s in md_samples)
    md.append("### Previews of the scored samples\n")
    md.extend(s + "\n" for s in md_scored)

    h.append('<h2 id="progress">Training progression</h2>')
    h.append("<p>The fixed-noise grid after each epoch, as an animation.</p>")
    h.append(_gallery_html(progress_figs))
    md.append("## Training progression\n")
    md.extend(s + "\n" for s in md_progress)

    # ---- curves
    curve_figs, md_curves = [], []
    for i, v in enumerate(inputs.variants):
        png = curves_plot(v, i)
        cap_html, cap_md = _caption(v.name, "", "per-epoch means")
        asset = Asset(f"plots/curves_{v.name}.png", png) if png else None
        if asset:
            assets.append(asset)
        curve_figs.append(
            Picture(
                cap_html,
                asset,
                f"No training curves ({params.evaluate.out_dir}/curves/{v.name}.csv missing or empty)",
                f"{v.name}: training curves",
                sample_grid=False,
            )
        )
        md_curves.append(_figure_md(curve_figs[-1], cap_md))
    h.append('<h2 id="curves">Training curves</h2>')
    h.append(
        "<p>Discriminator/critic and generator losses per epoch; beside them the critic's "
        "Wasserstein estimate for critic variants, or the mean discriminator outputs D(x) and "
        "D(G(z)) otherwise. Loss scales differ between objectives: compare shapes, not "
        "values.</p>"
    )
    h.append(_gallery_html(curve_figs, wide=True))
    md.append("## Training curves\n")
    md.extend(s + "\n" for s in md_curves)

    # ---- hyperparameters
    hyper_html, hyper_md = _hyper_section(inputs, acc_text)
    h.append('<h2 id="hyper">Hyperparameters and training</h2>')
    h.append(hyper_html)
    md.append("## Hyperparameters and training\n")
    md.append(hyper_md)

    # ---- tuning
    if any(v.tuning or v.tuning_plots for v in inputs.variants):
        tune_html, tune_md = _tuning_section(inputs, out_dir)
        h.append('<h2 id="tuning">Tuning: best trial vs defaults</h2>')
        h.append(tune_html)
        md.append("## Tuning: best trial vs defaults\n")
        md.append(tune_md)

    # ---- MLflow
    ml_html, ml_md = _mlflow_section(inputs)
    h.append('<h2 id="mlflow">Browse the runs in MLflow</h2>')
    h.append(ml_html)
    md.append("## Browse the runs in MLflow\n")
    md.append(ml_md)

    # ---- notes
    if inputs.notes:
        h.append('<h2 id="inputs">Missing inputs</h2>')
        h.append("<p>These inputs were missing or unreadable; their cells show “—”.</p>")
        h.append(
            '<ul class="notes">'
            + "".join(f"<li><code>{e(n)}</code></li>" for n in inputs.notes)
            + "</ul>"
        )
        md.append("## Missing inputs\n")
        md.extend(f"- `{n}`" for n in inputs.notes)
        md.append("")

    h.append(
        "<footer>Built by <code>pipeline report</code> from params.yaml and the outputs of the "
        "DVC stages; rebuilding from the same inputs gives the same bytes.</footer>"
    )
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>GAN variants on MNIST: comparison</title>\n"
        f"<style>\n{CSS}\n</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(h)
        + "\n</main>\n</body>\n</html>\n"
    )
    markdown = "\n".join(md).rstrip() + "\n"
    return Report(page, markdown, assets, scores_csv(inputs))


def _plain_table_html(
    table_id: str, headers: list[str], rows: list[list[str]], text_cols: set[int]
) -> str:
    """A one-header table; column 0 is the row label, ``text_cols`` are left-aligned."""
    e = html.escape

    def cls(i: int) -> str:
        return "label" if i == 0 else ("text" if i in text_cols else "num")

    out = [f'<div class="table-wrap"><table id="{e(table_id)}"><thead><tr>']
    out.extend(f'<th scope="col" class="{cls(i)}">{e(hd)}</th>' for i, hd in enumerate(headers))
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append(f'<tr><th scope="row" class="label">{e(row[0])}</th>')
        out.extend(f'<td class="{cls(i)}">{e(c)}</td>' for i, c in enumerate(row) if i > 0)
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _hyper_section(inputs: Inputs, acc_text: str) -> tuple[str, str]:
    e = html.escape
    headers = [
        "Variant",
        "Optimizer",
        "lr",
        "Betas",
        "n_critic",
        "Options",
        "Epochs",
        "Steps",
        "Train time",
        "Steps/s",
        "Device",
    ]
    rows = []
    for v in inputs.variants:
        hyper = _get(v.summary, "hyper")
        source = "summary.json"
        if not isinstance(hyper, dict):
            hyper = v.configured or {}
            source = "params.yaml (not trained yet)" if v.configured else ""
        epochs = _get(v.summary, "epochs")
        epochs = epochs if epochs is not None else hyper.get("epochs")
        optimizer = hyper.get("optimizer")
        betas = hyper.get("betas")
        rows.append(
            [
                v.name,
                str(optimizer) if optimizer is not None else MISSING,
                _fmt_sci(hyper["lr"]) if "lr" in hyper else MISSING,
                # RMSprop ignores the betas; showing them would suggest otherwise.
                NOT_APPLICABLE
                if optimizer == "rmsprop"
                else (_fmt_sci(betas) if betas is not None else MISSING),
                str(hyper["n_critic"]) if "n_critic" in hyper else MISSING,
                _fmt_sci(hyper["options"]) if "options" in hyper else MISSING,
                f"{epochs:,}" if isinstance(epochs, int) else MISSING,
                _fmt_int(_num(v.summary, "steps")) or MISSING,
                _fmt_duration(_num(v.summary, "train_time_s")) or MISSING,
                _fmt(_num(v.summary, "steps_per_s"), 1) or MISSING,
                str(_get(v.summary, "device") or MISSING),
            ]
        )
        if source and source != "summary.json":
            rows[-1][0] = f"{v.name} (configured)"
    out = [_plain_table_html("hyper-table", headers, rows, text_cols={1, 5, 10})]
    text = (
        "<p>Hyperparameters as trained (from each variant's <code>summary.json</code>); "
        f"MNIST evaluator (classifier) test accuracy: <strong>{e(acc_text)}</strong>.</p>"
    )
    configured_note = ""
    if any(row[0].endswith(" (configured)") for row in rows):
        configured_note = (
            "(configured): no readable summary.json, so these are the hyperparameters "
            "configured in params.yaml, not those of a finished run."
        )
        out.append(f'<ul class="footnotes"><li>{e(configured_note)}</li></ul>')
    md_lines = [
        "Hyperparameters as trained (from each variant's `summary.json`); MNIST evaluator "
        f"(classifier) test accuracy: **{acc_text}**.\n",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|",
    ]
    md_lines.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows)
    if configured_note:
        md_lines.extend(["", f"- {configured_note}"])
    return text + "".join(out), "\n".join(md_lines) + "\n"


def _tuning_section(inputs: Inputs, out_dir: Path) -> tuple[str, str]:
    params = inputs.params
    tuning_dir = params.path(params.tune.out_dir)
    headers = [
        "Variant",
        "Study",
        "Trials (complete / pruned / failed)",
        "Defaults",
        "Best trial",
        "Change",
        "Best parameters",
    ]
    rows = []
    figs: list[Picture] = []
    md_figs: list[str] = []
    for v in inputs.variants:
        if v.tuning is None and not v.tuning_plots:
            continue
        t = v.tuning or {}
        trials = t.get("trials") if isinstance(t.get("trials"), dict) else {}
        trial_text = (
            " / ".join(str(trials.get(k, 0)) for k in ("COMPLETE", "PRUNED", "FAIL"))
            if trials
            else MISSING
        )
        best = _num(t, "best_value")
        default = _num(t, "default_value")
        change = MISSING
        if best is not None and default not in (None, 0.0):
            change = f"{(best - default) / abs(default):+.1%}"  # type: ignore[operator]
        best_params = t.get("best_params")
        rows.append(
            [
                v.name,
                str(t.get("study", MISSING)),
                trial_text,
                _fmt(default, 3) or MISSING,
                _fmt(best, 3) or MISSING,
                change,
                _fmt_sci(best_params) if isinstance(best_params, dict) else MISSING,
            ]
        )
        for plot in v.tuning_plots:
            rel = f"tuning/{v.name}/{plot.name}"
            asset = _copy_asset(plot, rel)
            cap_html, cap_md = _caption(v.name, "", plot.stem.replace("_", " "))
            link = Path(os.path.relpath(plot, out_dir)).as_posix()
            figs.append(
                Picture(
                    cap_html,
                    asset,
                    f"{plot.name} unreadable",
                    f"{v.name}: {plot.stem}",
                    sample_grid=False,
                    link=link,
                )
            )
            md_figs.append(_figure_md(figs[-1], cap_md))
    intro = (
        "Optuna studies (<code>pipeline tune VARIANT</code>): the objective of the best trial "
        "against the same objective with the published defaults (lower is better for the "
        "default objective, the MNIST-classifier FID). Apply a best trial with "
        "<code>pipeline tune VARIANT --apply</code>, then <code>dvc repro</code>."
    )
    out = [f"<p>{intro}</p>", _plain_table_html("tuning-table", headers, rows, text_cols={1, 6})]
    if figs:
        out.append(_gallery_html(figs, wide=True))
    md_lines = [
        "Optuna studies (`pipeline tune VARIANT`): best trial vs the published defaults on the "
        "same objective (lower is better for the default objective, the MNIST-classifier FID). "
        f"Study outputs live in `{_rel(tuning_dir, params.root)}/`.\n",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|",
    ]
    md_lines.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows)
    md_lines.append("")
    md_lines.extend(s + "\n" for s in md_figs)
    # Tuning plots already live under the tuning folder; they are embedded, not copied.
    return "".join(out), "\n".join(md_lines)


def _mlflow_section(inputs: Inputs) -> tuple[str, str]:
    from pipeline.tracking import resolve_uri

    e = html.escape
    params = inputs.params
    uri = resolve_uri(params)
    command = f"mlflow ui --backend-store-uri {shlex.quote(uri)}"
    runs = [(v.name, _get(v.summary, "run_id")) for v in inputs.variants]
    h = [
        "<p>Every training run is logged to MLflow (parameters, per-epoch metrics, sample "
        f"grids and the model) in the experiment <code>{e(params.tracking.experiment)}</code>. "
        "Start the UI with</p>",
        f"<pre><code>{e(command)}</code></pre>",
        '<p>and open <a href="http://127.0.0.1:5000">http://127.0.0.1:5000</a>. Runs of this '
        "report:</p>",
        '<div class="table-wrap compact"><table id="runs-table"><thead><tr>'
        '<th scope="col" class="label">Variant</th><th scope="col">MLflow run id</th>'
        "</tr></thead><tbody>",
    ]
    for name, run_id in runs:
        cell = f"<code>{e(str(run_id))}</code>" if run_id else MISSING
        h.append(f'<tr><th scope="row" class="label">{e(name)}</th><td>{cell}</td></tr>')
    h.append("</tbody></table></div>")
    md = [
        "Every training run is logged to MLflow in the experiment "
        f"`{params.tracking.experiment}`. Start the UI with\n",
        "```sh",
        command,
        "```\n",
        "and open <http://127.0.0.1:5000>. Runs of this report:\n",
        "| Variant | MLflow run id |",
        "|:---|:---|",
    ]
    md.extend(f"| {name} | {f'`{run_id}`' if run_id else MISSING} |" for name, run_id in runs)
    return "".join(h), "\n".join(md) + "\n"


# --------------------------------------------------------------------------------------------
# Entry point


def write_report(report: Report, out_dir: Path) -> Path:
    """Write plots/ and grids/, scores.csv, comparison.md and last index.html, each atomically;
    return the path of index.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_top: dict[str, list[Asset]] = {}
    for asset in report.assets:
        top = asset.rel.split("/", 1)[0]
        by_top.setdefault(top, []).append(asset)
    for top in ("plots", "grids"):
        # Each folder is swapped in whole, so files of a variant dropped from params go too.
        with atomic_dir(out_dir / top) as tmp:
            for asset in by_top.get(top, []):
                target = tmp / asset.rel.split("/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(asset.data)
    # Assets under other folders (the tuning plots) are already where comparison.md points.
    _write_utf8(out_dir / "scores.csv", report.scores_csv)
    _write_utf8(out_dir / "comparison.md", report.markdown)
    index = out_dir / "index.html"
    _write_utf8(index, report.html)
    return index


def _write_utf8(path: Path, text: str) -> None:
    # Explicit UTF-8 (the page has "—", "★", "±"): the locale's encoding may be ASCII.
    with atomic_path(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))


def build_report(params: Params) -> Path:
    """Read every stage's outputs and write the report; returns the path of index.html."""
    inputs = read_inputs(params)
    report = render(inputs)
    return write_report(report, params.path(params.report.out_dir))
