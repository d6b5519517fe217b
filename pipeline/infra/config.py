"""params.yaml as pydantic models: validated once, defaults in one place.

Over 300 lines: one model per params.yaml section, the whole schema read as one (loading
and merging live in pipeline/infra/params.py, the registry check in pipeline/training/params.py).

Every relative path in the file is resolved against the directory that holds the file
(never the working directory), so a params file in a temp dir keeps every output there.
Hyperparameter defaults of each variant live in its own file under ``pipeline/core/variants``;
a ``variants.<name>`` block in params.yaml overrides them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic import Strict as NoCoercion
from pydantic_core import PydanticCustomError

MIRROR_ENV = "PIPELINE_MNIST_MIRROR"
"""Environment variable naming a local MNIST mirror (directory or URL); overrides params."""

TRACKING_ENV = "PIPELINE_TRACKING_URI"
"""Environment variable overriding ``tracking.uri`` (e.g. a tracking server)."""

MIN_EVAL_IMAGES = 10
"""Fewest images a scored set may have (IS uses 10 splits; precision/recall need > 3
neighbours). Defined here, not in pipeline.stages.evaluate (which uses it), so that validating
params.yaml does not import torch."""

Device = str  # "auto", "cpu", "cuda", "cuda:1", ...


def _not_a_bool(value: Any) -> Any:
    # Lax float mode would read `true` as 1.0; strict mode would refuse "1e-3", which YAML 1.1
    # (PyYAML) loads as a string. So: lax, minus booleans.
    if isinstance(value, bool):
        raise PydanticCustomError("float_type", "Input should be a valid number, not a boolean")
    return value


# Field types for params.yaml: no bool <-> number coercion (`seed: true` is an error, not 1),
# no float -> int truncation; floats accept YAML ints (`lr: 1`) and must be finite (the
# models below set allow_inf_nan=False).
Int = Annotated[int, NoCoercion()]
Float = Annotated[float, BeforeValidator(_not_a_bool)]
Bool = Annotated[bool, NoCoercion()]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(Strict):
    dir: Path = Path("data")
    mirror: str | None = Field(
        default=None,
        description=f"Directory or URL holding the four MNIST .gz files; ${MIRROR_ENV} wins.",
    )


class TrackingConfig(Strict):
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "mnist-gan-comparison"
    artifacts: Path = Path("mlartifacts")
    log_model: Bool = True
    timeout_s: Float = Field(default=10.0, gt=0)


class DivergenceConfig(Strict):
    """``train.divergence``: when a run with finite numbers counts as diverged (see
    pipeline/core/divergence.py); NaN/inf losses stop a run either way."""

    enabled: Bool = True
    max_loss: Float = Field(default=1e6, gt=0, description="Largest |loss| a window may log.")
    zero_grad_windows: Int = Field(
        default=2, ge=1, description="Windows in a row with a generator gradient of exactly 0."
    )


class TrainConfig(Strict):
    seeds: list[Int] = Field(
        default_factory=lambda: [0, 1, 2],
        min_length=1,
        description="Training seeds: every variant trains once per seed (the same seeds for "
        "every variant, so comparisons are paired). The first is the default of the CLI's "
        "--seed and the run the report's single-run sections show.",
    )
    device: Device = "auto"
    batch_size: Int = Field(default=64, ge=1)
    z_dim: Int = Field(default=100, ge=1)
    subset: Int | None = Field(default=None, ge=1, description="First N training images only.")
    checkpoint_every: Int = Field(default=1, ge=1, description="Epochs between checkpoints.")
    checkpoint_every_s: Float = Field(
        default=300.0,
        ge=0,
        description="Seconds between checkpoints (checked at the epochs checkpoint_every "
        "allows; the last epoch always writes one); 0: at each of those epochs. Not part of "
        "the run's identity: a resume retrains the epochs after the last checkpoint exactly.",
    )
    grid_every: Int = Field(default=1, ge=1, description="Epochs between sample grids.")
    gif_frames: Int = Field(
        default=25,
        ge=1,
        description="Sample grids per run (the progression GIF's frames), spread evenly from "
        "the first epoch to the last (every epoch of a shorter run). Not part of the run's "
        "identity.",
    )
    log_every: Int = Field(default=200, ge=1, description="Steps between progress updates.")
    score_every: Int = Field(
        default=5,
        ge=0,
        description="Epochs between the quality curve's classifier FID/KID (and after the last "
        "epoch); 0: off. Not part of the run's identity: it changes the curves, not the weights.",
    )
    score_n: Int = Field(
        default=2000, ge=MIN_EVAL_IMAGES, description="Samples scored for the quality curve."
    )
    threads: Int | None = Field(
        default=None,
        ge=1,
        description="torch CPU threads for training and tuning (null: torch's default, every "
        "core); 1 when several torch processes share a small machine.",
    )
    fast: Bool = Field(default=True, description="Device-resident data, no per-step host sync.")
    cuda_graphs: Bool = Field(
        default=False,
        description="With train.fast: replay each step as a CUDA graph (on the CPU: the same "
        "static-buffer step, run eagerly).",
    )
    detach_slopes: Bool = Field(
        default=True,
        description="With train.fast and a gradient penalty: the critic's LeakyReLUs take their "
        "slope out of the graph (same gradients; faster on a CPU, measured per device).",
    )
    tf32: Bool = Field(
        default=False,
        description="CUDA: let matmuls and convolutions use TF32 (off: float32 throughout).",
    )
    deterministic: Bool = Field(
        default=False,
        description="CUDA: deterministic cuDNN/cuBLAS kernels, cudnn.benchmark off, so a run "
        "and its resumption repeat bit for bit (slower; the CPU is deterministic anyway).",
    )
    divergence: DivergenceConfig = Field(default_factory=DivergenceConfig)
    out_dir: Path = Path("models")
    # What a comparison holds equal: each variant's epochs, or generator updates (n_critic = 5
    # models make 1/5 of the generator updates per epoch of n_critic = 1 models).
    budget: Literal["epochs", "g_updates"] = Field(
        default="epochs",
        description="Match runs by epochs (each variant's `epochs`) or by generator updates "
        "(train.g_updates: every run trains the fewest whole epochs that reach it).",
    )
    g_updates: Int | None = Field(
        default=None, ge=1, description="Generator updates per run when budget is g_updates."
    )

    @model_validator(mode="after")
    def _budget_has_a_target(self) -> TrainConfig:
        if self.budget == "g_updates" and self.g_updates is None:
            raise ValueError("budget g_updates needs train.g_updates (a count of updates)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _no_single_seed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "seed" in data:
            raise PydanticCustomError(
                "seed_renamed", "the key seed was replaced by seeds, a list (e.g. seeds: [0, 1, 2])"
            )
        return data

    @field_validator("seeds")
    @classmethod
    def _seeds_valid(cls, v: list[int]) -> list[int]:
        if any(s < 0 for s in v):
            raise ValueError("seeds must be non-negative integers")
        if len(set(v)) != len(v):
            raise ValueError("seeds must be unique")
        return v

    @property
    def first_seed(self) -> int:
        """The CLI's default ``--seed`` and the seed of the report's single-run sections."""
        return self.seeds[0]


class VariantParams(Strict):
    """One ``variants.<name>`` block; unset fields take the variant's published defaults."""

    epochs: Int | None = Field(default=None, ge=1)
    lr: Float | None = Field(default=None, gt=0)
    lr_d: Float | None = Field(
        default=None, gt=0, description="The critic's own learning rate (TTUR); null: lr."
    )
    betas: tuple[Float, Float] | None = None
    n_critic: Int | None = Field(default=None, ge=1)
    options: dict[str, Float] = Field(default_factory=dict)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not all(0.0 <= b < 1.0 for b in v):
            raise ValueError("each beta must be in [0, 1)")
        return v


