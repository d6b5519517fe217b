"""The train stage's edge: :func:`train_variant` (what ``pipeline train`` calls) resolves what
a run needs (its identity, device, folder, tracking recorder, and the params it reads:
:func:`~pipeline.training.setup.run_setup`) and hands it to the trainer.
"""

from __future__ import annotations

from pipeline.infra.config import Params
from pipeline.infra.devices import resolve_device
from pipeline.infra.layout import curves_path, quality_path, variant_dir
from pipeline.infra.params import to_plain
from pipeline.training.artifacts import model_card, write_summary
from pipeline.training.loop import (
    TrainCallback,
    Trainer,
    TrainResult,
)
from pipeline.training.setup import run_setup
from pipeline.training.spec import run_spec


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
        from pipeline.infra.tracking import check_store
        from pipeline.training.restore import load_generator

        # An unusable tracking store fails here, before the output folder changes; the
        # recorder opens the MLflow run (importing mlflow) while the first epoch trains.
        check_store(params)
        callbacks.append(TrainRecorder(params, to_plain(params.train), load_generator))
    trainer = Trainer(
        run_setup(params),
        spec,
        variant_dir(params, name, spec.seed),
        dev,
        callbacks,
        curves_path=curves_path(params, name, spec.seed),
        progress=progress,
        quality_path=quality_path(params, name, spec.seed),
    )
    result = trainer.run()
    from pipeline.core.variants.base import registry

    write_summary(result, spec.as_dict()["hyper"], model_card(registry.get(name)))
    return result
