"""One toy run: a variant's own Adversarial algorithm (objective, penalty, after-D-step
hook) on small vector MLPs, stepping in the same StepContext the trainer builds."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from pipeline.core.algorithms import Adversarial
from pipeline.core.algorithms.adversarial import split
from pipeline.core.nets import NetSpec
from pipeline.infra.errors import PipelineError, first_line
from pipeline.stages.toy.problems import (
    Problem,
    gaussian_bins,
    histogram,
    js_divergence,
    mode_stats,
)
from pipeline.training.artifacts import evaluating
from pipeline.training.loop import step_context

if TYPE_CHECKING:
    from pipeline.core.hyper import Hyper
    from pipeline.core.variants.base import Variant
    from pipeline.infra.config import ToyConfig

CURVE_POINTS = 200  # where the 1-D figure draws D(x)


@dataclass
class Frame:
    step: int
    samples: torch.Tensor  # [n_eval, dim] generated points, data coordinates
    curve: torch.Tensor | None  # 1-D: D on CURVE_POINTS points of [lo, hi] (sigmoid or raw)
    losses: dict[str, float] = field(default_factory=dict)  # means since the previous frame


@dataclass
class ToyResult:
    variant: str
    problem: str
    steps: int
    g_iters: int
    seconds: float
    metrics: dict[str, float]
    frames: list[Frame]
    probability: bool  # D(x) is a probability (sigmoid of a logit), else a raw critic value
    nets: dict[str, nn.Module] = field(default_factory=dict, repr=False)


def not_applicable(variant: Variant) -> str | None:
    """Why ``variant`` cannot run on the toy problems, or None when it can."""
    alg = variant.algorithm
    if not isinstance(alg, Adversarial):
        return "not an adversarial algorithm"
    if variant.conditional:
        return "conditional (the toy data have no labels)"
    try:
        alg.build(NetSpec(z_dim=2, img_shape=(2,), widths=(4,)))
    except (ValueError, TypeError, RuntimeError) as exc:
        return f"its nets need images ({first_line(exc)[:80]})"
    return None


def score(problem: Problem, samples: torch.Tensor, cfg: ToyConfig) -> dict[str, float]:
    """The final scores of generated points [n, dim] (data coordinates)."""
    covered, share = mode_stats(samples, problem.modes, problem.std, cfg.cover_min)
    out = {"high_quality": share}
    if problem.dim == 1:
        edges = problem.edges(cfg.bins)
        mean = problem.modes[0, 0].item()
        out["js"] = js_divergence(
            histogram(samples, edges), gaussian_bins(mean, problem.std, edges)
        )
    else:
        out["modes"] = float(covered)
    return out


def train_toy(
    variant: Variant, hyper: Hyper, problem: Problem, cfg: ToyConfig, device: torch.device
) -> ToyResult:
    alg = variant.algorithm
    assert isinstance(alg, Adversarial)
    spec = NetSpec(cfg.z_dim, (problem.dim,), 0, tuple(cfg.widths))
    torch.manual_seed(cfg.seed)
    nets = {name: net.to(device) for name, net in alg.build(spec).items()}
    alg.prepare_fast(nets)
    ctx = step_context(
        alg, alg.metric_names(variant), hyper, spec, nets, device, True, cfg.seed + 1
    )
    data_gen = torch.Generator().manual_seed(cfg.seed + 2)
    z_eval = alg.latent(cfg.n_eval, spec, torch.Generator().manual_seed(cfg.seed + 3)).to(device)
    grid = torch.linspace(problem.lo, problem.hi, CURVE_POINTS).unsqueeze(1)
    grid_model = problem.to_model(grid).to(device)
    schedule = alg.schedule(hyper)
    g_kinds = {k for k, opts in alg.kinds.items() if "g" in opts}
    at = sorted({round(i * cfg.steps / cfg.frames) for i in range(cfg.frames + 1)})
    frames: list[Frame] = []

    def snapshot(step: int) -> None:
        losses = ctx.read()
        for key in alg.losses:
            if ctx.last_counts.get(key) and not math.isfinite(losses[key]):
                raise PipelineError(
                    f"toy {problem.name}/{variant.name}: non-finite {key} by step {step}"
                )
        ctx.reset()
        with evaluating(nets), torch.no_grad():
            x = problem.to_data(alg.generate(nets, z_eval, None).float().cpu())
            curve = None
            if problem.dim == 1:
                logit = split(nets["discriminator"](grid_model, None))[0].float().cpu()
                curve = torch.sigmoid(logit) if alg.objective.reading == "probability" else logit
        frames.append(Frame(step, x.reshape(len(x), problem.dim), curve, losses))

    t0, g_iters = time.perf_counter(), 0
    for net in nets.values():
        net.train()
    for step in range(cfg.steps):
        if step in at:
            snapshot(step)
        ctx.real = problem.to_model(problem.sample(cfg.batch_size, data_gen)).to(device)
        ctx.labels = None
        kind = schedule[step % len(schedule)]
        alg.step(ctx, kind)
        g_iters += kind in g_kinds
    snapshot(cfg.steps)
    seconds = time.perf_counter() - t0
    return ToyResult(
        variant.name, problem.name, cfg.steps, g_iters, seconds,
        score(problem, frames[-1].samples, cfg), frames,
        alg.objective.reading == "probability", nets,
    )  # fmt: skip
