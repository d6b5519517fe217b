"""`pipeline grid` end to end on a tiny project copy: real Dask, DVC, MLflow on SQLite, MNIST.

One project (2 variants x 2 seeds, one tiny epoch each) is shared by the tests in file order:
the first grid runs all four chains at once, the later tests make chains stale again (a
param bump, a corrupted checkpoint) and check what a failure, a killed client and a killed
worker leave behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.infra.params import merge_overrides
from pipeline.infra.runlock import _OUR_TEMP
from tests.conftest import REPO, run_dvc
from tests.test_dvc import _copy_tree

VARIANTS, SEEDS = ("gan", "wgan"), (0, 1)
CHAINS = {f"{v}-{s}" for v in VARIANTS for s in SEEDS}
AFTER_CHAINS = {"floor", "noise", "toy", "report"}  # what dvc repro is left with


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mnist_mirror: Path) -> Path:
    root = tmp_path_factory.mktemp("gridproj")
    _copy_tree(root)
    params = merge_overrides(
        yaml.safe_load((REPO / "params.yaml").read_text()),
        yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text()),
    )
    params["variants"] = {k: {**params["variants"][k], "epochs": 1} for k in VARIANTS}
    params["train"].update(seeds=list(SEEDS), subset=256, score_every=0, device="cpu")
    params["sample"].update(n=200, batch_size=100, device="cpu")
    params["classifier"].update(subset=1000, epochs=1, device="cpu")
    params["evaluate"].update(
        n_real=500, floor_n=500, kid_subset_size=100, batch_size=250, device="cpu"
    )
    params["grid"]["workers"] = 4  # four chains at once on the one SQLite store
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    os.environ["PIPELINE_MNIST_MIRROR"] = str(mnist_mirror)
    run_dvc(root, "init", "--no-scm", "-f", "-q")
    return root


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # dvc stages: pipeline
        "PYTHONPATH": str(root),  # the client and its workers run the copy's code
        "OMP_NUM_THREADS": "1",
        "DVC_NO_ANALYTICS": "1",
        **extra,
    }


def _grid(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "grid", *args],
        cwd=root, capture_output=True, text=True, env=_env(root, **env), timeout=600,
    )  # fmt: skip


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped is dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _stale(root: Path) -> set[str]:
    """The stages `dvc status` reports out of date."""
    text = run_dvc(root, "status", "--json")
    status, _ = json.JSONDecoder().raw_decode(text[text.index("{") :])
    return set(status)


def _train_runs(root: Path) -> dict[str, list]:
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


def _current(root: Path, runs: dict[str, list], variant: str, seed: int):
    """The MLflow run that the run folder's run_id.txt names."""
    run_id = (root / "models" / variant / f"seed{seed}" / "run_id.txt").read_text().strip()
    (run,) = [r for r in runs[f"{variant}-{seed}"] if r.info.run_id == run_id]
    return run


def _check_complete_run(root: Path, run, epochs: int) -> None:
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


def _no_leftovers(root: Path) -> None:
    """No temp file of an interrupted atomic write anywhere in the outputs."""
    for top in ("models", "samples", "metrics"):
        left = [p for p in (root / top).rglob(".*") if _OUR_TEMP.match(p.name)]
        assert left == [], left


def _bump_epochs(root: Path, variant: str) -> int:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["variants"][variant]["epochs"] += 1
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params["variants"][variant]["epochs"]


