"""The divergence check on its own (pipeline/divergence.py): what stops a run, what does not.
The trainer-level test (a real diverging run stops, FAILED in MLflow) is in test_train.py."""

from __future__ import annotations

import math

import pytest

from pipeline.divergence import DivergedError, DivergenceMonitor


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
