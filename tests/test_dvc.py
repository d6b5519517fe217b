"""The comparison end to end on a tiny budget, in a copy of the working tree: one chain as
`dvc repro` alone runs it (each stage its own command), the other three at once through
`pipeline grid`, then `dvc repro` for the rest (the README's `make repro`); what DVC would
re-run after an edit; what a failed chain, a killed grid client and a killed Dask worker
leave behind. Real DVC, Dask, MLflow on SQLite and MNIST.

Over 300 lines: every test here shares one project (gan and wgan x seeds 0 and 1, the smoke
profile's two scored epochs), built once, and pytest shares a fixture only within a module.
The tests run in file order; each leaves the project as up to date as it found it, except
the grid's failure tests at the end, which make chains stale on purpose.
"""

from __future__ import annotations

import csv
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
from tests.conftest import REPO, run_dvc
from tests.project_helpers import (
    alive,
    bump_epochs,
    check_complete_run,
    children,
    copy_tree,
    current,
    grid,
    no_leftovers,
    project_env,
    stale,
    train_runs,
)


def _ran(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


def _changed(status: str) -> set[str]:
    """The stages `dvc status` lists (its unindented ``name:`` lines)."""
    return {line[:-1] for line in status.splitlines() if line.endswith(":") and line[:1].strip()}


GAN_CHAIN = {f"{stage}@gan-{s}" for stage in ("train", "sample", "evaluate") for s in (0, 1)} | {
    "noise",  # the best run may be gan's
    "toy",  # the toy stage runs every variant of `variants:` too (its options, its lr)
    "report",
}
N_SAMPLES = 200  # generated and real images per scoring
VARIANTS, SEEDS = ("gan", "wgan"), (0, 1)
CHAINS = {f"{v}-{s}" for v in VARIANTS for s in SEEDS}
BY_DVC = "gan-0"  # the chain `dvc repro` runs stage by stage; the grid runs the other three
GRID_WORKERS = 2  # two chains at once on the one SQLite store, the third after them
# What DVC finds stale once chains re-ran (or a variant's params changed) after a full build:
# the stages that read every run (noise, report) and the toy stage (it reads `variants`).
AFTER_CHAINS = {"noise", "toy", "report"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mnist_mirror: Path) -> Path:
    root = tmp_path_factory.mktemp("dvcproj")
    copy_tree(root)
    params = merge_overrides(
        yaml.safe_load((REPO / "params.yaml").read_text()),
        yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text()),
    )
    params["variants"] = {k: params["variants"][k] for k in ("gan", "wgan")}
    assert params["train"]["seeds"] == [0, 1]  # the smoke profile's two seeds
    # The smoke profile's two epochs, each scored (a two-point quality curve), on the least
    # data that runs every stage: the scores' quality is not under test here.
    params["train"].update(subset=256, score_n=N_SAMPLES)
    params["sample"]["n"] = N_SAMPLES
    params["classifier"]["subset"] = 1000
    params["evaluate"].update(
        n_real=N_SAMPLES, floor_n=N_SAMPLES, kid_subset_size=100, noise_draws=2
    )
    params["toy"]["workers"] = 1  # its four tiny runs in the stage's process: no pool to start
    params["grid"]["workers"] = GRID_WORKERS
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    os.environ["PIPELINE_MNIST_MIRROR"] = str(mnist_mirror)
    run_dvc(root, "init", "--no-scm", "-f", "-q")
    return root


@pytest.fixture(scope="module")
def built(project: Path) -> dict[str, str]:
    """The project after one full build (the logs it printed: ``dvc`` for the chain that
    `dvc repro` ran, ``grid``, and ``rest`` for the `dvc repro` after the grid), shared by
    the tests that read its outputs or ask DVC what an edit would re-run."""
    by_dvc = run_dvc(project, "repro", f"evaluate@{BY_DVC}")
    out = grid(project)
    assert out.returncode == 0, out.stdout + out.stderr
    return {"dvc": by_dvc, "grid": out.stdout + out.stderr, "rest": run_dvc(project, "repro")}