@pytest.mark.slow
def test_four_chains_at_once_are_recorded_and_lose_nothing_in_mlflow(project: Path) -> None:
    out = _grid(project)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    assert "dvc repro classifier prepare" in log  # the chains' upstream, through DVC
    for chain in CHAINS:
        assert re.search(rf"^{chain}: done in [\d.]+ s \(train", out.stdout, re.M), log
    assert "grid: 4/4 chains done and committed" in out.stdout
    # Four writers on one SQLite store: nothing locked out, nothing lost.
    assert "locked" not in log and "MLflow logging" not in log
    runs = _train_runs(project)
    assert set(runs) == CHAINS and all(len(r) == 1 for r in runs.values())
    for (run,) in runs.values():
        _check_complete_run(project, run, epochs=1)
    # DVC finds the chains up to date; repro is left with the stages after them.
    assert _stale(project) == AFTER_CHAINS
    # (--dry stops at the report, whose toy/ input a dry run does not create: the stages
    # before it are what this checks)
    dry = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--dry"],
        cwd=project, capture_output=True, text=True, env=_env(project),
    ).stdout  # fmt: skip
    assert set(re.findall(r"Running stage '([^']+)'", dry)) <= AFTER_CHAINS
    skipped = set(re.findall(r"Stage '([^']+)' didn't change, skipping", dry))
    assert {f"{st}@{c}" for st in ("train", "sample", "evaluate") for c in CHAINS} <= skipped
    again = _grid(project)
    assert again.returncode == 0 and "chain is up to date" in again.stdout


@pytest.mark.slow
def test_a_failed_chain_stays_local_a_killed_client_resumes_an_edit_is_not_recorded(
    project: Path, tmp_path: Path
) -> None:
    epochs = _bump_epochs(project, "gan")  # both gan chains stale
    (project / "models" / "wgan" / "seed0" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert _stale(project) == AFTER_CHAINS | {
        "train@gan-0", "train@gan-1", "train@wgan-0", "sample@wgan-0"  # its input changed
    }  # fmt: skip
    # kill -9 of the client as the first chain finishes, before it is recorded: its
    # embedded cluster's workers (one still training) go with it, none left orphaned.
    client = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "grid"], cwd=project, env=_env(
            project, PIPELINE_KILL_AT="grid-commit"), stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "killed.log").open("w"),
    )  # fmt: skip
    workers: set[int] = set()
    while client.poll() is None:
        workers |= _children(client.pid)
        time.sleep(0.2)
    assert client.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    assert len(workers) >= 4  # the four worker processes (grid.workers)
    deadline = time.time() + 60
    while alive := {w for w in workers if _alive(w)}:
        assert time.time() < deadline, f"workers left running: {alive}"
        time.sleep(0.5)
    # The rerun completes every chain it can; the broken one fails alone, in one line.
    out = _grid(project)
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"^wgan-0: failed: CheckpointError: .*checkpoint", out.stdout, re.M), (
        out.stdout
    )
    assert "1 chains failed (wgan-0); rerun to resume" in out.stderr
    assert "Traceback" not in out.stderr
    assert _stale(project) == AFTER_CHAINS | {"train@wgan-0", "sample@wgan-0"}  # not recorded
    runs = _train_runs(project)
    for seed in SEEDS:
        # New epochs, a new run (the finished one is set aside with its folder); the kill
        # and the rerun continued it: none lost, none doubled.
        assert len(runs[f"gan-{seed}"]) == 2
        _check_complete_run(project, _current(project, runs, "gan", seed), epochs=epochs)
    _no_leftovers(project)

    # Its cause removed (as its message says: delete the run folder), wgan-0 runs again, and
    # params.yaml is edited while it runs: the client, stopped at the commit point meanwhile,
    # refuses to record it. (The next test completes it.)
    shutil.rmtree(project / "models" / "wgan" / "seed0")
    log = tmp_path / "log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "grid"], cwd=project, text=True,
        stdout=log.open("w"), stderr=subprocess.STDOUT,
        env=_env(project, PIPELINE_KILL_AT="grid-commit", PIPELINE_KILL_SIGNAL="STOP"),
    )  # fmt: skip
    stat, deadline = Path(f"/proc/{proc.pid}/stat"), time.time() + 300
    while stat.read_text().split(") ")[1][0] != "T":  # stopped at the kill point
        assert proc.poll() is None and time.time() < deadline, log.read_text()
        time.sleep(0.5)
    params = project / "params.yaml"
    params.write_text(params.read_text() + "# edited while the grid ran\n")
    os.kill(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=300) == 1, log.read_text()
    assert re.search(
        r"^wgan-0: failed: not committed: \S+params.yaml changed", log.read_text(), re.M
    )
    assert {"train@wgan-0", "sample@wgan-0"} <= _stale(project)


