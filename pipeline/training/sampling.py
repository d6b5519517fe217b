"""Drawing images from a run's nets: the latents' seed and n uint8 images from the sampler.
Shared by the sample stage, the quality curve (during training), the noise estimate and
tuning; a finished run's nets come from pipeline/training/restore.py.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from pipeline.core.nets import NetSpec
from pipeline.core.variants.base import Variant
from pipeline.infra.data import IMG_SHAPE, N_CLASSES, to_uint8


def latent_seed(base: int, run_seed: int, draw: int = 0) -> int:
    """The sampling generator's seed for training seed ``run_seed``: independent streams per
    (``sample.seed``, run seed, draw) from numpy's SeedSequence, not ``base + run_seed``
    (which would make seed 1's latents seed 0's noise stream, shifted). ``draw`` 0 is the
    scored sample; others are fresh re-draws of the same run. No variant name enters it."""
    import numpy as np

    return int(np.random.SeedSequence([base, run_seed, draw]).generate_state(1)[0])


@torch.no_grad()
def generate(
    variant: Variant,
    nets: Mapping[str, nn.Module],
    n: int,
    z_dim: int,
    seed: int,
    batch_size: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n images as uint8 [n, C, H, W]; labels int64 [n] (i % 10, i.e. uniform) if conditional.

    Latents are drawn on the CPU from ``seed`` so the samples do not depend on the device's
    RNG; an algorithm that draws noise while sampling uses a generator seeded likewise.
    """
    alg = variant.algorithm
    spec = NetSpec(z_dim, IMG_SHAPE, N_CLASSES if variant.conditional else 0)
    gen = torch.Generator().manual_seed(seed)
    step_gen = torch.Generator(device=device).manual_seed(seed + 1)
    labels = torch.arange(n) % N_CLASSES if variant.conditional else None
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        z = alg.latent(b, spec, gen).to(device)
        y = labels[start : start + b].to(device) if labels is not None else None
        out.append(to_uint8(alg.generate(nets, z, y, step_gen)).cpu())
    return torch.cat(out), labels