@pytest.mark.slow
def test_one_chain_by_dvc_three_by_the_grid_and_repro_runs_each_stage_once(
    project: Path, built: dict[str, str]
) -> None:
    assert _ran(built["dvc"]) == {"prepare", "classifier"} | {
        f"{stage}@{BY_DVC}" for stage in ("train", "sample", "evaluate")
    }
    log = built["grid"]  # (its upstream, prepare and classifier, is up to date here; the
    # smoke's grid runs it through DVC first)
    for chain in CHAINS - {BY_DVC}:
        assert re.search(rf"^{chain}: done in [\d.]+ s \(train", log, re.M), log
    assert "grid: 3/3 chains done and committed" in log
    # The grid's workers writing to one SQLite store at once: nothing locked out, nothing lost.
    assert "locked" not in log and "MLflow logging" not in log
    # DVC finds the grid's chains recorded: repro runs only the stages after them.
    assert _ran(built["rest"]) == {"floor", "noise", "toy", "report"}
    runs = train_runs(project)
    assert set(runs) == CHAINS and all(len(r) == 1 for r in runs.values())
    for (run,) in runs.values():
        check_complete_run(project, run, epochs=2)
    for v in VARIANTS:
        for s in SEEDS:
            doc = json.loads((project / "metrics" / v / f"seed{s}.json").read_text())
            assert (doc["variant"], doc["seed"], doc["n_generated"]) == (v, s, N_SAMPLES)
            assert doc["classifier"]["fid"] > 0
    fids = [json.loads((project / "metrics" / "gan" / f"seed{s}.json").read_text())["classifier"]["fid"]
            for s in (0, 1)]  # fmt: skip
    assert fids[0] != fids[1]  # two seeds, two runs
    html = (project / "reports" / "index.html").read_text()
    assert "wgan" in html and "data:image/png;base64," in html
    assert 'id="seeds-table"' in html and 'id="paired-table"' in html and 'id="noise-table"' in html
    noise = json.loads((project / "reports" / "noise.json").read_text())
    assert len(noise["draws"]) == 2 and (noise["variant"], noise["seed"]) in {
        (v, s) for v in VARIANTS for s in SEEDS
    }
    assert (project / "reports" / "plots" / "seeds.png").is_file()
    again = run_dvc(project, "repro")
    assert _ran(again) == set() and "Data and pipelines are up to date" in again
    again = grid(project)
    assert again.returncode == 0 and "chain is up to date" in again.stdout
    metrics = run_dvc(project, "metrics", "show")
    assert "metrics/gan/seed1.json" in metrics and "metrics/floor.json" in metrics


def _plots(root: Path) -> tuple[dict[str, list[dict]], list[dict]]:
    """``dvc plots show --json`` in ``root``: {plot id: rendered Vega-Lite specs}, errors."""
    text = run_dvc(root, "plots", "show", "--json")  # stdout (the JSON), then stderr
    out, _ = json.JSONDecoder().raw_decode(text[text.index("{") :])
    specs = {k: [p["content"] for p in v] for k, v in out["data"].items()}
    return specs, out.get("errors") or []


def _curve_fields() -> list[str]:
    """The y fields of the top-level plot drawing every file in the curves folder."""
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    (definition,) = [d for p in plots for k, d in p.items() if k.endswith("/curves")]
    assert definition["x"] == "epoch"
    return definition["y"]


def _check_curve_plot(spec: dict, csv_path: Path) -> None:
    """One variant's panel: the plotted fields by epoch, with the CSV's values."""
    assert spec["encoding"]["x"]["field"] == "epoch"
    rows = list(csv.DictReader(csv_path.open()))
    values = spec["data"]["values"]
    for field in _curve_fields():
        drawn = [(v["epoch"], v["dvc_inferred_y_value"]) for v in values if v["field"] == field]
        assert drawn == [(r["epoch"], r[field]) for r in rows], field
    assert {v["field"] for v in values} == set(_curve_fields())


