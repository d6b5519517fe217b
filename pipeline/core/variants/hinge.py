"""Hinge GAN (Lim & Ye 2017, "Geometric GAN"): D minimises E[max(0, 1 - D(x))] +
E[max(0, 1 + D(G(z)))], G minimises -E[D(G(z))]. MLP nets and Adam settings as `gan`."""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="hinge",
        algorithm=Adversarial(MLPGenerator, MLPDiscriminator, OBJECTIVES["hinge"]),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="MLP GAN, hinge loss",
        citation="Lim & Ye 2017, Geometric GAN (arXiv:1705.02894)",
    )
)
