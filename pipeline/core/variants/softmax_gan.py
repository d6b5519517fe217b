"""Softmax GAN (Lin 2017): D's outputs are energies and the batch (real + fake) a softmax;
D's target puts the mass on the real samples, G's target is uniform over both halves.
Adam lr 2e-4, betas (0.5, 0.999) as PyTorch-GAN's MNIST script; MLP nets as `gan`."""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="softmax_gan",
        algorithm=Adversarial(MLPGenerator, MLPDiscriminator, OBJECTIVES["softmax"]),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="MLP Softmax GAN",
        citation="Lin 2017, Softmax GAN (arXiv:1704.06191)",
    )
)
