"""The report's "Quality over training" section: each variant's quality curve (classifier FID
every ``train.score_every`` epochs, pipeline/training/quality.py) against epochs and against
training seconds, the best epoch marked against the last, and what the curve cost."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pipeline.report import fmt
from pipeline.report.assets import Asset
from pipeline.report.page import Section, plot, prose, table
from pipeline.report.plots import _plotting, _png, color
from pipeline.report.tables import plain_table

if TYPE_CHECKING:
    from pipeline.report.inputs import Inputs, VariantData

FID, TRAIN_S, SCORE_S = "clf_fid", "elapsed_s", "score_s"


def points(v: VariantData) -> list[tuple[int, float, float | None]]:
    """(epoch, FID, training seconds) of a variant's scored epochs, in epoch order."""
    c = v.curves or {}
    out = []
    for e, f, s in zip(c.get("epoch", []), c.get(FID, []), c.get(TRAIN_S, []), strict=False):
        if e is not None and f is not None and math.isfinite(f):
            out.append((int(e), f, s))
    return out


def _plot(curves: list[tuple[int, VariantData, list[tuple[int, float, float | None]]]]) -> bytes:
    from matplotlib.figure import Figure

    with _plotting():
        fig = Figure(figsize=(9.0, 3.4), layout="constrained")
        by_epoch, by_time = fig.subplots(1, 2)
        for i, v, pts in curves:
            best = min(pts, key=lambda p: p[1])
            for ax, xi in ((by_epoch, 0), (by_time, 2)):
                xy = [(p[xi], p[1]) for p in pts if p[xi] is not None]
                if not xy:
                    continue
                ax.plot(*zip(*xy, strict=True), color=color(i), lw=1.4, marker="o", ms=3,
                        label=v.name)  # fmt: skip
                if best[xi] is not None:
                    ax.plot(best[xi], best[1], marker="*", ms=11, color=color(i), mec="black")
        by_epoch.set_xlabel("epoch")
        by_time.set_xlabel("training seconds")
        for ax in (by_epoch, by_time):
            ax.set_ylabel("classifier FID")
            ax.set_yscale("log")
        by_epoch.set_title("FID vs epoch (★ best epoch)")
        by_time.set_title("FID vs training time")
        by_epoch.legend(loc="upper right", fontsize=8, ncols=2)
        return _png(fig)


def quality_section(inputs: Inputs) -> tuple[Section | None, list[Asset]]:
    """The section, or None when no variant has a quality curve (score_every 0, old runs)."""
    curves = [(i, v, pts) for i, v in enumerate(inputs.variants) if (pts := points(v))]
    if not curves:
        return None, []
    rows = []
    for _, v, pts in curves:
        best, last = min(pts, key=lambda p: p[1]), pts[-1]
        c = v.curves or {}
        spent = sum(s for s in c.get(SCORE_S, []) if s is not None and math.isfinite(s))
        trained = last[2]
        share = f"{spent / trained:.1%}" if trained else fmt.MISSING
        gap = f"{last[1] - best[1]:+.2f}" if best is not last else "0 (last is best)"
        rows.append([v.name, str(best[0]), fmt.fixed(best[1], 2) or fmt.MISSING,
                     str(last[0]), fmt.fixed(last[1], 2) or fmt.MISSING, gap, share])  # fmt: skip
    t = plain_table(
        "quality-table",
        ["Variant", "Best epoch", "Best FID", "Last epoch", "Last FID", "Last − best",
         "Scoring cost"],
        rows,
    )  # fmt: skip
    n = inputs.params.train.score_n
    asset = Asset("plots/quality.png", _plot(curves))
    blocks = [
        prose(
            f"Classifier FID of {n:,} samples from fixed latents, scored during training every "
            f"{inputs.params.train.score_every} epochs and after the last (`train.score_every`,"
            " `train.score_n`), against the evaluation reference; one run per variant. Fewer "
            "samples than the final scores: compare the curve's shape and its best epoch, "
            "not its values with the tables above. Training seconds exclude the scoring; its "
            "cost is the scoring seconds as a share of them."
        ),
        plot(asset, "Classifier FID per variant against epoch and training seconds"),
        table(t),
    ]
    return Section("quality", "Quality over training", "Quality over training", blocks), [asset]
