"""Shared fixtures: the local MNIST mirror, prepared data (once per session), params files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Under pytest-xdist (`make test` runs `pytest -n 2`) each worker keeps to its share of the
# cores: torch's default of one thread per core in every worker oversubscribes the machine,
# and small CPU models then run several times slower. Set before torch is imported; the CLI
# subprocesses the tests start inherit it. An explicit OMP_NUM_THREADS wins.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))

# ATen reads CUBLAS_WORKSPACE_CONFIG once per process, at its first cuBLAS call: set here, before
# torch is imported, so the deterministic CUDA tests hold after any other CUDA test in the
# same process (pipeline.infra.devices.CUBLAS_WORKSPACE; an explicit setting wins).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import yaml  # noqa: E402

from pipeline.infra.config import MIRROR_ENV  # noqa: E402
from pipeline.infra.params import load_params, merge_overrides  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_dvc(cwd: Path, *args: str) -> str:
    """``dvc ARGS`` in ``cwd`` with this interpreter's tools first on PATH (stages call
    ``pipeline``); asserts success and returns stdout + stderr."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    out = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, f"dvc {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def _mirror() -> Path:
    env = os.environ.get(MIRROR_ENV)
    return Path(env) if env else REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_mirror() -> Path:
    path = _mirror()
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"MNIST mirror not found at {path}; set {MIRROR_ENV}")
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, mnist_mirror: Path) -> None:
    # Every test sees the local mirror and never a user's tracking server.
    monkeypatch.setenv(MIRROR_ENV, str(mnist_mirror))
    monkeypatch.delenv("PIPELINE_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


deep_update = merge_overrides

# Options that keep a model's full-budget nets to test size on the CPU (its params.yaml block
# holds the published, GPU-sized defaults); every params file the tests write starts here.
CPU_OPTIONS: dict[str, dict[str, Any]] = {"ddpm": {"width": 8, "sample_steps": 3}}


def write_params(
    root: Path, overrides: dict[str, Any] | None = None, variants: list[str] | None = None
) -> Path:
    """The repo's params.yaml with ``overrides`` merged in, written to ``root/params.yaml``;
    with ``variants``, only those variants' blocks are kept (a fixed set for golden files)."""
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    base = deep_update(base, {"variants": {k: {"options": v} for k, v in CPU_OPTIONS.items()
                                           if k in base["variants"]}})  # fmt: skip
    # A checkpoint after every epoch, whatever the wall clock: the kill and resume tests stop
    # at named epochs. The tests of train.checkpoint_every_s set it with a fake clock.
    base["train"]["checkpoint_every_s"] = 0
    if variants is not None:
        base["variants"] = {k: v for k, v in base["variants"].items() if k in variants}
    data = deep_update(base, overrides or {})
    root.mkdir(parents=True, exist_ok=True)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def once_per_run(
    tmp_path_factory: pytest.TempPathFactory, key: str, build: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any]]:
    """``build(folder)`` once per test run, shared by every pytest-xdist worker: the first
    worker to get here builds under a file lock in the run's common temp folder, the others
    wait and reuse the folder. Returns the folder and what ``build`` returned (JSON)."""
    import fcntl
    import json

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = shared / f"shared-{key}", shared / f"shared-{key}.json"
    with open(shared / f"shared-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a worker killed mid-build
            folder.mkdir()
            done.write_text(json.dumps(build(folder)))
    return folder, json.loads(done.read_text())


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache (returned: its TORCH_HOME) and Inception/VGG16 download URLs
    that refuse at once, online or not."""
    from pipeline.infra import weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    dead = "http://127.0.0.1:9/"
    monkeypatch.setattr(
        weights, "URL_INCEPTION_V3", dead + "weights-inception-2015-12-05-6726825d.pth"
    )
    monkeypatch.setattr(weights, "VGG16_URL", dead + "vgg16-397923af.pth")
    return tmp_path / "torch-home"


CACHE_ENV = "PIPELINE_TEST_CACHE"


def content_key(*parts: Any, modules: tuple[str, ...] = ()) -> str:
    """sha256 of ``parts`` (JSON) and of the code of ``modules`` as Python parses it
    (pipeline.training.spec.source_digest: comments and docstrings do not count), the torch
    version included: what a cached build depends on."""
    import hashlib
    import importlib.util
    import json

    import torch

    from pipeline.training.spec import source_digest

    h = hashlib.sha256(json.dumps([parts, torch.__version__], sort_keys=True, default=str).encode())
    for name in modules:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        h.update(source_digest(Path(spec.origin).read_text()).encode())
    return h.hexdigest()[:20]


def cached_across_runs(
    key: str, folder: Path, build: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """``build(folder)``, or a copy of an earlier run's result with the same ``key`` from
    ``$PIPELINE_TEST_CACHE`` (default ~/.cache/pipeline-tests; empty: no cache). The key holds
    everything the result depends on (see content_key), so a change to any of it builds
    again. Entries are written whole (a temp folder renamed into place)."""
    import json

    setting = os.environ.get(CACHE_ENV, str(Path.home() / ".cache" / "pipeline-tests"))
    if not setting:
        return build(folder)
    entry = Path(setting) / key
    if (entry / "result.json").is_file():
        shutil.copytree(entry / "folder", folder, dirs_exist_ok=True)
        return json.loads((entry / "result.json").read_text())
    result = build(folder)
    tmp = entry.with_name(f".{key}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp / "folder")
    (tmp / "result.json").write_text(json.dumps(result))
    try:
        tmp.rename(entry)
    except OSError:  # another run stored it first
        shutil.rmtree(tmp, ignore_errors=True)
    return result


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory, mnist_mirror: Path) -> Path:
    """MNIST prepared once per test run; tests point data.dir here (read-only use)."""
    from pipeline.infra.data import prepare

    os.environ[MIRROR_ENV] = str(mnist_mirror)

    def build(root: Path) -> dict[str, Any]:
        prepare(load_params(write_params(root)))
        return {}

    root, _ = once_per_run(tmp_path_factory, "prepared", build)
    return root / "data"


TINY: dict[str, Any] = {
    "train": {"subset": 512, "log_every": 4, "device": "cpu"},
    "sample": {"n": 200, "batch_size": 100, "device": "cpu"},
    "classifier": {"device": "cpu"},
    "evaluate": {
        "extractors": ["classifier"],
        "device": "cpu",
        "n_real": 500,
        "floor_n": 500,
        "kid_subset_size": 100,
        "batch_size": 250,
    },
    "tracking": {"log_model": True},
    "tune": {"holdout": 500},  # the tuning reference: as small as the test reference above
}


@pytest.fixture
def tiny_params_path(tmp_path: Path, prepared_dir: Path) -> Path:
    """A params file in tmp_path: shared prepared data, tiny CPU budgets, outputs in tmp_path."""
    return write_params(tmp_path, deep_update(TINY, {"data": {"dir": str(prepared_dir)}}))


# The original five first, so that each way of training is represented by a familiar model.
_PREFERRED = ("gan", "cgan", "dcgan", "wgan", "wgan_gp")
ALL_VARIANTS_ENV = "PIPELINE_TEST_ALL_VARIANTS"


def training_signature(name: str) -> tuple[Any, ...]:
    """What decides how a variant trains, apart from its loss formulas: the algorithm class,
    its nets' builders, whether it has a penalty (all penalties share one double-backward
    path), its hooks and init, conditioning, optimiser, n_critic > 1, and whether G rescores
    D(real). Objectives differ only in pure functions of the scores, which
    tests/test_objectives.py checks against hand-worked values for every one of them."""
    import dataclasses

    from pipeline.core.variants.base import registry

    v = registry.get(name)
    alg = v.algorithm
    parts: list[Any] = [type(alg).__qualname__]
    if dataclasses.is_dataclass(alg):
        for f in dataclasses.fields(alg):
            value = getattr(alg, f.name)
            if f.name == "objective":
                value = ("g_needs_real", getattr(value, "g_needs_real", None))
            elif f.name == "penalty":
                value = value is not None
            elif callable(value):
                value = getattr(value, "__qualname__", type(value).__qualname__)
            parts.append((f.name, value))
    parts += [v.conditional, v.optimizer, v.n_critic > 1]
    return tuple(parts)


def representative_variants() -> list[str]:
    """One registered variant per training signature (see training_signature): the set the
    expensive registry-wide tests (two-epoch MLflow run, interrupted resume, static graph
    step) run on, so the suite's time grows with the ways of training, not the model count.
    Cheap registry-wide tests (one step moves every net, shapes) still run on every variant;
    ``PIPELINE_TEST_ALL_VARIANTS=1`` runs the expensive ones on every variant too."""
    from pipeline.core.variants.base import registry

    names = registry.names()
    if os.environ.get(ALL_VARIANTS_ENV):
        return names
    ordered = [n for n in _PREFERRED if n in names] + [n for n in names if n not in _PREFERRED]
    chosen: dict[tuple[Any, ...], str] = {}
    for name in ordered:
        chosen.setdefault(training_signature(name), name)
    return sorted(chosen.values())


# The files that take minutes (measured in the suite, 2026-12-07: test_dvc ~3.5 min, the
# others 0.5-1.7 min on the idle 2-core VM). `make test` runs `--dist loadfile
# --no-loadscope-reorder`, so xdist hands out files in this collection order: the long ones
# start first, on both workers, and no long file starts near the end to finish alone
# (xdist's default reorder, by test count, put test_dvc's few tests late). test_evaluate goes
# second, so that the other worker builds the session classifier at once while test_dvc
# (which trains its own) runs: test_classifier, test_quality and the report tests then find
# it built instead of waiting on its lock.
LONG_FILES = (
    "test_dvc.py", "test_evaluate.py", "test_train.py", "test_tune_jobs.py", "test_crash.py",
    "test_tune.py", "test_classifier.py", "test_tracking_store.py", "test_gpu_check.py",
    "test_protocol.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept
