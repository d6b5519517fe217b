"""The report's "Quality over training" section (pipeline/stages/report/quality.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pipeline.infra.params import load_params
from pipeline.stages.report.inputs import VariantData
from pipeline.stages.report.plots import curve_panels
from pipeline.stages.report.quality import points, quality_section, seed_points

N = None


def _variant(name: str, fids: list[float | None]) -> VariantData:
    epochs = list(range(1, len(fids) + 1))
    return VariantData(name, curves={
        "epoch": [float(e) for e in epochs],
        "d_loss": [0.5] * len(fids),
        "clf_fid": fids,
        "clf_kid": [None if f is None else f / 100 for f in fids],
        "score_s": [None if f is None else 2.0 for f in fids],
        "elapsed_s": [40.0 * e for e in epochs],
    })  # fmt: skip


def test_best_epoch_against_the_last_and_the_cost(tiny_params_path: Path) -> None:
    params = load_params(tiny_params_path)
    gan = _variant("gan", [N, 30.0, N, 12.0, N, 15.0])  # best at 4, last at 6
    wgan = _variant("wgan", [N, 50.0, N, 20.0])  # the last is the best
    plain = _variant("vae", [N, N])  # scored never: no curve
    assert points(gan.curves) == [(2, 30.0, 80.0), (4, 12.0, 160.0), (6, 15.0, 240.0)]
    inputs = SimpleNamespace(params=params, variants=[gan, wgan, plain])
    section, assets = quality_section(inputs)  # type: ignore[arg-type]
    assert section is not None and section.id == "quality"
    assert [a.rel for a in assets] == ["plots/quality.png"]
    assert assets[0].data.startswith(b"\x89PNG")
    rows = {r.label: [c.text for c in r.cells] for b in section.blocks if b.table
            for body in b.table.bodies for r in body.rows}  # fmt: skip
    # seeds, best epoch, best FID, last epoch, last FID, last - best, scoring s / training s
    assert rows["gan"] == ["1", "4", "12.00", "6", "15.00", "+3.00", f"{6 / 240:.1%}"]
    assert rows["wgan"] == ["1", "4", "20.00", "4", "20.00", "0 (last is best)", f"{4 / 160:.1%}"]
    assert "vae" not in rows
    # The variant's own training-curve panels leave the quality columns to this section.
    assert [cols for _, cols in curve_panels(gan.curves)] == [["d_loss"]]


def test_no_section_without_a_curve(tiny_params_path: Path) -> None:
    inputs = SimpleNamespace(params=load_params(tiny_params_path), variants=[_variant("gan", [N])])
    assert quality_section(inputs) == (None, [])  # type: ignore[arg-type]


def test_the_curve_over_seeds_is_their_mean_with_their_range(tiny_params_path: Path) -> None:
    params = load_params(tiny_params_path)
    one = _variant("gan", [N, 30.0, N, 12.0, N, 15.0])
    two = _variant("gan", [N, 20.0, N, 16.0, N, 9.0, N, 8.0])  # one more scored epoch (8)
    assert one.curves is not None and two.curves is not None
    two.curves["elapsed_s"] = [50.0 * e for e in range(1, 9)]
    gan = VariantData("gan", curves=one.curves, seed=0,
                      seed_curves={0: one.curves, 1: two.curves, 2: None})  # fmt: skip
    pts, n = seed_points(gan)
    assert n == 2  # seed 2 has no curve
    assert [(p.epoch, p.fid, p.lo, p.hi, p.seconds) for p in pts] == [
        (2, 25.0, 20.0, 30.0, 90.0), (4, 14.0, 12.0, 16.0, 180.0), (6, 12.0, 9.0, 15.0, 270.0),
    ]  # fmt: skip  # epoch 8 is not in every curve
    section, _ = quality_section(SimpleNamespace(params=params, variants=[gan]))  # type: ignore[arg-type]
    assert section is not None
    (row,) = [[c.text for c in r.cells] for b in section.blocks if b.table
              for body in b.table.bodies for r in body.rows]  # fmt: skip
    # the mean curve's best epoch is its last; the cost sums both seeds' scoring and training
    assert row == [
        "2",
        "6",
        "12.00",
        "6",
        "12.00",
        "0 (last is best)",
        f"{(6 + 8) / (240 + 400):.1%}",
    ]
