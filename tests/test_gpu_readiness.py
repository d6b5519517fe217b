"""GPU readiness (issue #17) on the CPU: the benchmark's reference loop, a failed capture in
the benchmark, the deterministic/TF32/slope flags' plumbing; CUDA-only checks are skipped here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from pipeline.core.nets import DetachedSlopeLeakyReLU
from pipeline.core.variants.base import registry
from pipeline.training.loop import Trainer
from pipeline.training.optim import OPTIMIZERS
from pipeline.training.setup import run_setup
from pipeline.training.spec import run_spec
from tests.conftest import REPO
from tests.hostile import whole_and_resumed
from tests.test_protocol import _assert_same_run, _params

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


def test_a_failed_capture_ends_only_its_models_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared_dir: Path
) -> None:
    """After a failed capture the process's CUDA state is not safe: the model's process (one
    per model) records the error in its row and exits 3 before any further work; the parent
    (dry-run in tests/test_gpu_check.py) goes on with the next model."""
    import shutil

    import yaml

    work = tmp_path / "work"
    work.mkdir()
    cfg = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg["data"]["dir"] = str(prepared_dir)
    (work / "params.yaml").write_text(yaml.safe_dump(cfg))
    (work / "gan.json").write_text(json.dumps({"variant": "gan", "reference_steps_per_s": 10.0}))
    monkeypatch.setenv(train_speed.FAIL_CAPTURE_ENV, "gan")
    args = ["--one", "gan", "--work", str(work), "--device", "cpu", "--steps", "2",
            "--modes", "graphs,fast"]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        train_speed.main(args)
    assert info.value.code == 3
    row = json.loads((work / "gan.json").read_text())
    assert row["reference_steps_per_s"] == 10.0  # what an earlier process measured stays
    assert "CUDA graph capture failed" in row["graphs_error"] and "\n" not in row["graphs_error"]
    assert "fast_steps_per_s" not in row  # nothing ran after the failed capture
    shutil.rmtree(work)


def test_the_verdict_line_per_model() -> None:
    """summary.md's "≥ 25×: yes/no" lines: the best of graphs and fast over the classic loop."""
    from speed_report import verdict_lines, verdict_of

    rows = [
        {"variant": "gan", "reference_steps_per_s": 40.0, "graphs_ratio": 30.0, "fast_ratio": 9.0},
        {"variant": "vae", "reference_steps_per_s": 80.0, "fast_ratio": 12.5,
         "graphs_error": "x", "errors": ["classic,graphs,fast: exit 1"]},
        {"variant": "bgan", "reference_steps_per_s": None, "fast_ratio": None},
    ]  # fmt: skip
    doc = {"training": [verdict_of(r) for r in rows], "not_reached": ["ddpm: classic,graphs,fast"]}
    assert verdict_lines(doc) == [
        "- gan: ≥ 25×: yes (fast + CUDA graphs, 30.0× the classic loop)",
        "- vae: ≥ 25×: no (fast, 12.5× the classic loop)",
        "  - classic,graphs,fast: exit 1",
        "- bgan: ≥ 25×: n/a (no classic loop)",
        "- not reached: ddpm: classic,graphs,fast",
    ]


@pytest.fixture(scope="module")
def classic_loader(tmp_path_factory: pytest.TempPathFactory, mnist_mirror: Path):  # type: ignore[no-untyped-def]
    return train_speed.classic_loader(tmp_path_factory.mktemp("tv"), mnist_mirror)


def test_every_model_has_a_classic_reference_loop() -> None:
    """The six models outside the plain GAN loop have theirs in benchmarks/classic_loops.py;
    every other one is a plain Adversarial whose D returns one tensor (the GAN loop)."""
    from pipeline.training.loop import build_nets

    params = train_speed.load_params(REPO / "params.yaml")
    cpu = torch.device("cpu")
    assert set(train_speed.STEPS) == {"acgan", "infogan", "began", "ebgan", "vae", "ddpm"}
    for name in set(registry.names()) - set(train_speed.STEPS):
        variant, spec = registry.get(name), train_speed.run_spec(params, name)
        assert type(variant.algorithm) is train_speed.Adversarial, name
        step = train_speed.adversarial_step(build_nets(variant, spec, cpu), variant, spec.hyper,
                                            spec.z_dim, cpu, lambda m: torch.optim.Adam(m.parameters()))  # fmt: skip
        assert step is not None, name


@pytest.mark.parametrize("name", [*train_speed.STEPS, "wgan_gp"])
def test_the_classic_loops_train(name: str, classic_loader, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each classic loop runs its steps on the DataLoader's batches (timed: steps/s > 0)."""
    from tests.conftest import write_params

    path = write_params(tmp_path)  # the test-size nets (ddpm's width 8)
    rate = train_speed.classic_steps_per_s(name, classic_loader, torch.device("cpu"), 2, 1, path)
    assert rate is not None and rate > 0


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
        trainer = Trainer(run_setup(params), run_spec(params, name, epochs=1), tmp_path / str(deterministic)
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
        trainer = Trainer(run_setup(params), run_spec(params, "wgan_gp"), tmp_path / "run",
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
    spec = run_spec(params, name, epochs=3)
    _assert_same_run(*whole_and_resumed(params, spec, tmp_path, torch.device("cuda")))


def test_cublas_workspace_is_set_at_process_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ATen reads CUBLAS_WORKSPACE_CONFIG once per process: the tests' process has it from
    conftest (before torch), and `pipeline train` with train.deterministic sets it before
    anything trains; an explicit setting wins."""
    from typer.testing import CliRunner

    import pipeline.stages.train
    from pipeline.cli import app
    from pipeline.infra import devices
    from tests.conftest import write_params

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == devices.CUBLAS_WORKSPACE
    seen: list[str | None] = []

    def spy(*_args: object, **_kwargs: object) -> None:
        seen.append(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        raise SystemExit(0)

    monkeypatch.setattr(pipeline.stages.train, "train_variant", spy)
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
    import pipeline.stages.classifier as clf
    from pipeline.infra.devices import numerics

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
