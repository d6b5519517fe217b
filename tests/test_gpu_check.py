"""scripts/gpu_check.sh, the GPU machine's one command, dry-run on the CPU with tiny knobs so
that it cannot rot: every part runs and leaves its figures in $OUT, nothing in the checkout.

Real here: the import probe, the collection of the exact CUDA test selection, the benchmark
(one model, in its own process), the evaluation throughput, the study estimate. The probe's
and the study's pipeline commands are GPU jobs: their glue (stage timing into stages.tsv,
outputs copied out, failures and limits reported) runs against tests/gpu_check_shim.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

TINY_PROFILE = {
    "train": {"device": "cpu", "cuda_graphs": True, "subset": 256, "log_every": 4},
    "sample": {"device": "cpu", "n": 200, "batch_size": 100},
    "classifier": {"device": "cpu", "epochs": 1, "subset": 1000},
    "evaluate": {"device": "cpu", "n_real": 500, "floor_n": 500, "kid_subset_size": 100},
}


def test_the_shim_writes_where_the_pipeline_does(tmp_path: Path) -> None:
    """The shim's paths are pipeline.infra.layout's for the same params file."""
    from pipeline.infra import layout
    from pipeline.infra.params import load_params
    from tests.conftest import write_params
    from tests.gpu_check_shim import Paths

    path = write_params(tmp_path, {"evaluate": {"out_dir": "elsewhere"}})
    params, at = load_params(path), Paths(path)
    assert at.run("gan") / "summary.json" == layout.summary_path(params, "gan")
    assert at.curves("gan") == layout.curves_path(params, "gan")
    assert at.sampling("gan") == layout.sampling_path(params, "gan")
    assert at.scores("gan") == layout.metrics_path(params, "gan")
    assert at.classifier / "metrics.json" == layout.classifier_metrics(params)
    assert at.reports == layout.report_dir(params)
    assert at.tuning / "gan" == layout.tuning_results(params, "gan")


def test_the_bundle_carries_every_dependency_the_machine_lacks() -> None:
    """Each pyproject dependency is preinstalled there, never carried (torch), or in the
    bundle's list (prdc was missing: every evaluate died after its torch-fidelity pass)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import device_deps

    wanted = {r.split("==")[0] for r in device_deps.requirements()}
    have = device_deps.preinstalled() | device_deps.NEVER
    assert "prdc" in wanted and "dvc" in wanted and "torch" not in wanted
    assert all(d in have or d in wanted for d in device_deps.dependencies())
    assert {"pipeline.stages.evaluate.scoring", "prdc", "scipy", "train_speed"} <= set(
        device_deps.modules()
    )


