"""Training: the epoch loop (``loop``), the run identity (``spec``), the run folder
(``rundir``), optimisers (``optim``) and what a run leaves to look at (``artifacts``).

:func:`train_variant` is what ``pipeline train`` calls.
"""

from __future__ import annotations

from pipeline.infra.config import Params
from pipeline.infra.devices import resolve_device
from pipeline.infra.layout import RUN_ID_FILE, curves_path, quality_path, read_run_id, variant_dir
from pipeline.infra.params import to_plain
from pipeline.training.artifacts import write_summary
from pipeline.training.loop import (
    EpochEnd,
    NonFiniteLossError,
    TrainCallback,
    Trainer,
    TrainResult,
    build_nets,
    net_spec,
)
from pipeline.training.optim import make_optimizer, make_optimizers, optimizer_options
from pipeline.training.rundir import ResumeRefusedError
from pipeline.training.spec import RunSpec, code_files, code_hash, run_spec

__all__ = [
    "RUN_ID_FILE",
    "EpochEnd",
    "NonFiniteLossError",
    "ResumeRefusedError",
    "RunSpec",
    "TrainCallback",
    "TrainResult",
    "Trainer",
    "build_nets",
    "code_files",
    "code_hash",
    "curves_path",
    "make_optimizer",
    "make_optimizers",
    "net_spec",
    "optimizer_options",
    "read_run_id",
    "run_spec",
    "train_variant",
    "variant_dir",
]


def train_variant(
    params: Params,
    name: str,
    *,
    seed: int | None = None,
    epochs: int | None = None,
    subset: int | None = None,
    device: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) one variant with one training seed (None: the first of
    ``train.seeds``) into ``models/<name>/seed<S>``, tracked in MLflow as its own run."""
    spec = run_spec(params, name, epochs=epochs, subset=subset, seed=seed)
    dev = resolve_device(device or params.train.device)
    callbacks: list[TrainCallback] = []
    if track:
        from pipeline.infra.recorder import TrainRecorder
        from pipeline.infra.tracking import setup
        from pipeline.training.restore import load_generator

        setup(params)  # an unusable tracking store fails here, before the output folder changes
        callbacks.append(TrainRecorder(params, to_plain(params.train), load_generator))
    trainer = Trainer(
        params,
        spec,
        variant_dir(params, name, spec.seed),
        dev,
        callbacks,
        curves_path=curves_path(params, name, spec.seed),
        progress=progress,
        quality_path=quality_path(params, name, spec.seed),
    )
    result = trainer.run()
    write_summary(result, spec.as_dict()["hyper"])
    return result
