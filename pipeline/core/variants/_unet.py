"""A small U-Net noise predictor for 28x28 images (a helper module: not a variant itself).

Two resolutions below the input (28 -> 14 -> 7), channel multipliers (1, 2, 2) of ``width``,
one residual block per level and in the middle, sinusoidal timestep embedding added in every
block (Ho et al. 2020's design, without attention and dropout: at 28x28 the net has
1,931,713 parameters at width 64 and 484,577 at width 32, 1.93M / 0.48M, counted with
sum(p.numel()); tests/test_ddpm.py pins them). GroupNorm treats samples
independently, so the net does not couple the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of integer timesteps ``t`` [B] (Transformer-style)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """GN -> SiLU -> conv3x3, + time projection, GN -> SiLU -> conv3x3, + (1x1) skip."""

    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(t_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """(x_t [B, C, H, W], t int64 [B]) -> predicted noise [B, C, H, W]; H, W divisible by 4."""

    def __init__(self, img_shape: tuple[int, int, int], width: int = 64) -> None:
        super().__init__()
        c, h, w = img_shape
        if h % 4 or w % 4:
            raise ValueError(f"the U-Net needs H, W divisible by 4, got {h}x{w}")
        if width < 2 or width % 2:
            raise ValueError(f"the U-Net width must be even and >= 2, got {width}")
        w1, w2, t_dim = width, 2 * width, 4 * width
        self.width = width
        self.time_mlp = nn.Sequential(nn.Linear(width, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.inc = nn.Conv2d(c, w1, 3, padding=1)
        self.down1 = ResBlock(w1, w1, t_dim)
        self.pool1 = nn.Conv2d(w1, w1, 3, stride=2, padding=1)  # 28 -> 14
        self.down2 = ResBlock(w1, w2, t_dim)
        self.pool2 = nn.Conv2d(w2, w2, 3, stride=2, padding=1)  # 14 -> 7
        self.mid = ResBlock(w2, w2, t_dim)
        self.unpool2 = nn.Conv2d(w2, w2, 3, padding=1)
        self.up2 = ResBlock(w2 + w2, w2, t_dim)
        self.unpool1 = nn.Conv2d(w2, w2, 3, padding=1)
        self.up1 = ResBlock(w2 + w1, w1, t_dim)
        self.out = nn.Sequential(_norm(w1), nn.SiLU(), nn.Conv2d(w1, c, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time_mlp(timestep_embedding(t, self.width))
        s1 = self.down1(self.inc(x), temb)  # [B, w, 28, 28]
        s2 = self.down2(self.pool1(s1), temb)  # [B, 2w, 14, 14]
        h = self.mid(self.pool2(s2), temb)  # [B, 2w, 7, 7]
        h = self.unpool2(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up2(torch.cat([h, s2], dim=1), temb)
        h = self.unpool1(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up1(torch.cat([h, s1], dim=1), temb)
        return self.out(h)
