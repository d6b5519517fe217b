"""SN-GAN (Miyato et al. 2018): spectral normalisation of every D layer, hinge loss.

Spectral norm (one power iteration per forward pass, torch's parametrization) bounds each
layer's Lipschitz constant. Adam lr 2e-4, betas (0.5, 0.999), one D step per G step: the
DCGAN-style setting among those the paper evaluates. MLP nets as `gan`.
"""

from torch import nn

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator, NetSpec
from pipeline.core.variants.base import Variant, registry


def spectral_mlp_discriminator(spec: NetSpec) -> nn.Module:
    """MLPDiscriminator with spectral norm on every linear layer."""
    d = MLPDiscriminator(spec)
    for i, layer in enumerate(d.net):
        if isinstance(layer, nn.Linear):
            d.net[i] = nn.utils.parametrizations.spectral_norm(layer)
    return d


VARIANT = registry.register(
    Variant(
        name="sngan",
        algorithm=Adversarial(MLPGenerator, spectral_mlp_discriminator, OBJECTIVES["hinge"]),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="MLP GAN, spectrally normalised D, hinge loss",
        citation="Miyato et al. 2018, Spectral Normalization for Generative Adversarial "
        "Networks (ICLR)",
    )
)