class SampleConfig(Strict):
    n: Int = Field(default=10_000, ge=1)
    seed: Int = 1234
    batch_size: Int = Field(default=1000, ge=1)
    device: Device = "auto"
    out_dir: Path = Path("samples")


class ClassifierConfig(Strict):
    epochs: Int = Field(default=4, ge=1)
    lr: Float = Field(default=1e-3, gt=0)
    batch_size: Int = Field(default=128, ge=1)
    seed: Int = 0
    subset: Int | None = Field(default=None, ge=1)
    device: Device = "auto"
    out_dir: Path = Path("models/classifier")


class EvaluateConfig(Strict):
    extractors: list[Literal["classifier", "inception"]] = Field(
        default_factory=lambda: ["classifier", "inception"], min_length=1
    )
    inception_weights: Path | None = None
    vgg16_weights: Path | None = None
    batch_size: Int = Field(default=500, ge=1)
    device: Device = "auto"
    n_real: Int = Field(
        default=10_000, ge=MIN_EVAL_IMAGES, le=10_000, description="MNIST test images used."
    )
    floor_n: Int = Field(
        default=10_000, ge=MIN_EVAL_IMAGES, le=60_000, description="Train images for floor."
    )
    kid_subset_size: Int = Field(default=1000, ge=2)
    noise_draws: Int = Field(
        default=3,
        ge=0,
        description="The noise stage: fresh latent draws of the best run, each scored like the "
        "stage's samples (evaluation noise apart from training's); 0 turns it off.",
    )
    tf32: Bool = Field(
        default=False,
        description="CUDA: let feature extractors use TF32 (off: float32, as on a CPU; part of "
        "the real-feature cache key).",
    )
    out_dir: Path = Path("metrics")
    cache_dir: Path = Path("metrics/.cache")


