"""ACGAN (Odena et al. 2017, Conditional Image Synthesis with Auxiliary Classifier GANs).

G gets (z, one-hot label); D does NOT see the label: it returns an adversarial logit and
class logits (a head on the same body). Both players get the class loss L_C (cross-entropy
of the label the image was made or drawn with): D minimises BCE + L_C(real) + L_C(fake),
G minimises the non-saturating -log D(G(z)) + L_C(fake) (the paper's L_S + L_C and L_C - L_S,
with the usual non-saturating G). Adam lr 2e-4, betas (0.5, 0.999), one D step per G step
(the paper's setting, also PyTorch-GAN's MNIST script's, 200 epochs); MLP nets as `gan`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import Objective, Scores, bce_d_loss, ns_g_loss
from pipeline.core.nets import MLPGenerator, NetSpec
from pipeline.core.variants._heads import MultiHeadDiscriminator
from pipeline.core.variants.base import STRUCTURED, Variant, registry

N_CLASSES = 10


def class_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    if labels is None:
        raise ValueError("acgan is conditional: labels are required")
    return F.cross_entropy(logits, labels)


def acgan_d_loss(s: Scores) -> torch.Tensor:
    """BCE on real/fake + the class loss on both halves."""
    return (bce_d_loss(s) + class_loss(s.real_extra[0], s.labels)
            + class_loss(s.fake_extra[0], s.labels))  # fmt: skip


def acgan_g_loss(s: Scores) -> torch.Tensor:
    """-log D(G(z)) + the class loss of G(z, y) against y."""
    return ns_g_loss(s) + class_loss(s.fake_extra[0], s.labels)


ACGAN = Objective(acgan_d_loss, acgan_g_loss, "probability")


def acgan_discriminator(spec: NetSpec) -> nn.Module:
    return MultiHeadDiscriminator(spec, heads=(N_CLASSES,))


VARIANT = registry.register(
    Variant(
        name="acgan",
        algorithm=Adversarial(MLPGenerator, acgan_discriminator, ACGAN),
        conditional=True,
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        family=STRUCTURED,
        description="MLP ACGAN: D predicts the digit (class head), both players get the class loss",
        citation="Odena et al. 2017, Conditional Image Synthesis with Auxiliary Classifier "
        "GANs (ICML)",
    )
)
