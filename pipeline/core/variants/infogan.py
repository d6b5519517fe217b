"""InfoGAN (Chen et al. 2016, InfoGAN: Interpretable Representation Learning by Information
Maximizing Generative Adversarial Nets).

G's input is the noise z plus a 10-way categorical code c1 (one-hot) and 2 continuous codes
c2, c3 ~ U(-1, 1) (the paper's MNIST setting). A Q head on D's body predicts the codes of a
fake image; the mutual-information lower bound is a cross-entropy for c1 plus a Gaussian
log-likelihood with fixed unit variance for c2, c3 (a squared error, as PyTorch-GAN's MNIST
script). Weight lambda 1 (the paper's MNIST value; options lambda_cat, lambda_con), added to
both D+Q's and G's loss; BCE with the non-saturating G loss. Adam lr 2e-4, betas
(0.5, 0.999), 200 epochs (PyTorch-GAN's MNIST script; the paper: 2e-4 for D, 1e-3 for G).
The noise has the run's z_dim (the paper: 62); MLP nets as `gan`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from pipeline.core.algorithms import Adversarial, StepContext
from pipeline.core.algorithms.base import Figure
from pipeline.core.losses import OBJECTIVES, Scores
from pipeline.core.nets import MLPGenerator, NetSpec
from pipeline.core.variants._heads import MultiHeadDiscriminator
from pipeline.core.variants.base import STRUCTURED, Options, Variant, registry

N_CAT, N_CON = 10, 2
CODES = N_CAT + N_CON
FIGURE_SEED = 20_160_612


class InfoOptions(Options):
    lambda_cat: float = Field(1.0, ge=0, description="weight of the categorical code's MI term")
    lambda_con: float = Field(1.0, ge=0, description="weight of the continuous codes' MI term")


def info_loss(
    cat_logits: torch.Tensor, con_pred: torch.Tensor, codes: torch.Tensor, options: dict
) -> torch.Tensor:
    """lambda_cat * CE(Q's c1 logits, c1) + lambda_con * mean squared error of Q's c2, c3
    (codes: [B, 12] = one-hot c1 then c2, c3)."""
    cat = F.cross_entropy(cat_logits, codes[:, :N_CAT].argmax(1))
    con = (con_pred - codes[:, N_CAT:]).pow(2).mean()
    return options["lambda_cat"] * cat + options["lambda_con"] * con


def draw_codes(n: int, draw_int, draw_uniform) -> torch.Tensor:  # type: ignore[no-untyped-def]
    one_hot = F.one_hot(draw_int(N_CAT, n), N_CAT).float()
    return torch.cat([one_hot, draw_uniform(n, N_CON) * 2 - 1], dim=1)


def info_generator(spec: NetSpec) -> nn.Module:
    return MLPGenerator(replace(spec, z_dim=spec.z_dim + CODES))


def info_discriminator(spec: NetSpec) -> nn.Module:
    return MultiHeadDiscriminator(spec, heads=(N_CAT, N_CON))  # (logit, Q: c1 logits, c2 c3)


@dataclass(frozen=True)
class InfoGAN(Adversarial):
    """The GAN step with the codes drawn beside z and the MI term on both updates."""

    @property
    def metrics(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("d_loss", "g_loss", "d_real", "d_fake", "info_loss")

    def latent(self, n: int, spec: NetSpec, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, spec.z_dim, generator=generator)
        codes = draw_codes(n, lambda k, m: torch.randint(k, (m,), generator=generator),
                           lambda *s: torch.rand(*s, generator=generator))  # fmt: skip
        return torch.cat([z, codes], dim=1)

    def step(self, ctx: StepContext, kind: str) -> None:
        g, d, real, opts = ctx.nets["generator"], ctx.nets["discriminator"], ctx.real, ctx.options
        b = real.shape[0]
        codes = draw_codes(b, ctx.randint, ctx.rand)
        g_step = kind == "dg"
        with torch.set_grad_enabled(g_step):
            fake = g(torch.cat([ctx.randn(b, ctx.spec.z_dim), codes], dim=1))
        with ctx.player("d"):
            out_r, out_f = ctx.score_pair("discriminator", real, fake.detach(), None)
            s = Scores(out_r[0], out_f[0])
            loss_d = self.objective.d_loss(s) + info_loss(out_f[1], out_f[2], codes, opts)
            ctx.minimize("d", loss_d)
        with torch.no_grad():
            ctx.log(d_loss=loss_d, d_real=torch.sigmoid(s.real).mean(),
                    d_fake=torch.sigmoid(s.fake).mean())  # fmt: skip
        if g_step:
            with ctx.player("g"):
                logit, cat_logits, con = d(fake)
                mi = info_loss(cat_logits, con, codes, opts)
                loss_g = self.objective.g_loss(Scores(s.real, logit)) + mi
                ctx.minimize("g", loss_g)
            ctx.log(g_loss=loss_g, info_loss=mi)

    def figures(
        self, nets: dict[str, nn.Module], spec: NetSpec, device: torch.device
    ) -> dict[str, Figure]:
        """For each continuous code: one noise vector, c1 = 0..9 by row, the code swept
        from -2 to 2 by column (the other at 0): the paper's figure 2."""
        z = torch.randn(1, spec.z_dim, generator=torch.Generator().manual_seed(FIGURE_SEED))
        sweep = torch.linspace(-2, 2, 10)
        out = {}
        for k in range(N_CON):
            codes = torch.zeros(100, CODES)
            codes[torch.arange(100), torch.arange(100) // 10] = 1.0
            codes[:, N_CAT + k] = sweep.repeat(10)
            latent = torch.cat([z.expand(100, -1), codes], dim=1).to(device)
            out[f"codes_c{k + 2}"] = Figure(
                nets["generator"](latent), 10,
                f"InfoGAN codes: categorical c1 = 0..9 by row, continuous c{k + 2} from -2 to 2 "
                "by column, one noise vector",
            )  # fmt: skip
        return out


VARIANT = registry.register(
    Variant(
        name="infogan",
        algorithm=InfoGAN(info_generator, info_discriminator, OBJECTIVES["ns"]),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        options=InfoOptions,
        family=STRUCTURED,
        description="MLP InfoGAN: 10-way categorical + 2 continuous codes, Q head on D's body, "
        "MI term (lambda 1) on G and D+Q",
        citation="Chen et al. 2016, InfoGAN: Interpretable Representation Learning by "
        "Information Maximizing Generative Adversarial Nets (NeurIPS)",
    )
)
