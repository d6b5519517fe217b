"""ddpm: the forward process, the DDIM/DDPM update and the EMA, checked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.nets import NetSpec
from pipeline.variants.ddpm import (
    BETA_1,
    BETA_T,
    DDPM,
    DDPMOptions,
    T,
    alpha_bars,
    ddim_update,
    q_sample,
    sampling_timesteps,
)
from tests.test_baselines import _trained


def test_linear_schedule_and_forward_process_by_hand() -> None:
    ab = alpha_bars()
    assert ab.shape == (T,)
    beta_2 = BETA_1 + (BETA_T - BETA_1) / (T - 1)
    assert ab[0].item() == pytest.approx(1 - BETA_1, rel=1e-7)
    assert ab[1].item() == pytest.approx((1 - BETA_1) * (1 - beta_2), rel=1e-7)
    assert 0 < ab[-1].item() < 1e-4  # x_T is nearly pure noise
    # sqrt(0.64) * 1 + sqrt(0.36) * 0.5 = 0.8 + 0.3
    x = q_sample(torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 0.5), torch.tensor([0.64]))
    assert x.item() == pytest.approx(1.1, rel=1e-6)


def test_ddim_with_the_true_noise_lands_on_the_forward_process() -> None:
    """eta = 0: x_t built from (x0, eps) and the true eps step to sqrt(abar') x0 + sqrt(1-abar') eps."""
    torch.manual_seed(0)
    x0, eps = torch.rand(2, 1, 4, 4) * 1.8 - 0.9, torch.randn(2, 1, 4, 4)
    a_t, a_prev = 0.3, 0.7
    x_t = q_sample(x0, eps, torch.full((2,), a_t))
    out = ddim_update(x_t, eps, a_t, a_prev, 0.0, None)
    assert torch.allclose(out, a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps, atol=1e-5)
    assert torch.allclose(ddim_update(x_t, eps, a_t, 1.0, 0.0, None), x0, atol=1e-5)


def test_eta_1_over_consecutive_steps_is_the_ddpm_ancestral_step() -> None:
    """Ho et al.'s posterior: mean = sqrt(abar') beta / (1 - abar) x0 + sqrt(1 - beta)
    (1 - abar') / (1 - abar) x_t, variance beta (1 - abar') / (1 - abar)."""
    torch.manual_seed(1)
    ab = alpha_bars().double()
    t = 500
    a_t, a_prev = ab[t].item(), ab[t - 1].item()
    beta = 1 - a_t / a_prev
    x0, eps, z = torch.rand(3, 1, 4, 4).double() - 0.5, *torch.randn(2, 3, 1, 4, 4).double()
    x_t = q_sample(x0, eps, torch.full((3,), a_t, dtype=torch.float64))
    mean = a_prev**0.5 * beta / (1 - a_t) * x0 + (1 - beta) ** 0.5 * (1 - a_prev) / (1 - a_t) * x_t
    var = beta * (1 - a_prev) / (1 - a_t)
    out = ddim_update(x_t, eps, a_t, a_prev, 1.0, z)
    assert torch.allclose(out, mean + var**0.5 * z, atol=1e-10)


def test_sampling_timesteps() -> None:
    assert sampling_timesteps(T) == list(range(T))
    ts = sampling_timesteps(50)
    assert len(ts) == 50 and ts[0] == 0 and ts[-1] == T - 1
    assert sampling_timesteps(1) == [0]


def test_the_unet_stays_small_and_its_width_is_an_option() -> None:
    nets = DDPM().build_with(NetSpec(), DDPMOptions().model_dump())
    n = sum(p.numel() for p in nets["model"].parameters())
    assert 1e6 < n < 3e6  # a few million at most (width 64)
    small = DDPM().build_with(NetSpec(), DDPMOptions(width=8).model_dump())["model"]
    assert sum(p.numel() for p in small.parameters()) < 50_000
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0, 999])
    assert small(x, t).shape == (2, 1, 28, 28)
    assert torch.equal(nets["ema"].state_dict()["inc.weight"], nets["model"].inc.weight)


def test_the_ema_is_the_lerp_of_its_old_weights_and_the_trained_ones(
    tmp_path: Path, prepared_dir: Path
) -> None:
    """With decay 0.5, one step: ema = (initial + trained) / 2; no optimiser owns it."""
    trainer, before = _trained("ddpm", tmp_path, prepared_dir, steps=1, options={"ema_decay": 0.5})
    assert "ema" not in {n for nets in trainer.algorithm.owners().values() for n in nets}
    model, ema = trainer.nets["model"].state_dict(), trainer.nets["ema"].state_dict()
    for key, value in ema.items():
        expected = torch.lerp(before["ema"][key], model[key], 0.5)
        assert torch.allclose(value, expected, atol=1e-7), key
        assert not torch.equal(value, before["ema"][key]), key
    assert not any(p.requires_grad for p in trainer.nets["ema"].parameters())
    assert math.isfinite(trainer.ctx.read()["loss"])
