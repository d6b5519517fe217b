"""Generation: a trained model's sampler -> ``sample.n`` uint8 images (+ a preview grid).

Output, per variant and training seed S: ``samples/<variant>/seedS/samples.pt`` =
{"images": uint8 [N, 1, 28, 28], "labels": int64 [N] (conditional variants only: the
requested digits, uniform over 0-9)} and ``grid.png`` beside it (the first 100 samples).
The latents come from :func:`latent_seed` of ``sample.seed`` and S: the same latents for every
variant of one seed (paired comparisons), other latents for another seed. What sampling cost
goes to ``metrics/sampling/<variant>/seedS.json`` (seconds per 1,000 images).
:func:`load_samples` reads the file back (evaluate's input) and checks its shapes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.core.variants._known import known
from pipeline.infra import checkpoint as ckpt
from pipeline.infra import layout
from pipeline.infra.config import Params
from pipeline.infra.devices import numerics, precision_tag, resolve_device
from pipeline.infra.errors import PipelineError, first_line
from pipeline.infra.image_grid import save_png
from pipeline.infra.io import atomic_path, save_torch, write_json
from pipeline.training.restore import load_nets
from pipeline.training.sampling import generate, latent_seed


@dataclass(frozen=True)
class SampleResult:
    path: Path
    n: int


def sample_variant(
    params: Params,
    name: str,
    *,
    seed: int | None = None,
    n: int | None = None,
    device: str | None = None,
) -> SampleResult:
    """Sample the run of ``name`` trained with ``seed`` (None: the first of train.seeds)."""
    known(name)
    seed = layout.seed_of(params, seed)
    path = layout.variant_dir(params, name, seed) / ckpt.CHECKPOINT
    if not path.is_file():
        raise PipelineError(
            f"{path}: no checkpoint; run `pipeline train {name} --seed {seed}` first"
        )
    dev = resolve_device(device or params.sample.device)
    variant, nets, cfg = load_nets(path, dev)
    if cfg.get("seed") != seed:
        raise PipelineError(f"{path}: trained with seed {cfg.get('seed')}, not {seed}")
    n = n or params.sample.n
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    # The generator runs at the precision it was trained at (train.tf32), as in noise's redraws.
    with numerics(params.train.tf32):
        images, labels = generate(
            variant, nets, n, cfg["z_dim"], latent_seed(params.sample.seed, seed),
            params.sample.batch_size, dev,
        )  # fmt: skip
    sync()
    seconds = time.perf_counter() - t0
    data = {"images": images}
    if labels is not None:
        data["labels"] = labels
    path = layout.samples_path(params, name, seed)
    save_torch(data, path)
    with atomic_path(layout.sample_grid(params, name, seed)) as tmp:
        save_png(images[:100].float() / 255, tmp, nrow=10)
    # Beside the samples, not in their folder: timings differ run to run, the samples do not.
    write_json(
        layout.sampling_path(params, name, seed),
        {
            "n": n,
            "seconds": round(seconds, 6),
            "seconds_per_1000": round(1000 * seconds / n, 6),
            "device": str(dev),
            "precision": precision_tag(dev, params.train.tf32),
            "batch_size": params.sample.batch_size,
            "options": variant.algorithm.sampling_options(cfg["hyper"]["options"]),
        },
    )
    return SampleResult(path, n)


# --------------------------------------------------------------------------------------------
# Reading what sample_variant wrote (evaluate's input)


@dataclass(frozen=True)
class Samples:
    images: torch.Tensor  # uint8 [N, 1, 28, 28]
    labels: torch.Tensor | None  # int64 [N], the requested digits (conditional variants only)


def load_samples(params: Params, variant: str, seed: int | None = None) -> Samples:
    """The run's ``samples.pt``: uint8 images [N, 1, 28, 28] and optional int64 labels [N]."""
    path = layout.samples_path(params, variant, seed)
    if not path.is_file():
        raise PipelineError(
            f"{path}: samples not found; run `pipeline sample {variant} "
            f"--seed {layout.seed_of(params, seed)}` first"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated / foreign file: one line, not a traceback
        raise PipelineError(
            f"{path}: unreadable samples file ({first_line(err)}); rerun `pipeline sample {variant}`"
        ) from None
    images = data.get("images") if isinstance(data, dict) else None
    check_images(images, str(path))
    labels = data.get("labels")
    if labels is not None and (
        not isinstance(labels, torch.Tensor) or labels.shape != (len(images),)
    ):
        raise PipelineError(f"{path}: 'labels' must be int64 [N] matching the images")
    return Samples(images, labels.long() if labels is not None else None)


def check_images(images: Any, where: str) -> None:
    """One-line PipelineError unless ``images`` is uint8 [N, 1, 28, 28]."""
    if (
        not isinstance(images, torch.Tensor)
        or images.dtype != torch.uint8
        or images.dim() != 4
        or tuple(images.shape[1:]) != (1, 28, 28)
    ):
        got = (
            f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else "none"
        )
        raise PipelineError(f"{where}: 'images' must be uint8 [N, 1, 28, 28] (got {got})")
