"""LSGAN (Mao et al. 2017): least-squares losses with targets a=0, b=c=1 (their eq. 9).

Adam lr 2e-4, beta1 0.5 as in the paper's experiments; MLP nets as `gan`.
"""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="lsgan",
        algorithm=Adversarial(MLPGenerator, MLPDiscriminator, OBJECTIVES["least_squares"]),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="MLP LSGAN, least-squares loss (a=0, b=c=1)",
        citation="Mao et al. 2017, Least Squares Generative Adversarial Networks (ICCV)",
        published=(("LSGAN", 7.8),),
    )
)
