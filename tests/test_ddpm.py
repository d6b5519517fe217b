"""ddpm: the forward process, the DDIM/DDPM update and the EMA, checked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.core.nets import NetSpec
from pipeline.core.variants.ddpm import (
    BETA_1,
    BETA_T,
    DDPM,
    EMA_UPDATES,
    DDPMOptions,
    T,
    alpha_bars,
    ddim_update,
    ema_decay,
    q_sample,
    sampling_timesteps,
)
from pipeline.infra import checkpoint as ckpt
from pipeline.infra.params import load_params
from pipeline.training.loop import Trainer
from pipeline.training.setup import run_setup
from pipeline.training.spec import run_spec
from tests.conftest import write_params
from tests.hostile import StopAt
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
    assert n == 1_931_713  # the 1.93M _unet.py's docstring states (width 64)
    half = DDPM().build_with(NetSpec(), DDPMOptions(width=32).model_dump())["model"]
    assert sum(p.numel() for p in half.parameters()) == 484_577  # 0.48M at width 32
    small = DDPM().build_with(NetSpec(), DDPMOptions(width=8).model_dump())["model"]
    assert sum(p.numel() for p in small.parameters()) < 50_000
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0, 999])
    assert small(x, t).shape == (2, 1, 28, 28)
    assert torch.equal(nets["ema"].state_dict()["inc.weight"], nets["model"].inc.weight)


def test_the_ema_decay_warms_up() -> None:
    # min(beta, (1 + n) / (10 + n)) by hand: n = 0 -> 1/10, 1 -> 2/11, 8 -> 9/18 = 0.5,
    # 90 -> 91/100; with beta = 0.5 the ratio passes beta at n = 8 and stays capped.
    got = [ema_decay(0.9999, torch.tensor(float(n))).item() for n in (0, 1, 8, 90)]
    assert got == pytest.approx([0.1, 2 / 11, 0.5, 0.91])
    assert [ema_decay(0.5, torch.tensor(float(n))).item() for n in (7, 8, 100)] == pytest.approx(
        [8 / 17, 0.5, 0.5]
    )
    # The paper's 0.9999 is reached at n = 89,991: (1 + n) / (10 + n) >= 0.9999.
    assert ema_decay(0.9999, torch.tensor(89_990.0)).item() < 0.9999
    assert ema_decay(0.9999, torch.tensor(89_991.0)).item() == pytest.approx(0.9999)
    # The initial weights' share after k updates is the product of the first k decays; for
    # k = 3: 0.1 · 2/11 · 3/12 = 1/220 (without the warm-up: 0.9999^3 = 0.9997).
    share = math.prod(ema_decay(0.9999, torch.tensor(float(n))).item() for n in range(3))
    assert share == pytest.approx(1 / 220)


def test_the_ema_is_the_lerp_of_its_old_weights_and_the_trained_ones(
    tmp_path: Path, prepared_dir: Path
) -> None:
    """With decay 0.5, one step: the warm-up's first decay is min(0.5, 1/10) = 0.1, so
    ema = 0.1 initial + 0.9 trained; the update count is state; no optimiser owns it."""
    trainer, before = _trained("ddpm", tmp_path, prepared_dir, steps=1, options={"ema_decay": 0.5})
    assert "ema" not in {n for nets in trainer.algorithm.owners().values() for n in nets}
    assert trainer.state[EMA_UPDATES].item() == 1.0
    model, ema = trainer.nets["model"].state_dict(), trainer.nets["ema"].state_dict()
    for key, value in ema.items():
        expected = 0.1 * before["ema"][key] + 0.9 * model[key]
        assert torch.allclose(value, expected, atol=1e-6), key
        assert not torch.equal(value, before["ema"][key]), key
    assert not any(p.requires_grad for p in trainer.nets["ema"].parameters())
    assert math.isfinite(trainer.ctx.read()["loss"])


def test_a_resumed_run_continues_the_ema_warm_up_exactly(
    tmp_path: Path, prepared_dir: Path
) -> None:
    """Two epochs of 2 steps straight through, and the same run stopped after epoch 1 and
    resumed from its checkpoint: the same EMA weights and update count, bit for bit (the
    count is checkpointed state; were it restarted at 0 the resumed EMA would weigh the
    model 0.9 again at step 3 and differ)."""
    over = {"data": {"dir": str(prepared_dir)}, "train": {"subset": 128, "checkpoint_every": 1},
            "variants": {"ddpm": {"epochs": 2, "options": {"width": 8}}}}  # fmt: skip

    def trainer(root: Path, callbacks: list) -> Trainer:
        params = load_params(write_params(root, over))
        spec = run_spec(params, "ddpm")
        return Trainer(run_setup(params), spec, root / "run", torch.device("cpu"), callbacks,
                       progress=False)  # fmt: skip

    straight = trainer(tmp_path / "a", []).run()
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "b", [StopAt(2)]).run()
    assert ckpt.load(tmp_path / "b" / "run" / "checkpoint.pt")["epoch"] == 1
    resumed = trainer(tmp_path / "b", []).run()
    a, b = ckpt.load(straight.checkpoint), ckpt.load(resumed.checkpoint)
    assert a["step"] == b["step"] == 4
    assert a["state"][EMA_UPDATES].item() == b["state"][EMA_UPDATES].item() == 4.0
    for key, value in a["nets"]["ema"].items():
        assert torch.equal(value, b["nets"]["ema"][key]), key
