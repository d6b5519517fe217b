"""GPU readiness (issue #17) on the CPU: the benchmark's reference loop, a failed capture in
the benchmark, the deterministic/TF32/slope flags' plumbing; CUDA-only checks are skipped here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from pipeline.nets import DetachedSlopeLeakyReLU
from pipeline.training import Trainer, run_spec
from pipeline.training.optim import OPTIMIZERS
from pipeline.variants import registry
from tests.conftest import REPO
from tests.test_protocol import StopAt, _assert_same_run, _params

sys.path.insert(0, str(REPO / "benchmarks"))
import train_speed  # noqa: E402


@pytest.mark.parametrize("name", registry.names())
def test_the_benchmarks_reference_loop_uses_the_optimiser_defaults(name: str) -> None:
    """The classic loop must not be slowed by flags people do not write (foreach=False would
    inflate every CUDA ratio): its optimiser's settings are the library's defaults."""
    hyper = registry.get(name).resolve(None)
    net = torch.nn.Linear(3, 2)
    opt = train_speed.classic_optimizer(hyper, net)
    plain = {"lr": hyper.lr} | ({"betas": tuple(hyper.betas)} if hyper.optimizer == "adam" else {})
    assert type(opt) is OPTIMIZERS[hyper.optimizer]
    assert opt.defaults == OPTIMIZERS[hyper.optimizer](net.parameters(), **plain).defaults
    assert opt.defaults.get("foreach") is None and not opt.defaults.get("fused")


def test_a_failed_capture_stops_the_benchmark_with_its_figures_so_far(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared_dir: Path
) -> None:
    """After a failed capture the process's CUDA state is not safe: the benchmark stops (no
    further CUDA work), keeps the figures measured before and says how to go on."""
    import pipeline.training.loop as loop

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(loop, "StepGraphs", refuse)
    out = tmp_path / "bench"
    args = ["--device", "cpu", "--steps", "2", "--warmup", "1", "--repeats", "1",
            "--variants", "gan,wgan", "--modes", "fast,graphs", "--eval-images", "0",
            "--out", str(out)]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        train_speed.main(args)
    msg = str(info.value.code)
    assert "\n" not in msg and "CUDA graph capture failed" in msg
    assert msg.endswith("rerun without graphs: --modes fast")
    doc = json.loads((out / "train_speed_cpu.json").read_text())
    gan, wgan = doc["training"]
    assert gan["fast_steps_per_s"] > 0 and wgan["fast_steps_per_s"] > 0
    assert "CUDA graph capture failed" in gan["graphs_error"]
    assert "graphs_error" not in wgan and "graphs_steps_per_s" not in wgan  # never tried
    assert "failed: gan: CUDA graph capture failed" in (out / "train_speed_cpu.md").read_text()


class Flags:
    """Records the process-wide numerics flags at the end of every epoch."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, ...]] = []

    def on_start(self, *args: object) -> None: ...
    def on_end(self, *args: object) -> None: ...
    def on_failure(self, *args: object) -> None: ...
    def on_already_complete(self, *args: object) -> None: ...

    def on_epoch_end(self, event: object) -> None:
        self.seen.append(_flags())


def _flags() -> tuple[bool, ...]:
    cudnn = torch.backends.cudnn
    return (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark,
            cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)  # fmt: skip


@pytest.mark.parametrize("name", ["gan", "wgan_gp"])
def test_train_deterministic_and_tf32_hold_during_the_run_only(
    name: str, tmp_path: Path, prepared_dir: Path
) -> None:
    """train.deterministic: deterministic algorithms (every op of the step has one: none
    raises), cudnn.deterministic, no cudnn.benchmark; train.tf32 off: float32 convs. The
    process's flags are put back afterwards."""
    before = _flags()
    for deterministic in (True, False):
        params = _params(tmp_path / str(deterministic), prepared_dir, deterministic=deterministic)
        flags = Flags()
        trainer = Trainer(params, run_spec(params, name, epochs=1), tmp_path / str(deterministic)
                          / "run", torch.device("cpu"), [flags], progress=False)  # fmt: skip
        trainer.run()
        want = (True, True, False) if deterministic else before[:3]
        assert flags.seen == [(*want, False, False)]
        assert _flags() == before


