"""The evaluate and floor stages (`pipeline evaluate`, `pipeline floor`): score a run's samples,
or MNIST train images, against the reference set (see the package docstring) and record them.
It also re-exports the pieces the tests reach through it.
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
