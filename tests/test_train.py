"""The trainer: one step per variant, tiny real runs with MLflow, kill-and-resume equality."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants.base import Variant, registry
from pipeline.infra import checkpoint as ckpt
from pipeline.infra.errors import PipelineError
from pipeline.infra.faults import AFTER_ENV, KILL_ENV
from pipeline.infra.params import load_params
from pipeline.infra.tracking import resolve_uri
from pipeline.stages.train import train_variant
from pipeline.training.loop import NonFiniteLossError, Trainer, build_nets
from pipeline.training.rundir import ResumeRefusedError
from pipeline.training.setup import run_setup
from pipeline.training.spec import run_spec
from tests.conftest import REPO, deep_update, representative_variants, write_params
from tests.hostile import refuse_capture

VARIANTS = registry.names()
# the expensive registry-wide tests: one variant per way of training (conftest)
REPRESENTATIVE = representative_variants()


def _trainer(params_path: Path, name: str, out: Path, epochs: int = 1) -> Trainer:
    params = load_params(params_path)
    spec = run_spec(params, name, epochs=epochs)
    return Trainer(run_setup(params), spec, out, torch.device("cpu"), progress=False)


@pytest.mark.parametrize("name", VARIANTS)
def test_one_step_changes_the_weights(name: str, tmp_path: Path, prepared_dir: Path) -> None:
    path = write_params(tmp_path, {"data": {"dir": str(prepared_dir)}, "train": {"subset": 64}})
    trainer = _trainer(path, name, tmp_path / "run")
    trainer._fresh_state()
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in trainer.nets.items()}
    hyper = trainer.spec.hyper
    # n_critic steps: the critic moves every step, the generator once.
    trainer.spec = run_spec(load_params(path), name, epochs=1, subset=64 * hyper.n_critic)
    trainer._train_epochs(*trainer._load_data())
    assert trainer.step == hyper.n_critic
    owned = {n for nets in trainer.algorithm.owners().values() for n in nets}
    for net in owned:  # every trained net moved
        changed = [
            k
            for k, v in trainer.nets[net].state_dict().items()
            if "weight" in k.split(".") and not torch.equal(v, before[net][k])
        ]
        assert changed, f"{name}: no weight of {net} changed"
    if name == "wgan":
        clip = hyper.options["clip"]
        d = trainer.nets["discriminator"]
        assert all(p.abs().max() <= clip for p in d.parameters())
        assert any(p.abs().max() == clip for p in d.parameters())  # clipping was active


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_two_epoch_run_writes_checkpoint_grid_curves_and_mlflow_run(
    name: str, tiny_params_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["train", name, "--epochs", "2", "--params", str(tiny_params_path)]
    )
    assert result.exit_code == 0, result.output
    params = load_params(tiny_params_path)
    out = tiny_params_path.parent / "models" / name / "seed0"  # --seed: the first of train.seeds
    state = ckpt.load(out / "checkpoint.pt")
    assert state["epoch"] == 2 and state["complete"] and state["step"] == 2 * (512 // 64)
    assert len(state["history"]) == 2
    assert (out / "grid.png").is_file() and (out / "progress.gif").is_file()
    assert sorted(p.name for p in (out / "grids").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    curves = (
        (tiny_params_path.parent / "metrics" / "curves" / name / "seed0.csv")
        .read_text()
        .splitlines()
    )
    variant = registry.get(name)
    metrics = list(variant.algorithm.metric_names(variant))
    header = curves[0].split(",")
    assert header[:3] == ["epoch", "step", "g_iters"] and header[3 : 3 + len(metrics)] == metrics
    assert len(curves) == 3

    run_id = (out / "run_id.txt").read_text().strip()
    client = mlflow.MlflowClient(resolve_uri(params))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["variant"] == name and "git_commit" in run.data.tags
    assert run.data.params["run.hyper.lr"] == str(registry.get(name).lr)
    history = client.get_metric_history(run_id, f"train.{metrics[0]}")
    assert [m.step for m in history] == [1, 2]
    for key in metrics:  # every metric the model logs is a curve; no other one appears
        assert len(client.get_metric_history(run_id, f"train.{key}")) == 2, key
    for key in {"wasserstein", "d_real", "gp"} - set(metrics):
        assert not client.get_metric_history(run_id, f"train.{key}"), key
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"grids", "progress.gif", "checkpoint"} <= artifacts
    models = client.search_logged_models([run.info.experiment_id])
    assert [m.name for m in models if m.source_run_id == run_id] == [f"{name}-generator"]


def test_rerun_of_a_finished_run_does_nothing_and_changed_params_start_over(
    tiny_params_path: Path,
) -> None:
    params = load_params(tiny_params_path)
    first = train_variant(params, "gan", epochs=1, progress=False)
    mtime = first.checkpoint.stat().st_mtime_ns
    again = train_variant(params, "gan", epochs=1, progress=False)
    assert again.checkpoint.stat().st_mtime_ns == mtime and again.steps == first.steps
    run_id = (first.out_dir / "run_id.txt").read_text()
    # a finished run with another config is stale output: a new run replaces it
    changed = train_variant(params, "gan", epochs=2, progress=False)
    assert changed.epochs == 2 and (first.out_dir / "run_id.txt").read_text() != run_id
    kept = first.out_dir.with_name("seed0.previous")  # the finished run is set aside, not lost
    assert ckpt.load(kept / "checkpoint.pt")["epoch"] == 1


def test_switching_back_to_the_previous_config_restores_its_run_without_training(
    tiny_params_path: Path,
) -> None:
    """epochs=2, a one-off epochs=1, epochs=2 again: the long run comes back from
    gan/seed0.previous (same file, no retraining), and the one-off run takes its place there."""
    params = load_params(tiny_params_path)
    long = train_variant(params, "gan", epochs=2, track=False, progress=False)
    long_bytes = long.checkpoint.read_bytes()
    train_variant(params, "gan", epochs=1, track=False, progress=False)
    kept = long.out_dir.with_name("seed0.previous")
    assert ckpt.load(kept / "checkpoint.pt")["epoch"] == 2
    back = train_variant(params, "gan", epochs=2, track=False, progress=False)
    assert back.checkpoint.read_bytes() == long_bytes  # restored, not retrained
    assert ckpt.load(kept / "checkpoint.pt")["epoch"] == 1
    assert json.loads((back.out_dir / "config.json").read_text())["hyper"]["epochs"] == 2


def test_a_run_refused_by_its_checks_leaves_the_finished_run_in_place(
    tiny_params_path: Path,
) -> None:
    """A config change whose run then fails its checks (subset below the batch size, a tracking
    store that cannot be opened) must not move the finished run aside."""
    params = load_params(tiny_params_path)
    first = train_variant(params, "gan", epochs=1, track=False, progress=False)
    before = {f.relative_to(first.out_dir): f.read_bytes() for f in first.out_dir.rglob("*")
              if f.is_file()}  # fmt: skip
    with pytest.raises(PipelineError, match="smaller than train.batch_size"):
        train_variant(params, "gan", epochs=1, subset=10, track=False, progress=False)
    # an MLflow store that cannot be opened (a path under a file)
    bad = params.with_section("tracking", uri=f"sqlite:///{tiny_params_path}/mlflow.db")
    with pytest.raises(PipelineError, match="cannot create the MLflow store's folder"):
        train_variant(bad, "gan", epochs=3, progress=False)
    after = {f.relative_to(first.out_dir): f.read_bytes() for f in first.out_dir.rglob("*")
             if f.is_file()}  # fmt: skip
    assert after == before
    # the folder a finished run is set aside in (RunFolder.previous_dir) was never made
    assert not first.out_dir.with_name(f"{first.out_dir.name}.previous").exists()
    assert not list(first.out_dir.parent.glob("*.previous"))


def test_a_corrupt_checkpoint_says_how_to_start_over(tiny_params_path: Path) -> None:
    params = load_params(tiny_params_path)
    first = train_variant(params, "gan", epochs=1, track=False, progress=False)
    first.checkpoint.write_bytes(b"not a zip")
    with pytest.raises(ckpt.CheckpointError, match=f"delete {first.out_dir} to start over"):
        train_variant(params, "gan", epochs=1, track=False, progress=False)


def test_rerun_repairs_an_mlflow_run_left_unfinished_by_a_kill_during_finalisation(
    tiny_params_path: Path,
) -> None:
    """Killed after the last checkpoint but while MLflow logged the final artifacts: the
    checkpoint is complete, the run is not. A rerun trains nothing and finishes the run."""
    params = load_params(tiny_params_path)
    first = train_variant(params, "gan", epochs=1, progress=False)
    run_id = (first.out_dir / "run_id.txt").read_text().strip()
    c = mlflow.MlflowClient(resolve_uri(params))
    c.set_terminated(run_id, "KILLED")
    artifacts = Path(urlparse(c.get_run(run_id).info.artifact_uri).path)
    shutil.rmtree(artifacts / "checkpoint")  # as if killed before they were logged
    assert not c.list_artifacts(run_id, "checkpoint")
    mtime = first.checkpoint.stat().st_mtime_ns
    again = train_variant(params, "gan", epochs=1, progress=False)
    assert again.checkpoint.stat().st_mtime_ns == mtime  # nothing retrained
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert [a.path for a in c.list_artifacts(run_id, "checkpoint")] == ["checkpoint/checkpoint.pt"]
    assert (first.out_dir / "run_id.txt").read_text().strip() == run_id


def test_non_finite_loss_stops_the_run_and_marks_mlflow_failed(tiny_params_path: Path) -> None:
    def poison(critic: torch.nn.Module, options: dict[str, float]) -> None:
        with torch.no_grad():
            for p in critic.parameters():
                p.fill_(float("nan"))

    registry.register(
        Variant(name="nan_test", epochs=1, lr=1e-4,
                algorithm=Adversarial(MLPGenerator, MLPDiscriminator, OBJECTIVES["ns"],
                                      after_d_step=poison))
    )  # fmt: skip
    try:
        params = load_params(tiny_params_path)
        with pytest.raises(NonFiniteLossError, match="non-finite d_loss"):
            train_variant(params, "nan_test", progress=False)
        run_id = (
            (tiny_params_path.parent / "models" / "nan_test" / "seed0" / "run_id.txt")
            .read_text()
            .strip()
        )
        run = mlflow.MlflowClient(resolve_uri(params)).get_run(run_id)
        assert run.info.status == "FAILED" and "non-finite" in run.data.tags["failure"]
    finally:
        registry.unregister("nan_test")


def test_a_new_variant_needs_only_its_declaration_and_a_params_block(
    tmp_path: Path, prepared_dir: Path
) -> None:
    """Registering a variant (what a new file in pipeline/core/variants does) is all the trainer needs."""
    from functools import partial

    registry.register(
        Variant(
            name="tiny_mlp", epochs=3, lr=1e-3, betas=(0.0, 0.9), n_critic=2,
            algorithm=Adversarial(partial(MLPGenerator, hidden=(32, 32)),
                                  partial(MLPDiscriminator, hidden=(32,)),
                                  OBJECTIVES["wasserstein"]),
        )
    )  # fmt: skip
    try:
        path = write_params(
            tmp_path,
            {"data": {"dir": str(prepared_dir)}, "train": {"subset": 256, "device": "cpu"},
             "variants": {"tiny_mlp": {"epochs": 2}}},
        )  # fmt: skip
        params = load_params(path)
        result = train_variant(params, "tiny_mlp", track=False, progress=False)
        assert result.epochs == 2 and result.steps == 8
        # the trainer and the step protocol never name a variant
        for folder in ("training", "algorithms"):
            for path in (REPO / "pipeline" / folder).glob("*.py"):
                source = path.read_text()
                assert not any(f'"{v}"' in source for v in registry.names()), path
    finally:
        registry.unregister("tiny_mlp")


def _ckpt_epoch(path: Path) -> int:
    try:
        return ckpt.load(path)["epoch"]
    except ckpt.CheckpointError:
        return 0


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path, prepared_dir: Path) -> None:
    # classifier-only scoring: `pipeline train` otherwise first checks the Inception weights,
    # which this offline machine does not have
    over = {"data": {"dir": str(prepared_dir)}, "train": {"subset": 2048, "device": "cpu"},
            "tracking": {"log_model": False},
            "evaluate": {"extractors": ["classifier"]}}  # fmt: skip
    epochs = 5
    # uninterrupted reference, in-process
    ref_params = load_params(write_params(tmp_path / "ref", over))
    ref = train_variant(ref_params, "gan", epochs=epochs, track=False, progress=False)
    ref_state = ckpt.load(ref.checkpoint)

    # same config in a subprocess, SIGKILLed while it writes its third checkpoint (between
    # the write and the rename: epoch 2's checkpoint in place, epoch 3's temp file beside it)
    path = write_params(tmp_path / "killed", over)
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "train",
        "gan",
        "--epochs",
        str(epochs),
        "--params",
        str(path),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kill = {KILL_ENV: f"replace:{ckpt.CHECKPOINT}", AFTER_ENV: "2"}
    killed = subprocess.run(cmd, env={**env, **kill}, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    ck = tmp_path / "killed" / "models" / "gan" / "seed0" / ckpt.CHECKPOINT
    killed_at = _ckpt_epoch(ck)
    assert killed_at == 2, f"killed at checkpoint epoch {killed_at}, not 2"

    # a different config must not resume this unfinished run
    changed = load_params(
        write_params(tmp_path / "killed", deep_update(over, {"variants": {"gan": {"lr": 0.001}}}))
    )
    with pytest.raises(ResumeRefusedError, match="variants|lr"):
        train_variant(changed, "gan", epochs=epochs, progress=False)

    write_params(tmp_path / "killed", over)
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from epoch {killed_at}" in resumed.stderr
    state = ckpt.load(ck)
    assert state["epoch"] == epochs and state["step"] == ref_state["step"]
    for key in ("generator", "discriminator"):
        for name, tensor in ref_state["nets"][key].items():
            assert torch.equal(state["nets"][key][name], tensor), f"{key}.{name} differs"
    assert state["history"][-1]["d_loss"] == ref_state["history"][-1]["d_loss"]
    run_id = (ck.parent / "run_id.txt").read_text().strip()
    run = mlflow.MlflowClient(resolve_uri(load_params(path))).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert (
        len(
            mlflow.MlflowClient(resolve_uri(load_params(path))).get_metric_history(
                run_id, "train.d_loss"
            )
        )
        >= epochs
    )


@pytest.mark.parametrize("name", ["gan", "cgan", "dcgan", "wgan_gp"])
def test_fast_path_matches_the_classic_path(name: str, tmp_path: Path, prepared_dir: Path) -> None:
    """Same seed, fast on/off: the same first-step losses, then the same training up to the
    rounding of fused vs for-loop Adam (it amplifies last-bit differences where v is tiny)."""

    def run(fast: bool, subset: int) -> Trainer:
        path = write_params(
            tmp_path / f"{fast}-{subset}",
            {
                "data": {"dir": str(prepared_dir)},
                "train": {"subset": subset, "fast": fast, "device": "cpu"},
            },
        )
        trainer = _trainer(path, name, tmp_path / f"{fast}-{subset}" / "run", epochs=1)
        trainer.run()
        return trainer

    n_critic = registry.get(name).n_critic  # the first generator step comes after n_critic steps
    first = {fast: run(fast, 64 * n_critic).history[0] for fast in (True, False)}
    many = {fast: run(fast, 64 * 20) for fast in (True, False)}
    # Adam's first update is ~lr * sign(grad): last-bit differences of conv algorithms
    # (channels-last) can flip near-zero gradients, so G's loss after it gets a looser bound.
    assert first[True]["d_loss"] == pytest.approx(first[False]["d_loss"], rel=1e-5)
    assert first[True]["g_loss"] == pytest.approx(first[False]["g_loss"], rel=1e-4)
    for key in ("d_loss", "g_loss"):
        assert many[True].history[0][key] == pytest.approx(many[False].history[0][key], rel=1e-2)
    # Same trajectory: the two runs differ by far less than training moved the weights.
    g0 = build_nets(registry.get(name), many[True].spec, torch.device("cpu"))["generator"]
    flat = [
        torch.cat([p.detach().flatten() for p in m.parameters()])
        for m in (many[True].sampler, many[False].sampler, g0)
    ]
    apart, moved = (flat[0] - flat[1]).norm().item(), (flat[0] - flat[2]).norm().item()
    # Measured: gan 3e-4, wgan_gp 1e-3, dcgan 0.17 (BN + sign-like early Adam steps amplify
    # the conv rounding of channels-last) of the distance travelled.
    assert apart < 0.25 * moved


@pytest.mark.parametrize(("name", "fast"), [("gan", True), ("gan", False), ("dcgan", True)])
def test_discriminator_sees_real_and_fake_jointly_only_without_batch_norm(
    name: str, fast: bool, tmp_path: Path, prepared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path scores real+fake in one pass of 2B rows only for a batch-independent D
    (the MLP); a batch-norm D (DCGAN) must see each batch alone, or its statistics change."""
    import pipeline.training.loop as loop

    rows: list[int] = []
    original = loop.build_nets

    def spying(*args, **kwargs):  # type: ignore[no-untyped-def]
        nets = original(*args, **kwargs)
        nets["discriminator"].register_forward_hook(
            lambda _m, inputs, _out: rows.append(inputs[0].shape[0])
        )
        return nets

    monkeypatch.setattr(loop, "build_nets", spying)
    path = write_params(
        tmp_path,
        {"data": {"dir": str(prepared_dir)}, "train": {"subset": 64 * 2, "fast": fast}},
    )
    _trainer(path, name, tmp_path / "run").run()
    joint = fast and name == "gan"
    # per step: the D step's pass(es), then the G step's pass over the fake batch alone
    per_step = [128, 64] if joint else [64, 64, 64]
    assert rows == per_step * 2


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_static_step_graphs_train_exactly_like_the_eager_fast_path(
    name: str, tmp_path: Path, prepared_dir: Path
) -> None:
    """train.cuda_graphs runs the step on static buffers after warm-up steps that are rolled
    back (on the CPU without capture). Same seed: bit-identical weights and losses, so the
    warm-up left no trace (parameters, BN buffers, optimiser moments, noise generator)."""

    def run(graphs: bool) -> Trainer:
        root = tmp_path / str(graphs)
        path = write_params(
            root,
            {
                "data": {"dir": str(prepared_dir)},
                "train": {"subset": 64 * 7, "cuda_graphs": graphs, "log_every": 3},
            },
        )
        trainer = _trainer(path, name, root / "run", epochs=2)
        trainer.run()
        return trainer

    eager, graphed = run(False), run(True)
    assert (graphed.step_mode, eager.step_mode) == ("static", "eager")
    for net in eager.nets:
        a, b = eager.nets[net].state_dict(), graphed.nets[net].state_dict()
        for (key, x), (_, y) in zip(a.items(), b.items(), strict=True):
            assert torch.equal(x, y), f"{net}.{key} differs"
    for t in eager.state:
        assert torch.equal(eager.state[t], graphed.state[t]), f"state {t} differs"
    assert set(eager.history[-1]) == set(graphed.history[-1])
    for key in eager.ctx.metrics:
        assert eager.history[-1][key] == graphed.history[-1][key] or (
            math.isnan(eager.history[-1][key]) and math.isnan(graphed.history[-1][key])
        )
    assert all(math.isfinite(graphed.history[-1][f"grad_norm_{o}"]) for o in graphed.optimizers)
    assert torch.equal(eager.noise_gen.get_state(), graphed.noise_gen.get_state())


