"""What a run leaves to look at: sample grids, the progression GIF, the curves CSV, summary."""

from __future__ import annotations

import contextlib
import csv
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pipeline.core.nets import NetSpec
from pipeline.infra.data import N_CLASSES
from pipeline.infra.image_grid import save_png
from pipeline.infra.io import atomic_path, write_json
from pipeline.infra.layout import FIGURES_INDEX, SUMMARY_FILE, read_run_id

if TYPE_CHECKING:
    from pipeline.core.algorithms.base import Algorithm

GRID_SEED = 20_250_101  # fixed latents for grids: identical across unconditional variants
GRID_ROWS = 10
LEADING_COLUMNS = ("epoch", "step", "g_iters")
TRAILING_COLUMNS = ("steps_per_s", "elapsed_s")


def curve_columns(
    metrics: Sequence[str], optimizers: Sequence[str], quality: Sequence[str] = ()
) -> list[str]:
    """The curves CSV header of a run: counters, the algorithm's metrics, one gradient norm
    per optimiser, the quality curve's columns (when on), throughput."""
    return [*LEADING_COLUMNS, *metrics, *(f"grad_norm_{o}" for o in optimizers), *quality,
            *TRAILING_COLUMNS]  # fmt: skip


def grid_inputs(
    algorithm: Algorithm, spec: NetSpec, conditional: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fixed latents for 100 images (same for all variants of an algorithm) and, if
    conditional, labels 0..9 by row."""
    g = torch.Generator().manual_seed(GRID_SEED)
    z = algorithm.latent(GRID_ROWS * GRID_ROWS, spec, g).to(device)
    labels = None
    if conditional:
        labels = torch.arange(N_CLASSES).repeat_interleave(GRID_ROWS).to(device)
    return z, labels


@contextlib.contextmanager
def evaluating(nets: Mapping[str, nn.Module]) -> Iterator[None]:
    """Every net in eval mode for the block (sampling mid-training), then as it was."""
    modes = {name: net.training for name, net in nets.items()}
    for net in nets.values():
        net.eval()
    try:
        yield
    finally:
        for name, net in nets.items():
            net.train(modes[name])


@torch.no_grad()
def render_grid(
    algorithm: Algorithm,
    nets: Mapping[str, nn.Module],
    latent: torch.Tensor,
    labels: torch.Tensor | None,
) -> torch.Tensor:
    """Images from fixed latents (and, for an algorithm that draws noise while sampling, a
    fixed noise seed), with every net in eval mode."""
    with evaluating(nets):
        gen = torch.Generator(device=latent.device).manual_seed(GRID_SEED)
        return algorithm.generate(nets, latent, labels, gen)


def save_grid(images: torch.Tensor, path: Path, nrow: int = GRID_ROWS) -> None:
    """images: float [N, C, H, W] in [-1, 1] -> one PNG, ``nrow`` per row."""
    with atomic_path(path) as tmp:
        save_png(images, tmp, nrow=nrow, value_range=(-1.0, 1.0))


def write_figures(
    algorithm: Algorithm, nets: Mapping[str, nn.Module], spec: NetSpec, device: torch.device,
    out_dir: Path,
) -> list[dict[str, str]]:  # fmt: skip
    """The algorithm's own figures as PNGs in ``out_dir`` plus ``figures.json``
    ([{"name", "file", "caption"}]), which the report shows for any model that has them."""
    with evaluating(nets), torch.no_grad():
        figures = algorithm.figures(nets, spec, device)
    index = []
    for name, fig in sorted(figures.items()):
        save_grid(fig.images, out_dir / f"{name}.png", nrow=fig.nrow)
        index.append({"name": name, "file": f"{name}.png", "caption": fig.caption})
    if index:
        write_json(out_dir / FIGURES_INDEX, index)
    return index


def write_curves(path: Path, history: Sequence[dict[str, float]], columns: Sequence[str]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                        for k, v in row.items()})  # fmt: skip


def make_gif(grids: Sequence[Path], path: Path, ms_per_frame: int = 200) -> None:
    from PIL import Image

    if not grids:
        return
    frames = [Image.open(p).convert("P") for p in grids]
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=ms_per_frame, loop=0)  # fmt: skip


def model_card(variant: Any) -> dict[str, Any]:
    """What the report says about a model besides its scores (description, family, whether
    it is conditional, the literature's rows), recorded with each run so that the report
    reads it from summary.json instead of importing the variant registry, and so torch."""
    return {
        "description": variant.description,
        "family": variant.family,
        "conditional": variant.conditional,
        "published": [list(row) for row in variant.published],
    }


def write_summary(result: Any, hyper: dict[str, Any], model: dict[str, Any] | None = None) -> None:
    write_json(
        result.out_dir / SUMMARY_FILE,
        {
            "variant": result.variant,
            "epochs": result.epochs,
            "steps": result.steps,
            "g_iters": result.g_iters,
            # critic/discriminator updates (null: no critic) and real images consumed: the
            # budget the report's main table states per row
            "d_iters": result.d_iters,
            "images_seen": result.images_seen,
            "train_time_s": round(result.train_time_s, 3),
            "steps_per_s": round(result.steps_per_s, 2),
            "g_iters_per_s": round(result.g_iters / result.train_time_s, 2)
            if result.train_time_s
            else 0.0,
            "device": result.device,
            "hyper": hyper,
            "run_id": read_run_id(result.out_dir),
            **({"model": model} if model is not None else {}),
        },
    )
