"""The comparison report, built from real (fake-valued) stage outputs written into tmp_path."""

from __future__ import annotations

import csv
import functools
import gzip
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torchvision.utils import make_grid, save_image

from pipeline.core.variants.base import registry
from pipeline.infra import layout
from pipeline.infra.config import Params
from pipeline.infra.params import load_params
from pipeline.stages.report import (
    FLOOR_CSV_NAME,
    FLOOR_LABEL,
    MISSING,
    NOT_COMPUTED,
    build_report,
)
from tests.conftest import _mirror, write_params

VARIANTS = ["gan", "cgan", "dcgan", "wgan", "wgan_gp"]
N_PUBLISHED = sum(len(registry.get(v).published) for v in VARIANTS)  # rows beside our matches
CRITIC = {"wgan", "wgan_gp"}

# Inception FID: wgan_gp lowest; Inception IS: dcgan highest; classifier FID: dcgan lowest;
# classifier IS: cgan highest. The floor beats them all and must not be marked.
SCORES: dict[str, dict[str, float]] = {
    "gan": {"inc_fid": 31.4, "inc_is": 2.11, "clf_fid": 4.2, "clf_is": 9.02},
    "cgan": {"inc_fid": 18.7, "inc_is": 2.24, "clf_fid": 2.9, "clf_is": 9.71},
    "dcgan": {"inc_fid": 9.6, "inc_is": 2.41, "clf_fid": 1.1, "clf_is": 9.55},
    "wgan": {"inc_fid": 44.0, "inc_is": 1.98, "clf_fid": 7.5, "clf_is": 8.61},
    "wgan_gp": {"inc_fid": 8.9, "inc_is": 2.30, "clf_fid": 1.8, "clf_is": 9.40},
}
FLOOR = {"inc_fid": 0.9, "inc_is": 2.52, "clf_fid": 0.05, "clf_is": 9.93}
# Seeds 1 and 2 of every variant: its seed-0 scores scaled by 1 + this (seed 0 is SCORES).
SEED_SPREAD = {0: 0.0, 1: 0.1, 2: -0.05}
# Cell order of the score table (the label is the row header, not a cell).
COL = {"samples": 0, "inc_fid": 1, "inc_is": 2, "inc_kid": 3, "clf_fid": 6, "clf_is": 7}


