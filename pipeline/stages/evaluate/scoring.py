"""Scoring one image set against the MNIST test reference: the classifier section (features,
IS, class coverage, label accuracy) and the Inception section, as a typed metrics document."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from pipeline.core import features as fx
from pipeline.core.classifier import model_from_checkpoint
from pipeline.infra.config import MIN_EVAL_IMAGES, Params
from pipeline.infra.data import N_CLASSES, load_split
from pipeline.infra.devices import numerics, resolve_device
from pipeline.infra.errors import PipelineError
from pipeline.infra.io import file_hash
from pipeline.infra.metrics import EXTRACTORS, ClassifierScores, InceptionScores, MetricsDoc
from pipeline.infra.weights import Weights, bad_weights_as_error, inception_weights
from pipeline.stages.evaluate.fidelity import (
    CLASSIFIER_NETWORK,
    INCEPTION_EXTRACTOR,
    INCEPTION_NETWORK,
    VGG16_EXTRACTOR,
    GreyAsRGB,
    fidelity,
    register,
    renamed,
)
from pipeline.stages.sample import check_images
from pipeline.training.evaluator import (
    CLASSIFIER_EXTRACTOR,
    checkpoint_path,
    load_checkpoint,
    real_features,
    real_reference,
)

COVERAGE_MIN_MASS = 0.05  # a digit "is covered" when it gets at least 5% of the samples
MIN_IMAGES = MIN_EVAL_IMAGES  # IS uses 10 splits; precision/recall need > 3 neighbours


def reference_label_shares(params: Params) -> torch.Tensor:
    """Share of each digit among the reference set's true labels, float64 [10]: what a
    generator that draws digits like MNIST's test set shows (not uniform: 892 fives vs
    1,135 ones in the 10k test images)."""
    _, labels = load_split(params, "test")
    return label_shares(labels[: params.evaluate.n_real])


def label_shares(labels: torch.Tensor) -> torch.Tensor:
    """Share of each digit among int64 [N] labels, float64 [10]."""
    counts = torch.bincount(labels.cpu(), minlength=N_CLASSES).double()
    return counts / counts.sum()


def class_coverage(
    predicted: torch.Tensor,
    requested: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Class statistics of predicted digits (int64 [N]).

    ``histogram``: fraction per digit; ``coverage``: digits with >= 5% of the mass;
    ``kl_test_labels``: KL(histogram || reference) in nats, ``reference`` the float [10]
    shares of the reference set's labels (uniform when None): 0 when the samples' digits are
    drawn like the test set's, so a uniform label sampler (cGAN, ACGAN) does not beat real
    data by construction; ``label_accuracy``: fraction predicted == requested (None without
    requested labels).
    """
    hist = label_shares(predicted)
    ref = (
        torch.full((N_CLASSES,), 1 / N_CLASSES, dtype=torch.float64)
        if reference is None
        else reference.double().cpu()
    )
    mask = hist > 0  # 0 · log 0 = 0; a digit absent from the reference makes KL infinite
    kl = float((hist[mask] * (hist[mask] / ref[mask]).log()).sum())
    label_acc = None
    if requested is not None:
        label_acc = float((predicted.cpu() == requested.cpu()).double().mean())
    return {
        "histogram": [float(h) for h in hist],
        "coverage": int((hist >= COVERAGE_MIN_MASS).sum()),
        "kl_test_labels": kl,
        "label_accuracy": label_acc,
    }


def _classifier_scores(
    params: Params,
    dev: torch.device,
    generated: torch.Tensor,
    requested: torch.Tensor | None,
    real: torch.Tensor,
    shares: torch.Tensor,
    full: bool = True,
) -> ClassifierScores:
    """Classifier section for generated uint8 [N, 1, 28, 28] vs real uint8 [M, 28, 28] whose
    digits come in float [10] ``shares``; without ``full``, no FID-infinity, density or
    coverage (seconds saved per call)."""
    start = time.perf_counter()
    ckpt_file = checkpoint_path(params)
    ckpt = load_checkpoint(ckpt_file)
    weights = Weights(ckpt_file, file_hash(ckpt_file)[:16])
    register()
    m = fidelity(
        params, dev, GreyAsRGB(generated), GreyAsRGB(real), CLASSIFIER_EXTRACTOR, weights,
        isc=True, fid=True, prc=True,
    )  # fmt: skip
    # Class coverage needs per-image predictions and the scores below the features, which
    # calculate_metrics does not return: one more pass of the CNN (seconds on a CPU).
    model = model_from_checkpoint(ckpt, dev)
    ref = real_features(params, model, real, weights, dev)
    with numerics(params.evaluate.tf32):
        gen = fx.extract(model, generated)
    subset = min(params.evaluate.kid_subset_size, len(real), len(generated))
    extra = {**fx.fid_infinity(gen.feats, ref), **fx.density_coverage(gen.feats, ref)}
    return ClassifierScores(
        network=CLASSIFIER_NETWORK,
        **renamed(ClassifierScores, m),
        **fx.kid(gen.feats, ref, subset),
        **(extra if full else {}),
        **class_coverage(gen.predicted, requested, shares),
        seconds=round(time.perf_counter() - start, 3),
    )


