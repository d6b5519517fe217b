"""DRAGAN (Kodali et al. 2017): the non-saturating GAN plus a gradient penalty on points
around the real data, x + c * std(x) * U[0, 1) mixed with x (lambda = 10, c = 0.5, as in the
authors' code); Adam lr 1e-4, betas (0.5, 0.9)."""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES, dragan_penalty
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants._options import penalty_options
from pipeline.core.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="dragan",
        algorithm=Adversarial(
            MLPGenerator, MLPDiscriminator, OBJECTIVES["ns"], penalty=dragan_penalty
        ),
        epochs=200,
        lr=1e-4,
        betas=(0.5, 0.9),
        options=penalty_options(10.0, perturb=0.5),
        description="MLP GAN, non-saturating loss, DRAGAN penalty around real data",
        citation="Kodali et al. 2017, On Convergence and Stability of GANs (arXiv:1705.07215)",
        published=(("DRAGAN", 7.6),),
    )
)
