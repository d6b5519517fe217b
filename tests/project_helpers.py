"""The tiny project copy of tests/test_dvc.py and what its tests ask of it: the copy itself,
`pipeline grid` and `dvc status` run in it, and its MLflow training runs checked whole."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.infra.runlock import _OUR_TEMP
from tests.conftest import REPO, run_dvc


def copy_tree(dest: Path) -> None:
    """The working tree's files as git sees them (tracked, and new ones not ignored)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


def project_env(root: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # dvc stages: pipeline
        "PYTHONPATH": str(root),  # the client and its workers run the copy's code
        "OMP_NUM_THREADS": "1",
        "DVC_NO_ANALYTICS": "1",
        **extra,
    }


def grid(root: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`pipeline grid ARGS` in ``root``, run with the copy's code."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "grid", *args],
        cwd=root, capture_output=True, text=True, env=project_env(root, **extra), timeout=600,
    )  # fmt: skip


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped is dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def stale(root: Path) -> set[str]:
    """The stages `dvc status` reports out of date."""
    text = run_dvc(root, "status", "--json")
    status, _ = json.JSONDecoder().raw_decode(text[text.index("{") :])
    return set(status)


def train_runs(root: Path) -> dict[str, list]:
    """MLflow training runs by chain name (variant-seed), oldest first; asserts none is
    RUNNING in the whole store (a killed client or worker must leave no orphan)."""
    import mlflow

    c = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = c.get_experiment_by_name("mnist-gan-comparison")
    runs = c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    out: dict[str, list] = {}
    for r in runs:
        if r.data.tags.get("stage") == "train":
            out.setdefault(f"{r.data.tags['variant']}-{r.data.tags['seed']}", []).append(r)
    return out


def current(root: Path, runs: dict[str, list], variant: str, seed: int):
    """The MLflow run that the run folder's run_id.txt names."""
    run_id = (root / "models" / variant / f"seed{seed}" / "run_id.txt").read_text().strip()
    (run,) = [r for r in runs[f"{variant}-{seed}"] if r.info.run_id == run_id]
    return run


def check_complete_run(root: Path, run, epochs: int) -> None:
    """FINISHED with its params, every epoch's training metrics, the evaluation's scores and
    the artifacts (checkpoint, grids, GIF, the generator model)."""
    import mlflow
    from mlflow.entities import LoggedModelStatus

    c = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert run.info.status == "FINISHED"
    assert len(run.data.params) > 20
    history = c.get_metric_history(run.info.run_id, "train.elapsed_s")
    # a set: an epoch logged just before a kill is logged again by the resumed run
    assert {m.step for m in history} == set(range(1, epochs + 1))
    assert run.data.metrics["eval.classifier.fid"] > 0
    assert run.data.metrics["eval.n_generated"] == 200
    artifacts = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {"checkpoint", "grid.png", "grids", "progress.gif", "config.json"} <= artifacts
    models = c.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert [m.status for m in models] == [LoggedModelStatus.READY]


def no_leftovers(root: Path) -> None:
    """No temp file of an interrupted atomic write anywhere in the outputs."""
    for top in ("models", "samples", "metrics"):
        left = [p for p in (root / top).rglob(".*") if _OUR_TEMP.match(p.name)]
        assert left == [], left


def bump_epochs(root: Path, variant: str) -> int:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["variants"][variant]["epochs"] += 1
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params["variants"][variant]["epochs"]
