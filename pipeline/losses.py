"""GAN objectives as pure functions of raw discriminator outputs (logits / critic values).

Each objective is a pair ``(d_loss(real, fake), g_loss(fake))`` over tensors of shape [B];
``LOSSES`` maps its name to the pair so variants pick one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def bce_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))) with D = sigmoid(logit), summed over both halves."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def bce_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: -log D(G(z))."""
    return F.softplus(-fake).mean()


def wasserstein_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Critic minimises E[C(G(z))] - E[C(x)] (the negative Wasserstein estimate)."""
    return fake.mean() - real.mean()


def wasserstein_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


@dataclass(frozen=True)
class Objective:
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]
    # True: outputs are logits of a probability (D(x) = sigmoid); False: critic values.
    probabilistic: bool


LOSSES: dict[str, Objective] = {
    "bce": Objective(bce_d_loss, bce_g_loss, probabilistic=True),
    "wasserstein": Objective(wasserstein_d_loss, wasserstein_g_loss, probabilistic=False),
}


def gradient_penalty(
    critic: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad_x C(x_hat)||_2 - 1)^2] on random interpolates.

    ``real``/``fake``: [B, ...] of any channel count; one mixing weight per sample.
    The graph is kept (create_graph) so the penalty can be back-propagated.
    """
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = critic(x_hat, labels)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()
