"""The report package: golden files, what the score table shows, sample grids at integer
scale, curve panels from the columns present, and no hand-written markup outside templates.

Golden files: ``tests/golden/report/{index.html,comparison.md}`` are the report of the fixed
fake inputs of tests/test_report.py. After an intended change, regenerate them with

    PIPELINE_REGENERATE_GOLDEN=1 pytest tests/test_report_page.py -k golden

and review the diff. In index.html the base64 payload of each embedded image is replaced by
a marker (PNG bytes of plots depend on the matplotlib and zlib builds); everything else,
image sizes included, is compared byte for byte.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest

from pipeline.infra import layout
from pipeline.infra.params import load_params
from pipeline.stages.report import NOT_COMPUTED, build_report
from pipeline.stages.report.inputs import _Reader
from pipeline.stages.report.plots import curve_panels
from tests.conftest import REPO
from tests.test_report import VARIANTS, _parse, make_stage_outputs

GOLDEN = Path(__file__).parent / "golden" / "report"


def _normalised(text: str, root: Path) -> str:
    text = re.sub(r"(data:image/[a-z]+;base64,)[A-Za-z0-9+/=]+", r"\1(elided)", text)
    return text.replace(str(root.resolve()), "<ROOT>").replace(str(root), "<ROOT>")


@pytest.mark.parametrize("name", ["index.html", "comparison.md"])
def test_golden_files(tmp_path: Path, name: str) -> None:
    root = tmp_path / "project"
    build_report(make_stage_outputs(root))
    got = _normalised((root / "reports" / name).read_text(encoding="utf-8"), root)
    golden = GOLDEN / name
    if os.environ.get("PIPELINE_REGENERATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got, encoding="utf-8")
    assert golden.is_file(), f"{golden} missing: regenerate (see this module's docstring)"
    assert got == golden.read_text(encoding="utf-8"), (
        f"{name} differs from {golden}; if intended, regenerate (see this module's docstring)"
    )


def _classifier_only(root: Path) -> Path:
    params = make_stage_outputs(root, {"evaluate": {"extractors": ["classifier"]}})
    for path in (root / "metrics").rglob("*.json"):
        doc = json.loads(path.read_text())
        del doc["inception"]
        path.write_text(json.dumps(doc))
    return build_report(params)


def test_only_computed_extractors_get_columns(tmp_path: Path) -> None:
    index = _classifier_only(tmp_path)
    page = index.read_text(encoding="utf-8")
    header = page[page.index('<table id="score-table">') : page.index("</thead>")]
    assert "Inception" not in header and "MNIST classifier" in header
    rows = _parse(page).tables["score-table"]
    keys = [k for k, _ in rows]  # no published rows (they are Inception FIDs)
    assert sorted(keys) == sorted([f"variant:{v}" for v in VARIANTS] + ["floor"])
    assert dict(rows)["variant:dcgan"][1][0] == "1.10★"  # classifier FID right after samples
    lead = page[page.index('<div class="lead">') :][:400]
    assert "the project's MNIST classifier" in lead and "Inception-v3 features" not in lead
    assert "Not computed: inception metrics" in lead
    md = (tmp_path / "reports" / "comparison.md").read_text(encoding="utf-8")
    assert "Inception" not in md.split("## Scores")[1].split("\n\n")[1]  # the table's header
    assert "Not computed: inception metrics" in md
    with (tmp_path / "reports" / "scores.csv").open(newline="") as fh:
        assert next(csv.DictReader(fh))["inception_fid"] == ""


def test_not_computed_differs_from_missing(tmp_path: Path) -> None:
    params = make_stage_outputs(tmp_path)
    doc = json.loads((tmp_path / "metrics" / "gan" / "seed0.json").read_text())
    del doc["inception"], doc["classifier"]["kl_test_labels"]  # an older file without a newer key
    (tmp_path / "metrics" / "gan" / "seed0.json").write_text(json.dumps(doc))
    (tmp_path / "metrics" / "wgan" / "seed0.json").unlink()
    cells = dict(_parse(build_report(params).read_text(encoding="utf-8")).tables["score-table"])
    inc_fid, kl = 1, 10
    assert cells["variant:gan"][inc_fid] == (NOT_COMPUTED, "num group-start not-computed")
    assert cells["variant:wgan"][inc_fid] == ("—", "num group-start missing")
    assert cells["variant:gan"][kl] == ("—", "num missing")
    assert cells["variant:cgan"][kl][0] == "0.0290"


def test_sample_grids_at_integer_scale_and_click_to_enlarge(tmp_path: Path) -> None:
    params = make_stage_outputs(tmp_path)
    page = build_report(params).read_text(encoding="utf-8")
    figure = re.search(r'<figure id="grid-gan" class="pixels">(.*?)</figure>', page, re.S)
    assert figure, "the final grid of gan is not a pixel figure"
    img = re.search(r"<img [^>]*>", figure.group(1)).group(0)
    # save_image of 10x10 digits with 2-px padding: 302 x 302, shown at exactly that size.
    assert 'width="302" height="302"' in img and 'style="--w: 302px"' in img
    assert '<a class="zoom-open" href="#grid-gan"' in figure.group(1)
    assert 'href="#samples"' in figure.group(1)  # the close link
    assert "image-rendering: pixelated" in page
    assert "figure.pixels:target img { width: calc(var(--w) * 2)" in page
    # Plots are not sample grids: smooth, no zoom.
    assert '<figure id="curves-gan" class="pixels">' not in page


def test_curve_panels_follow_the_columns_present(tmp_path: Path) -> None:
    path = tmp_path / "curves.csv"
    path.write_text(
        "epoch,step,g_iters,d_loss,g_loss,d_real,d_fake,k_t,kl,grad_norm_d,elapsed_s\n"
        "1,100,100,0.5,1.2,0.7,0.3,0.01,,2.0,5.0\n2,200,200,0.4,1.1,0.65,0.35,0.02,,1.8,10.0\n"
    )
    params = load_params(REPO / "params.yaml")
    curves = _Reader(params).curves(path)
    assert curve_panels(curves) == [
        ("Losses", ["d_loss", "g_loss"]),
        ("Discriminator outputs", ["d_real", "d_fake"]),
        ("Gradient norms", ["grad_norm_d"]),
        ("k_t", ["k_t"]),  # a new metric gets its own panel; kl (all empty) none
    ]


def test_names_and_values_are_escaped_in_both_the_tables_and_the_prose(tmp_path: Path) -> None:
    params = make_stage_outputs(tmp_path, {"tracking": {"experiment": "<i>exp</i>"}})
    best = tmp_path / "reports" / "tuning" / "gan" / "best.json"
    best.write_text(best.read_text().replace("gan-tune-gan", "<b>study</b>"))
    page = build_report(params).read_text(encoding="utf-8")
    assert "<b>study</b>" not in page and "&lt;b&gt;study&lt;/b&gt;" in page  # a table cell
    assert "<i>exp</i>" not in page and "&lt;i&gt;exp&lt;/i&gt;" in page  # Markdown prose


def test_no_markup_written_outside_the_templates() -> None:
    """`grep -n "html.escape\\|<td\\|<tr" pipeline/` finds nothing outside templates."""
    hits = [
        f"{p.relative_to(REPO)}:{i}"
        for p in sorted((REPO / "pipeline").rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"html\.escape|<td|<tr", line)
    ]
    assert hits == []


def test_model_figures_and_sampling_cost_reach_the_page(tmp_path: Path) -> None:
    """A model's own figures (models/V/seedS/figures/figures.json) get a section with their
    captions; the sample stage's cost per 1,000 images shows in the score table."""
    import shutil

    from pipeline.infra import layout
    from tests.test_report import _parse

    root = tmp_path / "project"
    params = make_stage_outputs(root)
    folder = layout.figures_dir(params, "gan")
    folder.mkdir(parents=True)
    shutil.copy(layout.final_grid(params, "gan"), folder / "sweep.png")
    (folder / "figures.json").write_text(
        json.dumps([{"name": "sweep", "file": "sweep.png", "caption": "code 1 <varied>"}])
    )
    cost = layout.sampling_path(params, "wgan")
    cost.parent.mkdir(parents=True, exist_ok=True)
    cost.write_text(json.dumps({"n": 10000, "seconds": 12.5, "seconds_per_1000": 1.25}))
    page = build_report(params).read_text(encoding="utf-8")
    assert 'id="figures"' in page and "code 1 &lt;varied&gt;" in page
    assert (root / "reports" / "grids" / "gan_sweep.png").is_file()
    md = (root / "reports" / "comparison.md").read_text(encoding="utf-8")
    assert "## Model figures" in md and "code 1 <varied>" in md
    rows = dict(_parse(page).tables["score-table"])
    sampling = [c[0] for c in rows["variant:wgan"]][-1]
    assert sampling == "1.25"
    assert [c[0] for c in rows["variant:gan"]][-1] == "—"  # not recorded for that run


