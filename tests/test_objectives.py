"""Every adversarial objective and penalty against values computed by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.core.losses import (
    OBJECTIVES,
    Scores,
    divergence_penalty,
    dragan_penalty,
    gradient_penalty,
)

REAL = torch.tensor([1.0, -1.0])
FAKE = torch.tensor([0.5, 2.0])
S = Scores(REAL, FAKE)


def sp(x: float) -> float:
    """softplus, by hand."""
    return math.log1p(math.exp(x))


def mean(*xs: float) -> float:
    return sum(xs) / len(xs)


HAND: dict[str, tuple[float, float]] = {
    # name: (D loss, G loss) on REAL = [1, -1], FAKE = [0.5, 2]
    "ns": (mean(sp(-1), sp(1)) + mean(sp(0.5), sp(2)), mean(sp(-0.5), sp(-2))),
    "mm": (mean(sp(-1), sp(1)) + mean(sp(0.5), sp(2)), -mean(sp(0.5), sp(2))),
    "wasserstein": (mean(0.5, 2) - mean(1, -1), -mean(0.5, 2)),
    # 1/2 E[(D(x)-1)^2] + 1/2 E[D(G(z))^2];  1/2 E[(D(G(z))-1)^2]
    "least_squares": (0.5 * mean(0, 4) + 0.5 * mean(0.25, 4), 0.5 * mean(0.25, 1)),
    # E[relu(1 - D(x))] + E[relu(1 + D(G(z)))];  -E[D(G(z))]
    "hinge": (mean(0, 2) + mean(1.5, 3), -1.25),
    # mean real 0, mean fake 1.25
    "relativistic_average": (
        mean(sp(-(1 - 1.25)), sp(-(-1 - 1.25))) + mean(sp(0.5 - 0), sp(2 - 0)),
        mean(sp(-(0.5 - 0)), sp(-(2 - 0))) + mean(sp(1 - 1.25), sp(-1 - 1.25)),
    ),
    # 1/2 E[logit^2]
    "boundary_seeking": (mean(sp(-1), sp(1)) + mean(sp(0.5), sp(2)), 0.5 * mean(0.25, 4)),
    # log Z = log(e^-1 + e^1 + e^-0.5 + e^-2)
    "softmax": (
        0.0 + math.log(math.exp(-1) + math.exp(1) + math.exp(-0.5) + math.exp(-2)),
        0.5 * (0.0 + 1.25) + math.log(math.exp(-1) + math.exp(1) + math.exp(-0.5) + math.exp(-2)),
    ),
}


def test_every_objective_has_a_hand_computed_case() -> None:
    assert set(HAND) == set(OBJECTIVES)


@pytest.mark.parametrize("name", sorted(HAND))
def test_objective_values(name: str) -> None:
    obj = OBJECTIVES[name]
    d, g = HAND[name]
    assert obj.d_loss(S).item() == pytest.approx(d, rel=1e-6)
    assert obj.g_loss(S).item() == pytest.approx(g, rel=1e-6)


def test_g_losses_that_ignore_real_scores_say_so() -> None:
    """g_needs_real makes the trainer rescore the real batch for G; it must be set exactly
    where the G loss reads it."""
    other = Scores(REAL + 3.0, FAKE)
    for name, obj in OBJECTIVES.items():
        reads_real = obj.g_loss(other).item() != pytest.approx(obj.g_loss(S).item())
        assert reads_real == obj.g_needs_real, name


def test_the_saturating_loss_saturates_where_the_non_saturating_one_does_not() -> None:
    """Goodfellow et al.'s point: when D rejects fakes confidently, log(1 - D(G(z))) has a
    vanishing gradient, -log D(G(z)) a strong one."""
    fake = torch.tensor([-8.0], requires_grad=True)
    grads = {}
    for name in ("mm", "ns"):
        fake.grad = None
        OBJECTIVES[name].g_loss(Scores(torch.zeros(1), fake)).backward()
        grads[name] = abs(fake.grad.item())
    assert grads["mm"] < 1e-3 < 0.99 < grads["ns"]


def _linear_critic(w: torch.Tensor):  # type: ignore[no-untyped-def]
    def critic(x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return (x * w).flatten(1).sum(1)

    return critic


def test_dragan_and_divergence_penalties_of_a_linear_critic() -> None:
    """C(x) = <w, x>: its input gradient is w everywhere, wherever the penalty samples."""
    w = torch.randn(1, 4, 4)
    w = 2.0 * w / w.norm()
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    assert dragan_penalty(_linear_critic(w), real, fake, generator=gen).item() == pytest.approx(
        (2.0 - 1.0) ** 2, rel=1e-5
    )
    for p in (2.0, 6.0):
        got = divergence_penalty(_linear_critic(w), real, fake, options={"p": p}, generator=gen)
        assert got.item() == pytest.approx(2.0**p, rel=1e-5)
    assert gradient_penalty(_linear_critic(w), real, fake, generator=gen).item() == pytest.approx(
        1.0, rel=1e-5
    )


def test_dragan_samples_around_real_data_only() -> None:
    """With C(x) = ||x||^2 / 2 the input gradient is x itself: DRAGAN's points lie within
    c * std(x) of the real batch whatever the fake batch is."""
    real = torch.zeros(64, 1, 2, 2) + torch.linspace(-1, 1, 64).view(64, 1, 1, 1)
    far_fake = torch.full_like(real, 100.0)
    seen: list[torch.Tensor] = []

    def critic(x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        seen.append(x.detach().clone())
        return x.pow(2).flatten(1).sum(1) / 2

    dragan_penalty(critic, real, far_fake, options={"perturb": 0.5},
                   generator=torch.Generator().manual_seed(1))  # fmt: skip
    spread = (seen[0] - real).abs().max().item()
    assert spread <= 0.5 * real.std().item() + 1e-6
