"""`pipeline toy`: every applicable adversarial variant on the GAN paper's 1-D Gaussian and
on the 8-Gaussian ring, in seconds on a CPU (see :mod:`pipeline.toy.run`).

Outputs under ``toy.out_dir`` (written as one folder, atomically)::

    summary.json                       scores, steps, timings and MLflow run ids, per problem
                                       and variant; the variants that do not apply, and why
    <problem>/<variant>.gif, .png      the animation and its last frame

One MLflow run per problem and variant, in the experiment named tracking.experiment + "-toy".
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline import layout
from pipeline.config import Params, to_plain
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, write_json
from pipeline.toy.problems import PROBLEMS, make_problem
from pipeline.toy.run import ToyResult, not_applicable, train_toy
from pipeline.variants import Variant, known, registry

__all__ = ["PROBLEMS", "ToyOutcome", "applicable_variants", "run_toy"]


@dataclass
class ToyOutcome:
    out_dir: Path
    results: list[ToyResult]
    skipped: dict[str, str]  # variant -> why it does not apply
    seconds: float


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

    from pipeline import tracking
    from pipeline.config import flatten

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
    from pipeline.devices import resolve_device

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
    results: list[ToyResult] = []
    summary: dict[str, Any] = {"problems": {}, "not_applicable": skipped, "config": to_plain(cfg)}
    out = layout.toy_dir(params)
    # One CPU thread: the toy nets are 64 units wide, where intra-op threads only add
    # synchronisation; on a loaded 2-core machine torch's default of 2 made each step ~9x
    # slower (0.23 s vs 0.025 s, measured). Restored afterwards.
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    try:
        with atomic_dir(out) as tmp:
            _run_all(params, chosen, run, dev, track, tmp, results, summary)
            summary["seconds"] = round(time.perf_counter() - t0, 3)
            write_json(tmp / layout.TOY_SUMMARY_FILE, summary)
    finally:
        torch.set_num_threads(threads)
    return ToyOutcome(out, results, skipped, time.perf_counter() - t0)


def _run_all(
    params: Params, chosen: list[str], run: list[Variant], dev: torch.device, track: bool,
    tmp: Path, results: list[ToyResult], summary: dict[str, Any],
) -> None:  # fmt: skip
    """Every chosen problem x variant, figures into ``tmp``, rows into ``summary``."""
    from pipeline.toy.figures import frames, write_figures

    cfg = params.toy
    for name in chosen:
        problem = make_problem(name, cfg.ring_radius, cfg.ring_std)
        rows = summary["problems"][name] = {}
        for variant in run:
            h = variant.resolve(params.variants.get(variant.name))
            if cfg.lr is not None:
                h = dataclasses.replace(h, lr=cfg.lr, lr_d=None)
            result = train_toy(variant, h, problem, cfg, dev)
            results.append(result)
            gif = tmp / name / f"{variant.name}.gif"
            png = gif.with_suffix(".png")
            write_figures(frames(result, problem, cfg.bins), gif, png)
            row = {**result.metrics, "steps": result.steps, "g_iters": result.g_iters,
                   "seconds": round(result.seconds, 3), "lr": h.lr}  # fmt: skip
            if track:
                row["run_id"] = _record(params, result, dataclasses.asdict(h), [gif, png])
            rows[variant.name] = row
