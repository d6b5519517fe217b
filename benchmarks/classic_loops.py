"""The classic reference loops of the training-speed benchmark, one per model family.

Each is written as the model's reference code is (the PyTorch-GAN MNIST scripts for the
GANs, pytorch/examples' VAE, the usual DDPM training loop): a plain PyTorch step on a batch
that a DataLoader moved to the device, losses written out inline, optimisers with the
library's defaults, ``.item()`` per step for logging, the EMA as a loop over parameters.
They use the pipeline's nets (the same models and widths), so the ratio measures the loop.

``STEPS[name](nets, hyper, z_dim, device, optim)`` returns ``step(real, labels, i)``, one
training iteration on the batch ``real`` [B, 1, 28, 28] in [-1, 1] (``i``: the batch
index); ``optim(module)`` builds an optimiser as the reference does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Step = Callable[[torch.Tensor, torch.Tensor, int], dict[str, float]]
Builder = Callable[..., Step]


def _bce(logit: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, target))


def acgan(nets: dict[str, nn.Module], hyper: Any, z_dim: int, device: torch.device,
          optim: Callable) -> Step:  # fmt: skip
    """PyTorch-GAN's acgan.py: adversarial BCE + auxiliary cross-entropy on both players."""
    g, d = nets["generator"], nets["discriminator"]
    opt_g, opt_d = optim(g), optim(d)

    def step(real: torch.Tensor, labels: torch.Tensor, i: int) -> dict[str, float]:
        z = torch.randn(real.shape[0], z_dim, device=device)
        fake = g(z, labels)
        opt_d.zero_grad()
        real_adv, real_aux = d(real)
        fake_adv, fake_aux = d(fake.detach())
        d_loss = (_bce(real_adv, 1.0) + _bce(fake_adv, 0.0)
                  + F.cross_entropy(real_aux, labels) + F.cross_entropy(fake_aux, labels))  # fmt: skip
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        adv, aux = d(fake)
        g_loss = _bce(adv, 1.0) + F.cross_entropy(aux, labels)
        g_loss.backward()
        opt_g.step()
        return {"d": d_loss.item(), "g": g_loss.item()}

    return step


def infogan(nets: dict[str, nn.Module], hyper: Any, z_dim: int, device: torch.device,
            optim: Callable) -> Step:  # fmt: skip
    """PyTorch-GAN's infogan.py: codes beside z, the MI term (CE + MSE) on D+Q and G."""
    g, d = nets["generator"], nets["discriminator"]
    opt_g, opt_d = optim(g), optim(d)
    lam_cat, lam_con = hyper.options["lambda_cat"], hyper.options["lambda_con"]

    def step(real: torch.Tensor, labels: torch.Tensor, i: int) -> dict[str, float]:
        b = real.shape[0]
        cat = torch.randint(0, 10, (b,), device=device)
        con = torch.rand(b, 2, device=device) * 2 - 1
        fake = g(torch.cat([torch.randn(b, z_dim, device=device), F.one_hot(cat, 10).float(),
                            con], dim=1))  # fmt: skip
        opt_d.zero_grad()
        real_adv = d(real)[0]
        fake_adv, q_cat, q_con = d(fake.detach())
        info = lam_cat * F.cross_entropy(q_cat, cat) + lam_con * F.mse_loss(q_con, con)
        d_loss = _bce(real_adv, 1.0) + _bce(fake_adv, 0.0) + info
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        adv, q_cat, q_con = d(fake)
        info = lam_cat * F.cross_entropy(q_cat, cat) + lam_con * F.mse_loss(q_con, con)
        g_loss = _bce(adv, 1.0) + info
        g_loss.backward()
        opt_g.step()
        return {"d": d_loss.item(), "g": g_loss.item(), "info": info.item()}

    return step


