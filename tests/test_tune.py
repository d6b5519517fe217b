"""Tuning: search spaces, real tiny studies (SQLite, journal, PostgreSQL), MLflow, --apply + DVC."""

from __future__ import annotations

import json
import math
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pytest
import torch
import yaml
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FixedTrial, TrialState
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants.base import Variant, registry
from pipeline.infra.config import Params, TuneConfig
from pipeline.infra.errors import ConfigError, PipelineError
from pipeline.infra.faults import KILL_ENV
from pipeline.infra.params import load_params, parse_params
from pipeline.infra.tracking import resolve_uri
from pipeline.stages.tune.apply import apply_best
from pipeline.stages.tune.common import (
    ATTR_BUDGET,
    ATTR_FAIL,
    ATTR_PID,
    ATTR_PRUNE,
    ATTR_ROLE,
    ATTR_RUN,
    MAX_FAILURES_IN_A_ROW,
    OBJECTIVE,
    default_study_name,
    tune_command,
)
from pipeline.stages.tune.results import write_results
from pipeline.stages.tune.space import block_updates, default_trial_params, suggest
from pipeline.stages.tune.storage import open_storage, public_url, resolve_storage_url
from pipeline.stages.tune.study import run_study
from pipeline.stages.tune.tracking import parent_attr
from tests.conftest import REPO, TINY, deep_update, run_dvc, write_params
from tests.hostile import refuse_capture

# What each shipped variant exposes to tuning (a variant added later is checked by its fields).
EXPECTED_SPACE = {
    "gan": {"lr", "beta1", "beta2"},
    "cgan": {"lr", "beta1", "beta2"},
    "dcgan": {"lr", "beta1", "beta2"},
    "wgan": {"lr", "n_critic", "clip"},
    "wgan_gp": {"lr", "beta1", "beta2", "n_critic"},
}
TERMINAL = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory, prepared_dir: Path) -> Path:
    """The evaluator CNN, trained once per session on a small subset (the objective needs it)."""
    from pipeline.stages.classifier import train_classifier

    root = tmp_path_factory.mktemp("tune-classifier")
    over = {"data": {"dir": str(prepared_dir)}, "classifier": {"subset": 2000, "epochs": 1}}
    train_classifier(load_params(write_params(root, deep_update(TINY, over))))
    return root / "models" / "classifier"


