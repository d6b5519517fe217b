"""Nets shared by the structured GANs (a helper module: not a variant itself)."""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.core.nets import NetSpec


class MultiHeadDiscriminator(nn.Module):
    """image -> 512 -> 256 (LeakyReLU 0.2, the MLP D's body) -> an adversarial logit [B] and
    one linear head per entry of ``heads`` ([B, k] each). The label is never an input (ACGAN
    predicts it), whatever ``spec.n_classes`` says."""

    def __init__(self, spec: NetSpec, heads: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = math.prod(spec.img_shape)
        for h in (512, 256):
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2, inplace=True)]
            width = h
        self.body = nn.Sequential(*layers)
        self.adv = nn.Linear(width, 1)
        self.heads = nn.ModuleList(nn.Linear(width, k) for k in heads)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        h = self.body(x.flatten(1))
        return (self.adv(h).squeeze(1), *(head(h) for head in self.heads))


class AutoEncoderEnergy(nn.Module):
    """An auto-encoder discriminator (BEGAN, EBGAN): image -> 256 -> ``code`` -> 256 -> image
    (LeakyReLU 0.2, tanh output). Returns the per-sample reconstruction energy [B] (mean
    absolute error for ``p=1``, mean squared error for ``p=2``) and the code [B, code]."""

    def __init__(self, spec: NetSpec, code: int, p: int) -> None:
        super().__init__()
        n = math.prod(spec.img_shape)
        self.p = p
        self.encoder = nn.Sequential(
            nn.Linear(n, 256), nn.LeakyReLU(0.2, inplace=True), nn.Linear(256, code)
        )
        self.decoder = nn.Sequential(
            nn.Linear(code, 256), nn.LeakyReLU(0.2, inplace=True), nn.Linear(256, n), nn.Tanh()
        )

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.flatten(1)
        code = self.encoder(flat)
        err = (self.decoder(code) - flat).abs()
        return (err if self.p == 1 else err.pow(2)).mean(1), code
