"""Scores on the classifier's features (pipeline/core/features.py): density and coverage,
FID and FID-infinity against hand-computed values on small fixed sets, and the KID transform
on real MNIST features from the session's classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from pipeline.core import features as fx
from pipeline.infra.data import load_split
from pipeline.training.evaluator import load_classifier
from tests.test_classifier import train_once
from tests.test_evaluate import make_params


def _ref(points: list[list[float]]) -> fx.Reference:
    return fx.Reference.of(torch.tensor(points, dtype=torch.float32))


def test_density_and_coverage_by_hand() -> None:
    # Real points 0, 1, 3 on a line; with k = 1 their radii (distance to the nearest other
    # real point) are 1, 1, 2. Samples 0.5, 0.6 and 10.
    ref = _ref([[0.0], [1.0], [3.0]])
    fake = torch.tensor([[0.5], [0.6], [10.0]])
    out = fx.density_coverage(fake, ref, k=1)
    # Density: 0.5 lies in the balls of 0 and 1 (2), 0.6 too (2), 10 in none: (2+2+0) / 3 / k.
    assert out["density"] == pytest.approx(4 / 3)
    # Coverage: 0 and 1 have a sample within their radius, 3 does not (nearest 2.4 > 2).
    assert out["knn_coverage"] == pytest.approx(2 / 3)
    assert out["prdc_k"] == 1


def test_fid_by_hand_on_two_dimensions() -> None:
    # Real: mean (0, 0), covariance diag(2, 8) (sample covariance, ddof 1).
    ref = _ref([[-1.0, -2.0], [1.0, 2.0], [-1.0, 2.0], [1.0, -2.0]])
    assert ref.stats["sigma"] == pytest.approx(np.diag([4 / 3, 16 / 3]))
    # Generated: mean (3, 0), covariance diag(4/3 * 4, 16/3 / 4): FID = |dmu|^2 + sum
    # (sqrt(a) - sqrt(b))^2 over the diagonal = 9 + (4/3)(2 - 1)^2 + (16/3)(1/2 - 1)^2.
    gen = torch.tensor([[1.0, -1.0], [5.0, 1.0], [1.0, 1.0], [5.0, -1.0]])
    assert fx.fid(gen, ref) == pytest.approx(9 + 4 / 3 + 16 / 3 / 4, rel=1e-6)


def test_fid_infinity_fit_and_sizes() -> None:
    # FID exactly a + b / N: the line through it meets 1/N = 0 at a.
    sizes = [2000, 4000, 10000]
    assert fx.extrapolate(sizes, [5.0 + 3000 / n for n in sizes]) == pytest.approx(5.0)
    # Least squares on three points off a line, by hand: x = 1/N = (1, 1/2, 1/4) * 1e-3,
    # y = (4, 3, 2.2); slope = Sxy / Sxx, intercept = mean(y) - slope * mean(x).
    x, y = np.array([1, 0.5, 0.25]) * 1e-3, np.array([4.0, 3.0, 2.2])
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    assert fx.extrapolate([1000, 2000, 4000], list(y)) == pytest.approx(y.mean() - slope * x.mean())
    # The documented sizes: 15 points from n/5 to n.
    assert fx.fid_inf_sizes(10_000) == [
        2000, 2571, 3143, 3714, 4286, 4857, 5429, 6000, 6571, 7143, 7714, 8286, 8857, 9429, 10000
    ]  # fmt: skip


def test_fid_infinity_removes_the_sample_size_bias() -> None:
    # Generated features drawn from the same Gaussian as a large real set: FID at N is
    # mostly its 1/N bias, FID-infinity near zero; seeded, so the same number twice.
    g = torch.Generator().manual_seed(0)
    ref = fx.Reference.of(torch.randn(20_000, 32, generator=g))
    gen = torch.randn(1000, 32, generator=g)
    out = fx.fid_infinity(gen, ref)
    assert (out["fid_inf_n_min"], out["fid_inf_n_max"], out["fid_inf_points"]) == (200, 1000, 15)
    assert abs(out["fid_inf"]) < 0.25 * fx.fid(gen, ref)
    assert fx.fid_infinity(gen, ref) == out
    assert fx.fid_infinity(gen, ref, seed=1)["fid_inf"] != out["fid_inf"]


def test_kid_transform_calibrates_the_kernel_on_the_real_set() -> None:
    feats = torch.rand(500, 16, generator=torch.Generator().manual_seed(0)) * 7 + 3
    ref = fx.Reference.of(feats)
    view = ref.kid_view(feats).double()
    assert view.mean(0).abs().max() < 1e-5
    # |x|^2 / d averages 1 (ddof 1 in the scale: (n - 1) / n of it here).
    assert (view.pow(2).sum(1) / 16).mean() == pytest.approx(499 / 500, rel=1e-5)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    out = TF.gaussian_blur(x.unsqueeze(1).float(), 7, sigma)
    return out.round().clamp(0, 255).to(torch.uint8)[:, 0]


def _noise(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * std
    return (x.float() + n).round().clamp(0, 255).to(torch.uint8)


def test_kid_on_real_features_floor_is_noise_and_variants_rank_as_fid(
    tmp_path: Path, prepared_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    params, _ = make_params(tmp_path, prepared_dir, train_once(tmp_path_factory, prepared_dir))
    model = load_classifier(params, "cpu")
    test, _ = load_split(params, "test")
    # Even and odd test images: two samples of one distribution (the test set's two halves
    # differ: its first 5,000 digits are the cleaner ones, and so are MNIST's train digits).
    ref = fx.Reference.of(fx.extract(model, test[0:2000:2]).feats)
    held_out = test[1:2000:2]  # the floor: real digits not in the reference
    sets = {
        "floor": held_out,
        "noise 30": _noise(held_out, 30, 0),
        "noise 60": _noise(held_out, 60, 1),
        "blur 0.8": _blur(held_out, 0.8),
        "blur 1.5": _blur(held_out, 1.5),
    }
    fids, kids = {}, {}
    for name, images in sets.items():
        f = fx.extract(model, images).feats
        fids[name], kids[name] = fx.fid(f, ref), fx.kid(f, ref, subset_size=500)
    floor = kids.pop("floor")
    # The floor is consistent with zero, and its spread is small next to every variant's KID.
    assert abs(floor["kid_mean"]) < floor["kid_std"]
    assert floor["kid_std"] < 0.2 * min(k["kid_mean"] for k in kids.values())
    assert fids.pop("floor") < min(fids.values())
    assert sorted(kids, key=lambda n: kids[n]["kid_mean"]) == sorted(fids, key=fids.get)
    assert floor["kid_subset_size"] == 500 and floor["kid_subsets"] == fx.KID_SUBSETS