@pytest.fixture
def make_params(prepared_dir: Path, classifier_dir: Path):
    """Write a tiny CPU params file under ``root``: shared data and classifier, 200 samples."""

    def make(root: Path, tune_over: dict[str, Any] | None = None) -> Path:
        over = {
            "data": {"dir": str(prepared_dir)},
            "classifier": {"out_dir": str(classifier_dir)},
            "tune": {"sample_n": 200, "epochs": 2, **(tune_over or {})},
        }
        return write_params(root, deep_update(TINY, over))

    return make


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def mlflow_runs(params: Params, study_name: str) -> tuple[list[Any], list[Any]]:
    """(parent runs, child runs) tagged with the study."""
    c = mlflow.MlflowClient(resolve_uri(params))
    exp = c.get_experiment_by_name(f"{params.tracking.experiment}/{study_name}")
    runs = c.search_runs(
        [exp.experiment_id], f"tags.`optuna.study` = '{study_name}'", max_results=1000
    )
    # none in the comparison's experiment, whose run list is one run per variant
    comparison = c.get_experiment_by_name(params.tracking.experiment)
    if comparison is not None:
        assert not c.search_runs([comparison.experiment_id], "tags.stage LIKE 'tune%'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def assert_mlflow_mirrors(params: Params, study: optuna.Study) -> None:
    """One parent run for the study, one child per trial with the trial's state and values."""
    c = mlflow.MlflowClient(resolve_uri(params))
    parents, children = mlflow_runs(params, study.study_name)
    assert len(parents) == 1, [p.info.run_name for p in parents]
    parent = parents[0]
    assert parent.info.run_name == study.study_name
    assert parent.info.run_id == study.user_attrs[parent_attr(params)]
    trials = study.get_trials()
    by_number = {int(r.data.tags["optuna.trial"]): r for r in children}
    assert sorted(by_number) == [t.number for t in trials] and len(children) == len(trials)
    for t in trials:
        run = by_number[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_id == t.user_attrs[ATTR_RUN]
        assert run.data.tags["optuna.state"] == t.state.name
        expected = {"COMPLETE": {"FINISHED"}, "PRUNED": {"FINISHED"}, "FAIL": {"FAILED", "KILLED"}}
        assert run.info.status in expected[t.state.name]
        for key, value in t.params.items():
            assert run.data.params[key] == str(value)
        steps = [m.step for m in c.get_metric_history(run.info.run_id, OBJECTIVE)]
        if t.state != TrialState.FAIL:  # a killed worker may die between the two writes
            assert steps == sorted(t.intermediate_values)
        if t.state == TrialState.COMPLETE:
            assert run.data.metrics[f"final_{OBJECTIVE}"] == pytest.approx(t.value)


def load(params: Params, name: str, storage: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(params, storage))


# ------------------------------------------------------------------------------ search space


@pytest.mark.parametrize("name", registry.names())
def test_search_space_per_variant(name: str) -> None:
    v = registry.get(name)
    base = v.resolve(None)
    cfg = TuneConfig()
    expected = EXPECTED_SPACE.get(name)
    if expected is None:  # a variant added later: derive from its declaration
        expected = {"lr"} | ({"beta1", "beta2"} if base.optimizer == "adam" else set())
        expected |= {"n_critic"} if v.tunes_n_critic else set()
        expected |= set(v.tune_space(FixedTrial(dict(base.options)))) if v.tune_space else set()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(25):
        trial = study.ask()
        hyper = suggest(trial, v, base, cfg)
        assert set(trial.params) == expected
        d = trial.distributions
        assert d["lr"] == FloatDistribution(1e-5, 1e-2, log=True)
        assert hyper.lr == trial.params["lr"]
        if "beta1" in expected:
            assert d["beta1"] == FloatDistribution(0.0, 0.9)
            assert d["beta2"] == FloatDistribution(0.9, 0.999)
            assert hyper.betas == (trial.params["beta1"], trial.params["beta2"])
        else:
            assert hyper.betas == base.betas
        if "n_critic" in expected:
            assert d["n_critic"] == IntDistribution(1, 10)
            assert hyper.n_critic == trial.params["n_critic"]
        else:
            assert hyper.n_critic == base.n_critic
        extra = expected - {"lr", "beta1", "beta2", "n_critic"}
        for key in extra:
            assert hyper.options[key] == trial.params[key]
        assert {k: v for k, v in hyper.options.items() if k not in extra} == {
            k: v for k, v in base.options.items() if k not in extra
        }
        assert (hyper.optimizer, hyper.epochs) == (base.optimizer, base.epochs)
        study.tell(trial, 1.0)
    # The published defaults enqueued as the first trial are inside the space.
    fixed = suggest(FixedTrial(default_trial_params(v)), v, base, cfg)
    assert (fixed.lr, fixed.betas, fixed.n_critic, fixed.options) == (
        base.lr,
        base.betas,
        base.n_critic,
        base.options,
    )


def test_fixed_trials_map_onto_hyper_and_configured_ranges_apply() -> None:
    gan, wgan = registry.get("gan"), registry.get("wgan")
    cfg = TuneConfig()
    h = suggest(FixedTrial({"lr": 3e-4, "beta1": 0.1, "beta2": 0.95}), gan, gan.resolve(), cfg)
    assert (h.lr, h.betas, h.n_critic, h.optimizer) == (3e-4, (0.1, 0.95), 1, "adam")
    h = suggest(FixedTrial({"lr": 1e-4, "n_critic": 3, "clip": 0.02}), wgan, wgan.resolve(), cfg)
    assert (h.lr, h.betas, h.n_critic, h.optimizer) == (1e-4, (0.0, 0.0), 3, "rmsprop")
    assert h.options == {"clip": 0.02}
    narrow = TuneConfig(lr=(1e-4, 2e-4), n_critic=(2, 3))
    study = optuna.create_study()
    trial = study.ask()
    suggest(trial, wgan, wgan.resolve(), narrow)
    assert trial.distributions["lr"] == FloatDistribution(1e-4, 2e-4, log=True)
    assert trial.distributions["n_critic"] == IntDistribution(2, 3)
    assert block_updates(
        {"lr": 1e-4, "beta1": 0.1, "beta2": 0.95, "n_critic": 2, "clip": 0.02}
    ) == {
        "lr": 1e-4,
        "n_critic": 2,
        "betas": [0.1, 0.95],
        "options": {"clip": 0.02},
    }


@pytest.mark.parametrize(
    ("over", "where"),
    [
        ({"lr": [1e-2, 1e-5]}, "tune.lr"),
        ({"lr": [0, 1e-3]}, "tune.lr"),
        ({"beta2": [0.9, 1.0]}, "tune.beta2"),
        ({"n_critic": [0, 5]}, "tune.n_critic"),
        ({"heartbeat": 5}, "tune.heartbeat"),
    ],
)
def test_bad_tune_settings_name_their_key(over: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        parse_params({"tune": over}, Path("."))


def test_storage_urls_resolve_against_the_params_folder(tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path))
    root = str(tmp_path.resolve())
    assert resolve_storage_url(params) == f"sqlite:///{root}/optuna.db"
    assert resolve_storage_url(params, "sqlite:////abs/o.db") == "sqlite:////abs/o.db"
    assert resolve_storage_url(params, "journal://t/o.log") == f"journal://{root}/t/o.log"
    assert resolve_storage_url(params, "journal:///abs/o.log") == "journal:///abs/o.log"
    pg = resolve_storage_url(params, "postgresql://u:secret@h:5/db")
    assert pg.startswith("postgresql") and pg.endswith("://u:secret@h:5/db")
    assert "secret" not in public_url(pg)


# ---------------------------------------------------------------------------- real studies


def test_study_runs_resumes_and_records_results_and_mlflow_runs(
    tmp_path: Path, make_params
) -> None:
    path = make_params(tmp_path)
    params = load_params(path)
    first = run_study(params, "gan", trials=1, device="cpu")
    assert "tune-gan: 1 trial(s) run here (1 complete" in first
    study = load(params, "tune-gan")
    assert len(study.trials) == 1
    # Same command again: the same study grows; the defaults trial is not enqueued twice.
    second = run_study(params, "gan", trials=1, device="cpu")
    assert "study: 2 complete" in second
    study = load(params, "tune-gan")
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.user_attrs.get(ATTR_ROLE) for t in trials] == ["defaults", None]
    assert trials[0].params == default_trial_params(registry.get("gan"))
    assert trials[1].params != trials[0].params
    for t in trials:  # one report per epoch; the value is the last epoch's FID
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.value == t.intermediate_values[2] and 0 < t.value < 1e4
        assert t.user_attrs[ATTR_PID] == os.getpid()

    out = tmp_path / "reports" / "tuning" / "gan"
    best = yaml.safe_load((out / "best.json").read_text())
    winner = min(trials, key=lambda t: t.value)
    assert best["variant"] == "gan" and best["study"] == "tune-gan"
    assert best["best_value"] == winner.value and best["best_params"] == winner.params
    assert best["default_value"] == trials[0].value
    assert best["trials"] == {"COMPLETE": 2, "PRUNED": 0, "FAIL": 0}
    assert best["epochs_per_trial"] == 2 and best["trials_per_hour"] > 0
    exp = mlflow.MlflowClient(resolve_uri(params)).get_experiment(best["mlflow"]["experiment_id"])
    assert exp.name == best["mlflow"]["experiment"] == "mnist-gan-comparison/tune-gan"
    assert best["mlflow"]["parent_run_id"] == study.user_attrs[parent_attr(params)]
    for plot in ("optimization_history", "param_importances"):
        assert (out / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Trials train in temp dirs: no stage output appears in the project.
    for stage_dir in ("models", "metrics", "samples"):
        assert not (tmp_path / stage_dir).exists(), stage_dir

    assert_mlflow_mirrors(params, study)

    # Another per-trial budget would make the scores incomparable: refused, nothing run.
    with pytest.raises(PipelineError, match="another per-trial budget"):
        run_study(params, "gan", trials=1, epochs=3, device="cpu")
    assert len(load(params, "tune-gan").trials) == 2


def test_forced_pruning_on_a_journal_storage(tmp_path: Path, make_params) -> None:
    params = load_params(make_params(tmp_path))
    summary = run_study(
        params, "gan", trials=1, epochs=3, storage="journal://journal/tune.log",
        pruner=AlwaysPrune(), device="cpu",
    )  # fmt: skip
    assert "1 pruned" in summary
    assert (tmp_path / "journal" / "tune.log").is_file()
    study = load(params, "tune-gan", "journal://journal/tune.log")
    (trial,) = study.get_trials()
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]  # stopped right after the first report
    assert "pruned at epoch 1" in trial.user_attrs[ATTR_PRUNE]
    assert_mlflow_mirrors(params, study)
    best = yaml.safe_load((tmp_path / "reports" / "tuning" / "gan" / "best.json").read_text())
    assert best["trials"]["PRUNED"] == 1 and best["best_value"] is None
    with pytest.raises(PipelineError, match="no complete trial"):
        apply_best(params, tmp_path / "params.yaml", "gan", storage="journal://journal/tune.log")


def _register(name: str, hook) -> None:
    registry.register(
        Variant(name=name, epochs=1, lr=1e-4,
                algorithm=Adversarial(MLPGenerator, MLPDiscriminator, OBJECTIVES["ns"],
                                      after_d_step=hook))
    )  # fmt: skip


def test_non_finite_loss_prunes_and_other_errors_fail_with_their_reason(
    tmp_path: Path, make_params
) -> None:
    def poison(critic: torch.nn.Module, options: dict[str, float]) -> None:
        with torch.no_grad():
            for p in critic.parameters():
                p.fill_(float("nan"))

    def oom(critic: torch.nn.Module, options: dict[str, float]) -> None:
        raise RuntimeError("CUDA out of memory (simulated)")

    _register("nan_tune", poison)
    _register("oom_tune", oom)
    try:
        params = load_params(make_params(tmp_path, {"epochs": 1}))
        run_study(params, "nan_tune", trials=1, device="cpu")
        study = load(params, "tune-nan_tune")
        (trial,) = study.get_trials()
        assert trial.state == TrialState.PRUNED
        assert "non-finite" in trial.user_attrs[ATTR_PRUNE]
        assert_mlflow_mirrors(params, study)

        # A failing trial is recorded and the study goes on, until failures in a row say
        # that something is wrong with the setup.
        with pytest.raises(PipelineError, match="3 trials in a row failed.*out of memory"):
            run_study(params, "oom_tune", trials=5, device="cpu")
        study = load(params, "tune-oom_tune")
        trials = study.get_trials()
        assert [t.state for t in trials] == [TrialState.FAIL] * MAX_FAILURES_IN_A_ROW
        for t in trials:
            assert t.user_attrs[ATTR_FAIL] == "RuntimeError: CUDA out of memory (simulated)"
        assert_mlflow_mirrors(params, study)
        best = yaml.safe_load(
            (tmp_path / "reports" / "tuning" / "oom_tune" / "best.json").read_text()
        )
        assert best["trials"] == {"COMPLETE": 0, "PRUNED": 0, "FAIL": 3}
    finally:
        registry.unregister("nan_tune")
        registry.unregister("oom_tune")


def test_ctrl_c_keeps_finished_trials_and_the_same_command_continues(
    tmp_path: Path, make_params
) -> None:
    critics: list[torch.nn.Module] = []
    armed = [True]

    def interrupt_second_trial(critic: torch.nn.Module, options: dict[str, float]) -> None:
        if not any(c is critic for c in critics):
            critics.append(critic)
        if armed[0] and len(critics) >= 2:
            raise KeyboardInterrupt

    _register("kbi_tune", interrupt_second_trial)
    try:
        path = make_params(tmp_path, {"epochs": 1})
        args = ["tune", "kbi_tune", "--params", str(path), "--trials", "3", "--device", "cpu"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 130, result.output
        assert "Interrupted" in result.output
        params = load_params(path)
        study = load(params, "tune-kbi_tune")
        assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE, TrialState.FAIL]
        assert "interrupted" in study.trials[1].user_attrs[ATTR_FAIL]
        out = tmp_path / "reports" / "tuning" / "kbi_tune"
        best = yaml.safe_load((out / "best.json").read_text())
        assert best["trials"] == {"COMPLETE": 1, "PRUNED": 0, "FAIL": 1}
        assert best["best_value"] == study.trials[0].value
        assert (out / "optimization_history.png").is_file()
        assert_mlflow_mirrors(params, study)
        parents, children = mlflow_runs(params, "tune-kbi_tune")
        assert parents[0].info.status == "KILLED"
        assert {r.info.status for r in children} == {"FINISHED", "KILLED"}

        armed[0] = False
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "joining the unfinished session" in result.output
        study = load(params, "tune-kbi_tune")
        states = [t.state for t in study.get_trials()]
        assert states == [TrialState.COMPLETE, TrialState.FAIL] + [TrialState.COMPLETE] * 2
    finally:
        registry.unregister("kbi_tune")


def test_missing_classifier_is_one_line_and_creates_nothing(
    tmp_path: Path, prepared_dir: Path
) -> None:
    path = write_params(
        tmp_path, deep_update(TINY, {"data": {"dir": str(prepared_dir)}, "tune": {"sample_n": 200}})
    )
    result = CliRunner().invoke(app, ["tune", "gan", "--params", str(path), "--trials", "1"])
    assert result.exit_code == 1
    assert "run `pipeline classifier` first" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "optuna.db").exists()


