"""scripts/gpu_check.sh, the GPU machine's one command, dry-run on the CPU with tiny knobs so
that it cannot rot: every part runs and leaves its figures in $OUT, nothing in the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

TINY_PROFILE = {
    "train": {"device": "cpu", "cuda_graphs": True, "subset": 256, "log_every": 4},
    "sample": {"device": "cpu", "n": 200, "batch_size": 100},
    "classifier": {"device": "cpu", "epochs": 1, "subset": 1000},
    "evaluate": {"device": "cpu", "n_real": 500, "floor_n": 500, "kid_subset_size": 100},
    "tune": {"sample_n": 200},
}


@pytest.mark.slow  # one process per stage, each importing torch: 1-4 min on 2 loaded cores
def test_the_gpu_check_dry_runs_on_the_cpu(tmp_path: Path, mnist_mirror: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump(TINY_PROFILE))
    before = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    env = {
        **os.environ, "OUT": str(out), "CHECK_WORK": str(work), "DEVICE": "cpu",
        "CHECK_VARIANTS": "gan,wgan_gp", "CHECK_PROFILE": str(profile),
        "CHECK_TESTS": "tests/test_gpu_readiness.py -k cuda", "BENCH_STEPS": "2",
        "COMPARE_EPOCHS": "1", "COMPARE_VARIANTS": "gan",
        "TEST_LIMIT": "300", "BENCH_LIMIT": "300", "COMPARE_LIMIT": "400", "TUNE_LIMIT": "300", "TUNE_TRIALS": "2", "TUNE_EPOCHS": "1",
        "PIPELINE_MNIST_MIRROR": str(mnist_mirror),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (out / "summary.md").read_text()
    for part in ("tests", "bench", "comparison, 1 epochs each", "tune"):
        assert f"- {part}: wall " in summary and f"- {part}:" in summary
    assert summary.count("exit 0") == 4, summary
    assert "3 skipped" in summary  # the CUDA tests were collected (and skipped here)
    bench = json.loads((out / "train_speed_cpu.json").read_text())
    assert [r["variant"] for r in bench["training"]] == ["gan", "wgan_gp"]
    gan, wgan_gp = bench["training"]
    for mode in ("eager", "fast", "graphs"):
        assert gan[f"{mode}_steps_per_s"] > 0 and gan[f"{mode}_ratio"] > 0
    assert wgan_gp["plain_slopes_steps_per_s"] > 0 and "plain_slopes_steps_per_s" not in gan
    assert {"gan.json", "comparison.md"} <= {p.name for p in out.iterdir()}
    assert "| gan |" in (out / "comparison.md").read_text()
    assert "2 trial(s) in " in summary and "trials/hour" in summary
    assert json.loads((out / "tuning_best.json").read_text())["trials"]["COMPLETE"] >= 1
    after = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert after == before  # nothing written into the checkout
