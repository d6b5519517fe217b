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
) -> tuple[Any, Any]:
    """The same run twice: uninterrupted in ``root/whole``, and in ``root/cut`` stopped at the
    end of epoch ``stop_at`` (before its checkpoint, as a kill there) and resumed from the
    checkpoint before it. Returns the two finished Trainers; ``after_whole`` runs between them
    (e.g. to read the global RNG the uninterrupted run left)."""
    import pytest

    from pipeline.infra import checkpoint as ckpt
    from pipeline.training.loop import Trainer

    whole = Trainer(params, spec, root / "whole", device, progress=False)
    whole.run()
    if after_whole is not None:
        after_whole()
    cut = Trainer(params, spec, root / "cut", device, [StopAt(stop_at)], progress=False)
    with pytest.raises(KeyboardInterrupt):
        cut.run()
    assert ckpt.load(cut.checkpoint_path)["epoch"] == stop_at - 1
    resumed = Trainer(params, spec, root / "cut", device, progress=False)
    resumed.run()
    return whole, resumed