# ---------------------------------------------------------------------------- --apply + DVC


def _fake_study(
    params: Params,
    name: str,
    values: list[tuple[dict[str, Any], float]],
    study_name: str | None = None,
) -> optuna.Study:
    """A study of ``name``'s space with the given (params, value) trials, no training."""
    v = registry.get(name)
    study = optuna.create_study(
        storage=resolve_storage_url(params),
        study_name=study_name or default_study_name(name),
    )
    study.set_user_attr(ATTR_BUDGET, {"epochs": 3})
    for trial_params, value in values:
        role = "defaults" if trial_params == default_trial_params(v) else None
        study.enqueue_trial(trial_params, user_attrs={ATTR_ROLE: role})
        trial = study.ask()
        suggest(trial, v, v.resolve(), params.tune)
        study.tell(trial, value)
    pruned = study.ask()
    suggest(pruned, v, v.resolve(), params.tune)
    study.tell(pruned, state=TrialState.PRUNED)
    return study


def _train_stage_params() -> list[Any]:
    """The params the repo's train@VARIANT stage declares (what --apply must change)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text()).get("stages", {})
    train = stages.get("train", {}).get("do", {})
    return train.get("params") or ["variants.${key}"]


def test_apply_writes_the_best_trial_and_dvc_sees_the_variant_change(tmp_path: Path) -> None:
    # The repo's own params.yaml, verbatim: comments and layout must survive --apply.
    path = tmp_path / "params.yaml"
    original = (REPO / "params.yaml").read_text()
    path.write_text(original)
    params = load_params(path)
    gan_best = {"lr": 3.3e-4, "beta1": 0.25, "beta2": 0.97}
    _fake_study(
        params, "gan", [(default_trial_params(registry.get("gan")), 40.0), (gan_best, 30.0)]
    )
    wgan_best = {"lr": 1.23e-5, "n_critic": 3, "clip": 0.02}
    _fake_study(
        params, "wgan", [(wgan_best, 12.5), ({"lr": 1e-3, "n_critic": 7, "clip": 0.05}, 80.0)]
    )

    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "train": {
                        "foreach": "${variants}",
                        "do": {
                            "cmd": "echo ${key} > trained_${key}.txt",
                            "params": _train_stage_params(),
                            "outs": ["trained_${key}.txt"],
                        },
                    }
                }
            }
        )
    )
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    run_dvc(tmp_path, "init", "-q")
    run_dvc(tmp_path, "repro", "-q")
    before = run_dvc(tmp_path, "status")
    assert "train@" not in before

    for name in ("gan", "wgan"):
        result = CliRunner().invoke(app, ["tune", name, "--params", str(path), "--apply"])
        assert result.exit_code == 0, result.output
        assert "retrains" in result.output

    after = load_params(path)
    gan = after.variants["gan"]
    # The block holds the override; what it does not name stays published (n_critic 1, epochs).
    assert (gan.lr, gan.betas, gan.n_critic, gan.epochs) == (3.3e-4, (0.25, 0.97), None, None)
    resolved = registry.get("gan").resolve(gan)
    assert (resolved.n_critic, resolved.epochs) == (1, registry.get("gan").resolve(None).epochs)
    wgan = after.variants["wgan"]
    assert (wgan.lr, wgan.n_critic, wgan.options, wgan.betas) == (1.23e-5, 3, {"clip": 0.02}, None)
    assert after.variants["cgan"] == params.variants["cgan"]
    # Only the tuned blocks changed: comments, layout and every other line are kept.
    text = path.read_text()
    # (line counts, not difflib: its autojunk heuristic misaligns files over 200 lines)
    removed = Counter(original.splitlines()) - Counter(text.splitlines())
    added = Counter(text.splitlines()) - Counter(original.splitlines())
    assert removed == Counter(["  gan: {}", "  wgan: {}"])
    assert sorted(line.split("#")[0].rstrip() for line in added) == sorted([
        "  gan:", "    lr: 0.00033", "    betas: [0.25, 0.97]",
        "  wgan:", "    lr: 1.23e-05", "    n_critic: 3", "    options: {clip: 0.02}",
    ])  # fmt: skip
    assert "  gan:  # tuned: tune-gan trial 1, FID 30.00 (defaults 40.00)" in text
    applied = yaml.safe_load((tmp_path / "reports" / "tuning" / "gan" / "applied.json").read_text())
    assert applied["previous_block"] == params.variants["gan"].model_dump(
        mode="json", exclude_unset=True
    )

    status = run_dvc(tmp_path, "status")
    assert "train@gan" in status and "train@wgan" in status
    assert "train@cgan" not in status and "train@dcgan" not in status


# ------------------------------------------------------------------- scale-out: PostgreSQL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (initdb + pg_ctl), stopped afterwards."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts[-3])
    if not bins:
        pytest.skip("PostgreSQL server binaries not installed (Debian package `postgresql`)")
    bindir = bins[-1].parent
    pytest.importorskip("psycopg2", reason="psycopg2 (the PostgreSQL driver) is not installed")
    if os.geteuid() == 0:
        # postgres refuses to run as root: run it as the `postgres` user, in a folder it owns
        # (pytest's tmp folders are private to root).
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without `runuser` to start the server as postgres")
        base = Path(tempfile.mkdtemp(prefix="tune-pg-"))
        os.chown(base, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    else:
        base = tmp_path / "pg"
        base.mkdir()
        prefix = []
    data, port = base / "data", _free_port()

    def pg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=60)

    try:
        out = pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                 "--no-sync", "-E", "UTF8")  # fmt: skip
        if out.returncode != 0:
            pytest.skip(f"initdb failed: {out.stderr.strip()[-300:]}")
        out = pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w",
                 "-t", "30", "-o", f"-h 127.0.0.1 -p {port} -k {base} -F", "start")  # fmt: skip
        if out.returncode != 0:
            log = (base / "log").read_text() if (base / "log").exists() else out.stderr
            pytest.skip(f"PostgreSQL did not start: {log.strip()[-300:]}")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if data.exists():
            pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_three_workers_share_a_postgres_study_and_a_killed_workers_trial_is_retried(
    tmp_path: Path, make_params, postgres_url: str
) -> None:
    n_trials, study_name = 5, "scale-out"
    path = make_params(tmp_path, {"heartbeat_s": 1, "grace_s": 4, "max_retry": 2})
    params = load_params(path)
    cmd = [sys.executable, "-m", "pipeline", "tune", "gan", "--params", str(path),
           "--storage", postgres_url, "--study", study_name, "--trials", str(n_trials),
           "--epochs", "2", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    procs = []
    for i, log in enumerate(logs):
        # The first worker SIGKILLs itself mid-trial: its trial and MLflow run exist, and
        # its scratch folder is locked (pipeline.infra.faults' "trial-started" point).
        own = {**env, KILL_ENV: "trial-started"} if i == 0 else env
        with log.open("w") as f:
            procs.append(
                subprocess.Popen(cmd, cwd=REPO, env=own, stdout=f, stderr=subprocess.STDOUT)
            )
    victim = procs[0]

    def show_logs() -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in logs)

    try:
        storage = open_storage(params, postgres_url)
        assert victim.wait(timeout=150) == -signal.SIGKILL, show_logs()
        for p in procs[1:]:
            assert p.wait(timeout=150) == 0, show_logs()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials)))  # unique, none lost
    listing = "\n".join(
        f"{t.number} {t.state.name} pid={t.user_attrs.get(ATTR_PID)} "
        f"retry_of={t.system_attrs.get('failed_trial')} {t.datetime_start} {t.datetime_complete}"
        for t in trials
    )
    assert all(t.state in TERMINAL for t in trials), listing + show_logs()
    # The victim died in its first trial, after the trial and its MLflow run were recorded.
    victims = [t for t in trials if t.user_attrs.get(ATTR_PID) == victim.pid]
    assert len(victims) == 1 and ATTR_RUN in victims[0].user_attrs, listing
    killed = victims[0].number
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    # The study reaches the requested number for all workers together, not per worker
    # (check-then-start races between workers can add at most one per extra worker).
    assert n_trials <= len(finished) <= n_trials + 2, show_logs()
    assert [t.number for t in failed] == [killed], show_logs()  # heartbeat lost -> FAIL
    assert len(trials) == len(finished) + len(failed)
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry.params == trials[killed].params
    assert retry.user_attrs[ATTR_PID] != victim.pid
    # The published defaults ran once (plus its retry, should the victim have run it).
    originals = [t for t in trials if "failed_trial" not in t.system_attrs]
    assert sum(t.user_attrs.get(ATTR_ROLE) == "defaults" for t in originals) == 1
    assert len({t.user_attrs[ATTR_PID] for t in trials}) >= 2  # several workers took part
    # MLflow: one parent for all workers; the dead worker's run was closed as FAIL.
    assert_mlflow_mirrors(params, study)
    best = yaml.safe_load((tmp_path / "reports" / "tuning" / "gan" / "best.json").read_text())
    assert best["study"] == study_name and best["trials"]["FAIL"] == 1


def test_apply_says_so_when_the_defaults_won(tmp_path: Path) -> None:
    """When the enqueued defaults are the best trial, --apply changes no value and must not
    claim that `dvc repro` will retrain."""
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    params = load_params(path)
    v = registry.get("gan")
    _fake_study(params, "gan", [(default_trial_params(v), 20.0), ({"lr": 1e-3}, 50.0)])
    before = path.read_text()
    message = apply_best(params, path, "gan")
    assert "nothing for `dvc repro` to retrain" in message and "retrains" not in message
    # Nothing to change, nothing written: no applied.json whose "previous block" is the block
    # that stays, no comment pointing at it.
    assert "nothing written" in message
    assert not (tmp_path / "reports" / "tuning" / "gan" / "applied.json").exists()
    assert path.read_text() == before
    after = load_params(path).variants["gan"]
    assert (after.lr, after.betas, after.n_critic) == (
        params.variants["gan"].lr, params.variants["gan"].betas, params.variants["gan"].n_critic
    )  # fmt: skip


def test_apply_again_keeps_the_block_from_before_tuning(tmp_path: Path) -> None:
    """A second --apply of the same study changes nothing and must keep applied.json (its
    previous_block is the block from before tuning); another study's --apply records the block
    just before it."""
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    params = load_params(path)
    untuned = params.variants["gan"].model_dump(mode="json", exclude_unset=True)
    v = registry.get("gan")
    gan_best = {"lr": 3.3e-4, "beta1": 0.25, "beta2": 0.97}
    _fake_study(params, "gan", [(default_trial_params(v), 40.0), (gan_best, 30.0)])
    assert "`dvc repro` retrains gan" in apply_best(params, path, "gan")
    applied = tmp_path / "reports" / "tuning" / "gan" / "applied.json"
    record, tuned_text = applied.read_text(), path.read_text()
    assert json.loads(record)["previous_block"] == untuned

    again = apply_best(load_params(path), path, "gan")
    assert "nothing written" in again and "nothing for `dvc repro` to retrain" in again
    assert applied.read_text() == record and path.read_text() == tuned_text

    other = {"lr": 1.1e-4, "beta1": 0.4, "beta2": 0.95}
    _fake_study(params, "gan", [(other, 25.0)], study_name="gan-b")
    tuned = load_params(path)
    assert "retrains" in apply_best(tuned, path, "gan", study_name="gan-b")
    doc = json.loads(applied.read_text())
    assert doc["study"] == "gan-b"
    assert doc["previous_block"] == tuned.variants["gan"].model_dump(
        mode="json", exclude_unset=True
    )
    assert doc["previous_block"]["lr"] == 3.3e-4 and doc["applied"]["lr"] == 1.1e-4


class _FakeObjective:
    """Stands in for the training objective: suggests like it, later trials score better."""

    def __init__(self, params: Params, v: Variant, hyper: Any, *_: Any) -> None:
        self.params, self.v, self.hyper = params, v, hyper

    def __call__(self, trial: optuna.Trial) -> float:
        suggest(trial, self.v, self.hyper, self.params.tune)
        return 50.0 - trial.number


def test_hints_repeat_params_study_and_storage_so_they_act_on_the_same_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary's --apply hint, followed verbatim, applies the study just run (not
    tune-VARIANT in the default storage); the --apply errors name the study asked for."""
    monkeypatch.setattr("pipeline.training.evaluator.load_checkpoint", lambda path: None)
    monkeypatch.setattr("pipeline.stages.tune.study._Objective", _FakeObjective)
    folder = tmp_path / "my dir"
    path = write_params(folder).rename(folder / "my params.yaml")
    params = load_params(path)

    summary = run_study(
        params, "gan", trials=2, storage="sqlite:///other.db", study_name="s 2", device="cpu",
        params_path=path,
    )  # fmt: skip
    hint = re.search(r"apply with `([^`]*)`", summary)
    assert hint, summary
    argv = shlex.split(hint.group(1))
    assert argv == [
        "pipeline", "tune", "gan", "--params", str(path), "--study", "s 2",
        "--storage", "sqlite:///other.db", "--apply",
    ]  # fmt: skip
    result = CliRunner().invoke(app, argv[1:])
    assert result.exit_code == 0, result.output
    applied = json.loads((folder / "reports" / "tuning" / "gan" / "applied.json").read_text())
    assert applied["study"] == "s 2" and applied["trial"] == 1
    best = json.loads((folder / "reports" / "tuning" / "gan" / "best.json").read_text())
    assert best["study"] == "s 2"  # the report's Study column says which study it shows

    def suggested(**kwargs: Any) -> list[str]:
        with pytest.raises(PipelineError) as err:
            apply_best(params, path, "gan", **kwargs)
        found = re.search(r"`(pipeline tune [^`]*)`", str(err.value))
        assert found, str(err.value)
        return shlex.split(found.group(1))

    # The study is missing from an existing storage / the storage file is missing.
    assert suggested(storage="sqlite:///other.db", study_name="zzz") == [
        "pipeline", "tune", "gan", "--params", str(path), "--study", "zzz",
        "--storage", "sqlite:///other.db",
    ]  # fmt: skip
    assert suggested(storage="journal://no such.log") == [
        "pipeline", "tune", "gan", "--params", str(path), "--storage", "journal://no such.log"
    ]  # fmt: skip
    # Defaults are not repeated; a password is not printed.
    assert tune_command("gan", params_path="params.yaml", study_name="tune-gan") == (
        "pipeline tune gan"
    )
    assert tune_command("gan", storage="postgresql://u:secret@h/db", apply=True) == (
        "pipeline tune gan --storage 'postgresql://u:***@h/db' --apply"
    )