def test_seeds_section_aggregates_only_the_seeds_in_params(tmp_path: Path) -> None:
    """Each variant's row counts the seeds that have a metrics file; a seed removed from
    train.seeds is not aggregated even though its file is still on disk; the paired tests
    run on the seeds both variants have."""
    from tests.test_report import SCORES, SEED_SPREAD

    params = make_stage_outputs(tmp_path, {"train": {"seeds": [0, 1]}})
    extra = tmp_path / "metrics" / "gan" / "seed2.json"  # an old seed, no longer in params
    doc = json.loads((tmp_path / "metrics" / "gan" / "seed0.json").read_text())
    doc["classifier"]["fid"] = 1000.0
    extra.write_text(json.dumps(doc))
    (tmp_path / "metrics" / "wgan" / "seed1.json").unlink()
    page = build_report(params).read_text(encoding="utf-8")
    rows = dict(_parse(page).tables["seeds-table"])
    assert rows["seeds-table:gan"][0][0] == "2 / 2" and rows["seeds-table:wgan"][0][0] == "1 / 2"
    clf_fid = 1 + 5  # seeds, then the five Inception columns
    fid = [SCORES["gan"]["clf_fid"], SCORES["gan"]["clf_fid"] * (1 + SEED_SPREAD[1])]
    assert rows["seeds-table:gan"][clf_fid][0].startswith(f"{sum(fid) / 2:.2f} ± ")
    assert rows["seeds-table:wgan"][clf_fid][0] == f"{SCORES['wgan']['clf_fid']:.2f}"  # one seed
    paired = dict(_parse(page).tables["paired-table"])
    assert "paired-table:gan" not in paired  # the reference itself
    assert paired["paired-table:wgan"][clf_fid - 1][0] == "cannot be tested (n = 1)"
    assert "not distinguishable" in paired["paired-table:dcgan"][clf_fid - 1][0]  # two seeds only
    assert "With 2 seeds the tests have little power" in page


