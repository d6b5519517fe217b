"""Shapes per variant, losses against hand-computed values, the gradient penalty's closed form."""

import copy
import math

import pytest
import torch
from torch import nn

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES, Scores, gradient_penalty
from pipeline.core.nets import (
    DetachedSlopeLeakyReLU,
    NetSpec,
    couples_batch,
    detach_activation_slopes,
)
from pipeline.core.variants.base import registry
from pipeline.training.loop import build_nets
from pipeline.training.spec import RunSpec

VARIANTS = registry.names()
ADVERSARIAL = [n for n in VARIANTS if isinstance(registry.get(n).algorithm, Adversarial)]


def _spec(name: str) -> RunSpec:
    v = registry.get(name)
    return RunSpec(name, v.resolve(None), seed=0, batch_size=8, z_dim=100, subset=None)


def _nets(name: str) -> dict[str, nn.Module]:
    return build_nets(registry.get(name), _spec(name), torch.device("cpu"))


@pytest.mark.parametrize("name", VARIANTS)
def test_sampler_output_shapes(name: str) -> None:
    variant = registry.get(name)
    alg, nets = variant.algorithm, _nets(name)
    spec = NetSpec(100, (1, 28, 28), 10 if variant.conditional else 0)
    z = alg.latent(8, spec, torch.Generator().manual_seed(0))
    labels = torch.arange(8) % 10 if variant.conditional else None
    for net in nets.values():
        net.eval()
    with torch.no_grad():
        x = alg.generate(nets, z, labels, torch.Generator().manual_seed(1))
    assert x.shape == (8, 1, 28, 28)
    assert x.min() >= -1 and x.max() <= 1


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_discriminator_output_shapes(name: str) -> None:
    variant = registry.get(name)
    nets = _nets(name)
    labels = torch.arange(8) % 10 if variant.conditional else None
    spec = NetSpec(100, (1, 28, 28), 10 if variant.conditional else 0)
    z = variant.algorithm.latent(8, spec, torch.Generator().manual_seed(0))  # infogan: + codes
    x = nets["generator"](z, labels)
    out = nets["discriminator"](x, labels)
    logit = out[0] if isinstance(out, tuple) else out
    assert logit.shape == (8,)


def test_conditional_nets_need_labels() -> None:
    g = _nets("cgan")["generator"]
    with pytest.raises(ValueError, match="labels are required"):
        g(torch.randn(2, 100))


def test_dcgan_init_is_normal_0_002() -> None:
    w = _nets("dcgan")["discriminator"].conv[0].weight
    assert abs(w.mean().item()) < 0.005 and w.std().item() == pytest.approx(0.02, rel=0.1)


def test_bce_losses_match_hand_computation() -> None:
    obj = OBJECTIVES["ns"]
    real = torch.tensor([0.0, math.log(3.0)])  # D(x) = 1/2, 3/4
    fake = torch.tensor([0.0, -math.log(3.0)])  # D(G(z)) = 1/2, 1/4
    s = Scores(real, fake)
    # -mean(log D(x)) - mean(log(1 - D(G(z))))
    want_d = -(math.log(0.5) + math.log(0.75)) / 2 - (math.log(0.5) + math.log(0.75)) / 2
    assert obj.d_loss(s).item() == pytest.approx(want_d, rel=1e-6)
    # non-saturating: -mean(log D(G(z)))
    assert obj.g_loss(s).item() == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2, rel=1e-6)


def test_wasserstein_losses_match_hand_computation() -> None:
    obj = OBJECTIVES["wasserstein"]
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.5, -0.5])
    assert obj.d_loss(Scores(real, fake)).item() == pytest.approx(0.0 - 2.0)
    assert obj.g_loss(Scores(real, fake)).item() == pytest.approx(0.0)
    assert obj.g_loss(Scores(real, torch.tensor([2.0, 4.0]))).item() == pytest.approx(-3.0)