def _inception_scores(
    params: Params,
    dev: torch.device,
    generated: torch.Tensor,
    real: torch.Tensor,
    weights: tuple[Weights, Weights],
) -> InceptionScores:
    """Inception section: inception-v3-compat FID/IS/KID and VGG16 precision/recall."""
    start = time.perf_counter()
    inception, vgg = weights
    gen_ds, real_ds = GreyAsRGB(generated), GreyAsRGB(real)
    # Two calls: torch-fidelity takes one weights path per call, and PRC uses its own network.
    with bad_weights_as_error(inception):
        m = fidelity(
            params, dev, gen_ds, real_ds, INCEPTION_EXTRACTOR, inception,
            isc=True, fid=True, kid=True,
        )  # fmt: skip
    with bad_weights_as_error(vgg):
        m.update(fidelity(params, dev, gen_ds, real_ds, VGG16_EXTRACTOR, vgg, prc=True))
    return InceptionScores(
        network=INCEPTION_NETWORK,
        **renamed(InceptionScores, m),
        kid_subset_size=min(params.evaluate.kid_subset_size, len(real), len(generated)),
        kid_subsets=fx.KID_SUBSETS,
        seconds=round(time.perf_counter() - start, 3),
    )


def check_inputs_up_front(
    params: Params, extractors: Sequence[str]
) -> tuple[Weights, Weights] | None:
    """Fail before any computation when something the requested extractors need is missing;
    returns the Inception path's weights when that extractor is asked for."""
    if "classifier" in extractors:
        load_checkpoint(checkpoint_path(params))  # one-line error if absent or unreadable
    return inception_weights(params) if "inception" in extractors else None


def score(
    params: Params,
    name: str,
    generated: torch.Tensor,
    requested: torch.Tensor | None = None,
    device: str | None = None,
    extractors: Sequence[str] | None = None,
    full: bool = True,
    reference: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> MetricsDoc:
    """All metrics of generated uint8 [N, 1, 28, 28] vs the test reference; writes nothing.

    ``reference``: (uint8 [M, 28, 28] images, int64 [M] labels) to score against instead of
    the test set: tuning's held-out training images (pipeline.stages.tune.holdout). Its feature
    caches are keyed by set size, not content: give such a reference its own
    ``evaluate.cache_dir``.

    ``requested``: int64 [N] digits asked of a conditional generator (label accuracy), or
    None. ``extractors`` overrides ``evaluate.extractors`` (e.g. ``["classifier"]`` for a
    tuning objective). ``full=False`` leaves out the classifier's FID-infinity, density and
    coverage (a tuning objective's per-epoch FID needs none of their seconds).
    """
    extractors = list(params.evaluate.extractors if extractors is None else extractors)
    unknown = set(extractors) - set(EXTRACTORS)
    if unknown or not extractors:
        raise PipelineError(f"extractors must be classifier and/or inception (got {extractors})")
    check_images(generated, name)
    if len(generated) < MIN_IMAGES:
        raise PipelineError(f"{name}: {len(generated)} images; at least {MIN_IMAGES} are needed")
    if requested is not None and tuple(requested.shape) != (len(generated),):
        raise PipelineError(f"{name}: requested labels must be int64 [N] matching the images")
    dev = resolve_device(device or params.evaluate.device)
    weights = check_inputs_up_front(params, extractors)
    if reference is None:
        real, shares = real_reference(params), reference_label_shares(params)
    else:
        real, shares = reference[0], label_shares(reference[1])
    sections: dict[str, Any] = {}
    try:
        if "classifier" in extractors:
            sections["classifier"] = _classifier_scores(
                params, dev, generated, requested, real, shares, full
            )
        if weights is not None:
            sections["inception"] = _inception_scores(params, dev, generated, real, weights)
    except torch.OutOfMemoryError:
        raise PipelineError(
            f"{name}: out of memory on {dev}; lower evaluate.batch_size "
            f"(now {params.evaluate.batch_size})"
        ) from None
    return MetricsDoc(variant=name, n_generated=len(generated), n_real=len(real), **sections)
