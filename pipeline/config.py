"""params.yaml as pydantic models: validated once, defaults in one place.

Every relative path in the file is resolved against the directory that holds the file
(never the working directory), so a params file in a temp dir keeps every output there.
Hyperparameter defaults of each variant live in its own file under ``pipeline/variants``;
a ``variants.<name>`` block in params.yaml overrides them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import ConfigError

MIRROR_ENV = "PIPELINE_MNIST_MIRROR"
"""Environment variable naming a local MNIST mirror (directory or URL); overrides params."""

TRACKING_ENV = "PIPELINE_TRACKING_URI"
"""Environment variable overriding ``tracking.uri`` (e.g. a tracking server)."""

Device = str  # "auto", "cpu", "cuda", "cuda:1", ...


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    log_model: bool = True
    timeout_s: float = Field(default=10.0, gt=0)


class TrainConfig(Strict):
    seed: int = 0
    device: Device = "auto"
    batch_size: int = Field(default=64, ge=1)
    z_dim: int = Field(default=100, ge=1)
    subset: int | None = Field(default=None, ge=1, description="First N training images only.")
    checkpoint_every: int = Field(default=1, ge=1, description="Epochs between checkpoints.")
    grid_every: int = Field(default=1, ge=1, description="Epochs between sample grids.")
    log_every: int = Field(default=200, ge=1, description="Steps between progress updates.")
    fast: bool = Field(default=True, description="Device-resident data, no per-step host sync.")
    cuda_graphs: bool = Field(
        default=False,
        description="With train.fast: replay each step as a CUDA graph (on the CPU: the same "
        "static-buffer step, run eagerly).",
    )
    out_dir: Path = Path("models")


class VariantParams(Strict):
    """One ``variants.<name>`` block; unset fields take the variant's published defaults."""

    epochs: int | None = Field(default=None, ge=1)
    lr: float | None = Field(default=None, gt=0)
    betas: tuple[float, float] | None = None
    n_critic: int | None = Field(default=None, ge=1)
    options: dict[str, float] = Field(default_factory=dict)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not all(0.0 <= b < 1.0 for b in v):
            raise ValueError("each beta must be in [0, 1)")
        return v


class SampleConfig(Strict):
    n: int = Field(default=10_000, ge=1)
    seed: int = 1234
    batch_size: int = Field(default=1000, ge=1)
    device: Device = "auto"
    out_dir: Path = Path("samples")


class ClassifierConfig(Strict):
    epochs: int = Field(default=4, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=128, ge=1)
    seed: int = 0
    subset: int | None = Field(default=None, ge=1)
    device: Device = "auto"
    out_dir: Path = Path("models/classifier")


class EvaluateConfig(Strict):
    extractors: list[Literal["classifier", "inception"]] = Field(
        default_factory=lambda: ["classifier", "inception"], min_length=1
    )
    inception_weights: Path | None = None
    vgg16_weights: Path | None = None
    batch_size: int = Field(default=500, ge=1)
    device: Device = "auto"
    n_real: int = Field(default=10_000, ge=2, le=10_000, description="MNIST test images used.")
    floor_n: int = Field(default=10_000, ge=2, le=60_000, description="Train images for floor.")
    kid_subset_size: int = Field(default=1000, ge=2)
    out_dir: Path = Path("metrics")
    cache_dir: Path = Path("metrics/.cache")


class ReportConfig(Strict):
    out_dir: Path = Path("reports")
    gif_max_mb: float = Field(
        default=4.0,
        gt=0,
        description="Largest progression GIF embedded as is; bigger ones keep every k-th frame.",
    )


