"""Budgets: generator and critic updates, images seen, epochs matched in generator updates,
checked against counts worked out by hand; the summary and the report's main table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core.variants.base import registry
from pipeline.infra import layout
from pipeline.infra.errors import ConfigError
from pipeline.infra.params import load_params
from pipeline.stages.report.view import budget_text
from pipeline.stages.train import train_variant
from pipeline.training.budget import epochs_for_g_updates, updates
from pipeline.training.spec import run_spec
from tests.conftest import TINY, deep_update, write_params


def _alg_hyper(name: str, n_critic: int | None = None):  # type: ignore[no-untyped-def]
    variant = registry.get(name)
    hyper = variant.resolve(None)
    if n_critic is not None:
        from dataclasses import replace

        hyper = replace(hyper, n_critic=n_critic)
    return variant.algorithm, hyper


def test_updates_follow_the_schedule_across_steps() -> None:
    # gan: every step is "dg": 10 steps, 10 G and 10 D updates.
    u = updates(*_alg_hyper("gan"), 10)
    assert (u.steps, u.g_updates, u.d_updates) == (10, 10, 10)
    # wgan, n_critic 5: d d d d dg repeated; 12 steps = 2 cycles + d d: 2 G, 12 D updates.
    u = updates(*_alg_hyper("wgan"), 12)
    assert (u.g_updates, u.d_updates) == (2, 12)
    # The numbers: 200 epochs of 937 steps, n_critic 5 vs 1.
    assert updates(*_alg_hyper("wgan_gp"), 200 * 937).g_updates == 37_480
    assert updates(*_alg_hyper("gan"), 200 * 937).g_updates == 187_400
    # No critic: DDPM's and the VAE's one optimiser makes generator updates; critic: None.
    for name in ("ddpm", "vae"):
        u = updates(*_alg_hyper(name), 7)
        assert (u.g_updates, u.d_updates) == (7, None)


def test_epochs_matched_in_generator_updates() -> None:
    wgan, gan = _alg_hyper("wgan"), _alg_hyper("gan")
    # 937 steps per epoch: gan makes 937 G updates an epoch, so 37,480 takes 40 epochs;
    # wgan (n_critic 5) 187.4 an epoch, so 200.
    assert epochs_for_g_updates(*gan, 37_480, 937) == 40
    assert epochs_for_g_updates(*wgan, 37_480, 937) == 200
    # 1,000 for wgan: 5 epochs = 4,685 steps = 937 G updates (short); 6 = 5,622 steps =
    # 1,124 (the fewest whole epochs that reach it).
    assert epochs_for_g_updates(*wgan, 1000, 937) == 6
    assert epochs_for_g_updates(*gan, 1, 937) == 1


def test_the_budget_setting_is_validated_and_sets_the_epochs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.*g_updates"):
        load_params(write_params(tmp_path, {"train": {"budget": "g_updates"}}))
    with pytest.raises(ConfigError, match="train.budget"):
        load_params(write_params(tmp_path, {"train": {"budget": "images"}}))
    params = load_params(write_params(tmp_path, {"train": {"budget": "g_updates",
                                                           "g_updates": 1000, "subset": 640}}))  # fmt: skip
    # 640 images / 64 = 10 steps an epoch: gan 10 G updates an epoch -> 100 epochs; wgan 2
    # an epoch -> 500; an explicit epochs (the CLI's --epochs) still wins.
    assert run_spec(params, "gan").hyper.epochs == 100
    assert run_spec(params, "wgan").hyper.epochs == 500
    assert run_spec(params, "wgan", epochs=3).hyper.epochs == 3
    assert "matched in generator updates" in budget_text(params)
    assert "1,000 generator updates" in budget_text(params)
    default = load_params(write_params(tmp_path / "d"))
    assert default.train.budget == "epochs"
    assert (
        run_spec(default, "wgan").hyper.epochs
        == registry.get("wgan").resolve(default.variants.get("wgan")).epochs
    )
    assert "matched in epochs" in budget_text(default)


def test_the_run_summary_records_its_budget(tmp_path: Path, prepared_dir: Path) -> None:
    """A wgan run of 10 steps (640 images, batch 64, n_critic 5) and a vae run: the summary
    the report reads holds the trainer's counts."""
    over = deep_update(TINY, {"data": {"dir": str(prepared_dir)}})
    params = load_params(write_params(tmp_path, over))
    for name, g, d in (("wgan", 2, 10), ("vae", 10, None)):
        train_variant(params, name, epochs=1, subset=640, track=False, progress=False)
        summary = json.loads(layout.summary_path(params, name).read_text())
        assert (summary["steps"], summary["g_iters"], summary["d_iters"]) == (10, g, d)
        assert summary["images_seen"] == 640