@pytest.mark.slow
def test_dvc_plots_draw_each_variants_losses_by_epoch_and_the_fid_bars(
    project: Path, built: dict[str, str]
) -> None:
    specs, errors = _plots(project)
    assert errors == []
    for v in ("gan", "wgan"):
        for s in (0, 1):
            (spec,) = specs[f"metrics/curves/{v}/seed{s}.csv"]
            _check_curve_plot(spec, project / "metrics" / "curves" / v / f"seed{s}.csv")
            # The quality curve (smoke profile: scored after each of the two epochs).
            (quality,) = specs[f"metrics/quality/{v}/seed{s}.csv"]
            rows = quality["data"]["values"]
            assert [r["epoch"] for r in rows] == ["1", "2"] and all(
                float(r["clf_fid"]) > 0 for r in rows
            )
    (bars,) = specs["Classifier FID per variant (lower is better)"]
    assert bars["encoding"]["x"]["field"] == "classifier_fid"
    assert bars["encoding"]["y"]["field"] == "variant"
    drawn = {r["variant"]: float(r["classifier_fid"]) for r in bars["data"]["values"]}
    for v in ("gan", "wgan"):
        fids = [json.loads((project / "metrics" / v / f"seed{s}.json").read_text())["classifier"]["fid"]
                for s in (0, 1)]  # fmt: skip
        assert drawn[v] == pytest.approx(sum(fids) / 2)  # the mean over the seeds


def test_dvc_plots_draw_every_variant_that_has_the_plotted_columns(
    tmp_path: Path, prepared_dir: Path
) -> None:
    """DVC fails a file that lacks a plotted field: train every registered variant for one
    tiny epoch and render the curves panels from their real CSVs. Every adversarial variant
    is drawn; a model without the GAN losses (the VAE) is the one documented gap."""
    from pipeline.core.algorithms.adversarial import Adversarial
    from pipeline.core.variants.base import registry
    from pipeline.infra.params import load_params
    from pipeline.stages.train import train_variant
    from tests.conftest import TINY, write_params

    over = merge_overrides(TINY, {"data": {"dir": str(prepared_dir)}, "train": {"subset": 128}})
    params = load_params(write_params(tmp_path, over))
    for v in registry.names():
        train_variant(params, v, epochs=1, track=False, progress=False)
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    run_dvc(tmp_path, "init", "--no-scm", "-f", "-q")
    specs, errors = _plots(tmp_path)
    failed = {
        "/".join(e["name"].rsplit("/", 2)[-2:]) for e in errors if "/curves/" in e.get("name", "")
    }
    drawn = []
    for v in registry.names():
        path = tmp_path / "metrics" / "curves" / v / "seed0.csv"
        header = path.read_text().splitlines()[0].split(",")
        if set(_curve_fields()) <= set(header):
            (spec,) = specs[f"metrics/curves/{v}/seed0.csv"]
            _check_curve_plot(spec, path)
            drawn.append(v)
        else:
            assert f"{v}/seed0.csv" in failed
            assert not isinstance(registry.get(v).algorithm, Adversarial)
    assert failed == {f"{v}/seed0.csv" for v in registry.names() if v not in drawn}
    assert all(
        v in drawn for v in registry.names() if isinstance(registry.get(v).algorithm, Adversarial)
    )