def _metrics(name: str, s: dict[str, float], conditional: bool = False) -> dict[str, Any]:
    histogram = [0.1, 0.11, 0.09, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    if s["clf_fid"] > 5:  # the worst generator: digit 8 is missing (mode collapse)
        histogram = [0.12, 0.13, 0.1, 0.11, 0.11, 0.09, 0.12, 0.13, 0.0, 0.09]
    return {
        "variant": name,
        "n_generated": 10_000,
        "n_real": 10_000,
        "classifier": {
            "network": "mnist-cnn (penultimate 128-d)",
            "fid": s["clf_fid"],
            "kid_mean": s["clf_fid"] / 1000,
            "kid_std": 0.0002,
            "precision": round(0.95 - s["clf_fid"] / 50, 3),
            "recall": round(0.9 - s["clf_fid"] / 40, 3),
            "is_mean": s["clf_is"],
            "is_std": 0.05,
            "histogram": histogram,
            "coverage": sum(h > 0 for h in histogram),
            "kl_test_labels": round(s["clf_fid"] / 100, 4),
            "label_accuracy": 0.973 if conditional else None,
            "fid_inf": round(s["clf_fid"] * 0.9, 3),
            "density": round(1.02 - s["clf_fid"] / 20, 3),
            "knn_coverage": round(0.97 - s["clf_fid"] / 30, 3),
            "kid_subset_size": 1000,
            "kid_subsets": 100,
            "fid_inf_n_min": 2000,
            "fid_inf_n_max": 10_000,
            "fid_inf_points": 15,
            "prdc_k": 5,
            "seconds": 3.2,
        },
        "inception": {
            "network": "inception-v3-compat",
            "fid": s["inc_fid"],
            "is_mean": s["inc_is"],
            "is_std": 0.03,
            "kid_mean": s["inc_fid"] / 1000,
            "kid_std": 0.0004,
            "precision": round(0.9 - s["inc_fid"] / 100, 3),
            "recall": round(0.85 - s["inc_fid"] / 80, 3),
            "kid_subset_size": 1000,
            "kid_subsets": 100,
            "seconds": 6.1,
        },
    }


@functools.cache
def _mnist_test_images(n: int = 400) -> torch.Tensor:
    """The first ``n`` MNIST test digits from the local mirror, (n, 1, 28, 28) in [0, 1]."""
    with gzip.open(_mirror() / "t10k-images-idx3-ubyte.gz", "rb") as fh:
        raw = fh.read(16 + n * 784)[16:]
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(n, 1, 28, 28) / 255.0


def _fake_samples(seed: int, noise: float) -> torch.Tensor:
    """Real digits blurred by noise: stand-ins for a generator's 10x10 grid."""
    g = torch.Generator().manual_seed(seed)
    digits = _mnist_test_images()[seed % 4 * 100 : seed % 4 * 100 + 100]
    return (digits * (1 - noise) + noise * torch.rand(digits.shape, generator=g)).clamp(0, 1)


def _grid(path: Path, seed: int, noise: float = 0.2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(_fake_samples(seed, noise), path, nrow=10)


def _gif(path: Path, seed: int) -> None:
    frames = []
    for noise in (0.9, 0.6, 0.3, 0.15):
        grid = make_grid(_fake_samples(seed, noise), nrow=10)[0]
        frames.append(Image.fromarray((grid * 255).round().to(torch.uint8).numpy()))
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=400, loop=0)


def _line_plot(path: Path) -> None:
    """A stand-in for an Optuna plot (a PNG written by matplotlib)."""
    fig = Figure(figsize=(6, 3), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(range(20), [5 / (1 + t / 4) + 0.2 * (t % 3) for t in range(20)], "o-")
    ax.set(xlabel="trial", ylabel="objective", title="Optimization history")
    fig.savefig(path, metadata={"Software": None})


def _curves(path: Path, critic: bool, epochs: int = 6) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "epoch,step,d_loss,g_loss,d_real,d_fake,wasserstein,gp,grad_norm_d,grad_norm_g,steps_per_s,elapsed_s"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header.split(","))
        for e in range(1, epochs + 1):
            if critic:
                row = [-0.5 / e, 0.3 / e, "", "", 0.5 / e, 0.1, 1.2, 0.8]
            else:
                row = [
                    0.6 + 0.1 / e,
                    1.5 - 0.2 / e,
                    0.7 - 0.02 * e,
                    0.3 + 0.02 * e,
                    "",
                    "",
                    2.0,
                    1.1,
                ]
            w.writerow([e, 938 * e, *row, 150.0, 6.2 * e])


def make_stage_outputs(root: Path, overrides: dict[str, Any] | None = None) -> Params:
    """Every input of the report for the five variants, the floor and the classifier."""
    params = load_params(write_params(root, overrides, variants=VARIANTS))
    for i, name in enumerate(VARIANTS):
        conditional = name == "cgan"
        for seed in params.train.seeds:  # the first seed: SCORES; the others: a spread around it
            factor = 1 + SEED_SPREAD[seed] * (1 if i % 2 == 0 else -0.5)  # not in lockstep
            spread = {k: v * factor for k, v in SCORES[name].items()}
            metrics = _metrics(name, SCORES[name] if seed == 0 else spread, conditional)
            path = layout.metrics_path(params, name, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**metrics, "seed": seed}))
        run = layout.variant_dir(params, name)
        summary = {
            "variant": name,
            "epochs": 6,
            "steps": 6 * 938,
            # n_critic = 5: schedule d, d, d, d, dg over 5,628 steps -> 1,125 G updates
            "g_iters": 6 * 938 // 5 if name in CRITIC else 6 * 938,
            "d_iters": 6 * 938,
            "images_seen": 6 * 938 * 64,
            "train_time_s": 37.5 + i,
            "steps_per_s": 150.0 - 10 * i,
            "device": "cpu",
            "hyper": {
                "lr": 5e-5 if name == "wgan" else 2e-4,
                "betas": [0.0, 0.0] if name == "wgan" else [0.5, 0.999],
                "n_critic": 5 if name in CRITIC else 1,
                "optimizer": "rmsprop" if name == "wgan" else "adam",
                "options": {"clip": 0.01} if name == "wgan" else {},
                "epochs": 6,
            },
            "run_id": f"{i:02d}" + "ab" * 15,
        }
        run.mkdir(parents=True, exist_ok=True)
        (run / "summary.json").write_text(json.dumps(summary))
        _curves(layout.curves_path(params, name), critic=name in CRITIC)
        noise = SCORES[name]["clf_fid"] / 15
        _grid(run / "grid.png", seed=i, noise=noise)
        _gif(run / "progress.gif", seed=i)
        _grid(layout.sample_grid(params, name), seed=i + 1, noise=noise)
    # the noise stage: the best run (dcgan, seed 2) re-scored on three fresh latent draws
    best = {k: v * (1 + SEED_SPREAD[2]) for k, v in SCORES["dcgan"].items()}
    draws = [
        {
            "draw": d,
            "latent_seed": 100 + d,
            **_metrics("dcgan", {k: v * f for k, v in best.items()}),
        }
        for d, f in ((1, 1.02), (2, 0.97), (3, 1.01))
    ]
    noise = {"n_draws": 3, "variant": "dcgan", "seed": 2, "picked_by": "classifier.fid",
             "scored": _metrics("dcgan", best), "draws": draws}  # fmt: skip
    layout.noise_path(params).parent.mkdir(parents=True, exist_ok=True)
    layout.noise_path(params).write_text(json.dumps(noise))
    floor = _metrics("floor", FLOOR)
    floor["classifier"]["label_accuracy"] = None
    layout.metrics_path(params, layout.FLOOR).write_text(json.dumps(floor))
    (root / "models" / "classifier").mkdir(parents=True, exist_ok=True)
    (root / "models" / "classifier" / "metrics.json").write_text(
        json.dumps({"test_accuracy": 0.9912, "epochs": 4})
    )
    tuning = root / "reports" / "tuning" / "gan"
    tuning.mkdir(parents=True)
    (tuning / "best.json").write_text(
        json.dumps(
            {
                "variant": "gan",
                "study": "gan-tune-gan",
                "best_value": 3.1,
                "best_params": {"lr": 0.00031, "beta1": 0.42, "beta2": 0.991},
                "default_value": 4.2,
                "trials": {"COMPLETE": 14, "PRUNED": 5, "FAIL": 1},
            }
        )
    )
    _line_plot(tuning / "optimization_history.png")
    return params


