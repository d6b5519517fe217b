"""When a run writes: checkpoints by wall-clock interval, a fixed number of sample grids.

Writing a checkpoint, a grid PNG and its MLflow upload after every epoch cost tens of
seconds per long run (reports/benchmarks/write_cost_cpu.md), so a run bounds them:

* a checkpoint after an epoch once ``train.checkpoint_every_s`` seconds have passed since
  the last one (or since this process started training), among the epochs that
  ``train.checkpoint_every`` allows, and always after the last epoch. Resuming from any
  checkpoint is exact (every random draw is in it), so a kill costs only the epochs after
  the last checkpoint, which are retrained to the same bits;
* sample grids at ``train.gif_frames`` epochs spread evenly from the first to the last
  (thinned further by ``train.grid_every``), always the last: the frames of the progression
  GIF. Which epochs depends only on the run's epochs and the setting, never on time, so an
  interrupted and resumed run draws the same frames.

Neither setting is part of a run's identity: they change when files appear, not the weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline.infra.config import TrainConfig

GRID_NAME = re.compile(r"epoch_(\d+)\.png")


def frame_epochs(epochs: int, frames: int) -> frozenset[int]:
    """``frames`` epochs of 1..``epochs`` spread evenly, the first and the last included
    (every epoch when there are no more than ``frames``; only the last when ``frames`` is 1)."""
    if frames >= epochs:
        return frozenset(range(1, epochs + 1))
    if frames <= 1:
        return frozenset({epochs})
    span, gaps = epochs - 1, frames - 1
    # 1 + round(k * span / gaps) in integers, halves up: the same on every platform
    return frozenset(1 + (2 * k * span + gaps) // (2 * gaps) for k in range(frames))


class WritePlan:
    """Decides, at each epoch end, whether to render a grid and whether to checkpoint.

    ``clock`` is any monotonic seconds counter (tests pass a fake one instead of sleeping).
    """

    def __init__(self, cfg: TrainConfig, epochs: int, clock: Callable[[], float]) -> None:
        self.epochs, self.clock = epochs, clock
        self.every_epochs, self.every_s, self.grid_every = (
            cfg.checkpoint_every,
            cfg.checkpoint_every_s,
            cfg.grid_every,
        )
        self.frames = frame_epochs(epochs, cfg.gif_frames)
        self.last_save = clock()

    def grid_due(self, epoch: int) -> bool:
        return epoch == self.epochs or (epoch in self.frames and epoch % self.grid_every == 0)

    def checkpoint_due(self, epoch: int) -> bool:
        if epoch == self.epochs:
            return True
        if epoch % self.every_epochs:
            return False
        return self.every_s == 0 or self.clock() - self.last_save >= self.every_s

    def saved(self) -> None:
        """A checkpoint was written now: the interval starts again."""
        self.last_save = self.clock()


def gif_frames(grids: Iterable[Path], epochs: int, frames: int) -> list[Path]:
    """The grids in the GIF, in epoch order: those of :func:`frame_epochs` (a run trained
    before the bound, or resumed after ``train.gif_frames`` changed, may hold more), and the
    last grid whatever its epoch."""
    chosen = frame_epochs(epochs, frames)
    found = sorted((int(m.group(1)), p) for p in grids if (m := GRID_NAME.fullmatch(p.name)))
    if not found:
        return []
    keep = [p for e, p in found if e in chosen]
    if not keep or keep[-1] != found[-1][1]:
        keep.append(found[-1][1])
    return keep
