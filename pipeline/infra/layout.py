"""Every output path of every stage, from params: the one place that knows where files go.

dvc.yaml spells the same paths with ``${...}`` interpolation of params.yaml; the test that
resolves it with moved folders compares DVC's view with :func:`stage_outputs`. Nothing here
imports torch or another stage's module, so any module may ask for a path without pulling in
the trainer.

Per variant ``V`` and training seed ``S`` (one of ``train.seeds``)::

    train.out_dir/V/seedS/        checkpoint.pt, config.json, run_id.txt, summary.json,
                                  grid.png (final grid), progress.gif, grids/,
                                  figures/ (a model's own pictures + figures.json)
    sample.out_dir/V/seedS/       samples.pt, grid.png (preview of the scored samples)
    evaluate.out_dir/V/seedS.json   the metrics document (pipeline.infra.metrics.MetricsDoc)
    evaluate.out_dir/curves/V/seedS.csv   per-epoch training curves
    evaluate.out_dir/quality/V/seedS.csv  the quality curve's scored epochs (dvc plots)
    evaluate.out_dir/sampling/V/seedS.json  sampling cost (the sample stage's metrics)

and per variant ``tune.out_dir/V/`` (best.json, applied.json, Optuna plots). Every function
that takes ``seed`` reads None as the first of ``train.seeds`` (the CLI's default).

``toy.out_dir/``: summary.json and ``<problem>/<variant>.{gif,png}`` (pipeline.stages.toy.stage);
and once: ``data.dir/mnist``, ``classifier.out_dir/{classifier.pt,metrics.json}`` (and
``resume.pt`` while it trains), ``evaluate.out_dir/floor.json``,
``report.out_dir/{index.html,comparison.md,...}`` and ``report.out_dir/noise.json`` (the
noise stage's).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.infra.config import Params

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
NOISE_FILE = "noise.json"
"""The noise stage's output under ``report.out_dir``: the best run re-scored on fresh latents
(not under ``evaluate.out_dir``, which the stage reads to find that run)."""
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


def seed_of(params: Params, seed: int | None) -> int:
    """``seed``, or the first of ``train.seeds`` for None."""
    return params.train.first_seed if seed is None else seed


def seed_name(seed: int) -> str:
    """A seed's folder / file stem: ``seed0``."""
    return f"seed{seed}"


# training
def variant_dir(params: Params, name: str, seed: int | None = None) -> Path:
    """One training run's folder: ``train.out_dir/<name>/seed<S>``."""
    return params.path(params.train.out_dir) / name / seed_name(seed_of(params, seed))


def summary_path(params: Params, name: str, seed: int | None = None) -> Path:
    return variant_dir(params, name, seed) / SUMMARY_FILE


def final_grid(params: Params, name: str, seed: int | None = None) -> Path:
    return variant_dir(params, name, seed) / FINAL_GRID_FILE


def progress_gif(params: Params, name: str, seed: int | None = None) -> Path:
    return variant_dir(params, name, seed) / PROGRESS_FILE


def figures_dir(params: Params, name: str, seed: int | None = None) -> Path:
    """A model's own pictures (``Algorithm.figures``), with ``figures.json`` captions."""
    return variant_dir(params, name, seed) / FIGURES_DIR


def read_run_id(run_dir: Path) -> str | None:
    """The MLflow run id kept in ``run_dir/run_id.txt``, or None without one."""
    path = run_dir / RUN_ID_FILE
    return path.read_text().strip() or None if path.is_file() else None


# sampling
def sample_dir(params: Params, name: str, seed: int | None = None) -> Path:
    return params.path(params.sample.out_dir) / name / seed_name(seed_of(params, seed))


def samples_path(params: Params, name: str, seed: int | None = None) -> Path:
    return sample_dir(params, name, seed) / SAMPLES_FILE


def sample_grid(params: Params, name: str, seed: int | None = None) -> Path:
    return sample_dir(params, name, seed) / SAMPLE_GRID_FILE


# scores
def metrics_dir(params: Params) -> Path:
    return params.path(params.evaluate.out_dir)


def metrics_path(params: Params, name: str, seed: int | None = None) -> Path:
    """``evaluate.out_dir/<name>/seed<S>.json``, or ``evaluate.out_dir/floor.json`` for
    :data:`FLOOR` (the real-vs-real floor has no seed)."""
    if name == FLOOR:
        return metrics_dir(params) / f"{FLOOR}.json"
    return metrics_dir(params) / name / f"{seed_name(seed_of(params, seed))}.json"


def curves_dir(params: Params) -> Path:
    return metrics_dir(params) / "curves"


def curves_path(params: Params, name: str, seed: int | None = None) -> Path:
    return curves_dir(params) / name / f"{seed_name(seed_of(params, seed))}.csv"


def quality_path(params: Params, name: str, seed: int | None = None) -> Path:
    """The quality curve's scored epochs alone (``dvc plots`` draws a folder's files, one
    plot definition per folder: the losses and FID need two)."""
    return metrics_dir(params) / "quality" / name / f"{seed_name(seed_of(params, seed))}.csv"


def sampling_path(params: Params, name: str, seed: int | None = None) -> Path:
    """What sampling cost (seconds per 1,000 images, device): the sample stage's metrics."""
    return metrics_dir(params) / "sampling" / name / f"{seed_name(seed_of(params, seed))}.json"


# report and tuning
def report_dir(params: Params) -> Path:
    return params.path(params.report.out_dir)


def noise_path(params: Params) -> Path:
    return report_dir(params) / NOISE_FILE


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


def stage_name(stage: str, name: str, seed: int) -> str:
    """A per-run stage as DVC's ``matrix`` names it: ``train@gan-0``."""
    return f"{stage}@{name}-{seed}"


def stage_outputs(params: Params) -> dict[str, list[Path]]:
    """What each DVC stage writes (``outs``, ``metrics`` and ``plots``), by stage name as
    ``dvc stage list`` shows it (``train@gan-0``...: variant x seed)."""
    out: dict[str, list[Path]] = {
        "prepare": [mnist_dir(params)],
        "classifier": [classifier_checkpoint(params), classifier_metrics(params)],
        "floor": [metrics_path(params, FLOOR)],
        "noise": [noise_path(params)],
        "report": [report_dir(params) / f for f in REPORT_FILES],
        "toy": [toy_dir(params)],
    }
    for name in params.variants:
        for seed in params.train.seeds:
            out[stage_name("train", name, seed)] = [
                variant_dir(params, name, seed),
                curves_path(params, name, seed),
                quality_path(params, name, seed),
            ]
            out[stage_name("sample", name, seed)] = [
                sample_dir(params, name, seed),
                sampling_path(params, name, seed),
            ]
            out[stage_name("evaluate", name, seed)] = [metrics_path(params, name, seed)]
    return out
