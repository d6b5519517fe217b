"""The non-adversarial baselines (vae, ddpm): hand-checked losses on small tensors, two steps
move every trained net, sampling is deterministic for a seed. Resume and static-step
equality are covered by the registry-parametrised tests (test_protocol, test_train)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.core.variants.base import BASELINES, registry
from pipeline.core.variants.vae import MLPEncoder, bernoulli_logits, elbo_terms
from pipeline.infra.params import load_params
from pipeline.training.loop import Trainer
from pipeline.training.sampling import generate
from pipeline.training.setup import run_setup
from pipeline.training.spec import run_spec
from tests.conftest import write_params

BASELINE_NAMES = [n for n in registry.names() if registry.get(n).family == BASELINES]


def _trained(
    name: str, root: Path, prepared_dir: Path, steps: int, options: dict | None = None
) -> tuple[Trainer, dict]:
    over = {"data": {"dir": str(prepared_dir)}, "train": {"subset": 64 * steps}}
    if options:
        over["variants"] = {name: {"options": options}}
    path = write_params(root, over)
    params = load_params(path)
    trainer = Trainer(run_setup(params), run_spec(params, name, epochs=1), root / "run",
                      torch.device("cpu"), progress=False)  # fmt: skip
    trainer._fresh_state()
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in trainer.nets.items()}
    trainer._train_epochs(*trainer._load_data())
    assert trainer.step == steps
    return trainer, before


def test_the_baselines_are_registered_as_such() -> None:
    assert {"vae", "ddpm"} <= set(BASELINE_NAMES)
    for name in BASELINE_NAMES:
        assert registry.get(name).citation


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_two_steps_change_every_weight_of_every_trained_net(
    name: str, tmp_path: Path, prepared_dir: Path
) -> None:
    trainer, before = _trained(name, tmp_path, prepared_dir, steps=2)
    owned = {n for nets in trainer.algorithm.owners().values() for n in nets}
    assert owned
    for net in owned:
        params = dict(trainer.nets[net].named_parameters())
        same = [k for k, p in params.items() if torch.equal(p, before[net][k])]
        assert not same, f"{name}: {net} parameters unchanged after two steps: {same}"
    row = trainer.ctx.read()
    for key in trainer.algorithm.losses:
        assert math.isfinite(row[key]), key


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_sampling_is_deterministic_for_a_seed(
    name: str, tmp_path: Path, prepared_dir: Path
) -> None:
    trainer, _ = _trained(name, tmp_path, prepared_dir, steps=1)
    variant, nets = trainer.variant, trainer.nets
    for net in nets.values():
        net.eval()
    dev = torch.device("cpu")
    a, _ = generate(variant, nets, 6, 100, seed=3, batch_size=4, device=dev)
    b, _ = generate(variant, nets, 6, 100, seed=3, batch_size=4, device=dev)
    c, _ = generate(variant, nets, 6, 100, seed=4, batch_size=4, device=dev)
    assert a.shape == (6, 1, 28, 28) and a.dtype == torch.uint8
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ------------------------------------------------------------------------------------- vae


def test_vae_elbo_terms_by_hand() -> None:
    """x = (-1, 1) -> pixels (0, 1); logits (0, 2): BCE = log 2 + log(1 + e^-2).
    mu = (1, 0), logvar = (0, log 2): KL = -1/2 [(1 + 0 - 1 - 1) + (1 + log 2 - 0 - 2)]."""
    x = torch.tensor([[[[-1.0, 1.0]]]])
    logits = torch.tensor([[[[0.0, 2.0]]]])
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    recon, kl = elbo_terms(x, logits, mu, logvar)
    assert recon.item() == pytest.approx(math.log(2) + math.log(1 + math.exp(-2)), rel=1e-6)
    assert kl.item() == pytest.approx(1 - 0.5 * math.log(2), rel=1e-6)
    # a batch of two identical rows has the same means; a perfect posterior has KL 0
    recon2, kl2 = elbo_terms(x.repeat(2, 1, 1, 1), logits.repeat(2, 1, 1, 1),
                             torch.zeros(2, 2), torch.zeros(2, 2))  # fmt: skip
    assert recon2.item() == pytest.approx(recon.item(), rel=1e-6) and kl2.item() == 0.0


def test_vae_sampler_is_the_bernoulli_mean_of_its_logits() -> None:
    """The decoder (the GANs' MLP generator) outputs tanh(a); its logits are 2a, so the
    sampler's image is 2 sigmoid(logits) - 1, in [-1, 1]."""
    from pipeline.core.nets import MLPGenerator, NetSpec

    spec = NetSpec(z_dim=8)
    torch.manual_seed(0)
    dec = MLPGenerator(spec).eval()
    z = torch.randn(5, 8)
    with torch.no_grad():
        x, logits = dec(z), bernoulli_logits(dec, z)
    assert torch.allclose(x, 2 * torch.sigmoid(logits) - 1, atol=1e-6)
    mu, logvar = MLPEncoder(spec)(x)
    assert mu.shape == logvar.shape == (5, 8)
