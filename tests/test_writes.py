"""What a run writes and when (train.checkpoint_every_s, train.gif_frames): checkpoints on a
fake clock's interval and at the end, exact resume across skipped epochs, a bounded number of
grids (on disk, in the GIF, in MLflow), and neither setting in a run's identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
import yaml
from PIL import Image

from pipeline.infra import checkpoint as ckpt
from pipeline.infra.params import load_params
from pipeline.infra.tracking import resolve_uri
from pipeline.stages.report.assets import gif_asset
from pipeline.stages.train import train_variant
from pipeline.training.loop import Trainer
from pipeline.training.setup import run_setup
from pipeline.training.spec import run_spec
from pipeline.training.writes import frame_epochs, gif_frames
from tests.conftest import REPO, write_params
from tests.hostile import TickingClock, whole_and_resumed

CPU = torch.device("cpu")


class CheckpointSeen:
    """Records, at each epoch end, the epoch of the checkpoint on disk (None: none yet)."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, []  # type: ignore[var-annotated]

    def on_start(self, *args: object) -> None: ...
    def on_end(self, *args: object) -> None: ...
    def on_failure(self, *args: object) -> None: ...
    def on_already_complete(self, *args: object) -> None: ...

    def on_epoch_end(self, event: Any) -> None:
        self.seen.append(ckpt.load(self.path)["epoch"] if self.path.exists() else None)


def _params(root: Path, prepared_dir: Path, **train: object) -> Any:
    over = {"data": {"dir": str(prepared_dir)},
            "train": {"subset": 64 * 2, "device": "cpu", "log_every": 1, **train}}  # fmt: skip
    return load_params(write_params(root, over))


def test_frame_epochs_are_bounded_spread_and_keep_the_first_and_last() -> None:
    frames = sorted(frame_epochs(200, 25))
    assert len(frames) == 25 and frames[0] == 1 and frames[-1] == 200
    gaps = {b - a for a, b in zip(frames, frames[1:], strict=False)}
    assert gaps <= {8, 9}  # evenly spread: 199 epochs over 24 gaps
    assert frame_epochs(5, 25) == frozenset(range(1, 6))  # a short run keeps every epoch
    assert frame_epochs(7, 1) == frozenset({7})
    assert sorted(frame_epochs(10, 4)) == [1, 4, 7, 10]


def test_gif_keeps_the_chosen_frames_of_a_run_with_a_grid_per_epoch(tmp_path: Path) -> None:
    # A run trained before the bound has a grid per epoch: its GIF is rebuilt from the frames.
    grids = [tmp_path / f"epoch_{e:04d}.png" for e in range(1, 11)]
    assert gif_frames(reversed(grids), 10, 4) == [grids[0], grids[3], grids[6], grids[9]]
    # a grid beyond the chosen ones (an epoch not in the frames but the last on disk) stays last
    assert gif_frames(grids[:6], 10, 4)[-1] == grids[5]
    assert gif_frames([], 10, 4) == []


def test_checkpoints_follow_the_interval_and_the_end(tmp_path: Path, prepared_dir: Path) -> None:
    # 100 s per epoch on the fake clock, a 250 s interval: epochs 3 and 6 (250 s passed since
    # the start and since epoch 3), then the last one, 7, whatever the clock says.
    params = _params(tmp_path, prepared_dir, checkpoint_every_s=250, score_every=0)
    spec = run_spec(params, "gan", epochs=7)
    out = tmp_path / "run"
    clock, seen = TickingClock(100.0), CheckpointSeen(out / ckpt.CHECKPOINT)
    Trainer(run_setup(params), spec, out, CPU, [clock, seen], progress=False, clock=clock).run()
    # what was on disk at each epoch end (before that epoch's own checkpoint)
    assert seen.seen == [None, None, None, 3, 3, 3, 6]
    state = ckpt.load(out / ckpt.CHECKPOINT)
    assert state["epoch"] == 7 and state["complete"]

    # checkpoint_every still applies: only even epochs may checkpoint: 4 (not 3; 6 is 200 s
    # after it), then 7
    params = _params(tmp_path / "b", prepared_dir, checkpoint_every_s=250, checkpoint_every=2,
                     score_every=0)  # fmt: skip
    out = tmp_path / "b" / "run"
    clock, seen = TickingClock(100.0), CheckpointSeen(out / ckpt.CHECKPOINT)
    Trainer(run_setup(params), run_spec(params, "gan", epochs=7), out, CPU, [clock, seen], progress=False,
            clock=clock).run()  # fmt: skip
    assert seen.seen == [None, None, None, None, 4, 4, 4]