class ReportConfig(Strict):
    out_dir: Path = Path("reports")
    gif_max_mb: Float = Field(
        default=4.0,
        gt=0,
        description="Largest progression GIF embedded as is; bigger ones keep every k-th frame.",
    )
    reference: str = Field(
        default="gan",
        description="The variant every other one is compared with, seed by seed (paired tests).",
    )


class TuneConfig(Strict):
    """``pipeline tune``: Optuna search space, per-trial budget, storage and pruning.

    Ranges default to the wide ones of Lucic et al. 2018 ("Are GANs Created Equal?").
    """

    lr: tuple[Float, Float] = Field(default=(1e-5, 1e-2), description="Log-uniform range.")
    beta1: tuple[Float, Float] = Field(default=(0.0, 0.9), description="Adam variants only.")
    beta2: tuple[Float, Float] = Field(default=(0.9, 0.999), description="Adam variants only.")
    n_critic: tuple[Int, Int] = Field(
        default=(1, 10), description="Critic variants only (wgan, wgan_gp)."
    )
    epochs: Int = Field(default=5, ge=1, description="Training epochs per trial.")
    trials: Int = Field(
        default=20, ge=1, description="Finished trials one `pipeline tune` adds to the study."
    )
    sample_n: Int = Field(
        default=2000, ge=MIN_EVAL_IMAGES, description="Samples scored per trial and epoch."
    )
    # Trials are scored against held-out *training* images, never the test set the final
    # scores use (pipeline.stages.tune.holdout); trials train on the other 60,000 - holdout.
    holdout: Int = Field(
        default=10_000, ge=MIN_EVAL_IMAGES, le=50_000,
        description="MNIST training images held out as the trials' reference.",
    )  # fmt: skip
    holdout_seed: Int = Field(default=0, ge=0, description="Seed of the held-out slice.")
    storage: str = Field(
        default="sqlite:///optuna.db",
        description="Optuna storage URL: sqlite:///rel.db (one worker), postgresql://..., "
        "journal:///abs/file.log or journal://rel.log (no server; --jobs N on one machine).",
    )
    seed: Int = 0
    pruner_warmup_epochs: Int = Field(
        default=2, ge=0, description="No pruning before the report of this epoch."
    )
    pruner_startup_trials: Int = Field(
        default=5, ge=0, description="Trials that finish before pruning starts."
    )
    pruner_patience: Int = Field(
        default=1, ge=0, description="Keep a trial that improved in its last patience+1 epochs."
    )
    heartbeat_s: Int = Field(
        default=60, ge=1, description="RDB storages: seconds between a running trial's beats."
    )
    grace_s: Int | None = Field(
        default=None, ge=1, description="Silence after which a trial is failed (2 x heartbeat)."
    )
    max_retry: Int = Field(
        default=2, ge=0, description="Re-runs of a trial whose worker died (heartbeat lost)."
    )
    out_dir: Path = Path("reports/tuning")

    @field_validator("lr", "beta1", "beta2", "n_critic")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError("must be [low, high] with low <= high")
        return v

    @field_validator("lr")
    @classmethod
    def _lr_positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] <= 0:
            raise ValueError("a log-uniform range needs low > 0")
        return v

    @field_validator("beta1", "beta2")
    @classmethod
    def _beta_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError("each beta must be in [0, 1)")
        return v

    @field_validator("n_critic")
    @classmethod
    def _n_critic_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 1:
            raise ValueError("n_critic must be >= 1")
        return v

    def grace_period_s(self) -> int:
        return self.grace_s if self.grace_s is not None else 2 * self.heartbeat_s