def began(nets: dict[str, nn.Module], hyper: Any, z_dim: int, device: torch.device,
          optim: Callable) -> Step:  # fmt: skip
    """PyTorch-GAN's began.py: auto-encoder D, k_t a Python float updated from .item()."""
    g, d = nets["generator"], nets["discriminator"]
    opt_g, opt_d = optim(g), optim(d)
    gamma, lambda_k = hyper.options["gamma"], hyper.options["lambda_k"]
    k = 0.0

    def step(real: torch.Tensor, labels: torch.Tensor, i: int) -> dict[str, float]:
        nonlocal k
        fake = g(torch.randn(real.shape[0], z_dim, device=device))
        opt_g.zero_grad()
        g_loss = d(fake)[0].mean()
        g_loss.backward()
        opt_g.step()
        opt_d.zero_grad()
        l_real, l_fake = d(real)[0].mean(), d(fake.detach())[0].mean()
        d_loss = l_real - k * l_fake
        d_loss.backward()
        opt_d.step()
        diff = (gamma * l_real - l_fake).item()
        k = min(max(k + lambda_k * diff, 0.0), 1.0)
        return {"d": d_loss.item(), "g": g_loss.item(), "k": k, "m": l_real.item() + abs(diff)}

    return step


def ebgan(nets: dict[str, nn.Module], hyper: Any, z_dim: int, device: torch.device,
          optim: Callable) -> Step:  # fmt: skip
    """PyTorch-GAN's ebgan.py: MSE energy, margin hinge for D, pulling-away term for G."""
    g, d = nets["generator"], nets["discriminator"]
    opt_g, opt_d = optim(g), optim(d)
    margin, pt_weight = hyper.options["margin"], hyper.options["pt_weight"]

    def pullaway(codes: torch.Tensor) -> torch.Tensor:
        n = codes.shape[0]
        unit = codes / codes.norm(dim=1, keepdim=True)
        sim = unit @ unit.t()
        return (sim.pow(2).sum() - n) / (n * (n - 1))

    def step(real: torch.Tensor, labels: torch.Tensor, i: int) -> dict[str, float]:
        fake = g(torch.randn(real.shape[0], z_dim, device=device))
        opt_d.zero_grad()
        d_loss = d(real)[0].mean() + F.relu(margin - d(fake.detach())[0]).mean()
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        energy, codes = d(fake)
        g_loss = energy.mean() + pt_weight * pullaway(codes)
        g_loss.backward()
        opt_g.step()
        return {"d": d_loss.item(), "g": g_loss.item()}

    return step


def vae(nets: dict[str, nn.Module], hyper: Any, z_dim: int, device: torch.device,
        optim: Callable) -> Step:  # fmt: skip
    """pytorch/examples' vae: one optimiser, BCE summed per image + KL, loss.item() per step."""
    enc, dec = nets["encoder"], nets["decoder"]
    opt = optim(nn.ModuleList([enc, dec]))

    def step(real: torch.Tensor, labels: torch.Tensor, i: int) -> dict[str, float]:
        opt.zero_grad()
        mu, logvar = enc(real)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = 2 * dec.net[:-1](z).view_as(real)  # Bernoulli logits of the tanh decoder
        bce = F.binary_cross_entropy_with_logits(logits, (real + 1) / 2, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss = (bce + kld) / real.shape[0]
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    return step


def ddpm(nets: dict[str, nn.Module], hyper: Any, z_dim: int, device: torch.device,
         optim: Callable) -> Step:  # fmt: skip
    """The usual DDPM loop: random t, noise, MSE on the predicted noise, a per-parameter EMA."""
    model, ema = nets["model"], nets["ema"]
    opt = optim(model)
    decay = hyper.options["ema_decay"]
    betas = torch.linspace(1e-4, 0.02, 1000, device=device)
    abar = torch.cumprod(1 - betas, 0)

    def step(real: torch.Tensor, labels: torch.Tensor, i: int) -> dict[str, float]:
        t = torch.randint(0, 1000, (real.shape[0],), device=device)
        noise = torch.randn_like(real)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * real + (1 - a).sqrt() * noise
        loss = F.mse_loss(model(x_t, t), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                p_ema.mul_(decay).add_(p, alpha=1 - decay)
        return {"loss": loss.item()}

    return step


STEPS: dict[str, Builder] = {
    "acgan": acgan, "infogan": infogan, "began": began, "ebgan": ebgan, "vae": vae, "ddpm": ddpm,
}  # fmt: skip