@pytest.mark.slow
def test_a_dask_scheduler_and_two_workers_by_address_survive_a_killed_worker(
    project: Path, tmp_path: Path
) -> None:
    """`dask scheduler` and two `dask worker`s on 127.0.0.1; one worker is killed (SIGKILL at
    its checkpoint write) mid-chain: Dask runs that chain again on the other worker, where
    training resumes, and the grid completes."""
    from distributed import Client

    epochs = _bump_epochs(project, "wgan")
    sched_file = tmp_path / "scheduler.json"
    dask = str(Path(sys.executable).parent / "dask")
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1",
             "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
            env=_env(project), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    try:
        deadline = time.time() + 120
        while not sched_file.is_file():
            assert time.time() < deadline, "the scheduler did not start"
            time.sleep(0.5)
        common = ["--scheduler-file", str(sched_file), "--nthreads", "1", "--host", "127.0.0.1",
                  "--no-dashboard"]  # fmt: skip
        procs.append(subprocess.Popen([dask, "worker", *common], env=_env(project)))
        victim = subprocess.Popen(
            [dask, "worker", *common, "--no-nanny"],  # no nanny: it stays dead
            env=_env(project, PIPELINE_KILL_AT="replace:checkpoint.pt"),
        )
        procs.append(victim)
        with Client(scheduler_file=str(sched_file), timeout="60s") as c:
            c.wait_for_workers(2, timeout=120)
            address = c.scheduler.address
        out = _grid(project, "--scheduler", address)
        assert out.returncode == 0, out.stdout + out.stderr
        assert victim.poll() == -signal.SIGKILL  # it did die mid-chain
        assert f"grid: 2 chains on {address} (2 workers now)" in out.stdout
        assert _stale(project) == AFTER_CHAINS
        runs = _train_runs(project)
        for seed in SEEDS:
            _check_complete_run(project, _current(project, runs, "wgan", seed), epochs=epochs)
        _no_leftovers(project)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def test_gpu_workers_are_pinned_per_device_and_cpu_workers_see_none(tmp_path: Path) -> None:
    from pipeline.infra.params import load_params
    from pipeline.stages.grid.cluster import worker_specs
    from tests.conftest import write_params

    p = load_params(write_params(tmp_path, {"grid": {"per_device": 2}}))
    gpu = worker_specs(p, [0, 1], cores=16)
    assert {k: v["CUDA_VISIBLE_DEVICES"] for k, v in gpu.items()} == {
        "gpu0-0": "0", "gpu0-1": "0", "gpu1-0": "1", "gpu1-1": "1"
    }  # fmt: skip
    cpu = worker_specs(p, [], cores=3)
    assert len(cpu) == 3 and all(v["OMP_NUM_THREADS"] == "1" for v in cpu.values())
    p = load_params(write_params(tmp_path, {"grid": {"workers": 5}}))
    assert len(worker_specs(p, [], cores=2)) == 5


def test_the_live_view_reads_epoch_and_speed_from_the_curves_file(tmp_path: Path) -> None:
    from rich.console import Console

    from pipeline.stages.grid.view import ChainRow, table

    curves = tmp_path / "seed0.csv"
    row = ChainRow("gan-0", ("train", "sample", "evaluate"), epochs=4, curves=curves)
    curves.write_text("epoch,step,steps_per_s\n1,10,12.5\n")  # resumed after epoch 1
    row.on_stage("train", time.time() - 20)
    curves.write_text("epoch,step,steps_per_s\n1,10,12.5\n2,20,25.0\n")
    console = Console(width=120, record=True)
    console.print(table([row, ChainRow("gan-1", ("evaluate",), 4, tmp_path / "none")], "g", 0))
    text = console.export_text()
    # one epoch in 20 s since it started here, two to go: ~40 s
    assert re.search(r"gan-0 +│ running │ train │ epoch 2/4, 25.0 steps/s │ ~40 s", text), text
    assert re.search(r"gan-1 +│ queued", text), text