class TuneConfig(Strict):
    """``pipeline tune``: Optuna search space, per-trial budget, storage and pruning.

    Ranges default to the wide ones of Lucic et al. 2018 ("Are GANs Created Equal?").
    """

    lr: tuple[float, float] = Field(default=(1e-5, 1e-2), description="Log-uniform range.")
    beta1: tuple[float, float] = Field(default=(0.0, 0.9), description="Adam variants only.")
    beta2: tuple[float, float] = Field(default=(0.9, 0.999), description="Adam variants only.")
    n_critic: tuple[int, int] = Field(
        default=(1, 10), description="Critic variants only (wgan, wgan_gp)."
    )
    epochs: int = Field(default=5, ge=1, description="Training epochs per trial.")
    trials: int = Field(
        default=20, ge=1, description="Finished trials one `pipeline tune` adds to the study."
    )
    sample_n: int = Field(default=2000, ge=10, description="Samples scored per trial and epoch.")
    storage: str = Field(
        default="sqlite:///optuna.db",
        description="Optuna storage URL: sqlite:///rel.db (one worker), postgresql://..., "
        "journal:///abs/file.log or journal://rel.log (shared file system, no server).",
    )
    seed: int = 0
    pruner_warmup_epochs: int = Field(
        default=2, ge=0, description="No pruning before the report of this epoch."
    )
    pruner_startup_trials: int = Field(
        default=5, ge=0, description="Trials that finish before pruning starts."
    )
    pruner_patience: int = Field(
        default=1, ge=0, description="Keep a trial that improved in its last patience+1 epochs."
    )
    heartbeat_s: int = Field(
        default=60, ge=1, description="RDB storages: seconds between a running trial's beats."
    )
    grace_s: int | None = Field(
        default=None, ge=1, description="Silence after which a trial is failed (2 x heartbeat)."
    )
    max_retry: int = Field(
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

    # Directory of the params file; every relative path resolves against it.
    root: Path = Field(default=Path("."), exclude=True)

    def path(self, p: Path | str) -> Path:
        """``p`` resolved against the params file's directory."""
        p = Path(p)
        return p if p.is_absolute() else (self.root / p)

    def mnist_mirror(self) -> str | None:
        env = os.environ.get(MIRROR_ENV)
        return env if env else self.data.mirror

    def tracking_uri(self) -> str:
        return os.environ.get(TRACKING_ENV) or self.tracking.uri

    def with_section(self, section: str, **fields: Any) -> Params:
        """A copy with some fields of one section replaced (in-process overrides such as a
        benchmark's or a tuning trial's; not re-validated, like ``model_copy``)."""
        current = getattr(self, section)
        return self.model_copy(update={section: current.model_copy(update=fields)})


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def format_validation_error(err: ValidationError, source: str) -> str:
    """The first problem as one line: ``params.yaml: train.batch_size: Input should be ...``."""
    first = err.errors()[0]
    loc = _dotted(first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(err.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {loc}: {msg}{suffix}"


def parse_params(raw: Any, root: Path, source: str = "params.yaml") -> Params:
    """Validate an already-loaded mapping; raises ConfigError with the dotted key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    if "root" in raw:
        raise ConfigError(f"{source}: root: unknown key")
    try:
        params = Params.model_validate({**raw, "root": root})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    _check_variants(params, source)
    return params


def _check_variants(params: Params, source: str) -> None:
    # Imported here: the registry pulls in torch, which `pipeline --help` should not pay for.
    from pipeline.variants import registry

    for name, block in params.variants.items():
        try:
            variant = registry.get(name)
        except KeyError:
            known = ", ".join(registry.names())
            raise ConfigError(
                f"{source}: variants.{name}: unknown variant (known: {known})"
            ) from None
        for key in block.options:
            if key not in variant.options:
                known = ", ".join(variant.options) or "none"
                raise ConfigError(
                    f"{source}: variants.{name}.options.{key}: unknown option for {name} "
                    f"(known: {known})"
                )


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate a params file. Raises ConfigError (one line) on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    return parse_params(raw, path.resolve().parent, source=path.name)


def to_plain(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict (paths as strings, tuples as lists)."""
    return model.model_dump(mode="json")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; used for MLflow params."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def merge_overrides(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in ``over`` replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out


def _main(argv: list[str]) -> None:
    """``python -m pipeline.config merge PARAMS OVERRIDES``: merge a profile into a params
    file in place (used by scripts/smoke.sh), then validate the result."""
    if len(argv) != 3 or argv[0] != "merge":
        raise SystemExit("usage: python -m pipeline.config merge PARAMS.yaml OVERRIDES.yaml")
    target, profile = Path(argv[1]), Path(argv[2])
    merged = merge_overrides(
        yaml.safe_load(target.read_text()) or {}, yaml.safe_load(profile.read_text()) or {}
    )
    target.write_text(
        f"# params.yaml merged with {profile}\n" + yaml.safe_dump(merged, sort_keys=False)
    )
    load_params(target)


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
