"""What one training run reads from the params, resolved once at the stage's edge.

The Trainer and its quality curve never see the whole :class:`~pipeline.infra.config.Params`:
a stage (train, tune, a benchmark) calls :func:`run_setup` and hands them these narrow,
frozen objects. Everything here is a plain value or a path already resolved against the params
file's folder, so what a run depends on is listed in one place and a test can build one by
hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.infra import layout
from pipeline.infra.config import Params, TrainConfig


@dataclass(frozen=True)
class CurveSetup:
    """The quality curve's inputs (pipeline.training.quality)."""

    every: int  # train.score_every: epochs between scorings; 0 turns the curve off
    n: int  # train.score_n: samples scored
    classifier: Path  # the classifier checkpoint file
    data: Path  # the prepared MNIST folder (its test split is the reference)
    n_real: int  # evaluate.n_real: the reference's first test images
    cache: Path  # evaluate.cache_dir: the reference features' cache
    tf32: bool  # evaluate.tf32: the features' precision (part of the cache key)
    kid_subset: int  # evaluate.kid_subset_size
    sample_seed: int  # sample.seed: the fixed latents scored at every epoch
    sample_batch: int  # sample.batch_size


@dataclass(frozen=True)
class RunSetup:
    """A Trainer's inputs besides the run's identity (:class:`~pipeline.training.spec.RunSpec`)."""

    train: TrainConfig  # the train section: writes, fast paths, divergence, numerics
    data: Path  # the prepared MNIST folder (its train split is trained on)
    curve: CurveSetup


def run_setup(params: Params) -> RunSetup:
    """The narrow inputs of a run under ``params``."""
    data = layout.mnist_dir(params)
    curve = CurveSetup(
        every=params.train.score_every,
        n=params.train.score_n,
        classifier=layout.classifier_checkpoint(params),
        data=data,
        n_real=params.evaluate.n_real,
        cache=params.path(params.evaluate.cache_dir),
        tf32=params.evaluate.tf32,
        kid_subset=params.evaluate.kid_subset_size,
        sample_seed=params.sample.seed,
        sample_batch=params.sample.batch_size,
    )
    return RunSetup(train=params.train, data=data, curve=curve)
