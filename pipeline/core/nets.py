"""Generator / discriminator building blocks, aware of the image shape (MNIST: 1x28x28).

Every network takes ``(input, labels)``; ``labels`` (int64 [B]) is used only when the network
was built with ``n_classes > 0`` (conditional variants), as a one-hot vector concatenated to
the input. Generators map z [B, z_dim] -> images [B, C, H, W] in [-1, 1]; discriminators
map images [B, C, H, W] -> raw logits / critic values [B]. The MLP nets also take vector
data (``img_shape`` (D,): samples [B, D]) and the hidden widths of ``NetSpec.widths``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetSpec:
    z_dim: int = 100
    img_shape: tuple[int, ...] = (1, 28, 28)  # (C, H, W), or (D,) for vector data (toys)
    n_classes: int = 0  # > 0: conditional on a label in [0, n_classes)
    widths: tuple[int, ...] | None = None  # MLP hidden widths; None: each net's own default


def _with_labels(x: torch.Tensor, labels: torch.Tensor | None, n_classes: int) -> torch.Tensor:
    if n_classes == 0:
        return x
    if labels is None:
        raise ValueError("this network is conditional: labels are required")
    return torch.cat([x, F.one_hot(labels, n_classes).to(x.dtype)], dim=1)


def couples_batch(module: nn.Module) -> bool:
    """False only if two batches give the same per-sample outputs and the same module state
    whether they go through ``module`` separately or concatenated, in training mode.

    Batch norm couples the samples of a batch; a norm that tracks running statistics (batch
    norm, instance norm with ``track_running_stats``) updates them once per call; dropout
    draws its masks per call; a parametrization or forward pre-hook (spectral norm's power
    iteration, say) may change state on every call. Any of these makes joining batches a
    different computation, so they count as coupling.
    """
    from torch.nn.modules.batchnorm import _NormBase
    from torch.nn.modules.dropout import _DropoutNd
    from torch.nn.utils import parametrize

    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        or (isinstance(m, _NormBase) and m.track_running_stats)
        or isinstance(m, _DropoutNd)
        or parametrize.is_parametrized(m)
        or bool(m._forward_pre_hooks)
        for m in module.modules()
    )


class DetachedSlopeLeakyReLU(nn.Module):
    """LeakyReLU computed as ``x * slope(x)``, with the slope (1 or ``negative_slope``) taken
    out of the graph.

    Values and first derivatives are exactly nn.LeakyReLU's (the same float products, NaN and
    infinities included). The difference is in the graph: nn.LeakyReLU's backward depends on
    ``x``, so autograd's double backward (a gradient penalty) pushes the zero derivative of
    its piecewise-constant slope back through the whole forward graph; for the MLP critic that
    is about a fifth of the critic step's matrix products, all multiplying zeros. Here the
    backward is a product with a constant, so that pass is never built. (A ``torch.where``
    formulation avoids the pass too, but its backward costs more than it saves on the CPU.)
    Half-precision inputs take plain leaky_relu: its kernel multiplies in float32, which a
    slope rounded to the input's dtype would not reproduce.
    """

    def __init__(self, negative_slope: float) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in (torch.float32, torch.float64):
            return F.leaky_relu(x, self.negative_slope)
        with torch.no_grad():
            one = torch.ones((), dtype=x.dtype, device=x.device)
            slope = torch.where(x > 0, one, one * self.negative_slope)
        return x * slope

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


def detach_activation_slopes(module: nn.Module) -> int:
    """Replace every nn.LeakyReLU with a non-zero slope inside ``module`` by
    DetachedSlopeLeakyReLU (in place; no parameters, so state dicts are unchanged). Returns
    how many were replaced. nn.ReLU is left alone: ``x * 0`` is -0.0 or NaN where ReLU gives 0.
    """
    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, nn.LeakyReLU) and child.negative_slope != 0:
            setattr(module, name, DetachedSlopeLeakyReLU(child.negative_slope))
            replaced += 1
        else:
            replaced += detach_activation_slopes(child)
    return replaced


class MLPGenerator(nn.Module):
    """z (+ one-hot) -> 128 -> 256 (BN) -> 512 (BN) -> prod(img_shape), LeakyReLU 0.2, tanh."""

    def __init__(self, spec: NetSpec, hidden: tuple[int, ...] = (128, 256, 512)) -> None:
        super().__init__()
        self.spec = spec
        hidden = spec.widths or hidden
        layers: list[nn.Module] = []
        width = spec.z_dim + spec.n_classes
        for i, h in enumerate(hidden):
            layers.append(nn.Linear(width, h))
            if i > 0:  # no BN on the first layer, as in the classic write-ups
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width = h
        layers += [nn.Linear(width, math.prod(spec.img_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.net(_with_labels(z, labels, self.spec.n_classes))
        return x.view(z.shape[0], *self.spec.img_shape)


class MLPDiscriminator(nn.Module):
    """image (+ one-hot) -> 512 -> 256 -> 1, LeakyReLU 0.2, raw logit (no sigmoid)."""

    def __init__(self, spec: NetSpec, hidden: tuple[int, ...] = (512, 256)) -> None:
        super().__init__()
        self.spec = spec
        hidden = spec.widths or hidden
        layers: list[nn.Module] = []
        width = math.prod(spec.img_shape) + spec.n_classes
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2, inplace=True)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        flat = _with_labels(x.flatten(1), labels, self.spec.n_classes)
        return self.net(flat).squeeze(1)


class DCGANGenerator(nn.Module):
    """z -> linear 256x(H/4)x(W/4) (BN, ReLU) -> 2 transposed convs (BN, ReLU) -> C, tanh."""

    def __init__(self, spec: NetSpec, base: int = 256) -> None:
        super().__init__()
        c, h, w = spec.img_shape
        if h % 4 or w % 4:
            raise ValueError(f"DCGAN generator needs H, W divisible by 4, got {h}x{w}")
        self.spec = spec
        self.base, self.h0, self.w0 = base, h // 4, w // 4
        self.fc = nn.Sequential(
            nn.Linear(spec.z_dim + spec.n_classes, base * self.h0 * self.w0, bias=False),
            nn.BatchNorm1d(base * self.h0 * self.w0),
            nn.ReLU(inplace=True),
        )
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(base, base // 2, 4, 2, 1, bias=False),  # -> H/2
            nn.BatchNorm2d(base // 2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(base // 2, base // 4, 4, 2, 1, bias=False),  # -> H
            nn.BatchNorm2d(base // 4),
            nn.ReLU(inplace=True),
            nn.Conv2d(base // 4, c, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.fc(_with_labels(z, labels, self.spec.n_classes))
        return self.conv(x.view(-1, self.base, self.h0, self.w0))


class DCGANDiscriminator(nn.Module):
    """Strided convs C -> 64 -> 128 (BN), LeakyReLU 0.2, no pooling, linear -> logit."""

    def __init__(self, spec: NetSpec, base: int = 64) -> None:
        super().__init__()
        c, h, w = spec.img_shape
        self.spec = spec
        self.conv = nn.Sequential(
            nn.Conv2d(c, base, 4, 2, 1),  # no BN on the first layer (Radford et al.)
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(base, base * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(base * 2),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.fc = nn.Linear(base * 2 * (h // 4) * (w // 4) + spec.n_classes, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.conv(x).flatten(1)
        return self.fc(_with_labels(feats, labels, self.spec.n_classes)).squeeze(1)


def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) for conv/linear weights, N(1, 0.02) for BN scales, zero biases (DCGAN)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
