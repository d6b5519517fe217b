"""Adversarial objectives and penalties as pure functions of raw discriminator outputs.

An objective sees :class:`Scores`: D's outputs on the real and on the fake batch (raw
logits or critic values, shape [B]; extra outputs such as class logits beside them), the
labels, the variant's options and the algorithm's state, for both players. ``OBJECTIVES``
maps a name to the pair; variants pick one.

Where an objective has a probabilistic reading (D(x) = sigmoid(logit)) the trainer logs
D's mean probabilities; a critic objective logs the Wasserstein estimate E[C(x)] - E[C(G(z))];
any other objective logs D's raw mean outputs. Nothing is logged that does not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Scores:
    """D's outputs for one step. ``real``/``fake``: [B]; ``*_extra``: further outputs."""

    real: torch.Tensor
    fake: torch.Tensor
    real_extra: tuple[torch.Tensor, ...] = ()
    fake_extra: tuple[torch.Tensor, ...] = ()
    labels: torch.Tensor | None = None
    options: Mapping[str, float] = field(default_factory=dict)
    state: Mapping[str, torch.Tensor] = field(default_factory=dict)


Loss = Callable[[Scores], torch.Tensor]
Reading = Literal["probability", "critic", "raw"]


@dataclass(frozen=True)
class Objective:
    d_loss: Loss
    g_loss: Loss
    reading: Reading  # how D's outputs are read (what the trainer logs about them)
    g_needs_real: bool = False  # the G loss uses D(real): rescored after the D update


# ------------------------------------------------------------------ the objectives
def bce_d_loss(s: Scores) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))) with D = sigmoid(logit), summed over both halves."""
    return F.softplus(-s.real).mean() + F.softplus(s.fake).mean()


def ns_g_loss(s: Scores) -> torch.Tensor:
    """Non-saturating generator loss (Goodfellow et al. 2014, section 3): -log D(G(z))."""
    return F.softplus(-s.fake).mean()


def mm_g_loss(s: Scores) -> torch.Tensor:
    """Saturating minimax generator loss: log(1 - D(G(z))) = -softplus(logit)."""
    return -F.softplus(s.fake).mean()


def wasserstein_d_loss(s: Scores) -> torch.Tensor:
    """Critic minimises E[C(G(z))] - E[C(x)] (the negative Wasserstein estimate)."""
    return s.fake.mean() - s.real.mean()


def wasserstein_g_loss(s: Scores) -> torch.Tensor:
    return -s.fake.mean()


def ls_d_loss(s: Scores) -> torch.Tensor:
    """LSGAN (Mao et al. 2017, eq. 9 with a=0, b=c=1): 1/2 E[(D(x)-1)^2] + 1/2 E[D(G(z))^2]."""
    return 0.5 * (s.real - 1).pow(2).mean() + 0.5 * s.fake.pow(2).mean()


def ls_g_loss(s: Scores) -> torch.Tensor:
    return 0.5 * (s.fake - 1).pow(2).mean()


def hinge_d_loss(s: Scores) -> torch.Tensor:
    """Hinge (Lim & Ye 2017): E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]."""
    return F.relu(1 - s.real).mean() + F.relu(1 + s.fake).mean()


def ra_d_loss(s: Scores) -> torch.Tensor:
    """Relativistic average GAN (Jolicoeur-Martineau 2018): D judges whether real data is
    more realistic than the average fake, and fake less than the average real."""
    return F.softplus(-(s.real - s.fake.mean())).mean() + F.softplus(s.fake - s.real.mean()).mean()


def ra_g_loss(s: Scores) -> torch.Tensor:
    return F.softplus(-(s.fake - s.real.mean())).mean() + F.softplus(s.real - s.fake.mean()).mean()


def boundary_seeking_g_loss(s: Scores) -> torch.Tensor:
    """BGAN (Hjelm et al. 2018): 1/2 E[(log D - log(1 - D))^2] = 1/2 E[logit^2], which pulls
    G(z) to D's decision boundary, where D(G(z)) = 1/2."""
    return 0.5 * s.fake.pow(2).mean()


