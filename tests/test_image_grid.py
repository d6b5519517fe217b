"""Sample grids: the same pixels as torchvision's save_image, without importing torchvision."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.infra.image_grid import save_png


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize(
    ("n", "channels", "nrow", "value_range"),
    [(100, 1, 10, (0.0, 1.0)), (37, 1, 8, (-1.0, 1.0)), (5, 3, 10, (-1.0, 1.0))],
)
def test_grid_pixels_equal_torchvision(
    tmp_path: Path, n: int, channels: int, nrow: int, value_range: tuple[float, float]
) -> None:
    from torchvision.utils import save_image

    low, high = value_range
    gen = torch.Generator().manual_seed(n)
    # Values past the range on both sides: both must clamp them the same way.
    images = torch.rand(n, channels, 28, 28, generator=gen) * (high - low) * 1.2 + low - 0.1
    ours, theirs = tmp_path / "ours.png", tmp_path / "theirs.png"
    save_png(images, ours, nrow=nrow, value_range=value_range)
    save_image(images, theirs, format="png", nrow=nrow, normalize=True, value_range=value_range,
               padding=2)  # fmt: skip
    assert _pixels(ours).shape == _pixels(theirs).shape
    assert np.array_equal(_pixels(ours), _pixels(theirs))


def test_a_grid_needs_no_torchvision(tmp_path: Path) -> None:
    code = (
        "import sys, torch; from pipeline.infra.image_grid import save_png; "
        f"save_png(torch.zeros(4, 1, 28, 28), {str(tmp_path / 'g.png')!r}, nrow=2); "
        "print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert _pixels(tmp_path / "g.png").shape == (2 * 30 + 2, 2 * 30 + 2, 3)