def test_a_reference_outside_params_is_said_plainly(tmp_path: Path) -> None:
    params = make_stage_outputs(tmp_path, {"report": {"reference": "lsgan"}})
    page = build_report(params).read_text(encoding="utf-8")
    assert "paired-table" not in page and "not among the variants in params.yaml" in page


def test_seeds_section_names_its_interval_signs_and_ranked_metrics(tmp_path: Path) -> None:
    """Three seeds: the interval is named as Student's t; wgan's coverage is 9/10 against
    gan's 10/10 on every seed (identical differences: no t-test), so its cell says what the
    seeds show; the rank names its declared metrics."""
    page = build_report(make_stage_outputs(tmp_path)).read_text(encoding="utf-8")
    assert "interval of the mean by Student's t (mean ± t₀.₉₇₅,ₙ₋₁ · s / √n)" in page
    assert "from 20 seeds the percentile bootstrap" in page
    paired = dict(_parse(page).tables["paired-table"])
    coverage = 8  # the five Inception columns, then classifier FID, IS, FID∞, coverage
    assert paired["paired-table:wgan"][coverage][0] == (
        "3/3 seeds worse, all by Δ -1.0 (no spread: no t-test; sign test p ≥ 0.25)"
    )
    assert paired["paired-table:dcgan"][coverage][0].endswith("equal on 3/3 seeds)")
    assert "no test on signs reaches 0.05 below 6 seeds" in page
    assert "Only metrics every variant has are ranked (7 of 7)" in page
    assert "Classifier KL to test labels ↓; not Inception KID" in page


def test_main_table_states_each_runs_budget(tmp_path: Path) -> None:
    """G and D updates, images seen and wall time per row, read from summary.json (wgan and
    wgan_gp: n_critic 5, a fifth of the generator updates); the page says the budget."""
    root = tmp_path / "project"
    page = build_report(make_stage_outputs(root)).read_text(encoding="utf-8")
    table = _parse(page).tables["score-table"]
    header = page[page.index('<table id="score-table">') : page.index("</thead>")]
    assert "G updates" in header and "D updates" in header and "Images seen" in header
    rows = {k: [c[0] for c in cells] for k, cells in table}
    # the last six cells: G updates, D updates, images seen, time, steps/s, sampling s/1k
    assert rows["variant:wgan"][-6:-2] == ["1,125", "5,628", "360,192", "40 s"]
    assert rows["variant:gan"][-6:-3] == ["5,628", "5,628", "360,192"]
    assert "Budget: matched in epochs" in page
    # A summary without a critic says so (n/a), one from before the counts shows "—".
    summary = layout.variant_dir(load_params(root / "params.yaml"), "gan") / "summary.json"
    doc = json.loads(summary.read_text())
    summary.write_text(json.dumps({**doc, "d_iters": None}))
    dc = layout.variant_dir(load_params(root / "params.yaml"), "dcgan") / "summary.json"
    old = json.loads(dc.read_text())
    del old["images_seen"], old["d_iters"]
    dc.write_text(json.dumps(old))
    page = build_report(load_params(root / "params.yaml")).read_text(encoding="utf-8")
    rows = {k: [c[0] for c in cells] for k, cells in _parse(page).tables["score-table"]}
    assert rows["variant:gan"][-5] == "n/a"
    assert rows["variant:dcgan"][-5:-3] == ["—", "—"]