@pytest.mark.slow
def test_results_snapshot_of_the_smoke_chain(
    project: Path, built: dict[str, str], tmp_path: Path
) -> None:
    """pipeline/stages/results.py (`make results`) on the smoke profile's outputs."""
    from PIL import Image

    from pipeline.infra.errors import PipelineError
    from pipeline.infra.params import load_params
    from pipeline.stages.results import MAX_BYTES, write_snapshot

    params = load_params(project / "params.yaml")
    dest = tmp_path / "results"
    # ddpm left out, at a rate worked by hand: 20 epochs x 937 steps / 0.04 steps/s = 130 h
    rate = {"steps_per_s": 0.04, "epochs": 20, "steps_per_epoch": 937, "steps": 3,
            "device": "cpu", "threads": 1}  # fmt: skip
    (tmp_path / "left.json").write_text(json.dumps({"ddpm": rate}))
    write_snapshot(params, dest, command="make results", commit="abc1234",
                   profile="profiles/smoke.yaml", wall_time_s=754.2, attempts=2,
                   left_out=tmp_path / "left.json")  # fmt: skip
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["README.md", "grids/gan.png", "grids/wgan.png", "plots/seeds.png",
                     "results.json"]  # fmt: skip
    assert sum((dest / f).stat().st_size for f in files) < MAX_BYTES
    readme = (dest / "README.md").read_text()
    doc = json.loads((dest / "results.json").read_text())
    assert "`make results`" in readme and "`abc1234`" in readme and "754 s" in readme
    assert "**ddpm**: not trained here. Measured 0.04 steps/s" in readme
    assert "20 epochs × 937 steps = 18,740 steps ≈ 130 h" in readme
    assert doc["left_out"] == {"ddpm": rate}
    # two seeds: the report's seeds section (intervals of the mean, paired tests) follows
    seeds_part = readme.split("## Seeds: spread, intervals and paired tests", 1)[1]
    assert "Student's t" in seeds_part and "![" in seeds_part and "plots/seeds.png" in seeds_part
    for v in ("gan", "wgan"):
        for s in (0, 1):
            on_disk = json.loads((project / "metrics" / v / f"seed{s}.json").read_text())
            assert doc["per_seed"][v][str(s)]["classifier"]["fid"] == on_disk["classifier"]["fid"]
    assert "over 2 attempts" in readme and doc["machine"]["cpu_cores"] == os.cpu_count()
    assert doc["machine"]["cpu"] in readme
    for v in ("gan", "wgan"):
        small, grid = dest / "grids" / f"{v}.png", project / "samples" / v / "seed0" / "grid.png"
        with Image.open(small) as a, Image.open(grid) as b:
            assert a.mode == "L" and a.tobytes() == b.convert("L").tobytes()
        assert small.stat().st_size < grid.stat().st_size
        metrics = json.loads((project / "metrics" / v / "seed0.json").read_text())
        (entry,) = [e for e in doc["variants"] if e["variant"] == v]
        assert entry["metrics"]["classifier"]["fid"] == metrics["classifier"]["fid"]
        assert entry["train"]["epochs"] == 2
        scores = readme.split("## Samples")[0].splitlines()
        (row,) = [r for r in scores if r.startswith(f"| {v} |")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "2" and cells[2] == f"{metrics['classifier']['fid']:.2f}"
        assert cells[-3] == f"{entry['train']['g_iters']:,}"  # the budget: G updates
        assert f"![{v} samples](grids/{v}.png)" in readme
    floor = json.loads((project / "metrics" / "floor.json").read_text())
    assert f"| {floor['classifier']['fid']:.2f} |" in readme.split("real vs real", 1)[1]
    assert "| n/a |" in readme  # label accuracy: no conditional model here
    head = next(r for r in readme.splitlines() if r.startswith("| model |"))
    table = readme.split("| model |")[1].split("## Samples")[0]
    assert "| FID ↓ | IS ↑ |" in head and "Inception" not in table

    # a missing input: one line naming it, and the snapshot from before stays as it was
    before = {f: (dest / f).read_bytes() for f in files}
    summary = project / "metrics" / "wgan" / "seed0.json"
    kept = summary.read_bytes()
    summary.unlink()
    try:
        with pytest.raises(PipelineError, match="wgan/seed0.json: not found"):
            write_snapshot(params, dest, command="x", commit="y", profile="z", wall_time_s=1.0)
    finally:
        summary.write_bytes(kept)
    assert {f: (dest / f).read_bytes() for f in files} == before

    # the second pass's snapshot in seeds/ survives the first pass's being written again
    write_snapshot(params, dest / "seeds", command="x", commit="y", profile="z", wall_time_s=1.0)
    second = (dest / "seeds" / "README.md").read_bytes()
    write_snapshot(params, dest, command="x", commit="y", profile="z", wall_time_s=1.0)
    assert (dest / "seeds" / "README.md").read_bytes() == second
    assert "**ddpm**" not in (dest / "README.md").read_text()  # no --left-out this time


@pytest.mark.slow
def test_leftovers_of_killed_atomic_writes_are_out_of_dvcs_view(
    project: Path, built: dict[str, str]
) -> None:
    """A kill between writing a temp file and renaming it leaves .<name>.<random>.tmp inside
    a stage output (models/<V>/seed<S>/ is persistent): DVC must not see the output as changed."""
    planted = [
        project / "models" / "gan" / "seed0" / ".checkpoint.pt.k3x_9a2q.tmp",
        project / "models" / "gan" / "seed1" / "grids" / ".epoch_0002.png.abcd1234.tmp",
        project / "samples" / "gan" / "seed0" / ".samples.pt.zz99zz99.tmp",
    ]
    for path in planted:
        path.write_bytes(b"half-written")
    old = project / "models" / "gan" / ".seed0.abcdefgh.old"
    old.mkdir()
    try:
        status = run_dvc(project, "status")
        assert "Data and pipelines are up to date" in status, status
    finally:
        for path in planted:
            path.unlink()
        old.rmdir()


@pytest.mark.slow
def test_changing_one_variant_reruns_only_its_chain_and_the_report(
    project: Path, built: dict[str, str]
) -> None:
    path = project / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    params["variants"]["gan"]["lr"] = 0.0003
    try:
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        status = run_dvc(project, "status")
        assert "train@gan" in status and "train@wgan" not in status
        # What repro would run, without training: a dry run in which every stage found
        # changed also forces the stages downstream of it (their inputs would change).
        assert _ran(run_dvc(project, "repro", "--dry", "--force-downstream")) == GAN_CHAIN
    finally:  # the next test starts from the project's own params
        path.write_text(original)


@pytest.mark.slow
def test_adding_a_seed_runs_only_its_stages_and_removing_one_only_the_report(
    project: Path, built: dict[str, str]
) -> None:
    """train.seeds is a dimension of the pipeline: a new seed is new stages, nothing else
    re-runs but the noise stage (which picks the best run among every seed) and the report;
    a removed seed changes only what those two read."""
    path = project / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    try:
        params["train"]["seeds"] = [0, 1, 2]
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        new = {
            f"{stage}@{v}-2" for stage in ("train", "sample", "evaluate") for v in ("gan", "wgan")
        }
        assert _changed(run_dvc(project, "status")) == new | {"noise", "report"}
        params["train"]["seeds"] = [0]
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        assert _changed(run_dvc(project, "status")) == {"noise", "report"}
    finally:
        path.write_text(original)
    assert "Data and pipelines are up to date" in run_dvc(project, "status")


@pytest.mark.slow
def test_a_finished_tuning_study_re_renders_only_the_report(
    project: Path, built: dict[str, str]
) -> None:
    """`pipeline tune` runs outside DVC; its best.json must still reach the report."""
    best = project / "reports" / "tuning" / "gan" / "best.json"
    best.parent.mkdir(parents=True, exist_ok=True)
    best.write_text(
        json.dumps(
            {
                "variant": "gan", "study": "gan-test", "best_value": 40.0,
                "default_value": 50.0, "best_params": {"lr": 0.0005},
                "trials": {"COMPLETE": 3, "PRUNED": 1, "FAIL": 0},
            }
        )
    )  # fmt: skip
    assert _ran(run_dvc(project, "repro")) == {"report"}
    html = (project / "reports" / "index.html").read_text()
    assert "gan-test" in html and "-20.0%" in html


@pytest.mark.slow
def test_moving_jobs_to_another_device_re_runs_nothing(
    project: Path, built: dict[str, str]
) -> None:
    """device (and the evaluators' batch size) change where and how fast a stage runs, not
    its result: DVC must not re-train, re-sample or re-score for them."""
    path = project / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    for section in ("train", "sample", "classifier", "evaluate"):
        params[section]["device"] = "cuda"
    params["evaluate"]["batch_size"] = 123
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert "Data and pipelines are up to date" in run_dvc(project, "status")
        params["sample"]["seed"] += 1  # a result-changing key still re-runs its stages
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        status = run_dvc(project, "status")
        assert "sample@gan" in status and "sample@wgan" in status and "train@" not in status
    finally:
        path.write_text(original)


def test_a_new_params_block_adds_the_variant_stages_without_a_dvc_yaml_edit(
    project: Path, tmp_path: Path
) -> None:
    shutil.copy(project / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["variants"]["my_new_gan"] = {"epochs": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run_dvc(tmp_path, "init", "--no-scm", "-f", "-q")
    stages = run_dvc(tmp_path, "stage", "list")
    for stage in ("train@my_new_gan-1", "sample@my_new_gan-0", "evaluate@my_new_gan-1"):
        assert stage in stages


def test_train_stage_depends_on_every_source_in_the_run_identity() -> None:
    """The trainer retrains when these sources change (code_hash); DVC must see the same
    files, or `dvc repro` would skip a stage whose checkpoint the trainer considers stale."""
    from pipeline.core.variants.base import registry
    from pipeline.training.spec import code_files

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    for name in registry.names():
        deps = {d.replace("${item.variant}", name) for d in stage["deps"]}
        for rel in code_files(registry.get(name)):
            path = f"pipeline/{rel}"
            covered = path in deps or any(path.startswith(d + "/") for d in deps)
            assert covered, f"dvc.yaml train stage misses {path} (in {name}'s run identity)"


def test_dvc_yaml_paths_follow_the_output_folders_in_params_yaml(tmp_path: Path) -> None:
    """dvc.yaml takes its paths from params.yaml: with every output folder moved, each stage
    declares exactly the files pipeline/infra/layout.py says its command writes, and every non-code
    dependency is another stage's output (or the tuning folder)."""
    from dvc.repo import Repo

    from pipeline.infra import layout
    from pipeline.infra.params import load_params

    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    raw = merge_overrides(
        yaml.safe_load((REPO / "params.yaml").read_text()),
        {
            "data": {"dir": "in/data"},
            "train": {"out_dir": "out/runs"},
            "sample": {"out_dir": "out/gen"},
            "classifier": {"out_dir": "out/evaluator"},
            "evaluate": {"out_dir": "out/scores"},
            "report": {"out_dir": "out/site"},
            "tune": {"out_dir": "out/studies"},
            "toy": {"out_dir": "out/toys"},
        },
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(tmp_path / "params.yaml")

    def rel(p: Path) -> str:
        return p.relative_to(tmp_path).as_posix()

    expected = {
        stage: {rel(p) for p in paths} for stage, paths in layout.stage_outputs(params).items()
    }
    assert set(expected) >= {
        "prepare",
        "classifier",
        "floor",
        "report",
        "toy",
        "train@gan-0",
        "train@gan-2",
    }
    assert expected["toy"] == {"out/toys"}
    # The layout agrees with the modules that write the files.
    from pipeline.infra.data import mnist_dir
    from pipeline.infra.layout import curves_path, variant_dir
    from pipeline.training.evaluator import checkpoint_path

    assert rel(mnist_dir(params)) in expected["prepare"]
    assert rel(checkpoint_path(params)) in expected["classifier"]
    assert expected["train@wgan-1"] == {
        rel(variant_dir(params, "wgan", 1)),
        rel(curves_path(params, "wgan", 1)),
        "out/scores/quality/wgan/seed1.csv",
    }
    assert expected["sample@gan-2"] == {"out/gen/gan/seed2", "out/scores/sampling/gan/seed2.json"}
    assert expected["evaluate@wgan-0"] == {"out/scores/wgan/seed0.json"}
    assert expected["noise"] == {"out/site/noise.json"}
    assert expected["floor"] == {"out/scores/floor.json"}

    Repo.init(str(tmp_path), no_scm=True)
    with Repo(str(tmp_path)) as repo:
        stages = {s.name: s for s in repo.index.stages}
        outs = {name: {str(o.def_path) for o in s.outs} for name, s in stages.items()}
        deps = {name: {str(d.def_path) for d in s.deps} for name, s in stages.items()}
    assert outs == expected

    produced = set().union(*expected.values())
    for name, paths in deps.items():
        for dep in paths - {rel(layout.tuning_dir(params))}:
            if dep.startswith("pipeline/") or dep == "params.yaml":
                continue
            assert any(dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")
                       for out in produced), f"{name} depends on {dep}, which no stage writes"  # fmt: skip


@pytest.mark.slow
def test_a_failed_chain_stays_local_a_killed_client_resumes_an_edit_is_not_recorded(
    project: Path, built: dict[str, str], tmp_path: Path
) -> None:
    epochs = bump_epochs(project, "gan")  # both gan chains stale
    (project / "models" / "wgan" / "seed0" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert stale(project) == AFTER_CHAINS | {
        "train@gan-0", "train@gan-1", "train@wgan-0", "sample@wgan-0"  # its input changed
    }  # fmt: skip
    # kill -9 of the client as the first chain finishes, before it is recorded: its
    # embedded cluster's workers (one still training) go with it, none left orphaned.
    client = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "grid"], cwd=project, env=project_env(
            project, PIPELINE_KILL_AT="grid-commit"), stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "killed.log").open("w"),
    )  # fmt: skip
    workers: set[int] = set()
    while client.poll() is None:
        workers |= children(client.pid)
        time.sleep(0.2)
    assert client.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    assert len(workers) >= GRID_WORKERS  # the worker processes (grid.workers)
    deadline = time.time() + 60
    while left := {w for w in workers if alive(w)}:
        assert time.time() < deadline, f"workers left running: {left}"
        time.sleep(0.5)
    # The rerun completes every chain it can; the broken one fails alone, in one line.
    out = grid(project)
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"^wgan-0: failed: CheckpointError: .*checkpoint", out.stdout, re.M), (
        out.stdout
    )
    assert "1 chains failed (wgan-0); rerun to resume" in out.stderr
    assert "Traceback" not in out.stderr
    assert stale(project) == AFTER_CHAINS | {"train@wgan-0", "sample@wgan-0"}  # not recorded
    runs = train_runs(project)
    for seed in SEEDS:
        # New epochs, a new run (the finished one is set aside with its folder); the kill
        # and the rerun continued it: none lost, none doubled.
        assert len(runs[f"gan-{seed}"]) == 2
        check_complete_run(project, current(project, runs, "gan", seed), epochs=epochs)
    no_leftovers(project)

    # Its cause removed (as its message says: delete the run folder), wgan-0 runs again, and
    # params.yaml is edited while it runs: the client, stopped at the commit point meanwhile,
    # refuses to record it. (The next test completes it.)
    shutil.rmtree(project / "models" / "wgan" / "seed0")
    log = tmp_path / "log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "grid"], cwd=project, text=True,
        stdout=log.open("w"), stderr=subprocess.STDOUT,
        env=project_env(project, PIPELINE_KILL_AT="grid-commit", PIPELINE_KILL_SIGNAL="STOP"),
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
    assert {"train@wgan-0", "sample@wgan-0"} <= stale(project)


@pytest.mark.slow
def test_a_dask_scheduler_and_two_workers_by_address_survive_a_killed_worker(
    project: Path, built: dict[str, str], tmp_path: Path
) -> None:
    """`dask scheduler` and two `dask worker`s on 127.0.0.1; one worker is killed (SIGKILL at
    its checkpoint write) mid-chain: Dask runs that chain again on the other worker, where
    training resumes, and the grid completes."""
    from distributed import Client

    epochs = bump_epochs(project, "wgan")
    sched_file = tmp_path / "scheduler.json"
    dask = str(Path(sys.executable).parent / "dask")
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1",
             "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
            env=project_env(project), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    try:
        deadline = time.time() + 120
        while not sched_file.is_file():
            assert time.time() < deadline, "the scheduler did not start"
            time.sleep(0.5)
        common = ["--scheduler-file", str(sched_file), "--nthreads", "1", "--host", "127.0.0.1",
                  "--no-dashboard"]  # fmt: skip
        procs.append(subprocess.Popen([dask, "worker", *common], env=project_env(project)))
        victim = subprocess.Popen(
            [dask, "worker", *common, "--no-nanny"],  # no nanny: it stays dead
            env=project_env(project, PIPELINE_KILL_AT="replace:checkpoint.pt"),
        )
        procs.append(victim)
        with Client(scheduler_file=str(sched_file), timeout="60s") as c:
            c.wait_for_workers(2, timeout=120)
            address = c.scheduler.address
        out = grid(project, "--scheduler", address)
        assert out.returncode == 0, out.stdout + out.stderr
        assert victim.poll() == -signal.SIGKILL  # it did die mid-chain
        assert f"grid: 2 chains on {address} (2 workers now)" in out.stdout
        assert stale(project) == AFTER_CHAINS
        runs = train_runs(project)
        for seed in SEEDS:
            check_complete_run(project, current(project, runs, "wgan", seed), epochs=epochs)
        no_leftovers(project)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
