"""`pipeline tune V --jobs N`: real worker processes on one journal file, kills at named points
(pipeline.infra.faults), and the optuna-dashboard server on that study."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.infra.faults import AFTER_ENV, KILL_ENV, ONLY_WORKER_ENV
from pipeline.infra.params import load_params
from pipeline.stages.tune.common import ATTR_PID, ATTR_ROLE
from pipeline.stages.tune.storage import open_storage
from tests import test_tune as base
from tests.conftest import REPO, TINY, write_params

# The evaluator CNN trained once per session and the tiny params of the tuning tests.
classifier_dir = base.classifier_dir
make_params = base.make_params
assert_mlflow_mirrors = base.assert_mlflow_mirrors

JOURNAL = "journal://optuna.journal"


def _tune(path: Path, n: int, jobs: int, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pipeline", "tune", "gan", "--params", str(path),
           "--storage", JOURNAL, "--trials", str(n), "--jobs", str(jobs), "--device", "cpu"]  # fmt: skip
    full = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env}
    return subprocess.run(cmd, cwd=REPO, env=full, capture_output=True, text=True, timeout=600)


def _study(path: Path) -> optuna.Study:
    params = load_params(path)
    return optuna.load_study(study_name="tune-gan", storage=open_storage(params, JOURNAL))


def _states(study: optuna.Study) -> Counter[str]:
    return Counter(t.state.name for t in study.get_trials())


@pytest.mark.slow
def test_two_workers_finish_exactly_the_studys_trials_together(tmp_path: Path, make_params) -> None:
    path = make_params(tmp_path, {"epochs": 1})
    out = _tune(path, 4, 2)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "4/4 trials finished" in out.stderr  # the progress line
    study = _study(path)
    trials = study.get_trials()
    # n in total, not n per worker, and not n + workers - 1: the count and the start of a
    # trial are one step under the claim lock, and live local trials count towards the target.
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    pids = {t.user_attrs[ATTR_PID] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids
    assert [t.user_attrs.get(ATTR_ROLE) for t in trials].count("defaults") == 1
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # no sampler twins
    assert_mlflow_mirrors(load_params(path), study)
    assert "tune-gan: 2 workers; study: 4 complete / 0 pruned / 0 failed" in out.stdout


@pytest.mark.slow
def test_a_dead_worker_is_local_and_a_killed_study_resumes(tmp_path: Path, make_params) -> None:
    path = make_params(tmp_path, {"epochs": 1})
    # Worker 0 dies in its first trial (after the trial and its MLflow run exist); worker 1
    # fails that trial, runs it again and finishes the session alone.
    out = _tune(path, 3, 2, **{KILL_ENV: "trial-started", ONLY_WORKER_ENV: "0"})
    assert out.returncode == 1, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert "worker 0 (pid" in last and "killed by SIGKILL" in last and "--jobs 2" in last
    study = _study(path)
    trials = study.get_trials()
    assert _states(study) == {"COMPLETE": 3, "FAIL": 1}
    (dead,) = [t for t in trials if t.state == TrialState.FAIL]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs[ATTR_PID] != dead.user_attrs[ATTR_PID]

    # Now every worker is killed at the start of its second trial: the whole command dies
    # with a new session half done and two trials left RUNNING by dead processes.
    out = _tune(path, 4, 2, **{KILL_ENV: "trial-started", AFTER_ENV: "1"})
    assert out.returncode == 1 and "(and 1 more)" in out.stderr, out.stderr[-3000:]
    # (5 complete; the two killed trials are RUNNING, or one was already failed and its
    # retry killed in turn)
    assert _states(_study(path))["COMPLETE"] == 5
    # The same command continues: the dead trials are failed and run again, and the session
    # ends at 3 + 4 complete trials, nothing left running or queued.
    out = _tune(path, 4, 2)
    assert out.returncode == 0, out.stderr[-3000:]
    logs = (tmp_path / "reports" / "tuning" / ".cache" / "workers").glob("tune-gan-*.log")
    assert "queued again" in "".join(log.read_text() for log in logs)
    study = _study(path)
    assert _states(study) == {"COMPLETE": 7, "FAIL": 3}
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(10))
    for t in trials:
        if t.state == TrialState.FAIL:
            assert any(r.system_attrs.get("retry_history", [])[-1:] == [t.number]
                       for r in trials), t.number  # fmt: skip
    assert_mlflow_mirrors(load_params(path), study)


def test_make_optuna_dashboard_serves_the_journal_study(tmp_path: Path) -> None:
    """The Makefile target's command line, run as make would run it, serves the study of the
    params file's storage on 127.0.0.1."""
    path = write_params(tmp_path, TINY)
    storage = open_storage(load_params(path), JOURNAL)
    study = optuna.create_study(study_name="tune-gan", storage=storage)
    for lr in (1e-3, 2e-4):
        study.add_trial(
            optuna.create_trial(
                params={"lr": lr},
                distributions={"lr": FloatDistribution(1e-5, 1e-2, log=True)},
                value=lr * 1e4,
            )
        )
    port = base._free_port()
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "optuna-dashboard", f"PARAMS={path}",
         f"OPTUNA_PORT={port}", f"STORAGE={JOURNAL}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    # the target's recipe, after any venv set-up (and whatever a make that runs the suite adds)
    (line,) = [r for r in dry.stdout.splitlines() if "pipeline.stages.tune.dashboard" in r]
    assert line.startswith("python -m pipeline.stages.tune.dashboard "), dry.stdout
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [sys.executable, *shlex.split(line)[1:]], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # Wait for the server to listen (bounded): its start is imports, seconds.
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies", timeout=10
                ) as r:
                    doc = json.load(r)
                break
            except (ConnectionError, urllib.error.URLError):
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
        (summary,) = doc["study_summaries"]
        assert summary["study_name"] == "tune-gan"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_jobs_refuse_sqlite_in_one_line_and_start_nothing(tmp_path: Path) -> None:
    """Several processes on one SQLite file is where "database is locked" comes from: --jobs
    says what to use instead, before any worker or study file exists."""
    path = write_params(tmp_path, TINY)
    result = CliRunner().invoke(app, ["tune", "gan", "--params", str(path), "--jobs", "2"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "is SQLite" in line and "--storage journal://optuna.journal" in line
    assert not (tmp_path / "optuna.db").exists()
    assert not (tmp_path / "reports" / "tuning" / ".cache" / "workers").exists()
    result = CliRunner().invoke(app, ["tune", "gan", "--params", str(path), "--jobs", "0"])
    assert result.exit_code != 0 and "--jobs must be >= 1" in result.output
