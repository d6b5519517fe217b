"""VAE (Kingma & Welling 2014): an MLP encoder q(z|x) and the GANs' MLP generator as decoder.

The decoder is :class:`~pipeline.core.nets.MLPGenerator` unchanged (same widths, BN, tanh), so the
comparison with the GANs is about the objective. Its tanh output is read as the mean of a
Bernoulli likelihood on pixels in [0, 1]: with ``a`` the pre-tanh activation,
``(tanh(a) + 1) / 2 = sigmoid(2a)``, so ``2a`` are the Bernoulli logits and the sampler's
output is that mean mapped to [-1, 1]. The loss is the negative ELBO per image, in nats:
reconstruction (binary cross-entropy summed over pixels) plus KL(q(z|x) || N(0, I)).
Sampling draws z from the prior and decodes it. Adam (lr 1e-3) instead of the paper's
Adagrad: the trainer offers Adam and RMSprop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.algorithms import Algorithm, StepContext
from pipeline.core.nets import MLPGenerator, NetSpec
from pipeline.core.variants.base import BASELINES, Variant, registry


class MLPEncoder(nn.Module):
    """image [B, C, H, W] -> 512 -> 256 (LeakyReLU 0.2) -> (mu, logvar), each [B, z_dim]:
    the widths of the GANs' MLP discriminator."""

    def __init__(self, spec: NetSpec, hidden: tuple[int, ...] = (512, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = math.prod(spec.img_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2, inplace=True)]
            width = h
        layers.append(nn.Linear(width, 2 * spec.z_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar


def bernoulli_logits(decoder: MLPGenerator, z: torch.Tensor) -> torch.Tensor:
    """The decoder's Bernoulli logits [B, C, H, W]: twice its pre-tanh activation."""
    pre_tanh = decoder.net[:-1](z)
    return 2 * pre_tanh.view(z.shape[0], *decoder.spec.img_shape)


def elbo_terms(
    x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch means of the reconstruction term (BCE of pixels ``(x + 1) / 2`` under
    ``logits``, summed per image) and of KL(N(mu, exp(logvar)) || N(0, I)), in nats.
    ``x``, ``logits``: [B, C, H, W] (x in [-1, 1]); ``mu``, ``logvar``: [B, z_dim]."""
    target = (x + 1) / 2
    recon = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return recon.sum(1).mean(), kl.mean()


@dataclass(frozen=True)
class VAE(Algorithm):
    sampler = "decoder"
    kinds = {"step": ("vae",)}
    metrics = ("neg_elbo", "recon", "kl")
    losses = ("neg_elbo",)

    def build(self, spec: NetSpec) -> dict[str, nn.Module]:
        return {"encoder": MLPEncoder(spec), "decoder": MLPGenerator(spec)}

    def owners(self) -> dict[str, tuple[str, ...]]:
        return {"vae": ("encoder", "decoder")}

    def step(self, ctx: StepContext, kind: str) -> None:
        enc, dec = ctx.nets["encoder"], ctx.nets["decoder"]
        with ctx.player("vae"):
            mu, logvar = enc(ctx.real)
            eps = ctx.randn(*mu.shape)
            z = mu + eps * torch.exp(0.5 * logvar)  # the reparameterisation trick
            recon, kl = elbo_terms(ctx.real, bernoulli_logits(dec, z), mu, logvar)
            loss = recon + kl
            ctx.minimize("vae", loss)
        ctx.log(neg_elbo=loss, recon=recon, kl=kl)

    def generate(
        self,
        nets: Mapping[str, nn.Module],
        latent: torch.Tensor,
        labels: torch.Tensor | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The Bernoulli means of decoded prior draws, in [-1, 1]."""
        return nets["decoder"](latent)


VARIANT = registry.register(
    Variant(
        name="vae",
        algorithm=VAE(),
        epochs=100,
        lr=1e-3,
        betas=(0.9, 0.999),
        description="MLP VAE (decoder = the GANs' MLP generator), Bernoulli ELBO",
        citation="Kingma & Welling 2014, Auto-Encoding Variational Bayes (ICLR)",
        family=BASELINES,
        # Lucic et al.'s row; the report labels published rows as theirs, so Dai & Wipf
        # 2019's VAE 16.6 / two-stage VAE 12.6 (same protocol) are cited in the README only.
        published=(("VAE", 23.8),),
    )
)