def _assert_same_weights_and_losses(a: Trainer, b: Trainer) -> None:
    for net in a.nets:
        for (key, x), (_, y) in zip(
            a.nets[net].state_dict().items(), b.nets[net].state_dict().items(), strict=True
        ):
            assert torch.equal(x, y), f"{net}.{key} differs"
    for name, opt in a.optimizers.items():
        sa, sb = opt.state_dict()["state"], b.optimizers[name].state_dict()["state"]
        for i in sa:
            for k, v in sa[i].items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[i][k])), (name, i, k)
    timing = ("steps_per_s", "elapsed_s")
    assert len(a.history) == len(b.history) == a.spec.hyper.epochs
    for ra, rb in zip(a.history, b.history, strict=True):
        assert {k: v for k, v in ra.items() if k not in timing} == {
            k: v for k, v in rb.items() if k not in timing
        }


@pytest.mark.parametrize("name", ["gan", "dcgan"])
def test_resume_after_skipped_checkpoints_matches_the_uninterrupted_run(
    name: str, tmp_path: Path, prepared_dir: Path
) -> None:
    # 100 s per epoch, a 250 s interval: the last checkpoint before a kill at the end of epoch
    # 5 is epoch 3's; epochs 4 and 5 are trained again and the run ends where the other did.
    params = _params(tmp_path, prepared_dir, checkpoint_every_s=250, score_every=0)
    spec = run_spec(params, name, epochs=6)
    whole, resumed = whole_and_resumed(
        params, spec, tmp_path, CPU, stop_at=5, tick_s=100.0, resumes_from=3
    )
    _assert_same_weights_and_losses(whole, resumed)


def test_grids_gif_and_mlflow_uploads_are_bounded(tmp_path: Path, prepared_dir: Path) -> None:
    over = {"data": {"dir": str(prepared_dir)},
            "train": {"subset": 64 * 2, "device": "cpu", "gif_frames": 4, "score_every": 0}}  # fmt: skip
    params = load_params(write_params(tmp_path, over))
    result = train_variant(params, "gan", epochs=10, progress=False)
    out = result.out_dir
    grids = sorted(p.name for p in (out / "grids").iterdir())
    assert grids == [f"epoch_{e:04d}.png" for e in (1, 4, 7, 10)]
    with Image.open(out / "progress.gif") as gif:
        assert gif.n_frames == 4
    assert (out / "grid.png").read_bytes() == (out / "grids" / "epoch_0010.png").read_bytes()
    # the report takes the GIF as it did (within its size budget: not thinned)
    asset, stride = gif_asset(out / "progress.gif", "grids/gan_progress.gif", 10 * 2**20)
    assert asset is not None and stride == 1

    client = mlflow.MlflowClient(resolve_uri(params))
    run_id = (out / "run_id.txt").read_text().strip()
    uploaded = sorted(a.path for a in client.list_artifacts(run_id, "grids"))
    assert uploaded == [f"grids/{g}" for g in grids]
    assert len(client.get_metric_history(run_id, "train.d_loss")) == 10  # metrics every epoch


def test_write_settings_are_not_part_of_the_run_identity(
    tmp_path: Path, prepared_dir: Path
) -> None:
    a = _params(tmp_path / "a", prepared_dir, score_every=0)
    b = _params(tmp_path / "b", prepared_dir, checkpoint_every_s=7.5, gif_frames=2,
                score_every=0)  # fmt: skip
    assert run_spec(a, "gan", epochs=3) == run_spec(b, "gan", epochs=3)
    # a finished run with other write settings is complete: nothing retrains
    out = tmp_path / "run"
    Trainer(run_setup(a), run_spec(a, "gan", epochs=3), out, CPU, progress=False).run()
    again = Trainer(run_setup(b), run_spec(b, "gan", epochs=3), out, CPU, progress=False)
    assert again.restore_or_start() == [] and again.complete
    # and changing them in params.yaml does not re-run a DVC train stage
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    listed = {str(p) for p in stage["params"]}
    assert not {"train.checkpoint_every_s", "train.gif_frames", "train"} & listed