def test_detach_slopes_off_keeps_the_critics_plain_leaky_relus(
    tmp_path: Path, prepared_dir: Path
) -> None:
    """train.detach_slopes is the per-device choice the GPU check measures (mode plain_slopes)."""
    for detach in (True, False):
        params = _params(tmp_path, prepared_dir, detach_slopes=detach)
        trainer = Trainer(params, run_spec(params, "wgan_gp"), tmp_path / "run",
                          torch.device("cpu"), progress=False)  # fmt: skip
        trainer.restore_or_start()
        d = trainer.nets["discriminator"]
        assert any(isinstance(m, DetachedSlopeLeakyReLU) for m in d.modules()) == detach


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["dcgan", "wgan_gp", "gan"])
def test_cuda_deterministic_runs_resume_to_the_same_bits(
    name: str, tmp_path: Path, prepared_dir: Path
) -> None:
    """On CUDA, exact resumption needs train.deterministic (cudnn.benchmark and
    nondeterministic conv kernels otherwise differ run to run): stopped after epoch 2 and
    resumed from epoch 1's checkpoint, the run ends with the uninterrupted run's bits."""
    params = _params(tmp_path, prepared_dir, device="cuda", deterministic=True)
    spec, dev = run_spec(params, name, epochs=3), torch.device("cuda")
    whole = Trainer(params, spec, tmp_path / "whole", dev, progress=False)
    whole.run()
    cut = Trainer(params, spec, tmp_path / "cut", dev, [StopAt(2)], progress=False)
    with pytest.raises(KeyboardInterrupt):
        cut.run()
    resumed = Trainer(params, spec, tmp_path / "cut", dev, progress=False)
    resumed.run()
    _assert_same_run(whole, resumed)


def test_cublas_workspace_is_set_at_process_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ATen reads CUBLAS_WORKSPACE_CONFIG once per process: the tests' process has it from
    conftest (before torch), and `pipeline train` with train.deterministic sets it before
    anything trains; an explicit setting wins."""
    from typer.testing import CliRunner

    import pipeline.training
    from pipeline import devices
    from pipeline.cli import app
    from tests.conftest import write_params

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == devices.CUBLAS_WORKSPACE
    seen: list[str | None] = []

    def spy(*_args: object, **_kwargs: object) -> None:
        seen.append(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        raise SystemExit(0)

    monkeypatch.setattr(pipeline.training, "train_variant", spy)
    for deterministic in (False, True):
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
        path = write_params(tmp_path / str(deterministic), {"train": {
            "deterministic": deterministic}, "evaluate": {"extractors": ["classifier"]}})  # fmt: skip
        CliRunner().invoke(app, ["train", "gan", "--params", str(path)])
    assert seen == [None, devices.CUBLAS_WORKSPACE]
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    devices.deterministic_cublas()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_the_classifier_trains_at_the_evaluators_precision(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prepared_dir: Path
) -> None:
    """One TF32 rule (issue 27): the evaluator CNN trains and is tested at evaluate.tf32, the
    precision its features are extracted at (torch's default would be TF32 convs on CUDA);
    metrics.json records the precision that applied."""
    import pipeline.classifier as clf
    from pipeline.devices import numerics

    flags: list[bool] = []

    def spy(tf32: bool, deterministic: bool = False):  # noqa: ANN202
        flags.append(tf32)
        return numerics(tf32, deterministic)

    monkeypatch.setattr(clf, "numerics", spy)
    params = _params(tmp_path, prepared_dir)
    params = params.with_section("classifier", epochs=1, subset=256, device="cpu")
    params = params.with_section("evaluate", tf32=True)
    clf.train_classifier(params)
    assert flags == [True, True]  # training, then the test-set accuracy
    doc = json.loads((params.path(params.classifier.out_dir) / "metrics.json").read_text())
    assert doc["precision"] == "cpu-fp32"
