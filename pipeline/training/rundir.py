"""A run's folder: which checkpoint to resume, a finished run set aside or swapped back.

``models/<V>`` holds the current run; ``models/<V>.previous`` one finished run with another
config, so that a one-off ``--epochs``/``--subset`` run does not destroy a long one and
switching between two configs retrains neither.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from pipeline.infra import checkpoint as ckpt
from pipeline.infra.errors import PipelineError


class ResumeRefusedError(PipelineError):
    pass


class RunFolder:
    def __init__(self, out_dir: Path, config: dict[str, Any], name: str) -> None:
        self.out_dir, self.config, self.name = out_dir, config, name

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / ckpt.CHECKPOINT

    @property
    def previous_dir(self) -> Path:
        """Where a finished run with another config is kept, one step back."""
        return self.out_dir.with_name(self.out_dir.name + ".previous")

    def diff(self, state: dict[str, Any]) -> list[str]:
        """How the run in ``state`` differs from this one's config (``key: old -> new``)."""
        return ckpt.config_diff(ckpt.config_of(state), self.config)

    def resolve(self) -> tuple[dict[str, Any] | None, list[str]]:
        """(the checkpoint state to resume, or None; the config differences of a finished
        run that must be set aside before training, or []).

        Nothing is moved here except a swap back, so a run that then fails its checks leaves
        the finished run where it was. A finished run with another config is stale output
        (params changed before ``dvc repro``, say): start over, unless ``<out_dir>.previous``
        holds a finished run of this very config, which is swapped back in. An unfinished run
        with another config is refused.
        """
        path = self.checkpoint_path
        try:
            state = ckpt.load(path, map_location="cpu") if path.exists() else None
        except ckpt.CheckpointError as err:
            raise ckpt.CheckpointError(f"{err}; delete {self.out_dir} to start over") from None
        diff = [] if state is None else self.diff(state)
        if state is not None and diff and not state["complete"]:
            raise ResumeRefusedError(
                f"{path} holds an unfinished run with a different config ({'; '.join(diff)}); "
                f"refusing to resume. Restore the old params, or delete {self.out_dir} to start over"
            )
        if state is None or diff:
            previous = self._matching_previous()
            if previous is not None:
                self._swap_previous(had_run=state is not None)
                return previous, []
        if state is None:
            return None, []
        return (None, diff) if diff else (state, [])

    def _matching_previous(self) -> dict[str, Any] | None:
        """The state in ``<out_dir>.previous`` if it is a finished run of this config."""
        path = self.previous_dir / ckpt.CHECKPOINT
        if not path.is_file():
            return None
        try:
            state = ckpt.load(path, map_location="cpu")
        except ckpt.CheckpointError:
            return None  # unreadable: it stays where it is, a fresh run replaces it later
        return state if state["complete"] and not self.diff(state) else None

    def _swap_previous(self, had_run: bool) -> None:
        """Bring the matching finished run back; the current finished run (if any) takes its
        place one step back."""
        previous = self.previous_dir
        if had_run:
            parked = self.out_dir.with_name(self.out_dir.name + ".swap")
            shutil.rmtree(parked, ignore_errors=True)
            self.out_dir.rename(parked)
            previous.rename(self.out_dir)
            parked.rename(previous)
        else:
            # Leftovers of a run killed before its first checkpoint: nothing to keep.
            shutil.rmtree(self.out_dir, ignore_errors=True)
            previous.rename(self.out_dir)
        print(
            f"{self.name}: the finished run with this config was in {previous}; "
            f"restored it" + (f" (the other run is now in {previous})" if had_run else ""),
            file=sys.stderr,
        )

    def set_aside(self, diff: list[str]) -> None:
        """Keep the finished run one step back: ``<out_dir>.previous``, replacing an older one."""
        previous = self.previous_dir
        shutil.rmtree(previous, ignore_errors=True)
        self.out_dir.rename(previous)
        print(
            f"{self.name}: config changed ({'; '.join(diff)[:200]}); starting over, "
            f"the finished run is kept in {previous}",
            file=sys.stderr,
        )

    def prepare(self, stale: list[str]) -> None:
        """Make the folder ready for training (after every check has passed)."""
        if stale:
            self.set_aside(stale)
        elif not self.checkpoint_path.exists() and self.out_dir.exists():
            # Leftovers of a run killed before its first checkpoint (grids, an MLflow run id)
            # may belong to another config: start clean.
            shutil.rmtree(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
