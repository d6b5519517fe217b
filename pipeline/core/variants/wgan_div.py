"""WGAN-div (Wu et al. 2018): the Wasserstein critic loss plus k * E[||grad C(x_hat)||^p]
on interpolates, k = 2 and p = 6 (the paper's recommended values); five critic steps per
G step and Adam lr 2e-4, betas (0.5, 0.999) as in PyTorch-GAN's MNIST script.

A departure from that script, by choice: we take the penalty at random interpolates
x_hat = eps x + (1 - eps) G(z), eps ~ U(0, 1) per image (the sampling WGAN-GP uses, shared
with wgan_gp and dragan through pipeline.core.losses), where PyTorch-GAN's wgan_div.py takes it
at the real and at the generated points themselves, k/2 (E||grad C(x)||^p +
E||grad C(G(z))||^p). The two penalise different points, so their penalty values (the `gp`
curve) and a k tuned for one are not interchangeable with the other's."""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES, divergence_penalty
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants._options import penalty_options
from pipeline.core.variants.base import Variant, registry

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
