"""Scores on the classifier's penultimate features that torch-fidelity does not give as we want
them: KID on transformed features, FID-infinity, density and coverage. Also the feature pass.

KID transform. torch-fidelity's KID is the cubic polynomial kernel ``(x·y / d + 1)³``, whose
``1/d`` scale fits features with ``|x|² / d`` near 1 (Inception's pool features). The CNN's raw
post-ReLU features are all positive with ``|x|² / d`` ~10, so every kernel value carries a
large shared offset and the unbiased estimate is a small difference of huge numbers: the
real-vs-real floor measured 679 ± 3,129 (×10³). We centre the features on the real set's mean
and divide them by one number, the root mean square of its per-dimension standard deviations,
so that ``|x|² / d`` averages exactly 1 on the real set. One scale for every dimension keeps the
relative weights FID gives them, and dimensions that never fire on real digits (about half of
the 128 units) divide by nothing (a per-dimension z-score would blow up on them).

FID-infinity (Chong & Forsyth 2020). FID's bias for the sample size is linear in 1/N. We
compute FID for ``FID_INF_POINTS`` subsets of the generated features of sizes evenly spaced
from ``n / 5`` to ``n`` (the whole set: 2,000 ... 10,000 at the default), drawn without
replacement by a generator seeded with ``FID_INF_SEED`` (the same subsets on every run), fit a
line in 1/N by least squares and report its value at 1/N = 0. The real statistics are those of
the whole reference set (their own bias is not removed: it is the same for every variant).
The paper's range is 5,000 ... 50,000 with 15 points: ours keeps the points and the 5x span.

Density and coverage (Naeem et al. 2020), from the authors' ``prdc`` package, with
``PRDC_K = 5`` neighbours (the paper's choice for 10k real and 10k generated images).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from pipeline.infra.data import to_model_range

FEATURE_BATCH = 1000
PRDC_K = 5
FID_INF_POINTS = 15
FID_INF_SPAN = 5  # smallest subset: n / FID_INF_SPAN
FID_INF_SEED = 2020
KID_SUBSETS = 100  # torch-fidelity's default
KID_SEED = 2020  # torch-fidelity's default rng_seed


@dataclass(frozen=True)
class Features:
    """The CNN's view of an image set: penultimate features float32 [N, 128] and the predicted
    digit int64 [N], both on the CPU."""

    feats: torch.Tensor
    predicted: torch.Tensor


@torch.no_grad()
def extract(model: nn.Module, images: torch.Tensor, batch: int = FEATURE_BATCH) -> Features:
    """uint8 [N, 28, 28] or [N, 1, 28, 28] -> :class:`Features`, on the model's device in
    batches (the input range and network are torch-fidelity's ``mnist-classifier``)."""
    dev = next(model.parameters()).device
    if images.dim() == 4:
        images = images[:, 0]
    feats, preds = [], []
    for i in range(0, len(images), batch):
        f, logits = model.features_and_logits(to_model_range(images[i : i + batch].to(dev)))
        feats.append(f.float().cpu())
        preds.append(logits.argmax(1).cpu())
    return Features(torch.cat(feats), torch.cat(preds))


@dataclass(frozen=True)
class Reference:
    """What the scores need of the real set's features float32 [M, d]: the features, their
    FID statistics and the KID transform's centre and scale."""

    feats: torch.Tensor
    stats: dict[str, np.ndarray]
    centre: torch.Tensor
    scale: float

    @classmethod
    def of(cls, feats: torch.Tensor) -> Reference:
        f64 = feats.double()
        # Root mean square of the per-dimension stds (ddof 1): |x - centre|² / d averages 1.
        scale = float(f64.var(0).mean().sqrt())
        return cls(
            feats, fid_features_to_statistics(feats), f64.mean(0), scale if scale > 0 else 1.0
        )

    def kid_view(self, feats: torch.Tensor) -> torch.Tensor:
        """Features float [N, d] -> centred and scaled by this real set, float32 [N, d]."""
        return ((feats.double() - self.centre) / self.scale).float()


def fid(feats: torch.Tensor, ref: Reference) -> float:
    """FID of features float32 [N, d] against the reference (torch-fidelity's formula)."""
    return fid_statistics_to_metric(fid_features_to_statistics(feats), ref.stats, False)[
        "frechet_inception_distance"
    ]


def kid(
    feats: torch.Tensor, ref: Reference, subset_size: int, subsets: int = KID_SUBSETS
) -> dict[str, float]:
    """KID (mean, std over ``subsets`` subsets of ``subset_size``) on the transformed features,
    with torch-fidelity's estimator and its default cubic kernel."""
    out = kid_features_to_metric(
        ref.kid_view(feats), ref.kid_view(ref.feats),
        kid_subsets=subsets, kid_subset_size=subset_size, kid_kernel="poly",
        kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1,
        rng_seed=KID_SEED, verbose=False,
    )  # fmt: skip
    return {
        "kid_mean": out["kernel_inception_distance_mean"],
        "kid_std": out["kernel_inception_distance_std"],
        "kid_subset_size": subset_size,
        "kid_subsets": subsets,
    }


def fid_inf_sizes(n: int) -> list[int]:
    """The subset sizes: ``FID_INF_POINTS`` evenly spaced from n / 5 to n (distinct)."""
    sizes = np.linspace(n / FID_INF_SPAN, n, FID_INF_POINTS).round().astype(int)
    return sorted({int(s) for s in sizes if s >= 2})


def extrapolate(sizes: list[int], values: list[float]) -> float:
    """Least-squares line of ``values`` in 1/N, evaluated at 1/N = 0 (its intercept)."""
    _, intercept = np.polyfit(1.0 / np.asarray(sizes, dtype=float), np.asarray(values), 1)
    return float(intercept)


def fid_infinity(feats: torch.Tensor, ref: Reference, seed: int = FID_INF_SEED) -> dict[str, float]:
    """FID-infinity of generated features float32 [N, d] and the sizes it used."""
    sizes = fid_inf_sizes(len(feats))
    gen = torch.Generator().manual_seed(seed)
    values = [fid(feats[torch.randperm(len(feats), generator=gen)[:n]], ref) for n in sizes]
    return {
        "fid_inf": extrapolate(sizes, values),
        "fid_inf_n_min": sizes[0],
        "fid_inf_n_max": sizes[-1],
        "fid_inf_points": len(sizes),
    }


def density_coverage(feats: torch.Tensor, ref: Reference, k: int = PRDC_K) -> dict[str, float]:
    """Density and coverage of generated features float32 [N, d] against the real ones."""
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the set sizes
        out = compute_prdc(ref.feats.numpy(), feats.numpy(), k)
    return {"density": float(out["density"]), "knn_coverage": float(out["coverage"]), "prdc_k": k}