@pytest.mark.slow  # each part imports torch in its own processes: ~2 min on 2 loaded cores
def test_the_gpu_check_dry_runs_on_the_cpu(tmp_path: Path, mnist_mirror: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump(TINY_PROFILE))
    before = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    env = {
        **os.environ, "OUT": str(out), "CHECK_WORK": str(work), "DEVICE": "cpu",
        "CHECK_VARIANTS": "gan", "CHECK_PROFILE": str(profile), "TESTS_COLLECT_ONLY": "1",
        "BENCH_STEPS": "2", "BENCH_CLASSIC_STEPS": "2", "BENCH_SLOPES": "gan",
        "EVAL_IMAGES": "200", "EVAL_INCEPTION_IMAGES": "2", "TUNE_TRIALS": "2",
        "CHECK_PIPELINE": f"{sys.executable} {REPO / 'tests' / 'gpu_check_shim.py'}",
        "GPU_SHIM_FAIL": "train:wgan_gp",
        # the CPU's limits: its imports take seconds per process on 2 loaded cores
        "BENCH_LIMIT": "240", "TEST_LIMIT": "150", "CHECK_BUDGET": "900",
        "PIPELINE_MNIST_MIRROR": str(mnist_mirror),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (out / "summary.md").read_text()
    # At most 8 files come back from the machine.
    assert {p.name for p in out.iterdir()} == {
        "summary.md", "stages.tsv", "train_speed_cpu.json", "train_speed_cpu.md",
        "eval_speed_cpu.json", "probe.tgz", "logs.tgz"}  # fmt: skip
    for part in ("import probe", "bench", "tests", "eval", "tune"):
        assert re.search(rf"^- {part}: wall [\d.]+ s, exit 0$", summary, re.M), part
    assert re.search(r"import probe: (\d+) of \1 modules import", summary)
    # The exact CUDA selection, collected: more than the three tests rehearsed before.
    n = int(re.search(r"selection `tests -k cuda`: (\d+)/\d+ tests collected", summary)[1])
    assert n > 3
    # The benchmark: the verdict and the slope pass of its one model, its verdict line.
    (gan,) = json.loads((out / "train_speed_cpu.json").read_text())["training"]
    for mode in ("graphs", "fast", "eager"):
        assert gan[f"{mode}_steps_per_s"] > 0 and gan[f"{mode}_ratio"] > 0
    assert re.search(r"^  - gan: ≥ 25×: (yes|no) \(", summary, re.M)
    # The probe: every stage timed; a failed one reported, the other models still run.
    rows = (out / "stages.tsv").read_text().splitlines()
    probe = [r.split("\t") for r in rows if r.startswith("probe\t") and "\tall\t" not in r]
    assert [(s, v) for _, s, v, _, _ in probe] == [
        ("prepare", "-"), ("classifier", "-"),
        *[(s, v) for v in ("gan", "ddpm", "dcgan") for s in ("train", "sample", "evaluate")],
        ("train", "wgan_gp"), ("train", "vae"), ("sample", "vae"), ("evaluate", "vae"),
        ("floor", "-"), ("report", "-")]  # fmt: skip
    assert [e for *_, e in probe].count(
        "1"
    ) == 1 and "  - failed: train wgan_gp (exit 1)" in summary
    with tarfile.open(out / "probe.tgz") as tar:
        names = {Path(m.name).name for m in tar.getmembers()}
        estimate = json.load(tar.extractfile("probe_out/estimate.json"))  # type: ignore[arg-type]
    assert {"curves_gan.csv", "summary_vae.json", "metrics_ddpm.json", "comparison.md"} <= names
    assert "curves_wgan_gp.csv" not in names
    assert estimate["models"] == 20 and estimate["seeds"] == 3 and estimate["hours"] > 0
    assert set(estimate["source"]["probe"]) == {"gan", "ddpm", "dcgan", "vae"}
    assert re.search(r"^- default study \(20 models × 3 seeds .*≈ [\d.]+ h", summary, re.M)
    assert "- grid: skipped (no `pipeline grid` in this checkout)" in summary
    assert "  tune: 2 trial(s) in " in summary
    assert "## Not reached\n\n- nothing\n" in summary
    with tarfile.open(out / "logs.tgz") as tar:
        assert {"logs/bench.log", "logs/tests.log", "logs/probe.log"} <= set(tar.getnames())
    after = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert after == before  # nothing written into the checkout


def test_a_part_past_the_budget_is_listed_as_not_reached(tmp_path: Path) -> None:
    """With the budget spent, no part starts: each is listed under "Not reached"."""
    out = tmp_path / "out"
    env = {
        **os.environ, "OUT": str(out), "CHECK_WORK": str(tmp_path / "work"), "DEVICE": "cpu",
        "CHECK_BUDGET": "0", "CHECK_VARIANTS": "gan",
        "CHECK_PIPELINE": f"{sys.executable} {REPO / 'tests' / 'gpu_check_shim.py'}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (out / "summary.md").read_text()
    tail = summary.split("## Not reached\n\n")[1]
    for part in ("bench", "tests", "probe", "eval", "tune"):
        assert f"- {part}: not reached" in summary and f"- {part}\n" in tail


def test_the_study_estimate_adds_rates_and_overheads(tmp_path: Path) -> None:
    """A probed model: its overhead + epochs x its s/epoch; a benchmarked one: steps per epoch
    over its steps/s; the rest: the probed median; times the seeds; fixed stages once (the
    classifier scaled to the study's epochs)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import study_estimate

    from pipeline.infra import layout
    from pipeline.infra.params import load_params
    from tests.conftest import write_params

    probe = load_params(write_params(tmp_path / "probe", {"classifier": {"epochs": 1},
                                                          "train": {"seeds": [0]}}))  # fmt: skip
    study = load_params(
        write_params(tmp_path / "study", {"evaluate": {"extractors": ["classifier"]}})
    )
    summary = layout.summary_path(probe, "gan")
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"epochs": 1, "train_time_s": 10.0}))
    rows = [("prepare", "-", 2), ("classifier", "-", 8), ("train", "gan", 15),
            ("sample", "gan", 4), ("evaluate", "gan", 6), ("floor", "-", 3), ("report", "-", 2),
            ("train", "vae", 1)]  # fmt: skip
    stages = [{"part": "probe", "stage": s, "variant": v, "seconds": float(w),
               "exit": int(s == "train" and v == "vae")} for s, v, w in rows]  # fmt: skip
    bench = {"training": [{"variant": "wgan", "fast_steps_per_s": 93.7}]}
    est = study_estimate.estimate(stages, probe, study, bench)
    by = {r["variant"]: r for r in est["rows"]}
    epochs = {n: study_estimate._epochs(study, n) for n in ("gan", "wgan", "vae")}
    assert by["gan"]["train_s"] == 5 + epochs["gan"] * 10.0 and by["gan"]["source"] == "probe"
    assert by["wgan"]["s_per_epoch"] == 10.0 and by["wgan"]["source"] == "benchmark"
    assert by["vae"]["source"] == "guessed" and by["vae"]["train_s"] == 5 + epochs["vae"] * 10.0
    assert (by["vae"]["sample_s"], by["vae"]["evaluate_s"]) == (4, 6)
    assert est["fixed_s"] == 2 + 8 * study.classifier.epochs + 3 + 2
    total = 3 * sum(r["train_s"] + r["sample_s"] + r["evaluate_s"] for r in est["rows"])
    assert est["hours"] == round((total + est["fixed_s"]) / 3600, 2)
    assert study_estimate.lines(est)[0].startswith("- default study (20 models × 3 seeds")