class _Tables(HTMLParser):
    """Rows of every <table id=...>: {table id: [(data-row, [(text, classes), ...])]}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {}
        self.imgs: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._cls = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None and a.get("data-row"):
            self.tables[self._table].append((a["data-row"] or "", []))
        elif tag == "td" and self._table is not None and self.tables[self._table]:
            self._cell, self._cls = [], a.get("class") or ""
        elif tag == "img":
            self.imgs.append(a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "td" and self._cell is not None and self._table is not None:
            self.tables[self._table][-1][1].append(("".join(self._cell).strip(), self._cls))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(page: str) -> _Tables:
    parser = _Tables()
    parser.feed(page)
    return parser


def _best(rows: list[tuple[str, list[tuple[str, str]]]], col: int) -> list[str]:
    return [key for key, cells in rows if "best" in cells[col][1].split()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Params, Path]:
    root = tmp_path_factory.mktemp("report")
    params = make_stage_outputs(root)
    return params, build_report(params)


def test_score_table_rows_and_best_marks(built: tuple[Params, Path]) -> None:
    params, index = built
    assert index == params.path("reports") / "index.html"
    page = index.read_text(encoding="utf-8")
    rows = _parse(page).tables["score-table"]
    keys = [key for key, _ in rows]
    # grouped by family (GAN losses, then structured GANs), each variant followed by the
    # published row of its match in Lucic et al., the floor last
    assert keys == [
        "variant:gan", "published:NS GAN", "variant:dcgan", "variant:wgan", "published:WGAN",
        "variant:wgan_gp", "published:WGAN-GP", "variant:cgan", "floor",
    ]  # fmt: skip
    assert page.count('<tr class="family">') == 4  # score and class-balance tables
    assert "GAN losses" in page and "Structured GANs" in page
    assert FLOOR_LABEL in page
    assert "Lucic et al. 2018" in page
    assert "Inception-v3 (torch-fidelity)" in page and "MNIST classifier" in page
    assert "VGG16" in page  # the precision/recall footnote
    # Lowest FID, highest IS; the floor (better than all) and published rows are not ranked.
    assert _best(rows, COL["inc_fid"]) == ["variant:wgan_gp"]
    assert _best(rows, COL["inc_is"]) == ["variant:dcgan"]
    assert _best(rows, COL["clf_fid"]) == ["variant:dcgan"]
    assert _best(rows, COL["clf_is"]) == ["variant:cgan"]
    cells = dict(rows)
    assert cells["variant:dcgan"][COL["inc_is"]][0] == "2.41 ± 0.03★"
    assert cells["variant:gan"][COL["samples"]][0] == "10,000 / 10,000"
    assert cells["published:WGAN-GP"][COL["inc_fid"]][0] == "20.30"
    assert cells["published:WGAN-GP"][COL["clf_fid"]][0] == ""
    assert cells["variant:gan"][11][0] == "n/a"  # label accuracy: unconditional
    assert cells["variant:cgan"][11][0] == "97.30%"
    # The class-balance table flags the digit the worst generator never produces.
    details = dict(_parse(page).tables["classifier-table"])
    # KID, precision, recall, density, k-NN coverage, the sample counts, then digits 0-9.
    digit8 = details["variant:wgan"][6 + 8]
    assert digit8[0] == "0.0" and "warn" in digit8[1].split()
    assert "warn" not in details["variant:gan"][6 + 8][1].split()


def test_images_are_embedded_and_sections_present(built: tuple[Params, Path]) -> None:
    params, index = built
    page = index.read_text(encoding="utf-8")
    parsed = _parse(page)
    # scores chart + seeds chart + 5 grids + 5 previews + 5 GIFs + 5 curve plots + 1 tuning plot
    assert len(parsed.imgs) == 23
    assert all(
        src.startswith(("data:image/png;base64,", "data:image/gif;base64,")) for src in parsed.imgs
    )
    assert sum(src.startswith("data:image/gif;base64,") for src in parsed.imgs) == 5
    assert not re.search(r'(src|href)="(?!data:|#|http://127\.0\.0\.1)', page)  # no external assets
    assert "<script" not in page
    assert not re.search(r"\{[a-z_.]+\}", page)  # no f-string placeholder left unfilled
    uri = "sqlite:///" + str(params.path("mlflow.db").resolve())
    assert f"mlflow ui --backend-store-uri {uri}" in page
    assert "00" + "ab" * 15 in page  # a run id from summary.json
    assert "Tuning: best trial vs defaults" in page and "gan-tune-gan" in page
    assert "Evaluator test accuracy: 99.12%." in page
    assert "Missing inputs" not in page
    out = params.path("reports")
    for name in VARIANTS:
        assert (out / "plots" / f"curves_{name}.png").is_file()
        assert (out / "grids" / f"{name}.png").is_file()
        assert (out / "grids" / f"{name}_progress.gif").is_file()


def test_markdown_has_the_table_and_relative_images(built: tuple[Params, Path]) -> None:
    params, _ = built
    out = params.path("reports")
    md = (out / "comparison.md").read_text(encoding="utf-8")
    table = [line for line in md.splitlines() if line.startswith("| ")]
    for name in VARIANTS:
        assert any(line.startswith(f"| {name} |") for line in table)
    assert any(FLOOR_LABEL in line for line in table)
    assert any("**8.90** ★" in line and line.startswith("| wgan_gp |") for line in table)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "plots/scores.png" in images and "grids/dcgan_progress.gif" in images
    assert "tuning/gan/optimization_history.png" in images
    for rel in images:
        assert not rel.startswith(("/", "data:")) and (out / rel).is_file(), rel


def test_scores_csv_for_dvc_plots(built: tuple[Params, Path]) -> None:
    params, _ = built
    with (params.path("reports") / "scores.csv").open(newline="") as fh:
        rows = {row["variant"]: row for row in csv.DictReader(fh)}
    assert list(rows) == [*VARIANTS, FLOOR_CSV_NAME]
    # a variant's score: its mean over the seeds (seed 0 at SCORES, the others spread around)
    spread = sum(SEED_SPREAD.values()) / len(SEED_SPREAD)  # dcgan and wgan_gp: even rows
    assert rows["dcgan"]["n_seeds"] == "3" and rows[FLOOR_CSV_NAME]["n_seeds"] == ""
    dcgan, wgan_gp = SCORES["dcgan"]["clf_fid"], SCORES["wgan_gp"]["inc_fid"]
    assert float(rows["dcgan"]["classifier_fid"]) == pytest.approx(dcgan * (1 + spread))
    assert float(rows["wgan_gp"]["inception_fid"]) == pytest.approx(wgan_gp * (1 + spread))
    assert rows["gan"]["classifier_label_accuracy"] == ""  # null for unconditional variants
    assert rows[FLOOR_CSV_NAME]["train_time_s"] == ""
    # each run's budget: wgan_gp (n_critic 5) a fifth of the generator updates
    budget = ("g_iters", "d_iters", "images_seen")
    assert [float(rows["wgan_gp"][k]) for k in budget] == [1125, 5628, 360_192]
    assert [float(rows["gan"][k]) for k in budget] == [5628, 5628, 360_192]


def test_same_inputs_give_identical_bytes(built: tuple[Params, Path]) -> None:
    params, index = built
    out = params.path("reports")

    def snapshot() -> dict[str, bytes]:
        return {
            p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*"))
            if p.is_file() and "screenshots" not in p.parts
        }

    before = snapshot()
    assert build_report(params) == index
    assert snapshot() == before


def test_missing_inputs_show_a_dash_and_a_note(tmp_path: Path) -> None:
    params = make_stage_outputs(tmp_path)
    (tmp_path / "metrics" / "wgan" / "seed0.json").unlink()
    (tmp_path / "models" / "wgan" / "seed0" / "grid.png").unlink()
    (tmp_path / "models" / "gan" / "seed0" / "summary.json").write_text("{not json")
    (tmp_path / "metrics" / "curves" / "cgan" / "seed0.csv").unlink()
    del_inception = json.loads((tmp_path / "metrics" / "dcgan" / "seed0.json").read_text())
    del del_inception["inception"]
    (tmp_path / "metrics" / "dcgan" / "seed0.json").write_text(json.dumps(del_inception))
    shutil.rmtree(tmp_path / "reports" / "tuning")

    page = build_report(params).read_text(encoding="utf-8")
    cells = dict(_parse(page).tables["score-table"])
    assert all(text == MISSING for text, _ in cells["variant:wgan"][:12])
    # Its file exists, but without the Inception section: not computed, not missing.
    assert cells["variant:dcgan"][COL["inc_fid"]][0] == NOT_COMPUTED
    assert cells["variant:dcgan"][COL["clf_fid"]][0] == "1.10★"  # its classifier scores remain
    assert cells["variant:gan"][12][0] == MISSING  # training time: summary unreadable
    assert "gan (configured)" in page  # its hyperparameters come from params.yaml instead
    # With dcgan's Inception FID gone, the best is still the lowest of the rest.
    assert _best(_parse(page).tables["score-table"], COL["inc_fid"]) == ["variant:wgan_gp"]
    assert "metrics/wgan/seed0.json: not found" in page
    assert "models/gan/seed0/summary.json: unreadable" in page
    assert "No final grid (models/wgan/seed0/grid.png missing)" in page
    assert "No training curves (metrics/curves/cgan/seed0.csv missing or empty)" in page
    assert "Tuning: best trial vs defaults" not in page
    md = (tmp_path / "reports" / "comparison.md").read_text(encoding="utf-8")
    assert f"| wgan | {MISSING} |" in md


def test_run_ids_and_studies_link_to_the_mlflow_ui(tmp_path: Path) -> None:
    """With the store holding the experiments (real MLflow, SQLite), each run id links to its
    run and a study to its own experiment, in the page and in comparison.md."""
    from pipeline.infra.tracking import setup, study_experiment

    params = make_stage_outputs(tmp_path)
    comparison = setup(params)
    study = setup(params, study_experiment(params, "gan-tune-gan"))
    best = tmp_path / "reports" / "tuning" / "gan" / "best.json"
    doc = json.loads(best.read_text())
    doc["mlflow"] = {"experiment": "x", "experiment_id": study, "parent_run_id": "p"}
    best.write_text(json.dumps(doc))
    page = build_report(params).read_text(encoding="utf-8")
    md = (tmp_path / "reports" / "comparison.md").read_text(encoding="utf-8")
    run_id = "00" + "ab" * 15
    url = f"http://127.0.0.1:5000/#/experiments/{comparison}/runs/{run_id}"
    assert f'<a href="{url}"><code>{run_id}</code></a>' in page
    assert f"[`{run_id}`]({url})" in md
    study_url = f"http://127.0.0.1:5000/#/experiments/{study}/runs"
    assert f'<a href="{study_url}">gan-tune-gan</a>' in page
    assert f"[gan-tune-gan]({study_url})" in md


def test_long_progress_gif_is_thinned_to_the_budget(tmp_path: Path) -> None:
    params = make_stage_outputs(tmp_path, {"report": {"gif_max_mb": 0.25}})
    size = (tmp_path / "models" / "gan" / "seed0" / "progress.gif").stat().st_size
    assert size > 0.25 * 1024 * 1024  # 4 frames of noisy digits: ~400 kB
    page = build_report(params).read_text(encoding="utf-8")
    gif = tmp_path / "reports" / "grids" / "gan_progress.gif"
    assert gif.stat().st_size <= 0.25 * 1024 * 1024
    with Image.open(gif) as im:
        assert im.n_frames == 2  # frames 1 and 3 of 0..3: counted back from the last one
    assert "one frame in 2" in page


def test_nothing_at_all_still_builds(tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path, variants=VARIANTS))
    page = build_report(params).read_text(encoding="utf-8")
    assert "optuna-dashboard" not in page  # linked beside the MLflow UI only once a study ran
    rows = _parse(page).tables["score-table"]
    assert len(rows) == len(VARIANTS) + 1 + N_PUBLISHED
    assert "No scores yet" in page


PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const b = document.body.dataset;
  b.rows = document.querySelectorAll("table#score-table tbody tr[data-row]").length;
  b.imgs = imgs.length;
  b.imgsOk = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  b.pageOverflow = document.documentElement.scrollWidth > document.documentElement.clientWidth;
  const wrap = document.querySelector("#score-table").parentElement;
  b.tableScrolls = wrap.scrollWidth > wrap.clientWidth;
  b.done = "1";
});
</script>
"""


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    assert exe is not None
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_renders_in_headless_chromium(built: tuple[Params, Path], tmp_path: Path) -> None:
    _, index = built
    probe = tmp_path / "probe.html"
    probe.write_text(
        index.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8"
    )
    # A narrow window: the wide score table must scroll in its box, not widen the page.
    dom = _chromium(
        ["--window-size=1000,2000", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        tmp_path / "profile",
    )
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stderr[-2000:]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("done") == "1", attrs
    assert attrs["rows"] == str(len(VARIANTS) + 1 + N_PUBLISHED)
    assert attrs["imgs"] == "23" and attrs["imgs-ok"] == "23"
    assert attrs["page-overflow"] == "false"
    assert attrs["table-scrolls"] == "true"

    shot = tmp_path / "report.png"
    result = _chromium(
        ["--window-size=1400,3000", f"--screenshot={shot}", index.as_uri()], tmp_path / "profile"
    )
    assert shot.is_file() and shot.stat().st_size > 10_000, result.stderr[-2000:]


def test_a_runs_model_card_spares_the_report_the_registry_and_torch(
    tmp_path: Path, prepared_dir: Path
) -> None:
    """train writes each model's description, family, conditional flag and literature rows
    into summary.json; the report reads them there, in a process that never imports torch."""
    import sys

    from pipeline.infra.params import load_params
    from pipeline.stages.train import train_variant
    from tests.conftest import TINY, deep_update, write_params

    over = deep_update(TINY, {"data": {"dir": str(prepared_dir)}, "train": {"subset": 128}})
    path = write_params(tmp_path, over, variants=["cgan", "wgan_gp"])
    params = load_params(path)
    for name in ("cgan", "wgan_gp"):
        train_variant(params, name, epochs=1, track=False, progress=False)
        summary = json.loads(layout.summary_path(params, name).read_text())
        v = registry.get(name)
        assert summary["model"] == {
            "description": v.description, "family": v.family, "conditional": v.conditional,
            "published": [list(row) for row in v.published],
        }  # fmt: skip
    code = (
        "import sys\n"
        "from pipeline.infra.params import load_params\n"
        "from pipeline.stages.report import build_report\n"
        f"build_report(load_params({str(path)!r}))\n"
        "print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    page = (layout.report_dir(params) / "comparison.md").read_text()
    for name in ("cgan", "wgan_gp"):
        assert registry.get(name).description in page
    published = registry.get("wgan_gp").published
    assert published and all(label in page for label, _ in published)
