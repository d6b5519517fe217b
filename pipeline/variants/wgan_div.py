"""WGAN-div (Wu et al. 2018): the Wasserstein critic loss plus k * E[||grad C(x_hat)||^p]
on interpolates, k = 2 and p = 6 (the paper's recommended values); five critic steps per
G step and Adam lr 2e-4, betas (0.5, 0.999) as in PyTorch-GAN's MNIST script."""

from pipeline.algorithms import Adversarial
from pipeline.losses import OBJECTIVES, divergence_penalty
from pipeline.nets import MLPDiscriminator, MLPGenerator
from pipeline.variants._options import penalty_options
from pipeline.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="wgan_div",
        algorithm=Adversarial(
            MLPGenerator, MLPDiscriminator, OBJECTIVES["wasserstein"], penalty=divergence_penalty
        ),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        n_critic=5,
        options=penalty_options(2.0, p=6.0),
        description="MLP WGAN-div, k=2, p=6",
        citation="Wu et al. 2018, Wasserstein Divergence for GANs (ECCV)",
    )
)
