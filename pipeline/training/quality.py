"""The quality curve: sample quality measured during training.

Every ``train.score_every`` epochs and after the last one, ``train.score_n`` samples from
fixed latents (``sample.seed``: the same for every epoch and variant) are scored with the MNIST
classifier against the evaluation reference (the first ``evaluate.n_real`` test images, their
features from the evaluate stage's cache, at ``evaluate.tf32``'s precision):
FID and KID (features centred and scaled as in pipeline/core/features.py, with
``CURVE_KID_SUBSETS`` subsets: the curve needs its trend, not its spread) as the curve columns
``clf_fid`` and ``clf_kid``, and ``score_s``, the seconds the scoring took. ``elapsed_s`` does
not include them: it stays the training time.

The scoring changes nothing the training depends on: the nets are sampled in eval mode and
put back, the latents come from their own generator, and the global RNG state is forked
around it and around loading the classifier, so a run with curves ends with the same weights as one without, and an
interrupted run resumes bit for bit (``score_every`` is not part of the run's identity).

Without the classifier checkpoint (``pipeline classifier`` not run yet) the run trains
without the curve and says so once at its start; under ``dvc repro`` the train stage depends
on the classifier, so it is there.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from pipeline.infra.devices import numerics
from pipeline.training.artifacts import evaluating

if TYPE_CHECKING:
    from pipeline.core.features import Reference
    from pipeline.core.variants.base import Variant
    from pipeline.training.setup import CurveSetup
    from pipeline.training.spec import RunSpec

COLUMNS = ("clf_fid", "clf_kid", "score_s")
FILE_COLUMNS = ("epoch", "step", "elapsed_s", *COLUMNS)
CURVE_KID_SUBSETS = 20


def write_quality(path: Path, history: Sequence[dict[str, float]]) -> None:
    """The scored epochs of ``history`` as their own CSV (a header alone when none are)."""
    from pipeline.training.artifacts import write_curves

    write_curves(path, [row for row in history if "clf_fid" in row], FILE_COLUMNS)


class QualityCurve:
    """Scores the sampler after the epochs that are due; inert when ``score_every`` is 0."""

    def __init__(
        self, setup: CurveSetup, variant: Variant, spec: RunSpec, device: torch.device
    ) -> None:
        self.setup, self.variant, self.spec, self.device = setup, variant, spec, device
        self.every = setup.every
        self.model: nn.Module | None = None
        self.ref: Reference | None = None
        self.missing = self.every > 0 and not setup.classifier.is_file()
        if self.missing:
            self.every = 0  # said once when training starts (a finished run trains nothing)

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def columns(self) -> tuple[str, ...]:
        return COLUMNS if self.enabled else ()

    def due(self, epoch: int, last: bool) -> bool:
        return self.enabled and (last or epoch % self.every == 0)

    def start(self) -> None:
        """Load the classifier and the reference features, or switch the curve off with one
        line when the classifier is missing."""
        if self.missing:
            print(
                f"warning: {self.setup.classifier} not found: no quality "
                f"curve for this run (train.score_every={self.setup.every}); run "
                "`pipeline classifier` first, or set train.score_every: 0",
                file=sys.stderr,
            )
            self.missing = False
        if not self.enabled or self.model is not None:
            return
        from pipeline.infra.io import file_hash
        from pipeline.infra.weights import Weights
        from pipeline.training.evaluator import (
            cached_real_features,
            classifier_at,
            reference_images,
        )

        setup = self.setup
        path = setup.classifier
        # Building the classifier initialises its layers from the global RNG before its
        # weights are loaded. start() runs after a resume has restored that RNG (and at the
        # start of an uninterrupted run): without the fork the two would go on from
        # different states. Training draws from its own generators, so the weights agreed
        # anyway, but anything reading the global RNG later (a variant with dropout, say)
        # would not; tests/test_quality.py compares the states.
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            self.model = classifier_at(path, self.device)
            # The evaluate stage's cached reference features (extracted once per
            # classifier, device type and precision): after the first run, starting the
            # curve is instant.
            weights = Weights(path, file_hash(path)[:16])
            real = reference_images(setup.data, setup.n_real)
            self.ref = cached_real_features(
                setup.cache, setup.tf32, self.model, real, weights, self.device
            )

    def score(self, nets: dict[str, nn.Module]) -> dict[str, float]:
        """``clf_fid``, ``clf_kid`` and ``score_s`` of the sampler as it is now."""
        from pipeline.core.features import extract, fid, kid
        from pipeline.training.sampling import generate

        assert self.model is not None and self.ref is not None
        start = time.perf_counter()
        setup = self.setup
        n = setup.n
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), evaluating(nets), torch.no_grad():
            images, _ = generate(
                self.variant, nets, n, self.spec.z_dim, setup.sample_seed,
                setup.sample_batch, self.device,
            )  # fmt: skip
            # Features at the reference's precision (evaluate.tf32), never mixed.
            with numerics(setup.tf32):
                feats = extract(self.model, images).feats
        subset = min(setup.kid_subset, n, len(self.ref.feats))
        return {
            "clf_fid": fid(feats, self.ref),
            "clf_kid": kid(feats, self.ref, subset, CURVE_KID_SUBSETS)["kid_mean"],
            "score_s": time.perf_counter() - start,
        }
