"""The toy problems and their scores: the GAN paper's 1-D Gaussian and the 8-Gaussian ring.

Data live in their own coordinates (1-D: N(4, 0.5) as in Goodfellow et al. 2014, Fig. 1;
ring: 8 Gaussians of std ``std`` on a circle of radius ``radius``, as in Metz et al. 2017 and
Srivastava et al. 2017). The nets see them through an affine map into [-1, 1] (the MLP
generator ends in tanh): ``model = (data - center) / scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PROBLEMS = ("gaussian1d", "ring8")
LN2 = math.log(2.0)


@dataclass(frozen=True)
class Problem:
    name: str
    dim: int
    center: float
    scale: float
    std: float  # of each mode, in data coordinates
    modes: torch.Tensor  # [K, dim] mode centres, data coordinates
    lo: float  # plot (and 1-D histogram) range, data coordinates
    hi: float

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` data points [n, dim] (a uniformly chosen mode plus Gaussian noise)."""
        k = torch.randint(len(self.modes), (n,), generator=generator)
        noise = torch.randn(n, self.dim, generator=generator)
        return self.modes[k] + self.std * noise

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.center) / self.scale

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.center

    def edges(self, bins: int) -> torch.Tensor:
        return torch.linspace(self.lo, self.hi, bins + 1, dtype=torch.float64)


def ring_modes(k: int = 8, radius: float = 2.0) -> torch.Tensor:
    """``k`` points [k, 2] evenly spaced on a circle of ``radius``, the first on the x axis."""
    angle = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    return (radius * torch.stack([angle.cos(), angle.sin()], dim=1)).float()


def make_problem(name: str, ring_radius: float = 2.0, ring_std: float = 0.05) -> Problem:
    if name == "gaussian1d":
        return Problem(name, 1, 4.0, 4.0, 0.5, torch.tensor([[4.0]]), 0.0, 8.0)
    if name == "ring8":
        span = ring_radius + 0.5
        return Problem(name, 2, 0.0, span, ring_std, ring_modes(8, ring_radius), -span, span)
    raise ValueError(f"unknown toy problem {name!r} (known: {', '.join(PROBLEMS)})")


# ------------------------------------------------------------------ scores
def mode_stats(
    points: torch.Tensor, modes: torch.Tensor, std: float, min_count: int
) -> tuple[int, float]:
    """(modes covered, high-quality share) of ``points`` [N, D] around ``modes`` [K, D].

    A point is high quality when it lies within 3 ``std`` of its nearest mode; a mode is
    covered when at least ``min_count`` high-quality points have it as their nearest mode."""
    dist = torch.cdist(points.double(), modes.double())  # [N, K]
    nearest, which = dist.min(dim=1)
    good = nearest <= 3.0 * std
    counts = torch.bincount(which[good], minlength=len(modes))
    share = good.double().mean().item() if len(points) else 0.0
    return int((counts >= min_count).sum()), share


def histogram(x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Probabilities [bins] of 1-D samples ``x`` over ``edges`` (points outside go to the end
    bins, so every sample counts)."""
    x = x.double().flatten().clamp(edges[0].item(), edges[-1].item())
    idx = (torch.bucketize(x, edges, right=True) - 1).clamp(0, len(edges) - 2)
    counts = torch.bincount(idx, minlength=len(edges) - 1).double()
    return counts / counts.sum()


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """Jensen-Shannon divergence (nats, in [0, ln 2]) of two probability vectors."""
    p, q = p.double() / p.sum(), q.double() / q.sum()
    m = 0.5 * (p + q)

    def kl(a: torch.Tensor) -> torch.Tensor:
        nz = a > 0
        return (a[nz] * (a[nz] / m[nz]).log()).sum()

    return float(0.5 * kl(p) + 0.5 * kl(q))


def gaussian_bins(mean: float, std: float, edges: torch.Tensor) -> torch.Tensor:
    """The exact probability of each bin [edges[i], edges[i+1]) under N(mean, std^2), the
    mass beyond the ends added to the end bins (as :func:`histogram` does with samples)."""
    cdf = 0.5 * (1 + torch.erf((edges.double() - mean) / (std * math.sqrt(2.0))))
    p = cdf[1:] - cdf[:-1]
    p[0] += cdf[0]
    p[-1] += 1 - cdf[-1]
    return p
