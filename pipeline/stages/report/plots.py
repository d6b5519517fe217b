"""The report's matplotlib figures (object API: no pyplot, no global backend switch), written
as PNGs without version metadata so the same inputs give the same bytes.

Curve panels come from the columns present in each variant's curves CSV, never from a fixed
list: losses together, D outputs together, gradient norms together, and every other numeric
column as its own panel. A model family logging new metrics gets panels without an edit here.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pipeline.infra.metrics import value
from pipeline.stages.report import fmt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pipeline.stages.report.inputs import Curves, Inputs, VariantData

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
PALETTE = (
    "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3",
    "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd",
)  # fmt: skip

X_COLUMNS = ("epoch", "step", "g_iters")
"""Counters: candidates for the x axis, never a panel."""
BOOKKEEPING = ("elapsed_s",)
"""Wall-clock bookkeeping: not a training curve."""
QUALITY_COLUMNS = ("clf_fid", "clf_kid", "score_s")
"""The quality curve (pipeline/training/quality.py): the report's "Quality over training"
section draws it, not the variant's training-curve panels."""
LABELS = {
    "d_loss": "D loss", "g_loss": "G loss", "d_real": "D(x)", "d_fake": "D(G(z))",
    "wasserstein": "W estimate", "grad_norm_d": "‖∇D‖", "grad_norm_g": "‖∇G‖",
}  # fmt: skip
GROUPS: tuple[tuple[str, Any], ...] = (
    ("Losses", lambda c: c.endswith("loss")),
    ("Discriminator outputs", lambda c: c in ("d_real", "d_fake")),
    ("Gradient norms", lambda c: c.startswith("grad_norm")),
    ("Wasserstein estimate", lambda c: c == "wasserstein"),
    ("Penalty", lambda c: c in ("gp", "penalty")),
)


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


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


def _x_name(curves: Curves) -> str | None:
    return next(
        (c for c in ("epoch", "step") if any(v is not None for v in curves.get(c, []))), None
    )


def _series(curves: Curves, x: str, col: str) -> tuple[list[float], list[float]]:
    pairs = [
        (a, b)
        for a, b in zip(curves.get(x, []), curves.get(col, []), strict=False)
        if a is not None and b is not None and math.isfinite(b)
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def curve_panels(curves: Curves) -> list[tuple[str, list[str]]]:
    """(title, columns) per panel, from the columns that hold at least one number."""
    x = _x_name(curves)
    if x is None:
        return []
    present = [
        c for c in curves
        if c not in (*X_COLUMNS, *BOOKKEEPING, *QUALITY_COLUMNS) and _series(curves, x, c)[0]
    ]  # fmt: skip
    panels: list[tuple[str, list[str]]] = []
    taken: set[str] = set()
    for title, member in GROUPS:
        cols = [c for c in present if member(c)]
        if cols:
            panels.append((title, cols))
            taken.update(cols)
    panels.extend((c, [c]) for c in present if c not in taken)
    return panels


def curves_plot(data: VariantData, index: int) -> bytes | None:
    """One panel per group of curve columns (see :func:`curve_panels`); None without data."""
    from matplotlib.figure import Figure

    curves = data.curves
    panels = curve_panels(curves) if curves else []
    if not curves or not panels:
        return None
    x = _x_name(curves) or "epoch"
    critic = "wasserstein" in {c for _, cols in panels for c in cols}
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    with _plotting():
        fig = Figure(figsize=(3.0 * ncols, 2.4 * nrows + 0.3), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, (title, cols) in zip(axes, panels, strict=False):
            for j, col in enumerate(cols):
                xs, ys = _series(curves, x, col)
                label = "critic loss" if critic and col == "d_loss" else LABELS.get(col, col)
                ax.plot(
                    xs, ys, label=label, color=color(index) if j == 0 else ("#555555", "#c44e52")[j % 2],
                    lw=1.4, marker="o" if len(xs) < 15 else None, ms=3,
                )  # fmt: skip
            ax.set_title(title)
            ax.set_xlabel(x)
            if len(cols) > 1:
                ax.legend(loc="best", fontsize=8)
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        fig.suptitle(
            f"{data.name}" + (f" — {data.description}" if data.description else ""), fontsize=10
        )
        return _png(fig)


SCORE_PLOTS = (
    ("Inception FID (lower is better)", "inception", "fid"),
    ("MNIST-classifier FID (lower is better)", "classifier", "fid"),
    ("MNIST-classifier IS (higher is better, max 10)", "classifier", "is_mean"),
)


def scores_plot(inputs: Inputs) -> bytes | None:
    """Bars per variant for Inception FID, classifier FID and classifier IS; the real-vs-real
    floor as a dashed line. None when no variant has any of these scores."""
    from matplotlib.figure import Figure

    names = [v.name for v in inputs.variants]
    panels = []
    for title, extractor, key in SCORE_PLOTS:
        values = [value(v.metrics, extractor, key) for v in inputs.variants]
        if any(val is not None for val in values):
            panels.append((title, values, value(inputs.floor, extractor, key)))
    if not panels:
        return None
    with _plotting():
        fig = Figure(figsize=(3.6 * len(panels), 3.0), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, values, floor) in zip(axes, panels, strict=True):
            xs = list(range(len(names)))
            heights = [v if v is not None and math.isfinite(v) else 0.0 for v in values]
            bars = ax.bar(xs, heights, color=[color(i) for i in xs], width=0.7)
            labels = [fmt.fixed(v, 2) if v is not None else "n/a" for v in values]
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


def seeds_plot(
    titles: list[str],
    names: list[str],
    panels: list[list[tuple[list[float], Any]]],
) -> bytes | None:
    """One panel per metric: per variant (a row) each seed's value as a dot, the mean as a
    bar and the bootstrap interval as a line (a ``stats.Summary``). None without values."""
    from matplotlib.figure import Figure

    if not names or not any(vals for panel in panels for vals, _ in panel):
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    with _plotting():
        fig = Figure(figsize=(3.4 * ncols, (0.28 * len(names) + 0.9) * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        ys = list(range(len(names)))
        for ax, title, panel in zip(axes, titles, panels, strict=False):
            for y, (vals, summary) in zip(ys, panel, strict=True):
                c = color(y)
                if summary is not None and summary.low is not None:
                    ax.hlines(y, summary.low, summary.high, color=c, lw=2.5, alpha=0.5)
                if summary is not None:
                    ax.vlines(summary.mean, y - 0.3, y + 0.3, color=c, lw=2)
                ax.scatter(vals, [y] * len(vals), s=14, color="black", zorder=3)
            ax.set_yticks(ys, names)
            ax.invert_yaxis()
            ax.set_title(title)
            ax.grid(axis="y", visible=False)
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        return _png(fig)
