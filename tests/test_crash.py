"""Kills at named points (``PIPELINE_KILL_AT``, see pipeline/infra/faults.py) and what the rerun
makes of them (issue 12): the child process SIGKILLs itself exactly there, no timing luck."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import LoggedModelStatus

from pipeline.infra.faults import AFTER_ENV, KILL_ENV, SIGNAL_ENV
from pipeline.infra.params import load_params
from pipeline.infra.tracking import resolve_uri
from tests.conftest import TINY, deep_update, write_params

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run_cli(
    params: Path, *args: str, kill_at: str | None = None, after: int = 0, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline ARGS --params PARAMS`` in a child; ``kill_at`` names the point
    where it SIGKILLs itself (after ``after`` earlier passes through it)."""
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    child_env.pop(KILL_ENV, None)
    if kill_at is not None:
        child_env[KILL_ENV], child_env[AFTER_ENV] = kill_at, str(after)
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args, "--params", str(params)],
        capture_output=True, text=True, env=child_env, timeout=600,
    )  # fmt: skip


def killed(out: subprocess.CompletedProcess[str]) -> bool:
    return out.returncode == -signal.SIGKILL


@pytest.fixture
def params_path(tmp_path: Path, prepared_dir: Path) -> Path:
    over = deep_update(TINY, {"data": {"dir": str(prepared_dir)}, "train": {"subset": 256}})
    return write_params(tmp_path, over)


def _client(params_path: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(resolve_uri(load_params(params_path)))


def _train_runs(params_path: Path, variant: str) -> list[mlflow.entities.Run]:
    c = _client(params_path)
    exp = c.get_experiment_by_name(load_params(params_path).tracking.experiment)
    # the training runs of the variant (its parent run, which nests them, has no stage tag)
    only = f"tags.variant = '{variant}' and tags.stage = 'train'"
    return c.search_runs([exp.experiment_id], filter_string=only)


def test_a_run_orphaned_before_its_first_checkpoint_is_closed_by_the_rerun(
    params_path: Path, tmp_path: Path
) -> None:
    first = run_cli(params_path, "train", "gan", "--epochs", "1", kill_at="run-created")
    assert killed(first), first.stderr
    (orphan,) = _train_runs(params_path, "gan")
    assert orphan.info.status == "RUNNING"
    assert not (tmp_path / "models" / "gan" / "seed0" / "run_id.txt").exists()

    rerun = run_cli(params_path, "train", "gan", "--epochs", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert f"MLflow run {orphan.info.run_id} was left RUNNING" in rerun.stderr
    runs = {r.info.run_id: r for r in _train_runs(params_path, "gan")}
    assert len(runs) == 2
    new_id = (tmp_path / "models" / "gan" / "seed0" / "run_id.txt").read_text().strip()
    assert runs[new_id].info.status == "FINISHED"
    assert runs[orphan.info.run_id].info.status == "KILLED"
    assert "orphaned" in runs[orphan.info.run_id].data.tags["failure"]


def test_a_kill_during_model_logging_leaves_one_ready_model(
    params_path: Path, tmp_path: Path
) -> None:
    first = run_cli(params_path, "train", "gan", "--epochs", "1", kill_at="model-logging")
    assert killed(first), first.stderr
    (run,) = _train_runs(params_path, "gan")
    c = _client(params_path)
    exp_id = run.info.experiment_id

    def models() -> list[LoggedModelStatus]:
        found = c.search_logged_models([exp_id], filter_string=f"source_run_id = '{run_id}'")
        return [m.status for m in found]

    run_id = run.info.run_id
    assert run.info.status == "RUNNING" and models() == [LoggedModelStatus.PENDING]

    rerun = run_cli(params_path, "train", "gan", "--epochs", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert "logging its final artifacts again" in rerun.stderr
    assert models() == [LoggedModelStatus.READY]
    assert c.get_run(run_id).info.status == "FINISHED"
    # a second rerun has nothing to repair and logs no second model
    again = run_cli(params_path, "train", "gan", "--epochs", "1")
    assert again.returncode == 0 and models() == [LoggedModelStatus.READY]


def test_train_threads_sets_the_torch_threads_of_the_run(
    tmp_path: Path, prepared_dir: Path
) -> None:
    over = deep_update(TINY, {"data": {"dir": str(prepared_dir)}, "train": {"threads": 1}})
    path = write_params(tmp_path, deep_update(over, {"train": {"subset": 128}}))
    out = run_cli(path, "train", "gan", "--epochs", "1", OMP_NUM_THREADS="2")
    assert out.returncode == 0, out.stderr
    (run,) = _train_runs(path, "gan")
    assert run.data.tags["torch_threads"] == "1"
    assert run.data.params["train.threads"] == "1"


def _stale_temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*.tmp"))


def test_a_kill_during_a_checkpoint_replace_leaves_no_temp_file_after_the_rerun(
    params_path: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "models" / "gan" / "seed0"
    # killed at the second checkpoint's replace: the first checkpoint is there, and the
    # temp file of the second beside it
    first = run_cli(
        params_path, "train", "gan", "--epochs", "3", kill_at="replace:checkpoint.pt", after=1
    )
    assert killed(first), first.stderr
    (left,) = _stale_temps(run_dir)
    assert left.name.startswith(".checkpoint.pt.")
    rerun = run_cli(params_path, "train", "gan", "--epochs", "3")
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming from epoch 1" in rerun.stderr
    assert _stale_temps(run_dir) == [] and _stale_temps(tmp_path / "metrics") == []


def test_a_second_trainer_on_the_same_folder_is_refused_while_the_first_lives(
    params_path: Path, tmp_path: Path
) -> None:
    args = [sys.executable, "-m", "pipeline", "train", "gan", "--epochs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", KILL_ENV: "replace:checkpoint.pt"}
    env[SIGNAL_ENV] = "STOP"  # the first trainer stops mid-run, alive, holding its lock
    first = subprocess.Popen(
        [*args, "--params", str(params_path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _, status = os.waitpid(first.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        second = run_cli(params_path, "train", "gan", "--epochs", "2")
        assert second.returncode == 1
        errors = [line for line in second.stderr.splitlines() if line.startswith("Error")]
        assert errors == [
            f"Error: {tmp_path / 'models' / 'gan' / 'seed0'}: another trainer is writing to it "
            f"(pid {first.pid}, lock {tmp_path / 'models' / 'gan' / '.seed0.lock'}); wait for "
            "it to finish or stop it, then rerun"
        ], second.stderr
    finally:
        first.kill()
        first.wait()
    # once it is dead, the lock is free: the rerun trains (and cleans up after the kill)
    third = run_cli(params_path, "train", "gan", "--epochs", "2")
    assert third.returncode == 0, third.stderr
    assert _stale_temps(tmp_path / "models") == []
