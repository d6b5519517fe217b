"""The structured GANs (acgan, infogan, began, ebgan): their losses against values computed
by hand on small tensors, their nets' outputs, and sampling that repeats for a seed.
(Training, resume and static steps: the registry-parametrised tests in test_train.py and
test_protocol.py.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.core.losses import Scores
from pipeline.core.nets import NetSpec
from pipeline.core.variants.base import registry
from pipeline.training.sampling import generate

SPEC = NetSpec(z_dim=8, img_shape=(1, 28, 28))


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def ce(logits: list[float], label: int) -> float:
    """cross-entropy of one row, by hand."""
    return -logits[label] + math.log(sum(math.exp(v) for v in logits))


def _nets(name: str, spec: NetSpec = SPEC) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    nets = registry.get(name).algorithm.build(spec)
    for net in nets.values():
        net.eval()
    return nets


@pytest.mark.parametrize("name", ["acgan", "infogan", "began", "ebgan"])
def test_sampling_is_deterministic_for_a_seed(name: str) -> None:
    variant = registry.get(name)
    spec = NetSpec(SPEC.z_dim, SPEC.img_shape, 10 if variant.conditional else 0)
    nets = _nets(name, spec)
    cpu = torch.device("cpu")
    a, la = generate(variant, nets, 12, SPEC.z_dim, 7, 5, cpu)
    b, lb = generate(variant, nets, 12, SPEC.z_dim, 7, 5, cpu)
    c, _ = generate(variant, nets, 12, SPEC.z_dim, 8, 5, cpu)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (12, 1, 28, 28)
    assert (la is None) == (not variant.conditional)


# ------------------------------------------------------------------ acgan
def test_acgan_losses_by_hand() -> None:
    from pipeline.core.variants.acgan import ACGAN

    real_cls = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    fake_cls = torch.tensor([[0.5, 0.5, 0.0], [1.0, -1.0, 3.0]])
    labels = torch.tensor([0, 2])
    s = Scores(torch.tensor([1.0, -1.0]), torch.tensor([0.5, 2.0]), (real_cls,), (fake_cls,),
               labels)  # fmt: skip
    lc_real = (ce([2, 0, -1], 0) + ce([0, 1, 0], 2)) / 2
    lc_fake = (ce([0.5, 0.5, 0], 0) + ce([1, -1, 3], 2)) / 2
    d = (sp(-1) + sp(1)) / 2 + (sp(0.5) + sp(2)) / 2 + lc_real + lc_fake
    g = (sp(-0.5) + sp(-2)) / 2 + lc_fake
    assert ACGAN.d_loss(s).item() == pytest.approx(d, rel=1e-6)
    assert ACGAN.g_loss(s).item() == pytest.approx(g, rel=1e-6)


def test_acgan_discriminator_predicts_the_label_without_seeing_it() -> None:
    d = _nets("acgan", NetSpec(8, (1, 28, 28), 10))["discriminator"]
    x = torch.randn(3, 1, 28, 28)
    logit, classes = d(x, torch.tensor([0, 1, 2]))
    assert logit.shape == (3,) and classes.shape == (3, 10)
    again = d(x, torch.tensor([9, 9, 9]))  # another label changes nothing: not an input
    assert torch.equal(logit, again[0]) and torch.equal(classes, again[1])
    assert d.body[0].in_features == 784
    assert F.cross_entropy(classes, torch.tensor([0, 1, 2])).isfinite()


# ------------------------------------------------------------------ infogan
def test_infogan_mutual_information_term_by_hand() -> None:
    from pipeline.core.variants.infogan import info_loss

    cat_logits = torch.tensor([[1.0] + [0.0] * 9, [0.0] * 9 + [2.0]])
    codes = torch.zeros(2, 12)
    codes[0, 3], codes[1, 9] = 1.0, 1.0  # c1 = 3 and 9
    codes[:, 10:] = torch.tensor([[0.5, -0.5], [1.0, 0.0]])
    con = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    cat = (ce([1.0] + [0.0] * 9, 3) + ce([0.0] * 9 + [2.0], 9)) / 2
    mse = (0.25 + 0.25 + 0 + 1) / 4
    got = info_loss(cat_logits, con, codes, {"lambda_cat": 1.0, "lambda_con": 0.5})
    assert got.item() == pytest.approx(cat + 0.5 * mse, rel=1e-6)


def test_infogan_latent_carries_the_codes_and_its_figures_sweep_them() -> None:
    alg = registry.get("infogan").algorithm
    latent = alg.latent(50, SPEC, torch.Generator().manual_seed(0))
    assert latent.shape == (50, SPEC.z_dim + 12)
    one_hot, con = latent[:, SPEC.z_dim : SPEC.z_dim + 10], latent[:, SPEC.z_dim + 10 :]
    assert torch.equal(one_hot.sum(1), torch.ones(50)) and set(one_hot.unique().tolist()) == {0, 1}
    assert con.min() >= -1 and con.max() <= 1
    nets = _nets("infogan")
    with torch.no_grad():
        figs = alg.figures(nets, SPEC, torch.device("cpu"))
    assert sorted(figs) == ["codes_c2", "codes_c3"]
    fig = figs["codes_c2"]
    assert fig.images.shape == (100, 1, 28, 28) and fig.nrow == 10 and "by row" in fig.caption
    # rows differ by the categorical code, columns by the continuous one
    assert not torch.equal(fig.images[0], fig.images[10])
    assert not torch.equal(fig.images[0], fig.images[9])


# ------------------------------------------------------------------ began
def test_began_losses_k_update_and_convergence_measure_by_hand() -> None:
    from pipeline.core.variants.began import BEGAN_OBJECTIVE, m_global, next_k

    l_real, l_fake = torch.tensor([0.2, 0.4]), torch.tensor([0.1, 0.3])
    s = Scores(l_real, l_fake, state={"k_t": torch.tensor(0.5)})
    assert BEGAN_OBJECTIVE.d_loss(s).item() == pytest.approx(0.3 - 0.5 * 0.2)
    assert BEGAN_OBJECTIVE.g_loss(s).item() == pytest.approx(0.2)
    # k + lambda_k (gamma L(x) - L(G(z))) = 0.5 + 0.001 (0.75 * 0.3 - 0.2)
    k = next_k(torch.tensor(0.5), l_real, l_fake, 0.75, 0.001)
    assert k.item() == pytest.approx(0.500025, rel=1e-6)
    assert next_k(torch.tensor(0.0), l_real, l_fake + 1, 0.75, 0.001).item() == 0.0  # clipped
    assert next_k(torch.tensor(1.0), l_real + 5, l_fake, 0.75, 1.0).item() == 1.0
    assert m_global(l_real, l_fake, 0.75).item() == pytest.approx(0.3 + 0.025)


def test_began_k_t_is_state_that_starts_at_zero_and_moves() -> None:
    from pipeline.core.variants.began import BEGAN

    alg = registry.get("began").algorithm
    assert isinstance(alg, BEGAN)
    hyper = registry.get("began").resolve()
    state = alg.initial_state(hyper, torch.device("cpu"))
    assert list(state) == ["k_t"] and state["k_t"].item() == 0.0
    assert {"k_t", "m_global"} <= set(alg.metrics)


def test_autoencoder_energies_are_per_sample_reconstruction_errors() -> None:
    d = _nets("began")["discriminator"]
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    energy, code = d(x)
    recon = d.decoder(d.encoder(x.flatten(1)))
    assert torch.allclose(energy, (recon - x.flatten(1)).abs().mean(1))
    assert code.shape == (3, 64)


# ------------------------------------------------------------------ ebgan
def test_ebgan_losses_and_pulling_away_term_by_hand() -> None:
    from pipeline.core.variants.ebgan import EBGAN_OBJECTIVE, pulling_away

    codes = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    # cos^2 of the pairs (1,2), (1,3), (2,3): 1/2, 0, 1/2; each pair twice over 3 * 2
    assert pulling_away(codes).item() == pytest.approx(2 * (0.5 + 0 + 0.5) / 6, rel=1e-6)
    opts = {"margin": 1.0, "pt_weight": 0.1}
    s = Scores(torch.tensor([0.2, 0.4]), torch.tensor([0.5, 1.5]), fake_extra=(codes[:2],),
               options=opts)  # fmt: skip
    # D(x) + max(0, m - D(G(z))): 0.3 + mean(0.5, 0)
    assert EBGAN_OBJECTIVE.d_loss(s).item() == pytest.approx(0.55)
    # D(G(z)) + 0.1 PT: 1.0 + 0.1 * cos^2(45 degrees)
    assert EBGAN_OBJECTIVE.g_loss(s).item() == pytest.approx(1.0 + 0.1 * 0.5, rel=1e-6)


def test_ebgan_energy_is_the_mean_squared_reconstruction_error() -> None:
    e = _nets("ebgan")["discriminator"]
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    energy, code = e(x)
    recon = e.decoder(e.encoder(x.flatten(1)))
    assert torch.allclose(energy, (recon - x.flatten(1)).pow(2).mean(1)) and code.shape == (3, 32)
