"""Shared fixtures: the local MNIST mirror, prepared data (once per session), params files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import MIRROR_ENV, load_params, merge_overrides

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
    if variants is not None:
        base["variants"] = {k: v for k, v in base["variants"].items() if k in variants}
    data = deep_update(base, overrides or {})
    root.mkdir(parents=True, exist_ok=True)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory, mnist_mirror: Path) -> Path:
    """MNIST prepared once per session; tests point data.dir here (read-only use)."""
    from pipeline.data import prepare

    root = tmp_path_factory.mktemp("prepared")
    os.environ[MIRROR_ENV] = str(mnist_mirror)
    prepare(load_params(write_params(root)))
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
}


@pytest.fixture
def tiny_params_path(tmp_path: Path, prepared_dir: Path) -> Path:
    """A params file in tmp_path: shared prepared data, tiny CPU budgets, outputs in tmp_path."""
    return write_params(tmp_path, deep_update(TINY, {"data": {"dir": str(prepared_dir)}}))
