"""Every output path of every stage, from params: the one place that knows where files go.

dvc.yaml spells the same paths with ``${...}`` interpolation of params.yaml; the test that
resolves it with moved folders compares DVC's view with :func:`stage_outputs`. Nothing here
imports torch or another stage's module, so any module may ask for a path without pulling in
the trainer.

Per variant ``V``::

    train.out_dir/V/              checkpoint.pt, config.json, run_id.txt, summary.json,
                                  grid.png (final grid), progress.gif, grids/,
                                  figures/ (a model's own pictures + figures.json)
    sample.out_dir/V/             samples.pt, grid.png (preview of the scored samples)
    evaluate.out_dir/V.json       the metrics document (pipeline.metrics.MetricsDoc)
    evaluate.out_dir/curves/V.csv   per-epoch training curves
    evaluate.out_dir/quality/V.csv  the quality curve's scored epochs (dvc plots)
    evaluate.out_dir/sampling/V.json  sampling cost (the sample stage's metrics)
    tune.out_dir/V/               best.json, applied.json, Optuna plots

``toy.out_dir/``: summary.json and ``<problem>/<variant>.{gif,png}`` (pipeline.toy);
and once: ``data.dir/mnist``, ``classifier.out_dir/{classifier.pt,metrics.json}`` (and
``resume.pt`` while it trains), ``evaluate.out_dir/floor.json``,
``report.out_dir/{index.html,comparison.md,...}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config import Params

RUN_ID_FILE = "run_id.txt"
SUMMARY_FILE = "summary.json"
FINAL_GRID_FILE = "grid.png"
PROGRESS_FILE = "progress.gif"
FIGURES_DIR = "figures"
FIGURES_INDEX = "figures.json"
SAMPLES_FILE = "samples.pt"
SAMPLE_GRID_FILE = "grid.png"
CLASSIFIER_CHECKPOINT_FILE = "classifier.pt"
CLASSIFIER_METRICS_FILE = "metrics.json"
CLASSIFIER_RESUME_FILE = "resume.pt"
"""The classifier's unfinished run (state after its last epoch; not a DVC output)."""
FLOOR = "floor"
"""Name of the real-vs-real floor's metrics document (``evaluate.out_dir/floor.json``)."""
TOY_SUMMARY_FILE = "summary.json"
REPORT_FILES = ("index.html", "comparison.md", "plots", "grids", "scores.csv")
"""What the report stage writes under ``report.out_dir`` (dvc.yaml's report outs)."""


# data and the evaluator
def mnist_dir(params: Params) -> Path:
    return params.path(params.data.dir) / "mnist"


def classifier_checkpoint(params: Params) -> Path:
    return params.path(params.classifier.out_dir) / CLASSIFIER_CHECKPOINT_FILE


def classifier_metrics(params: Params) -> Path:
    return params.path(params.classifier.out_dir) / CLASSIFIER_METRICS_FILE


def classifier_resume(params: Params) -> Path:
    return params.path(params.classifier.out_dir) / CLASSIFIER_RESUME_FILE


# training
def variant_dir(params: Params, name: str) -> Path:
    return params.path(params.train.out_dir) / name


def summary_path(params: Params, name: str) -> Path:
    return variant_dir(params, name) / SUMMARY_FILE


def final_grid(params: Params, name: str) -> Path:
    return variant_dir(params, name) / FINAL_GRID_FILE


def progress_gif(params: Params, name: str) -> Path:
    return variant_dir(params, name) / PROGRESS_FILE


def figures_dir(params: Params, name: str) -> Path:
    """A model's own pictures (``Algorithm.figures``), with ``figures.json`` captions."""
    return variant_dir(params, name) / FIGURES_DIR


def read_run_id(run_dir: Path) -> str | None:
    """The MLflow run id kept in ``run_dir/run_id.txt``, or None without one."""
    path = run_dir / RUN_ID_FILE
    return path.read_text().strip() or None if path.is_file() else None


# sampling
def sample_dir(params: Params, name: str) -> Path:
    return params.path(params.sample.out_dir) / name


def samples_path(params: Params, name: str) -> Path:
    return sample_dir(params, name) / SAMPLES_FILE


def sample_grid(params: Params, name: str) -> Path:
    return sample_dir(params, name) / SAMPLE_GRID_FILE


# scores
def metrics_dir(params: Params) -> Path:
    return params.path(params.evaluate.out_dir)


def metrics_path(params: Params, name: str) -> Path:
    """``evaluate.out_dir/<name>.json``; ``name`` is a variant or :data:`FLOOR`."""
    return metrics_dir(params) / f"{name}.json"


def curves_dir(params: Params) -> Path:
    return metrics_dir(params) / "curves"


def curves_path(params: Params, name: str) -> Path:
    return curves_dir(params) / f"{name}.csv"


def quality_path(params: Params, name: str) -> Path:
    """The quality curve's scored epochs alone (``dvc plots`` draws a folder's files, one
    plot definition per folder: the losses and FID need two)."""
    return metrics_dir(params) / "quality" / f"{name}.csv"


def sampling_path(params: Params, name: str) -> Path:
    """What sampling cost (seconds per 1,000 images, device): the sample stage's metrics."""
    return metrics_dir(params) / "sampling" / f"{name}.json"


# report and tuning
def report_dir(params: Params) -> Path:
    return params.path(params.report.out_dir)


def tuning_dir(params: Params) -> Path:
    return params.path(params.tune.out_dir)


def tuning_results(params: Params, name: str) -> Path:
    """``tune.out_dir/<name>/``: best.json, applied.json and the Optuna plots."""
    return tuning_dir(params) / name


def tuning_cache(params: Params) -> Path:
    """torch-fidelity's cache of real-image features for tuning objectives."""
    return tuning_dir(params) / ".cache"


# the toy problems
def toy_dir(params: Params) -> Path:
    return params.path(params.toy.out_dir)


def toy_summary(params: Params) -> Path:
    return toy_dir(params) / TOY_SUMMARY_FILE


def toy_animation(params: Params, problem: str, name: str) -> Path:
    """``toy.out_dir/<problem>/<name>.gif`` (its last frame: the same path as .png)."""
    return toy_dir(params) / problem / f"{name}.gif"


def stage_outputs(params: Params) -> dict[str, list[Path]]:
    """What each DVC stage writes (``outs``, ``metrics`` and ``plots``), by stage name as
    ``dvc stage list`` shows it (``train@gan``...)."""
    out: dict[str, list[Path]] = {
        "prepare": [mnist_dir(params)],
        "classifier": [classifier_checkpoint(params), classifier_metrics(params)],
        "floor": [metrics_path(params, FLOOR)],
        "report": [report_dir(params) / f for f in REPORT_FILES],
        "toy": [toy_dir(params)],
    }
    for name in params.variants:
        out[f"train@{name}"] = [
            variant_dir(params, name),
            curves_path(params, name),
            quality_path(params, name),
        ]
        out[f"sample@{name}"] = [sample_dir(params, name), sampling_path(params, name)]
        out[f"evaluate@{name}"] = [metrics_path(params, name)]
    return out
