"""What the tests plant and how they interrupt: shared by the files that try hostile inputs
and kills, so each is written once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


class TouchOnLoad:
    """Unpickling this runs ``Path(target).touch()``: what a crafted pickle (weights, a cache,
    samples) can do. A test plants it and checks that ``target`` never appears."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.target),))


class StopAt:
    """A trainer callback that interrupts training at the end of one epoch (before its
    checkpoint: the trainer calls observers first), as a kill at that point would; the run
    folder keeps the previous epoch's checkpoint."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_start(self, *args: object) -> None: ...
    def on_end(self, *args: object) -> None: ...
    def on_failure(self, *args: object) -> None: ...
    def on_already_complete(self, *args: object) -> None: ...

    def on_epoch_end(self, event: Any) -> None:
        if event.epoch == self.epoch:
            raise KeyboardInterrupt


class TickingClock:
    """A fake monotonic clock for ``Trainer(clock=...)`` that is also a callback: each epoch
    end moves it ``seconds`` on, so ``train.checkpoint_every_s`` is tested without sleeping.
    The trainer calls its observers before deciding on the checkpoint, so the epoch just
    finished counts."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.now = seconds, 0.0

    def __call__(self) -> float:
        return self.now

    def on_start(self, *args: object) -> None: ...
    def on_end(self, *args: object) -> None: ...
    def on_failure(self, *args: object) -> None: ...
    def on_already_complete(self, *args: object) -> None: ...

    def on_epoch_end(self, event: Any) -> None:
        self.now += self.seconds


def refuse_capture(monkeypatch: Any) -> None:
    """Make every CUDA graph capture fail as an op that cannot be recorded does (the trainer
    builds its graphs through ``loop.StepGraphs``), with a two-line CUDA message."""
    import pipeline.training.loop as loop

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(loop, "StepGraphs", refuse)


def whole_and_resumed(
    params: Any,
    spec: Any,
    root: Path,
    device: Any,
    stop_at: int = 2,
    after_whole: Callable[[], None] | None = None,
    *,
    tick_s: float | None = None,
    resumes_from: int | None = None,
) -> tuple[Any, Any]:
    """The same run twice: uninterrupted in ``root/whole``, and in ``root/cut`` stopped at the
    end of epoch ``stop_at`` (before its checkpoint, as a kill there) and resumed from the
    last checkpoint before it: epoch ``resumes_from`` (default ``stop_at - 1``, a checkpoint
    every epoch). Returns the two finished Trainers; ``after_whole`` runs between them (e.g.
    to read the global RNG the uninterrupted run left). With ``tick_s``, each trainer runs on
    its own :class:`TickingClock` of ``tick_s`` seconds per epoch (train.checkpoint_every_s)."""
    import pytest

    from pipeline.infra import checkpoint as ckpt
    from pipeline.training.loop import Trainer
    from pipeline.training.setup import run_setup

    def trainer(folder: str, *callbacks: Any) -> Any:
        if tick_s is None:
            return Trainer(
                run_setup(params), spec, root / folder, device, list(callbacks), progress=False
            )
        clock = TickingClock(tick_s)
        return Trainer(run_setup(params), spec, root / folder, device, [clock, *callbacks], progress=False,
                       clock=clock)  # fmt: skip

    whole = trainer("whole")
    whole.run()
    if after_whole is not None:
        after_whole()
    cut = trainer("cut", StopAt(stop_at))
    with pytest.raises(KeyboardInterrupt):
        cut.run()
    expected = stop_at - 1 if resumes_from is None else resumes_from
    assert ckpt.load(cut.checkpoint_path)["epoch"] == expected
    resumed = trainer("cut")
    resumed.run()
    return whole, resumed
