"""Conditional GAN (Mirza & Osindero 2014): G and D both see a one-hot label."""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants.base import STRUCTURED, Variant, registry

VARIANT = registry.register(
    Variant(
        name="cgan",
        algorithm=Adversarial(MLPGenerator, MLPDiscriminator, OBJECTIVES["ns"]),
        conditional=True,
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="MLP conditional GAN, BCE on (x, one-hot label)",
        family=STRUCTURED,
        citation="Mirza & Osindero 2014, Conditional Generative Adversarial Nets (arXiv:1411.1784)",
    )
)
