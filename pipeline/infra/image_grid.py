"""Sample grids as PNG files: images tiled ``nrow`` per row with a black 2-pixel border.

The same pixels as ``torchvision.utils.save_image`` (tests/test_image_grid.py compares them), written
with torch and Pillow alone: importing torchvision imports ``torch._dynamo`` through
``torchvision.ops``, seconds in every train and sample process for one PNG.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image


def tile(images: torch.Tensor, nrow: int, padding: int = 2) -> torch.Tensor:
    """float [N, C, H, W] in [0, 1] (C = 1 or 3) -> float [3, rows*(H+p)+p, nrow*(W+p)+p]."""
    if images.dim() != 4 or images.size(1) not in (1, 3):
        raise ValueError(f"expected images [N, 1|3, H, W], got {tuple(images.shape)}")
    images = images.detach().cpu().float()
    if images.size(1) == 1:
        images = images.expand(-1, 3, -1, -1)
    n, _, h, w = images.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    cell_h, cell_w = h + padding, w + padding
    grid = torch.zeros(3, rows * cell_h + padding, cols * cell_w + padding)
    for k in range(n):
        y, x = divmod(k, cols)
        top, left = y * cell_h + padding, x * cell_w + padding
        grid[:, top : top + h, left : left + w] = images[k]
    return grid


def save_png(
    images: torch.Tensor,
    path: Path,
    nrow: int,
    value_range: tuple[float, float] = (0.0, 1.0),
    padding: int = 2,
) -> None:
    """Write ``images`` (float [N, C, H, W] in ``value_range``, clamped to it) as one RGB PNG
    at ``path`` (any file name: the format is given, not guessed from the suffix)."""
    low, high = value_range
    scaled = (images.detach().float().clamp(low, high) - low) / max(high - low, 1e-5)
    grid = tile(scaled, nrow, padding)
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8)
    Image.fromarray(pixels.numpy()).save(path, format="png")
