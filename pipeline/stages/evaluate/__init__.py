"""Scores for generated MNIST samples, all through torch-fidelity's public API.

Two evaluators, each selectable in ``evaluate.extractors``:

* ``classifier``: our MNIST CNN (pipeline/core/classifier.py) registered as the torch-fidelity
  feature extractor ``mnist-classifier``: FID/precision/recall on its 128-d penultimate
  features, IS on its logits (torch-fidelity softmaxes them: at most 10 for MNIST), plus class
  coverage from its predictions and, for conditional samples, label accuracy; and from the
  same features (``features``): KID on them centred and scaled by the real set's statistics,
  FID-infinity, density and coverage. Fast on a CPU.
* ``inception``: torch-fidelity's ``inception-v3-compat`` (FID, IS, KID) and ``vgg16``
  (precision/recall, torch-fidelity's default for PRC). Needs their weights: a local file from
  params, torch's hub cache, or a download; when none works the stage fails up front with one
  line saying how to proceed. ~6 img/s on a 2-core CPU: a GPU job.

Reference set: the first ``evaluate.n_real`` MNIST test images. Its features are extracted
once per extractor and kept under ``evaluate.cache_dir`` as plain tensors (read with
``weights_only=True``; torch-fidelity's own cache, which unpickles anything, is off), named after
the extractor, ``n_real``, a hash of the weights and where they ran (device type and precision,
``evaluate.tf32``), so neither a retrained classifier nor a GPU run reuses stale features. Images go to torch-fidelity as uint8 [3, 28, 28] (grey tiled to 3 channels);
our extractor takes one channel back.

Modules: ``fidelity`` (torch-fidelity plumbing, the classifier extractor), pipeline.core.features
(the scores we compute on the classifier's features), pipeline.infra.weights (the Inception
path's weights), pipeline.training.evaluator (the classifier's file and the reference set's
features, which the quality curve shares), ``scoring`` (:func:`score` -> :class:`pipeline.infra.metrics.MetricsDoc`,
the document's schema); this module holds the two stage commands. The samples are read by
:func:`pipeline.stages.sample.load_samples`, beside the code that writes them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.core.variants._known import known
from pipeline.infra import layout
from pipeline.infra.config import Params
from pipeline.infra.data import load_split
from pipeline.infra.errors import PipelineError, first_line
from pipeline.infra.io import write_json
from pipeline.infra.layout import metrics_path, samples_path
from pipeline.infra.metrics import MetricsDoc
from pipeline.infra.weights import (
    URL_INCEPTION_V3,
    VGG16_URL,
    check_inception_weights,
    hub_file,
    resolve_weights,
)
from pipeline.stages.evaluate.scoring import class_coverage, label_shares, score
from pipeline.stages.sample import load_samples
from pipeline.training.evaluator import real_reference

__all__ = [
    "URL_INCEPTION_V3",
    "VGG16_URL",
    "check_inception_weights",
    "class_coverage",
    "label_shares",
    "evaluate_floor",
    "evaluate_variant",
    "hub_file",
    "metrics_path",
    "real_reference",
    "resolve_weights",
    "samples_path",
    "score",
]


def _log_to_run(
    params: Params, variant: str, seed: int, doc: MetricsDoc, run_id: str | None
) -> None:
    if run_id is None:
        print(
            f"warning: {layout.variant_dir(params, variant, seed) / layout.RUN_ID_FILE} not found; "
            f"metrics not logged to MLflow (train {variant} through `pipeline train` to get a run)",
            file=sys.stderr,
        )
        return
    from mlflow.exceptions import MlflowException

    from pipeline.infra.tracking import log_metrics

    try:
        log_metrics(params, run_id, doc.flat())
    except MlflowException as err:
        raise PipelineError(
            f"metrics written, but logging them to MLflow run {run_id} failed: {first_line(err)}"
        ) from None


def evaluate_variant(
    params: Params, variant: str, device: str | None = None, *, seed: int | None = None
) -> Path:
    """Score ``samples/VARIANT/seedS/samples.pt`` -> ``metrics/VARIANT/seedS.json`` (S:
    ``seed``, None for the first of train.seeds), and log to MLflow.

    The JSON is written atomically and only when every configured metric was computed; the
    same numbers then go to that seed's training run (``models/VARIANT/seedS/run_id.txt``).
    """
    known(variant)
    seed = layout.seed_of(params, seed)
    samples = load_samples(params, variant, seed)
    run_id = layout.read_run_id(layout.variant_dir(params, variant, seed))
    if run_id is not None:
        from pipeline.infra.tracking import setup

        setup(params)  # an unreachable tracking server fails now, not after the scoring
    doc = score(params, variant, samples.images, samples.labels, device)
    doc = doc.model_copy(update={"seed": seed})
    path = metrics_path(params, variant, seed)
    write_json(path, doc.to_json())
    _log_to_run(params, variant, seed, doc, run_id)
    return path


def evaluate_floor(params: Params, device: str | None = None) -> Path:
    """The real-vs-real floor: first ``evaluate.floor_n`` MNIST train images vs the test
    reference, scored like a variant -> ``metrics/floor.json`` (no MLflow run)."""
    images, _ = load_split(params, "train")
    doc = score(params, layout.FLOOR, images[: params.evaluate.floor_n].unsqueeze(1), None, device)
    path = metrics_path(params, layout.FLOOR)
    write_json(path, doc.to_json())
    return path
