"""Generation: a trained generator -> ``sample.n`` uint8 images (+ a preview grid).

Output: ``samples/<variant>/samples.pt`` = {"images": uint8 [N, 1, 28, 28],
"labels": int64 [N] (conditional variants only: the requested digits, uniform over 0-9)}
and ``samples/<variant>/grid.png`` (the first 100 samples). Same seed -> identical samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline import checkpoint as ckpt
from pipeline.config import Params
from pipeline.data import N_CLASSES, to_uint8
from pipeline.devices import resolve_device
from pipeline.errors import PipelineError
from pipeline.io import atomic_path, save_torch
from pipeline.variants import Hyper, known


@dataclass(frozen=True)
class SampleResult:
    path: Path
    n: int


def load_generator(path: Path, device: torch.device | str) -> tuple[nn.Module, dict]:
    """The generator of a checkpoint, in eval mode, and the run's resolved config."""
    from pipeline.train import RunSpec, build_models

    state = ckpt.load(path, map_location=device)
    if not state["complete"]:
        raise PipelineError(
            f"{path}: training is unfinished (epoch {state['epoch']}); "
            f"finish it with `pipeline train {state['variant']}` before sampling"
        )
    cfg = ckpt.config_of(state)
    hyper = Hyper(**{**cfg["hyper"], "betas": tuple(cfg["hyper"]["betas"])})
    spec = RunSpec(**{**cfg, "hyper": hyper})
    g, _ = build_models(known(spec.variant), spec, torch.device(device))
    g.load_state_dict(state["generator"])
    return g.eval(), cfg


@torch.no_grad()
def generate(
    g: nn.Module,
    n: int,
    z_dim: int,
    conditional: bool,
    seed: int,
    batch_size: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n images as uint8 [n, C, H, W]; labels int64 [n] (i % 10, i.e. uniform) if conditional.

    Noise is drawn on the CPU from ``seed`` so the samples do not depend on the device's RNG.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % N_CLASSES if conditional else None
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        z = torch.randn(b, z_dim, generator=gen).to(device)
        y = labels[start : start + b].to(device) if labels is not None else None
        out.append(to_uint8(g(z, y)).cpu())
    return torch.cat(out), labels


def sample_variant(
    params: Params, name: str, *, n: int | None = None, device: str | None = None
) -> SampleResult:
    from torchvision.utils import save_image

    from pipeline.train import variant_dir

    variant = known(name)
    path = variant_dir(params, name) / ckpt.CHECKPOINT
    if not path.is_file():
        raise PipelineError(f"{path}: no checkpoint; run `pipeline train {name}` first")
    dev = resolve_device(device or params.sample.device)
    g, cfg = load_generator(path, dev)
    conditional = variant.conditional
    n = n or params.sample.n
    images, labels = generate(
        g, n, cfg["z_dim"], conditional, params.sample.seed, params.sample.batch_size, dev
    )
    out_dir = params.path(params.sample.out_dir) / name
    data = {"images": images}
    if labels is not None:
        data["labels"] = labels
    save_torch(data, out_dir / "samples.pt")
    with atomic_path(out_dir / "grid.png") as tmp:
        save_image(images[:100].float() / 255, tmp, format="png", nrow=10, padding=2)
    return SampleResult(out_dir / "samples.pt", n)