def test_results_of_another_study_leave_no_stale_plots(tmp_path: Path) -> None:
    """best.json and the plots beside it describe one study: a study without enough trials for
    a plot removes the previous study's file instead of leaving it in the report."""
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    params = load_params(path)
    v = registry.get("gan")
    first = _fake_study(params, "gan", [(default_trial_params(v), 40.0), ({"lr": 1e-3}, 30.0)])
    out = tmp_path / "reports" / "tuning" / "gan"
    write_results(params, first, "gan")
    assert (out / "param_importances.png").is_file()
    second = _fake_study(params, "gan", [({"lr": 2e-3}, 35.0)], study_name="s2")
    write_results(params, second, "gan")
    assert json.loads((out / "best.json").read_text())["study"] == "s2"
    assert (out / "optimization_history.png").is_file()
    assert not (out / "param_importances.png").exists()


def test_a_failed_graph_capture_stops_the_study_after_that_trial(
    tmp_path: Path, make_params, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed CUDA graph capture leaves the process's CUDA state unsafe: the study does not
    go on to the next trial (as it does after another error) but stops with the way out."""
    refuse_capture(monkeypatch)
    path = make_params(tmp_path, {"epochs": 1})
    params = load_params(path).with_section("train", cuda_graphs=True)
    with pytest.raises(PipelineError) as info:
        run_study(params, "gan", trials=3, device="cpu", params_path=path)
    msg = str(info.value)
    assert "\n" not in msg and "CUDA graph capture failed (operation not permitted" in msg
    assert "set train.cuda_graphs: false and rerun `pipeline tune gan --params" in msg
    (trial,) = load(params, "tune-gan").get_trials()  # no second trial in this process
    assert trial.state == TrialState.FAIL
    assert "CUDA graph capture failed" in trial.user_attrs[ATTR_FAIL]


def test_a_killed_workers_scratch_folder_is_removed_by_the_next_study(
    tmp_path: Path, make_params
) -> None:
    """Trials train in locked folders under <tune.out_dir>/.cache/trials, not the system temp
    folder; the next `pipeline tune` removes those whose worker died (issue 12, item 8)."""
    import signal
    import subprocess
    import sys

    # a short heartbeat and grace: the next study waits for the killed trial to go stale
    # (tune.grace_s, default 120 s) before it runs its own
    path = make_params(tmp_path, {"epochs": 1, "heartbeat_s": 1, "grace_s": 4})
    args = [sys.executable, "-m", "pipeline", "tune", "gan", "--params", str(path)]
    args += ["--trials", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        args, env={**env, KILL_ENV: "trial-started"}, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    scratch = tmp_path / "reports" / "tuning" / ".cache" / "trials"
    (left,) = [p for p in scratch.iterdir() if p.is_dir()]
    assert left.name.startswith("tune-gan-0-")

    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"removed {left}" in out.stderr
    assert list(scratch.iterdir()) == []  # the finished trial's folder and lock went too


@pytest.mark.filterwarnings("ignore:Fixed parameter lr")  # the defaults' lr is outside [1e6, 1e6]
def test_a_diverged_trial_is_pruned_with_its_reason(tmp_path: Path, make_params) -> None:
    """Finite divergence (gan at lr 1e6: d_loss ~1e25) prunes the trial like a NaN does."""
    params = load_params(make_params(tmp_path, {"epochs": 1, "lr": [1e6, 1e6]}))
    run_study(params, "gan", trials=2, device="cpu")
    study = load(params, "tune-gan")
    defaults, diverged = study.get_trials()
    assert defaults.state == TrialState.COMPLETE  # the published lr trains normally
    assert diverged.state == TrialState.PRUNED and diverged.params["lr"] == 1e6
    assert "beyond train.divergence.max_loss" in diverged.user_attrs[ATTR_PRUNE]


def _digests(images: torch.Tensor) -> set[str]:
    """One digest per uint8 [N, 28, 28] image (MNIST has no two identical images within or
    across its train and test sets, so equal digests mean the same image)."""
    import hashlib

    flat = images.reshape(len(images), -1).contiguous().numpy()
    return {hashlib.sha1(row.tobytes()).hexdigest() for row in flat}


def test_tuning_scores_against_held_out_training_images_never_trained_on(
    tmp_path: Path, make_params
) -> None:
    """The tuning reference is a seeded slice of the training set: disjoint from the images
    a trial's trainer loads and from the test set the final scores use."""
    from pipeline.infra.data import load_split, to_uint8
    from pipeline.stages.evaluate.scoring import score
    from pipeline.stages.tune.holdout import split_indices
    from pipeline.stages.tune.objective import _Objective
    from pipeline.training.spec import run_spec

    path = make_params(tmp_path)
    over = yaml.safe_load(path.read_text())
    over["train"]["subset"] = None  # the whole training set less the slice
    path.write_text(yaml.safe_dump(over))
    params = load_params(path)
    variant = registry.get("gan")
    obj = _Objective(params, variant, variant.resolve(params.variants["gan"]), 1,
                     torch.device("cpu"), tracker=None)  # type: ignore[arg-type]  # fmt: skip
    ref = obj.reference
    assert len(ref.indices) == params.tune.holdout == 500
    rest, held = split_indices(60_000, 500, params.tune.holdout_seed)
    assert torch.equal(ref.indices, held) and torch.equal(ref.train_indices, rest)
    assert len(set(rest.tolist()) | set(held.tolist())) == 60_000  # disjoint, all covered
    assert not torch.equal(split_indices(60_000, 500, 1)[1], held)  # the seed decides
    train_images, train_labels = load_split(params, "train")
    assert torch.equal(ref.images, train_images[held])
    assert torch.equal(ref.labels, train_labels[held])

    # What a trial trains on: the trainer the objective builds, its data as loaded.
    spec = run_spec(obj.train_params, "gan", epochs=1)
    x, _ = obj.trainer(spec, tmp_path / "trial", [])._load_data()
    trained = _digests(to_uint8(x)[:, 0])
    reference = _digests(ref.images)
    assert len(trained) == 60_000 - 500 and len(reference) == 500
    assert not trained & reference
    test_images, _ = load_split(params, "test")
    assert not reference & _digests(test_images)

    # The objective's scoring: against the slice (500 images, its own feature cache).
    assert obj.eval_params.path(obj.eval_params.evaluate.cache_dir).name == "holdout-500-seed0"
    doc = score(obj.eval_params, "gan", to_uint8(x[:200]), full=False,
                reference=(ref.images, ref.labels))  # fmt: skip
    assert doc.n_real == 500
    # The KL's reference shares are the slice's labels, not the test set's.
    hist = doc.classifier.histogram
    shares = [float((ref.labels == d).double().mean()) for d in range(10)]
    expected = sum(h * math.log(h / r) for h, r in zip(hist, shares, strict=True) if h > 0)
    assert doc.classifier.kl_test_labels == pytest.approx(expected)
    _, test_labels = load_split(params, "test")
    test_shares = [float((test_labels[:500] == d).double().mean()) for d in range(10)]
    assert doc.classifier.kl_test_labels != pytest.approx(
        sum(h * math.log(h / r) for h, r in zip(hist, test_shares, strict=True) if h > 0)
    )
