"""The tuning reference: a fixed, seeded slice of the MNIST *training* set that trials are
scored against and never train on. Tuning must not select on the test images the final
scores use (selecting on them would make the final scores optimistic); the trial trains on
the rest of the training set.

The slice is ``tune.holdout`` images drawn by ``torch.randperm`` with ``tune.holdout_seed``:
the same for every trial, study and machine, so trials stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.infra import layout
from pipeline.infra.config import Params
from pipeline.infra.data import load_split


@dataclass(frozen=True)
class Holdout:
    train_indices: torch.Tensor  # int64 [N - n], ascending: the images a trial trains on
    indices: torch.Tensor  # int64 [n], ascending: the reference's rows of the training set
    images: torch.Tensor  # uint8 [n, 28, 28]: the reference the objective scores against
    labels: torch.Tensor  # int64 [n]: their digits (the KL's reference shares)


def split_indices(total: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rest, held out): ``n`` of ``range(total)`` drawn without replacement by a seeded
    permutation, and the others; both ascending, disjoint, together every index once."""
    if not 0 < n < total:
        raise ValueError(f"a held-out slice of {n} from {total} images leaves nothing to train")
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return perm[n:].sort().values, perm[:n].sort().values


def holdout(params: Params) -> Holdout:
    """The training set split into the trials' training images and the tuning reference."""
    images, labels = load_split(params, "train")
    rest, held = split_indices(len(labels), params.tune.holdout, params.tune.holdout_seed)
    return Holdout(rest, held, images[held], labels[held])


def cache_dir(params: Params) -> Path:
    """The reference's feature cache: keyed by the slice (the feature caches are keyed by
    set size, extractor and weights, not by which images), under the tuning folder."""
    t = params.tune
    return layout.tuning_cache(params) / f"holdout-{t.holdout}-seed{t.holdout_seed}"