def _softmax_log_partition(s: Scores) -> torch.Tensor:
    # Softmax GAN (Lin 2017): D's outputs are energies; Z = sum over the joint batch of exp(-E).
    return torch.logsumexp(torch.cat([-s.real, -s.fake]), dim=0)


def softmax_d_loss(s: Scores) -> torch.Tensor:
    """D's target puts mass 1/|B+| on each real sample: mean E(x) + log Z."""
    return s.real.mean() + _softmax_log_partition(s)


def softmax_g_loss(s: Scores) -> torch.Tensor:
    """G's target is uniform over real and fake: (mean E(x) + mean E(G(z))) / 2 + log Z."""
    return 0.5 * (s.real.mean() + s.fake.mean()) + _softmax_log_partition(s)


OBJECTIVES: dict[str, Objective] = {
    "ns": Objective(bce_d_loss, ns_g_loss, "probability"),
    "mm": Objective(bce_d_loss, mm_g_loss, "probability"),
    "wasserstein": Objective(wasserstein_d_loss, wasserstein_g_loss, "critic"),
    "least_squares": Objective(ls_d_loss, ls_g_loss, "raw"),
    "hinge": Objective(hinge_d_loss, wasserstein_g_loss, "raw"),
    "relativistic_average": Objective(ra_d_loss, ra_g_loss, "raw", g_needs_real=True),
    "boundary_seeking": Objective(bce_d_loss, boundary_seeking_g_loss, "probability"),
    "softmax": Objective(softmax_d_loss, softmax_g_loss, "raw", g_needs_real=True),
}


# ------------------------------------------------------------------ penalties
# penalty(critic(x, labels), real, fake, labels, options, generator=) -> scalar tensor
Penalty = Callable[..., torch.Tensor]


def _first(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _input_grad(
    critic: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]],
    x_hat: torch.Tensor,
    labels: torch.Tensor | None,
) -> torch.Tensor:
    """grad_x C(x_hat), flattened per sample [B, D]; the graph is kept (create_graph) so the
    penalty can be back-propagated into the critic."""
    x_hat = x_hat.requires_grad_(True)
    out = _first(critic(x_hat, labels))
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return grad.flatten(1)


def _mix(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """eps * a + (1 - eps) * b, one eps ~ U[0, 1) per sample, any channel count."""
    shape = (a.shape[0],) + (1,) * (a.dim() - 1)
    eps = torch.rand(shape, device=a.device, dtype=a.dtype, generator=generator)
    return eps * a + (1 - eps) * b


def gradient_penalty(
    critic: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
    options: Mapping[str, float] | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad C(x_hat)||_2 - 1)^2] on random
    interpolates between real and fake samples ([B, ...] of any channel count)."""
    grad = _input_grad(critic, _mix(real, fake, generator), labels)
    return (grad.norm(2, dim=1) - 1).pow(2).mean()


def dragan_penalty(
    critic: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
    options: Mapping[str, float] | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DRAGAN (Kodali et al. 2017): the same penalty on points around the real data only:
    x_p = x + c * std(x) * U[0, 1), then random interpolates between x and x_p
    (c = options["perturb"], 0.5 in the authors' code)."""
    c = (options or {}).get("perturb", 0.5)
    noise = torch.rand(real.shape, device=real.device, dtype=real.dtype, generator=generator)
    perturbed = real + c * real.std() * noise
    grad = _input_grad(critic, _mix(real, perturbed, generator), labels)
    return (grad.norm(2, dim=1) - 1).pow(2).mean()


def divergence_penalty(
    critic: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
    options: Mapping[str, float] | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-div (Wu et al. 2018): E[||grad C(x_hat)||^p] on interpolates, p = options["p"]
    (6 in the paper); the variant's penalty_weight is their k (2)."""
    p = (options or {}).get("p", 6.0)
    grad = _input_grad(critic, _mix(real, fake, generator), labels)
    return grad.pow(2).sum(1).pow(p / 2).mean()
