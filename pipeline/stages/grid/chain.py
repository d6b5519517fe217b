"""One (variant, seed) chain in one worker process: train -> sample -> evaluate through the
same library functions the stage commands call, so torch, MLflow and the evaluator are
imported once per worker instead of once per stage.

This module runs on Dask workers; it imports nothing heavy at module level (the client
pickles :func:`run_chain` by reference and the worker imports this module to call it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

TOPIC = "pipeline-grid"
"""Dask event topic of the chains' progress messages (stage started), read by the client."""


def _tell(chain: str, **msg: Any) -> None:
    """A progress message to the client; outside a Dask worker (a direct call) a no-op."""
    try:
        from distributed import get_worker

        get_worker().log_event(TOPIC, {"chain": chain, "time": time.time(), **msg})
    except (ImportError, ValueError):
        pass


def run_chain(
    params_file: str,
    variant: str,
    seed: int,
    stages: tuple[str, ...],
    threads: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Run ``stages`` (a suffix of train, sample, evaluate) of one chain; returns the seconds
    each stage took and the chain's wall time. ``threads``: torch CPU threads when
    ``train.threads`` is unset (1 for the embedded CPU cluster, one per core being shared);
    ``device``: overrides the sections' devices (``cuda`` on a worker pinned to one GPU)."""
    import warnings

    from pipeline.infra.devices import use_threads
    from pipeline.training.params import load_checked

    # prdc's sklearn/joblib notes that a daemonic Dask worker runs it on one job: as intended.
    warnings.filterwarnings("ignore", message="Inside a Dask worker")
    name = f"{variant}-{seed}"
    start = time.perf_counter()
    p = load_checked(Path(params_file))
    use_threads(p.train.threads if p.train.threads is not None else threads)
    seconds: dict[str, float] = {}
    for stage in stages:
        _tell(name, stage=stage)
        t0 = time.perf_counter()
        if stage == "train":
            from pipeline.stages.train import train_variant

            if "inception" in p.evaluate.extractors:  # as `pipeline train`: fail before training
                from pipeline.infra.weights import check_inception_weights

                check_inception_weights(p)
            train_variant(p, variant, seed=seed, device=device, progress=False)
        elif stage == "sample":
            from pipeline.stages.sample import sample_variant

            sample_variant(p, variant, seed=seed, device=device)
        elif stage == "evaluate":
            from pipeline.stages.evaluate.stage import evaluate_variant

            evaluate_variant(p, variant, device=device, seed=seed)
        else:
            raise ValueError(f"unknown chain stage {stage!r}")
        seconds[stage] = time.perf_counter() - t0
    return {"seconds": seconds, "wall_s": time.perf_counter() - start}
