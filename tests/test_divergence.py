"""The divergence check on its own (pipeline/core/divergence.py): what stops a run, what does not.
Then real diverging runs: they stop with the reason, FAILED in MLflow; tuning prunes them
(test_tune.py)."""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import pytest
import yaml

from pipeline.core.divergence import DivergedError, DivergenceMonitor
from pipeline.infra.config import Params
from pipeline.infra.layout import read_run_id, variant_dir
from pipeline.infra.params import load_params
from pipeline.infra.tracking import resolve_uri
from pipeline.stages.train import train_variant
from tests.conftest import deep_update, write_params


def monitor(enabled: bool = True) -> DivergenceMonitor:
    return DivergenceMonitor(enabled, max_loss=1e6, zero_grad_windows=2)


def test_healthy_windows_pass() -> None:
    m = monitor()
    for _ in range(10):
        m.check("gan epoch 1", {"d_loss": 1.3, "g_loss": -250.0}, 0.7)
    m.check("gan epoch 1", {"d_loss": 1.3}, None)  # no generator step in this window
    m.check("gan epoch 1", {"d_loss": 1.3}, math.nan)  # norm not measured


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_losses_stop_even_when_disabled(value: float) -> None:
    with pytest.raises(DivergedError, match=r"^gan epoch 2, step 40: non-finite g_loss"):
        monitor(enabled=False).check("gan epoch 2, step 40", {"d_loss": 1.0, "g_loss": value}, 1)


def test_a_loss_beyond_the_bound_stops_the_run() -> None:
    with pytest.raises(DivergedError) as err:
        monitor().check("gan epoch 1, step 8", {"d_loss": 1.9e25, "g_loss": 3.0}, 0.0)
    assert "d_loss = 1.9e+25 is beyond train.divergence.max_loss (1e+06)" in str(err.value)
    assert "train.divergence.enabled: false" in str(err.value)
    monitor().check("wgan", {"d_loss": -1e6}, 1.0)  # the bound itself is allowed
    monitor(enabled=False).check("gan", {"d_loss": 1.9e25}, 0.0)


def test_a_generator_without_gradient_for_whole_windows_stops_the_run() -> None:
    m = monitor()
    m.check("wgan", {"d_loss": 1.0}, 0.0)  # one window could be a fluke
    m.check("wgan", {"d_loss": 1.0}, None)  # not measured: neither resets nor counts
    m.check("wgan", {"d_loss": 1.0}, 1e-12)  # any gradient resets the count
    m.check("wgan", {"d_loss": 1.0}, 0.0)
    with pytest.raises(DivergedError, match="gradient norm has been exactly 0 for 2 logging"):
        m.check("wgan", {"d_loss": 1.0}, 0.0)
    off = monitor(enabled=False)
    for _ in range(5):
        off.check("wgan", {"d_loss": 1.0}, 0.0)


# ------------------------------------------------------------------ in the trainer and tuning


def _diverging(tiny_params_path: Path, **divergence: object) -> Params:
    """gan at lr 1e6 (d_loss ~1e25, generator gradient exactly 0), wgan at lr 1e3 (losses ~1,
    generator gradient exactly 0): both finite, both diverged."""
    over = {
        "variants": {"gan": {"lr": 1e6, "epochs": 2}, "wgan": {"lr": 1e3, "epochs": 3}},
        "train": {"divergence": divergence},
    }
    tiny = yaml.safe_load(tiny_params_path.read_text())
    return load_params(write_params(tiny_params_path.parent, deep_update(tiny, over)))


@pytest.mark.parametrize(
    ("variant", "reason"),
    [("gan", "is beyond train.divergence.max_loss"), ("wgan", "gradient norm has been exactly 0")],
)
def test_a_diverged_run_stops_with_its_reason_and_mlflow_says_failed(
    tiny_params_path: Path, variant: str, reason: str
) -> None:
    params = _diverging(tiny_params_path)
    with pytest.raises(DivergedError, match=reason) as err:
        train_variant(params, variant, progress=False)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{variant} epoch ")
    run_id = read_run_id(variant_dir(params, variant))
    run = mlflow.MlflowClient(resolve_uri(params)).get_run(run_id)
    assert run.info.status == "FAILED" and reason in run.data.tags["failure"]


def test_the_check_can_be_turned_off(tiny_params_path: Path) -> None:
    params = _diverging(tiny_params_path, enabled=False)
    result = train_variant(params, "gan", track=False, progress=False)
    assert result.epochs == 2 and result.history[-1]["d_loss"] > 1e6