class ToyConfig(Strict):
    """``pipeline toy``: the 1-D Gaussian and the 8-Gaussian ring on small MLPs, seconds each."""

    problems: list[Literal["gaussian1d", "ring8"]] = Field(
        default_factory=lambda: ["gaussian1d", "ring8"], min_length=1
    )
    variants: list[str] | None = Field(
        default=None,
        description="null: every variant of `variants:` that applies (adversarial, "
        "unconditional, MLP nets).",
    )
    steps: Int = Field(default=400, ge=1, description="Steps of the variant's schedule.")
    batch_size: Int = Field(default=128, ge=2)
    z_dim: Int = Field(default=2, ge=1)
    widths: list[Int] = Field(default_factory=lambda: [64, 64], min_length=1)
    lr: Float | None = Field(
        default=0.002, gt=0, description="Every variant's lr (seconds-long runs); null: its own."
    )
    seed: Int = 0
    workers: Int | None = Field(
        default=None, ge=1,
        description="CPU processes the runs are spread over (null: one per core, at most 8).",
    )  # fmt: skip
    frames: Int = Field(default=20, ge=1, description="GIF frames (plus the first).")
    n_eval: Int = Field(default=1000, ge=10, description="Generated points scored and drawn.")
    bins: Int = Field(default=50, ge=2, description="1-D histograms (JS divergence) over [0, 8].")
    ring_radius: Float = Field(default=2.0, gt=0)
    ring_std: Float = Field(default=0.05, gt=0)
    cover_min: Int = Field(
        default=10, ge=1, description="High-quality points that make a mode covered."
    )
    out_dir: Path = Path("toy")


class GridConfig(Strict):
    """``pipeline grid``: the (variant, seed) chains at once on Dask distributed."""

    workers: Int | None = Field(
        default=None,
        ge=1,
        description="CPU: single-threaded worker processes of the embedded cluster (null: one "
        "per core).",
    )
    per_device: Int = Field(
        default=1, ge=1, description="CUDA: chains at once per GPU (one worker process each)."
    )
    scheduler: str | None = Field(
        default=None,
        description="Address of a running Dask scheduler (tcp://host:8786); null: an embedded "
        "LocalCluster.",
    )


class Params(Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    variants: dict[str, VariantParams] = Field(default_factory=dict)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    toy: ToyConfig = Field(default_factory=ToyConfig)
    grid: GridConfig = Field(default_factory=GridConfig)

    # Directory of the params file; every relative path resolves against it.
    root: Path = Field(default=Path("."), exclude=True)

    def path(self, p: Path | str) -> Path:
        """``p`` resolved against the params file's directory."""
        p = Path(p)
        return p if p.is_absolute() else (self.root / p)

    def mnist_mirror(self) -> str | None:
        """$PIPELINE_MNIST_MIRROR as given (relative to the working directory, like any
        environment variable), else ``data.mirror``: a URL as is, a relative directory
        resolved against the params file's folder."""
        env = os.environ.get(MIRROR_ENV)
        if env:
            return env
        mirror = self.data.mirror
        if not mirror or "://" in mirror:
            return mirror
        return str(self.path(Path(mirror).expanduser()))

    def tracking_uri(self) -> str:
        return os.environ.get(TRACKING_ENV) or self.tracking.uri

    def with_section(self, section: str, **fields: Any) -> Params:
        """A copy with some fields of one section replaced (in-process overrides such as a
        benchmark's or a tuning trial's; not re-validated, like ``model_copy``)."""
        current = getattr(self, section)
        return self.model_copy(update={section: current.model_copy(update=fields)})