def test_a_failed_graph_capture_stops_with_one_line_naming_the_flag(
    tiny_params_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A capture that raises (an op CUDA graphs cannot record, say) may leave CUDA state
    that eager steps cannot trust: stop with the way out, before any step ran."""
    refuse_capture(monkeypatch)
    params = load_params(tiny_params_path)
    params = params.with_section("train", cuda_graphs=True)
    out = tiny_params_path.parent / "models" / "gan" / "seed0"
    trainer = Trainer(run_setup(params), run_spec(params, "gan", epochs=2), out, torch.device("cpu"),
                      progress=False)  # fmt: skip
    with pytest.raises(PipelineError) as info:
        trainer.run()
    msg = str(info.value)
    assert "\n" not in msg and "CUDA graph capture failed (operation not permitted" in msg
    assert "train.cuda_graphs: false" in msg
    assert trainer.step == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", VARIANTS)
def test_cuda_graph_replays_train_like_eager_steps(
    name: str, tmp_path: Path, prepared_dir: Path
) -> None:
    """On CUDA the steps are captured and replayed. Same seed: the same noise (the generator
    is registered with the graphs), so the same losses and weights up to rounding (capturable
    Adam computes its bias correction on the device)."""

    def run(graphs: bool) -> Trainer:
        root = tmp_path / str(graphs)
        path = write_params(
            root,
            {
                "data": {"dir": str(prepared_dir)},
                "train": {"subset": 64 * 10, "cuda_graphs": graphs, "device": "cuda"},
            },
        )
        params = load_params(path)
        trainer = Trainer(
            run_setup(params), run_spec(params, name, epochs=2), root / "run", torch.device("cuda"),
            progress=False,
        )  # fmt: skip
        trainer.run()
        return trainer

    eager, graphed = run(False), run(True)
    assert graphed.step_mode == "captured"
    # Every model's own curve columns (vae and ddpm have no d_loss/g_loss), as the CPU twin.
    assert set(eager.history[0]) == set(graphed.history[0])
    for key in eager.ctx.metrics:
        a, b = eager.history[0][key], graphed.history[0][key]
        assert b == pytest.approx(a, rel=1e-3, abs=1e-4) or (math.isnan(a) and math.isnan(b)), key
    assert torch.equal(eager.noise_gen.get_state(), graphed.noise_gen.get_state())
    g0 = build_nets(registry.get(name), eager.spec, torch.device("cuda"))[eager.algorithm.sampler]
    flat = [
        torch.cat([p.detach().flatten() for p in m.parameters()])
        for m in (eager.sampler, graphed.sampler, g0)
    ]
    apart, moved = (flat[0] - flat[1]).norm().item(), (flat[0] - flat[2]).norm().item()
    assert apart < 0.25 * moved  # a different noise stream would give ~1.4x moved


@pytest.mark.parametrize("name", VARIANTS)
def test_fast_path_detaches_activation_slopes_only_under_a_gradient_penalty(
    name: str, tiny_params_path: Path
) -> None:
    from pipeline.core.nets import DetachedSlopeLeakyReLU

    params = load_params(tiny_params_path)
    for fast in (True, False):
        p = params.with_section("train", fast=fast)
        trainer = Trainer(run_setup(p), run_spec(p, name), tiny_params_path.parent / "run",
                          torch.device("cpu"), progress=False)  # fmt: skip
        trainer.restore_or_start()
        penalty = getattr(trainer.algorithm, "penalty", None)
        for net, module in trainer.nets.items():
            swapped = any(isinstance(m, DetachedSlopeLeakyReLU) for m in module.modules())
            assert swapped == (fast and penalty is not None and net == "discriminator"), net


def test_a_code_change_retrains_a_finished_run(
    tiny_params_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `persist: true` in dvc.yaml, DVC re-runs train@V on a code change but keeps
    models/V: the source hash in the run identity makes that a retrain, not a no-op."""
    import pipeline.training.spec as spec_mod

    params = load_params(tiny_params_path)
    first = train_variant(params, "gan", epochs=1, track=False, progress=False)
    before = ckpt.load(first.checkpoint)
    monkeypatch.setattr(spec_mod, "code_hash", lambda variant: "edited-source")
    again = train_variant(params, "gan", epochs=1, track=False, progress=False)
    after = ckpt.load(again.checkpoint)
    assert ckpt.config_of(after)["code"] == "edited-source" != ckpt.config_of(before)["code"]


def test_unfinished_run_from_another_device_type_is_refused(tiny_params_path: Path) -> None:
    params = load_params(tiny_params_path)
    result = train_variant(params, "gan", epochs=2, track=False, progress=False)
    state = ckpt.load(result.checkpoint)
    state.update(complete=False, epoch=1, device="cuda:0")
    ckpt.save(result.checkpoint, {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(ResumeRefusedError, match="cannot resume exactly"):
        train_variant(params, "gan", epochs=2, track=False, progress=False)


def test_sampling_refuses_an_unfinished_checkpoint(tiny_params_path: Path) -> None:

    params = load_params(tiny_params_path)
    result = train_variant(params, "gan", epochs=1, track=False, progress=False)
    state = ckpt.load(result.checkpoint)
    state["complete"] = False
    ckpt.save(result.checkpoint, {k: v for k, v in state.items() if k != "format"})
    result = CliRunner().invoke(app, ["sample", "gan", "--params", str(tiny_params_path)])
    assert result.exit_code == 1 and "unfinished" in result.output


def test_sampling_twice_writes_identical_readable_files(tiny_params_path: Path) -> None:
    """Same seed, same bytes (DVC and md5 checks see no change), and files others can read."""
    import hashlib
    import stat

    params = load_params(tiny_params_path)
    train_variant(params, "gan", epochs=1, track=False, progress=False)
    out = params.path(params.sample.out_dir) / "gan" / "seed0"
    digests = []
    for _ in range(2):
        result = CliRunner().invoke(app, ["sample", "gan", "--params", str(tiny_params_path)])
        assert result.exit_code == 0, result.output
        digests.append({f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in out.iterdir()})
    assert digests[0] == digests[1] and set(digests[0]) == {"samples.pt", "grid.png"}
    umask = os.umask(0)
    os.umask(umask)
    for f in (
        *out.iterdir(),
        params.path(params.train.out_dir) / "gan" / "seed0" / "checkpoint.pt",
    ):
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f


def test_checkpointed_optimiser_state_drops_the_cuda_graph_capturable_flag() -> None:
    """CUDA graphs make the optimisers capturable; a checkpoint must not carry that into an
    eager resume (slower code path, same numbers)."""
    from pipeline.training.optim import portable

    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.RMSprop([p], lr=0.1, capturable=True)
    state = portable(opt.state_dict())
    assert state["param_groups"][0]["capturable"] is False
    assert opt.param_groups[0]["capturable"] is True  # the live optimiser is untouched
    eager = torch.optim.RMSprop([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    eager.load_state_dict(state)
    assert eager.param_groups[0]["capturable"] is False


def test_the_stage_says_its_device_budget_and_time_left(
    tiny_params_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its first line names the device and the budget; after the first epoch, the measured
    speed and the steps and time left."""
    params = load_params(tiny_params_path)
    train_variant(params, "gan", epochs=3, track=False, progress=True)
    lines = [
        ln
        for ln in capsys.readouterr().err.splitlines()
        if ln.startswith("gan: ") and "%|" not in ln
    ]
    steps = 512 // 64
    assert lines[0] == (
        f"gan: training on cpu ({torch.get_num_threads()} CPU threads), 3 epochs x {steps} "
        f"steps = {3 * steps} steps, from scratch; time left follows the first epoch"
    )
    rate, left = re.fullmatch(
        r"gan: ([\d,.]+) steps/s on cpu; (\d+) steps left, about .+", lines[1]
    ).groups()
    assert float(rate.replace(",", "")) > 0 and int(left) == 2 * steps
    assert len(lines) == 2