@pytest.mark.parametrize("channels", [1, 3])
def test_gradient_penalty_of_a_linear_critic(channels: int) -> None:
    """C(x) = <w, x> has gradient w everywhere: penalty = (||w|| - 1)^2, any channel count."""
    shape = (channels, 28, 28)
    w = torch.randn(shape)
    w = 3.0 * w / w.norm()

    def critic(x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return (x * w).flatten(1).sum(1)

    real, fake = torch.randn(5, *shape), torch.randn(5, *shape)
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((3.0 - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_of_a_quadratic_critic_is_differentiable() -> None:
    """C(x) = ||x||^2 / 2: grad = x_hat; with real == fake, x_hat = x: (||x|| - 1)^2."""
    x = torch.randn(4, 1, 28, 28)
    d = nn.Module()
    d.scale = nn.Parameter(torch.tensor(1.0))

    def critic(inp: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return d.scale * inp.pow(2).flatten(1).sum(1) / 2

    gp = gradient_penalty(critic, x, x.clone())
    want = ((x.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert gp.item() == pytest.approx(want.item(), rel=1e-5)
    gp.backward()  # the penalty trains the critic: its parameters get a gradient
    assert d.scale.grad is not None and d.scale.grad.abs() > 0


def test_net_spec_img_shape_is_respected() -> None:
    from pipeline.core.nets import (
        DCGANDiscriminator,
        DCGANGenerator,
        MLPDiscriminator,
        MLPGenerator,
    )

    spec = NetSpec(z_dim=16, img_shape=(3, 32, 32), n_classes=0)
    for gen, dis in [(MLPGenerator, MLPDiscriminator), (DCGANGenerator, DCGANDiscriminator)]:
        g, d = gen(spec).eval(), dis(spec)
        x = g(torch.randn(2, 16))
        assert x.shape == (2, 3, 32, 32) and d(x).shape == (2,)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
@pytest.mark.parametrize("fast", [True, False])
def test_optimizer_options_are_accepted_by_the_optimizer(
    name: str, device_type: str, fast: bool
) -> None:
    """The CUDA fast path asks for fused kernels only where the optimiser has them
    (RMSprop has none): checked against the signature, since CI has no GPU."""
    import inspect

    from pipeline.training.optim import OPTIMIZERS, optimizer_options

    optimizer = registry.get(name).optimizer
    options = optimizer_options(optimizer, device_type, fast)
    assert set(options) <= set(inspect.signature(OPTIMIZERS[optimizer]).parameters)
    if fast and optimizer == "adam":
        assert options == {"fused": True}


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_couples_batch_says_whether_joining_batches_changes_outputs(name: str) -> None:
    """The trainer joins real and fake batches only where couples_batch() is False: check the
    claim against the network itself (separate vs concatenated forward in training mode)."""
    variant = registry.get(name)
    d = _nets(name)["discriminator"]
    d.train()
    torch.manual_seed(0)
    a, b = torch.randn(2, 16, 1, 28, 28).unbind(0)
    labels = torch.arange(16) % 10 if variant.conditional else None
    both_labels = None if labels is None else torch.cat([labels, labels])

    def logit(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        return out[0] if isinstance(out, tuple) else out

    with torch.no_grad():
        separate = torch.cat([logit(d(a, labels)), logit(d(b, labels))])
        joined = logit(d(torch.cat([a, b]), both_labels))
    same = torch.allclose(separate, joined, rtol=1e-5, atol=1e-6)
    assert couples_batch(d) == (not same)


def test_per_call_state_or_randomness_counts_as_coupling() -> None:
    """Joining two calls into one changes what these do: spectral norm's power iteration and
    running statistics update once per call, dropout draws its masks per call."""
    assert not couples_batch(nn.Sequential(nn.Linear(4, 1), nn.LeakyReLU(0.2), nn.LayerNorm(1)))
    assert not couples_batch(nn.InstanceNorm1d(4))  # per-sample, no running stats
    assert couples_batch(nn.InstanceNorm1d(4, track_running_stats=True))
    assert couples_batch(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1)))
    assert couples_batch(nn.utils.parametrizations.spectral_norm(nn.Linear(4, 1)))
    assert couples_batch(nn.Sequential(nn.utils.spectral_norm(nn.Linear(4, 1))))


@pytest.mark.parametrize("name", ["wgan_gp", "dcgan"])
def test_detached_slopes_give_the_same_penalty_gradients_and_skip_the_zero_pass(
    name: str,
) -> None:
    """The fast path's activation swap: identical outputs and critic gradients under the
    gradient penalty (bit for bit). For the MLP critic the interpolates no longer get a (zero)
    gradient: the pass through the forward graph that only carried zeros is gone. With batch
    norm that pass carries real gradient (the batch statistics depend on the inputs) and stays."""
    plain = _nets(name)["discriminator"]
    swapped = copy.deepcopy(plain)
    assert detach_activation_slopes(swapped) >= 2
    assert not any(isinstance(m, (nn.LeakyReLU, nn.ReLU)) for m in swapped.modules())
    torch.manual_seed(1)
    real, fake = torch.randn(2, 8, 1, 28, 28).unbind(0)

    def penalised(d: nn.Module) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        seen: list[torch.Tensor] = []

        def critic(x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
            seen.append(x)
            return d(x, labels)

        d.zero_grad(set_to_none=True)
        gen = torch.Generator().manual_seed(2)
        loss = (
            d(real).mean()
            - d(fake).mean()
            + 10 * gradient_penalty(critic, real, fake, generator=gen)
        )
        loss.backward()
        return loss, [p.grad.clone() for p in d.parameters()], seen[0].grad

    loss_a, grads_a, x_grad_a = penalised(plain)
    loss_b, grads_b, x_grad_b = penalised(swapped)
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))
    assert x_grad_a is not None
    if couples_batch(plain):
        assert x_grad_b is not None and torch.equal(x_grad_a, x_grad_b)
    else:
        assert not x_grad_a.any()  # the zeros autograd carried
        assert x_grad_b is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_detached_slope_leaky_relu_matches_leaky_relu_values_and_gradients(
    dtype: torch.dtype,
) -> None:
    special = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 3.7, -2.9]
    x = torch.cat([torch.tensor(special), torch.randn(1000)]).to(dtype)
    upstream = torch.cat([torch.tensor([math.inf, -math.inf, math.nan]), torch.randn(1008)])
    upstream = upstream.to(dtype)
    results = []
    for act in (nn.LeakyReLU(0.2), DetachedSlopeLeakyReLU(0.2)):
        leaf = x.clone().requires_grad_(True)
        y = act(leaf)
        y.backward(upstream)
        results.append((y.detach(), leaf.grad))
    (y_ref, g_ref), (y_new, g_new) = results
    torch.testing.assert_close(y_new, y_ref, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(g_new, g_ref, rtol=0, atol=0, equal_nan=True)


def test_relu_and_zero_slopes_are_not_swapped() -> None:
    """x * 0 is -0.0 (or NaN for inf) where ReLU gives 0: those stay nn.ReLU / nn.LeakyReLU."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.LeakyReLU(0.0), nn.LeakyReLU(0.1))
    assert detach_activation_slopes(net) == 1
    assert [type(m).__name__ for m in net] == [
        "Linear", "ReLU", "LeakyReLU", "DetachedSlopeLeakyReLU",
    ]  # fmt: skip
