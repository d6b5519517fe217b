"""The report's "Quality over training" section: each variant's quality curve (classifier FID
every ``train.score_every`` epochs, pipeline/training/quality.py) against epochs and against
training seconds, the best epoch marked against the last, and what the curve cost."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.stages.report import fmt
from pipeline.stages.report.assets import Asset
from pipeline.stages.report.page import Section, plot, prose, table
from pipeline.stages.report.plots import _plotting, _png, color
from pipeline.stages.report.tables import plain_table

if TYPE_CHECKING:
    from pipeline.stages.report.inputs import Curves, Inputs, VariantData

FID, TRAIN_S, SCORE_S = "clf_fid", "elapsed_s", "score_s"


def points(curves: Curves | None) -> list[tuple[int, float, float | None]]:
    """(epoch, FID, training seconds) of one run's scored epochs, in epoch order."""
    c = curves or {}
    out = []
    for e, f, s in zip(c.get("epoch", []), c.get(FID, []), c.get(TRAIN_S, []), strict=False):
        if e is not None and f is not None and math.isfinite(f):
            out.append((int(e), f, s))
    return out


@dataclass(frozen=True)
class Point:
    """One scored epoch over a variant's seeds: the mean FID, the seeds' range, the mean
    training seconds to reach it (None when a run lacks them)."""

    epoch: int
    fid: float
    lo: float
    hi: float
    seconds: float | None


def seed_points(v: VariantData) -> tuple[list[Point], int]:
    """The variant's quality curve over its seeds (the epochs every curve scored) and how
    many seeds have a curve."""
    runs = [pts for c in _seed_curves(v).values() if (pts := points(c))]
    if not runs:
        return [], 0
    common = set.intersection(*({p[0] for p in pts} for pts in runs))
    out = []
    for epoch in sorted(common):
        at = [next(p for p in pts if p[0] == epoch) for pts in runs]
        fids = [p[1] for p in at]
        secs = [p[2] for p in at]
        mean_s = None if None in secs else sum(secs) / len(secs)  # type: ignore[arg-type]
        out.append(Point(epoch, sum(fids) / len(fids), min(fids), max(fids), mean_s))
    return out, len(runs)


def _seed_curves(v: VariantData) -> dict[int, Curves | None]:
    return v.seed_curves or {v.seed: v.curves}


def _plot(curves: list[tuple[int, VariantData, list[Point]]]) -> bytes:
    from matplotlib.figure import Figure

    with _plotting():
        fig = Figure(figsize=(9.0, 3.4), layout="constrained")
        by_epoch, by_time = fig.subplots(1, 2)
        for i, v, pts in curves:
            best = min(pts, key=lambda p: p.fid)
            for ax, x in ((by_epoch, lambda p: p.epoch), (by_time, lambda p: p.seconds)):
                drawn = [p for p in pts if x(p) is not None]
                if not drawn:
                    continue
                xs = [x(p) for p in drawn]
                ax.plot(xs, [p.fid for p in drawn], color=color(i), lw=1.4, marker="o", ms=3,
                        label=v.name)  # fmt: skip
                if any(p.hi > p.lo for p in drawn):
                    ax.fill_between(xs, [p.lo for p in drawn], [p.hi for p in drawn],
                                    color=color(i), alpha=0.18, lw=0)  # fmt: skip
                if x(best) is not None:
                    ax.plot(x(best), best.fid, marker="*", ms=11, color=color(i), mec="black")
        by_epoch.set_xlabel("epoch")
        by_time.set_xlabel("training seconds (mean over seeds)")
        for ax in (by_epoch, by_time):
            ax.set_ylabel("classifier FID")
            ax.set_yscale("log")
        by_epoch.set_title("FID vs epoch (★ best epoch of the mean)")
        by_time.set_title("FID vs training time")
        by_epoch.legend(loc="upper right", fontsize=8, ncols=2)
        return _png(fig)


def quality_section(inputs: Inputs) -> tuple[Section | None, list[Asset]]:
    """The section, or None when no variant has a quality curve (score_every 0, old runs)."""
    curves, seeds = [], {}
    for i, v in enumerate(inputs.variants):
        pts, seeds[v.name] = seed_points(v)
        if pts:
            curves.append((i, v, pts))
    if not curves:
        return None, []
    rows = []
    for _, v, pts in curves:
        best, last = min(pts, key=lambda p: p.fid), pts[-1]
        spent = trained = 0.0
        for c in _seed_curves(v).values():
            spent += sum(
                s for s in (c or {}).get(SCORE_S, []) if s is not None and math.isfinite(s)
            )
            run = points(c)
            trained += (run[-1][2] or 0.0) if run else 0.0
        share = f"{spent / trained:.1%}" if trained else fmt.MISSING
        gap = f"{last.fid - best.fid:+.2f}" if best is not last else "0 (last is best)"
        rows.append([v.name, str(seeds[v.name]), str(best.epoch), fmt.fixed(best.fid, 2) or fmt.MISSING,
                     str(last.epoch), fmt.fixed(last.fid, 2) or fmt.MISSING, gap, share])  # fmt: skip
    t = plain_table(
        "quality-table",
        ["Variant", "Seeds", "Best epoch", "Best FID", "Last epoch", "Last FID", "Last − best",
         "Scoring cost"],
        rows,
    )  # fmt: skip
    n = inputs.params.train.score_n
    asset = Asset("plots/quality.png", _plot(curves))
    blocks = [
        prose(
            f"Classifier FID of {n:,} samples from fixed latents, scored during training every "
            f"{inputs.params.train.score_every} epochs and after the last (`train.score_every`,"
            " `train.score_n`), against the evaluation reference. Per variant the line is the "
            "mean over its seeds (the epochs every seed scored), the band the seeds' range "
            "(lowest to highest), the star the mean curve's best epoch; the table's FIDs are "
            "the mean curve's. Fewer samples than the final scores: compare the curve's shape "
            "and its best epoch, not its values with the tables above. Training seconds "
            "exclude the scoring; its cost is the scoring seconds as a share of them, summed "
            "over the seeds."
        ),
        plot(asset, "Classifier FID per variant against epoch and training seconds"),
        table(t),
    ]
    return Section("quality", "Quality over training", "Quality over training", blocks), [asset]
