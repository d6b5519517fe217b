"""The grid's live view: one row per chain (queued / running with stage, epoch, steps/s and
time left / done / failed) and, at the end, wall time per chain and in all."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

STATE_STYLE = {"queued": "dim", "running": "cyan", "done": "green", "failed": "red"}


@dataclass
class ChainRow:
    name: str
    stages: tuple[str, ...]
    epochs: int | None  # the variant's training epochs (for "epoch k/N")
    curves: Path  # the training curves CSV: one row per finished epoch
    state: str = "queued"
    stage: str = ""
    started: float | None = None  # the chain's first stage began (time.time())
    train_started: float | None = None
    epoch_at_start: int = 0  # epochs already done when this process began training (resume)
    wall_s: float | None = None
    reason: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def _curves(self) -> tuple[int, float | None]:
        """(finished epochs, the last epoch's steps/s), read from the curves file the trainer
        appends a row to after each epoch."""
        try:
            lines = self.curves.read_text().splitlines()
        except OSError:
            return 0, None
        if len(lines) < 2:
            return 0, None
        last = dict(zip(lines[0].split(","), lines[-1].split(","), strict=False))
        try:
            return len(lines) - 1, float(last.get("steps_per_s", "nan"))
        except ValueError:
            return len(lines) - 1, None

    def epoch(self) -> int:
        return self._curves()[0]

    def on_stage(self, stage: str, at: float) -> None:
        self.state, self.stage = "running", stage
        self.started = self.started or at
        if stage == "train":
            self.train_started, self.epoch_at_start = at, self.epoch()

    def detail(self, now: float) -> tuple[str, str]:
        """(progress, time left) of a running chain."""
        if self.stage != "train" or self.train_started is None:
            return "", ""
        done, rate_steps = self._curves()
        total = f"/{self.epochs}" if self.epochs else ""
        speed = f", {rate_steps:,.1f} steps/s" if rate_steps == rate_steps and rate_steps else ""
        fresh = done - self.epoch_at_start
        left = ""
        if fresh > 0 and self.epochs:
            rate = (now - self.train_started) / fresh
            left = f"~{rate * max(0, self.epochs - done):.0f} s"
        return f"epoch {done}{total}{speed}", left


def table(rows: list[ChainRow], title: str, started: float) -> Table:
    now = time.time()
    t = Table(title=f"{title} - {now - started:.0f} s", title_justify="left")
    for col in ("chain", "state", "stage", "progress", "time left", "wall s"):
        t.add_column(col)
    for r in rows:
        progress, left = r.detail(now) if r.state == "running" else ("", "")
        if r.state == "failed":
            progress = r.reason
        wall = r.wall_s if r.wall_s is not None else (now - r.started if r.started else None)
        t.add_row(
            r.name,
            f"[{STATE_STYLE.get(r.state, '')}]{r.state}[/]",
            r.stage if r.state == "running" else "",
            progress,
            left,
            f"{wall:.1f}" if wall is not None else "",
        )
    return t
