"""`pipeline toy`: every applicable adversarial variant on the GAN paper's 1-D Gaussian and
on the 8-Gaussian ring, in seconds on a CPU (see :mod:`pipeline.stages.toy.run`).

Outputs under ``toy.out_dir`` (written as one folder, atomically)::

    summary.json                       scores, steps, timings and MLflow run ids, per problem
                                       and variant; the variants that do not apply, and why
    <problem>/<variant>.gif, .png      the animation and its last frame

One MLflow run per problem and variant, in the experiment named tracking.experiment + "-toy".
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pipeline.core.variants._known import known
from pipeline.core.variants.base import Variant, registry
from pipeline.infra import layout
from pipeline.infra.config import Params
from pipeline.infra.devices import cpu_threads, resolve_device, use_threads
from pipeline.infra.errors import PipelineError
from pipeline.infra.io import atomic_dir, write_json
from pipeline.infra.params import to_plain
from pipeline.stages.toy.problems import PROBLEMS, make_problem
from pipeline.stages.toy.run import ToyResult, not_applicable, train_toy

if TYPE_CHECKING:
    from pipeline.core.hyper import Hyper
    from pipeline.infra.config import ToyConfig

__all__ = ["PROBLEMS", "ToyOutcome", "applicable_variants", "run_toy"]


@dataclass
class ToyOutcome:
    out_dir: Path
    results: list[ToyResult]
    skipped: dict[str, str]  # variant -> why it does not apply
    seconds: float
    workers: int = 1  # processes the runs were spread over


def applicable_variants(
    params: Params, names: list[str] | None = None
) -> tuple[list[Variant], dict[str, str]]:
    """The variants to run (``names``, else toy.variants, else every variant of
    ``variants:``) and, for the others among them, why they do not apply."""
    asked = names or params.toy.variants
    chosen = list(asked) if asked else list(params.variants) or registry.names()
    run, skipped = [], {}
    for name in chosen:
        variant = known(name)
        reason = not_applicable(variant)
        if reason is None:
            run.append(variant)
        elif asked:
            raise PipelineError(f"toy: variant {name} does not apply: {reason}")
        else:
            skipped[name] = reason
    return run, skipped


def _record(params: Params, result: ToyResult, hyper: dict[str, Any], files: list[Path]) -> str:
    """One MLflow run: parameters, per-frame losses, final scores, the GIF and last frame."""
    from mlflow.entities import Metric, Param

    from pipeline.infra import tracking
    from pipeline.infra.params import flatten

    tp = params.with_section("tracking", experiment=params.tracking.experiment + "-toy")
    c, exp = tracking.client(tp), tracking.setup(tp)
    tags = {"variant": result.variant, "toy.problem": result.problem, "stage": "toy",
            "git_commit": tracking.git_commit(params.root)}  # fmt: skip
    run_id = c.create_run(exp, run_name=f"{result.problem}/{result.variant}", tags=tags).info.run_id
    resolved = {"hyper": hyper, "toy": to_plain(params.toy)}
    ps = [Param(k, v) for k, v in tracking.flat_str_params(flatten(resolved)).items()]
    now = int(time.time() * 1000)
    ms = [Metric(k, v, now, f.step) for f in result.frames for k, v in f.losses.items() if v == v]
    ms += [Metric(k, v, now, result.steps) for k, v in result.metrics.items()]
    ms.append(Metric("seconds", result.seconds, now, result.steps))
    for i in range(0, len(ps), 100):
        c.log_batch(run_id, params=ps[i : i + 100])
    for i in range(0, len(ms), 500):
        c.log_batch(run_id, metrics=ms[i : i + 500])
    for path in files:
        c.log_artifact(run_id, str(path))
    c.set_terminated(run_id)
    return run_id


def run_toy(
    params: Params,
    variants: list[str] | None = None,
    problems: list[str] | None = None,
    device: str = "cpu",
    track: bool = True,
) -> ToyOutcome:
    """Train every chosen variant on every chosen problem; write toy.out_dir in one swap."""
    cfg = params.toy
    for p in problems or []:
        if p not in PROBLEMS:
            raise PipelineError(f"toy: unknown problem {p!r} (known: {', '.join(PROBLEMS)})")
    chosen = problems or list(cfg.problems)
    run, skipped = applicable_variants(params, variants)
    if not run:
        raise PipelineError("toy: no applicable variant (toy.variants / variants:)")
    dev = resolve_device(device)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"problems": {n: {} for n in chosen}, "not_applicable": skipped,
                               "config": to_plain(cfg)}  # fmt: skip
    jobs = []
    for name in chosen:
        for variant in run:
            h = variant.resolve(params.variants.get(variant.name))
            if cfg.lr is not None:
                h = dataclasses.replace(h, lr=cfg.lr, lr_d=None)
            jobs.append(_Job(name, variant.name, h, cfg, str(dev)))
    workers = min(toy_workers(cfg.workers), len(jobs)) if dev.type == "cpu" else 1
    results: list[ToyResult] = []
    out = layout.toy_dir(params)
    # One CPU thread per run: the toy nets are 64 units wide, where intra-op threads only add
    # synchronisation; on a loaded 2-core machine torch's default of 2 made each step ~9x
    # slower (0.23 s vs 0.025 s, measured). The runs are spread over `workers` processes.
    with atomic_dir(out) as tmp, cpu_threads(1) if dev.type == "cpu" else nullcontext():
        for job, result in zip(jobs, _map(jobs, tmp, workers), strict=True):
            results.append(result)
            row = {**result.metrics, "steps": result.steps, "g_iters": result.g_iters,
                   "seconds": round(result.seconds, 3), "lr": job.hyper.lr}  # fmt: skip
            if track:
                files = list(job.figures(tmp))
                row["run_id"] = _record(params, result, dataclasses.asdict(job.hyper), files)
            summary["problems"][job.problem][job.variant] = row
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        summary["workers"] = workers
        write_json(tmp / layout.TOY_SUMMARY_FILE, summary)
    return ToyOutcome(out, results, skipped, time.perf_counter() - t0, workers)


def toy_workers(asked: int | None) -> int:
    """``toy.workers``: the processes the runs are spread over (None: one per CPU core this
    process may use, at most 8)."""
    if asked is not None:
        return asked
    return max(1, min(len(os.sched_getaffinity(0)), 8))


@dataclass(frozen=True)
class _Job:
    problem: str
    variant: str
    hyper: Hyper
    cfg: ToyConfig
    device: str

    def figures(self, folder: Path) -> tuple[Path, Path]:
        """Where the run's GIF and its last frame (PNG) go under ``folder``."""
        gif = folder / self.problem / f"{self.variant}.gif"
        return gif, gif.with_suffix(".png")


def _map(jobs: list[_Job], tmp: Path, workers: int) -> Iterator[ToyResult]:
    """Each job's result, in the jobs' order: in this process (workers 1) or from a pool of
    ``workers`` fresh (spawned) processes, one torch thread each. The MLflow records stay in
    this process (one writer to the SQLite store), made while the pool trains on."""
    if workers <= 1:
        yield from (_train_and_draw(job, tmp) for job in jobs)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=use_threads, initargs=(1,)
    ) as pool:
        yield from pool.map(_train_and_draw, jobs, [tmp] * len(jobs))


def _train_and_draw(job: _Job, tmp: Path) -> ToyResult:
    """One problem x variant: train, write its GIF and last frame into ``tmp``; the result
    without its nets (they stay here; a pool sends results back pickled)."""
    from pipeline.stages.toy.figures import frames, write_figures

    cfg = job.cfg
    problem = make_problem(job.problem, cfg.ring_radius, cfg.ring_std)
    result = train_toy(known(job.variant), job.hyper, problem, cfg, torch.device(job.device))
    write_figures(frames(result, problem, cfg.bins), *job.figures(tmp))
    return dataclasses.replace(result, nets={})
