"""When a run has diverged, though every number is finite.

NaN/inf losses were always fatal; a GAN can also blow up with finite numbers (``gan`` at lr
1e6: discriminator loss 1.9e25 and a generator gradient of exactly 0, epoch after epoch). The
check sees what the trainer reads once per logging window (``train.log_every`` steps), so it
adds no host synchronisation, and stops the run when, in that window,

* any loss the model logs is NaN/inf, or larger in magnitude than ``train.divergence.max_loss``
  (default 1e6: GAN losses on MNIST stay within a few hundred, even for a critic early in
  training), or
* the sampler net's (the generator's) gradient norm is exactly 0 at the end of
  ``train.divergence.zero_grad_windows`` windows in a row (default 2): a generator that
  receives no gradient learns nothing more (the discriminator saturated), and an exact 0 does
  not happen by chance with float32 weights.

``train.divergence.enabled: false`` turns both bounds off (non-finite losses still stop a run:
nothing can be learnt from them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pipeline.infra.errors import PipelineError


class DivergedError(PipelineError):
    """The run diverged; it stops (FAILED in MLflow, a pruned trial in tuning)."""


class DivergenceMonitor:
    """Feed it each logging window's numbers; it raises :class:`DivergedError` with a
    one-line reason when the run has diverged."""

    def __init__(self, enabled: bool, max_loss: float, zero_grad_windows: int) -> None:
        self.enabled, self.max_loss, self.zero_grad_windows = enabled, max_loss, zero_grad_windows
        self._zero_windows = 0

    def check(
        self, where: str, losses: Mapping[str, float], sampler_grad_norm: float | None
    ) -> None:
        """``where``: how the reason starts (variant, epoch, step); ``losses``: window means
        of the losses the model logs, only those computed in the window (a generator that
        did not step has none); ``sampler_grad_norm``: the sampler net's gradient norm
        measured in the window, or None (or NaN) when it was not measured."""
        for key, value in losses.items():
            if not math.isfinite(value):
                raise DivergedError(
                    f"{where}: non-finite {key}; the run diverged (try a lower learning rate)"
                )
        if not self.enabled:
            return
        for key, value in losses.items():
            if abs(value) > self.max_loss:
                raise DivergedError(
                    f"{where}: {key} = {value:.3g} is beyond train.divergence.max_loss "
                    f"({self.max_loss:g}); the run diverged (try a lower learning rate, or "
                    "set train.divergence.enabled: false)"
                )
        if sampler_grad_norm is None or math.isnan(sampler_grad_norm):
            return
        self._zero_windows = self._zero_windows + 1 if sampler_grad_norm == 0.0 else 0
        if self._zero_windows >= self.zero_grad_windows:
            raise DivergedError(
                f"{where}: the generator's gradient norm has been exactly 0 for "
                f"{self._zero_windows} logging windows; the run diverged (the discriminator "
                "saturated: try a lower learning rate, or set train.divergence.enabled: false)"
            )
