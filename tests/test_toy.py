"""The toy problems: scores on hand-placed points, JS divergence against closed forms, vector
MLPs, the variants' own hooks, determinism, and `pipeline toy` end to end (MLflow, report)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.nets import MLPDiscriminator, MLPGenerator, NetSpec
from pipeline.core.variants.base import registry
from pipeline.infra.errors import ConfigError
from pipeline.infra.params import load_params
from pipeline.stages.toy.problems import (
    LN2,
    gaussian_bins,
    histogram,
    js_divergence,
    make_problem,
    mode_stats,
    ring_modes,
)
from pipeline.stages.toy.run import not_applicable, train_toy
from pipeline.stages.toy.stage import applicable_variants, run_toy
from tests.conftest import write_params

CPU = torch.device("cpu")
SMALL = {"steps": 30, "frames": 3, "n_eval": 200, "batch_size": 32}


def test_ring_modes_lie_on_the_circle_45_degrees_apart() -> None:
    modes = ring_modes(8, 2.0).double()
    assert torch.allclose(modes.norm(dim=1), torch.full((8,), 2.0).double(), atol=1e-6)
    assert torch.allclose(modes[0], torch.tensor([2.0, 0.0]).double(), atol=1e-6)
    assert torch.allclose(modes[2], torch.tensor([0.0, 2.0]).double(), atol=1e-6)
    # neighbours: chord of 45 degrees
    chord = (modes[1] - modes[0]).norm().item()
    assert chord == pytest.approx(2 * 2.0 * math.sin(math.pi / 8), abs=1e-6)


def test_mode_counting_and_high_quality_share_on_hand_placed_points() -> None:
    modes = ring_modes(8, 2.0)
    std = 0.05  # high quality: within 0.15 of the nearest mode
    m = modes.tolist()
    points = torch.tensor([
        m[0], m[0], [m[0][0] + 0.1, m[0][1]],  # 3 good at mode 0
        [m[3][0], m[3][1] - 0.14], m[3],       # 2 good at mode 3
        [m[5][0] + 0.16, m[5][1]],             # just outside 3 std of mode 5
        [m[6][0], m[6][1] + 0.05],             # 1 good at mode 6
        [0.0, 0.0], [5.0, 5.0],                # far from every mode
    ])  # fmt: skip
    covered, share = mode_stats(points, modes, std, min_count=1)
    assert covered == 3 and share == pytest.approx(6 / 9)
    assert mode_stats(points, modes, std, min_count=2) == (2, pytest.approx(6 / 9))
    assert mode_stats(points, modes, std, min_count=3)[0] == 1
    assert mode_stats(points, modes, std, min_count=4)[0] == 0
    # a wider std makes the outlier at mode 5 count (0.16 < 3 * 0.06)
    assert mode_stats(points, modes, 0.06, min_count=1) == (4, pytest.approx(7 / 9))


def test_js_divergence_bounds_and_symmetry() -> None:
    p = torch.tensor([0.5, 0.5, 0.0, 0.0])
    q = torch.tensor([0.0, 0.0, 0.25, 0.75])
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(p, q) == pytest.approx(LN2, abs=1e-12)  # disjoint supports
    r = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert js_divergence(p, r) == pytest.approx(js_divergence(r, p), abs=1e-12)
    # hand-computed: p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4)
    expected = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])) == pytest.approx(
        expected, abs=1e-12
    )


def test_histogram_js_of_two_gaussians_matches_the_closed_form() -> None:
    """Histograms of samples of N(4, 0.5) and N(5, 0.8) against the exact bin masses (the
    Gaussian CDF, erf), and the binned JS against the continuous one (quadrature)."""
    edges = torch.linspace(0.0, 8.0, 51, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    a = 4.0 + 0.5 * torch.randn(400_000, generator=g)
    b = 5.0 + 0.8 * torch.randn(400_000, generator=g)
    pa, pb = gaussian_bins(4.0, 0.5, edges), gaussian_bins(5.0, 0.8, edges)
    assert pa.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(histogram(a, edges), pa, atol=2e-3)
    closed = js_divergence(pa, pb)
    assert js_divergence(histogram(a, edges), histogram(b, edges)) == pytest.approx(
        closed, abs=3e-3
    )
    # the continuous JS of the densities (fine trapezoid rule) is close to the 50-bin one
    x = torch.linspace(-6.0, 14.0, 200_001, dtype=torch.float64)

    def pdf(mu: float, s: float) -> torch.Tensor:
        return torch.exp(-0.5 * ((x - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    fa, fb = pdf(4.0, 0.5), pdf(5.0, 0.8)
    fm = 0.5 * (fa + fb)
    integrand = 0.5 * fa * (fa / fm).log() + 0.5 * fb * (fb / fm).log()
    continuous = torch.trapezoid(integrand.nan_to_num(0.0), x).item()
    assert 0.1 < continuous < LN2
    assert closed == pytest.approx(continuous, abs=0.01)
    assert js_divergence(gaussian_bins(4.0, 0.5, edges), pa) == pytest.approx(0.0, abs=1e-12)


def test_mlp_nets_take_vector_data_and_the_spec_widths() -> None:
    spec = NetSpec(z_dim=2, img_shape=(2,), widths=(16, 8))
    g, d = MLPGenerator(spec), MLPDiscriminator(spec)
    x = g(torch.randn(5, 2))
    assert x.shape == (5, 2) and x.abs().max() <= 1.0
    assert d(x).shape == (5,)
    assert [m.out_features for m in g.net if isinstance(m, torch.nn.Linear)] == [16, 8, 2]
    assert [m.out_features for m in d.net if isinstance(m, torch.nn.Linear)] == [16, 8, 1]
    one = NetSpec(z_dim=3, img_shape=(1,))
    assert MLPGenerator(one)(torch.randn(4, 3)).shape == (4, 1)
    # MNIST nets keep their own widths
    assert MLPGenerator(NetSpec()).net[0].out_features == 128


def test_which_variants_apply() -> None:
    assert "conditional" in (not_applicable(registry.get("cgan")) or "")
    assert "images" in (not_applicable(registry.get("dcgan")) or "")
    for name in ("gan", "wgan", "wgan_gp", "sngan", "dragan", "softmax_gan"):
        assert not_applicable(registry.get(name)) is None


def _cfg(tmp_path: Path, **over: object):
    return load_params(write_params(tmp_path, {"toy": {**SMALL, **over}})).toy


def test_a_toy_run_uses_the_variants_own_hook_and_objective(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    wgan = registry.get("wgan")
    hyper = wgan.resolve()
    result = train_toy(wgan, hyper, make_problem("ring8"), cfg, CPU)
    clip = hyper.options["clip"]
    params = list(result.nets["discriminator"].parameters())
    assert max(p.abs().max().item() for p in params) <= clip + 1e-7  # clip_weights ran
    assert not result.probability and "wasserstein" in result.frames[-1].losses
    gan = train_toy(registry.get("gan"), registry.get("gan").resolve(),
                    make_problem("gaussian1d"), cfg, CPU)  # fmt: skip
    assert gan.probability and "d_real" in gan.frames[-1].losses
    curve = gan.frames[-1].curve
    assert curve is not None and curve.shape == (200,) and 0 <= curve.min() <= curve.max() <= 1


def test_a_toy_run_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    v = registry.get("wgan_gp")
    runs = [train_toy(v, v.resolve(), make_problem(p), c, CPU)
            for p in ("ring8", "gaussian1d")
            for c in (cfg, cfg, cfg.model_copy(update={"seed": 1}))]  # fmt: skip
    for a, b, other in (runs[:3], runs[3:]):
        assert a.metrics == b.metrics
        assert all(
            torch.equal(f.samples, g.samples) for f, g in zip(a.frames, b.frames, strict=True)
        )
        assert not torch.equal(a.frames[-1].samples, other.frames[-1].samples)
    assert [f.step for f in runs[0].frames] == [0, 10, 20, 30]


def test_pipeline_toy_writes_figures_mlflow_runs_and_the_report_section(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from pipeline.infra.tracking import resolve_uri
    from pipeline.stages.report import build_report

    path = write_params(tmp_path, {"toy": SMALL}, variants=["gan", "wgan", "cgan"])
    params = load_params(path)
    threads = torch.get_num_threads()
    outcome = run_toy(params)
    assert torch.get_num_threads() == threads  # one thread while it ran, restored after
    assert outcome.skipped == {"cgan": "conditional (the toy data have no labels)"}
    summary = json.loads((tmp_path / "toy" / "summary.json").read_text())
    assert set(summary["problems"]) == {"gaussian1d", "ring8"}
    ring, line = summary["problems"]["ring8"]["wgan"], summary["problems"]["gaussian1d"]["gan"]
    assert 0 <= ring["modes"] <= 8 and 0 <= ring["high_quality"] <= 1 and "js" not in ring
    assert 0 <= line["js"] <= LN2 and line["g_iters"] == 30 and ring["g_iters"] == 6
    with Image.open(tmp_path / "toy" / "ring8" / "wgan.gif") as gif:
        assert gif.n_frames == 4
    client = MlflowClient(resolve_uri(params))
    run = client.get_run(ring["run_id"])
    assert run.data.metrics["modes"] == ring["modes"]
    assert run.data.tags["toy.problem"] == "ring8" and run.info.status == "FINISHED"
    assert run.data.params["toy.steps"] == "30"

    html = build_report(params).read_text()
    assert 'id="toy"' in html and "data:image/gif;base64," in html
    assert "Not applicable: cgan" in html and ring["run_id"] in html
    md = (tmp_path / "reports" / "comparison.md").read_text()
    assert "grids/toy/ring8/wgan.gif" in md
    assert (tmp_path / "reports" / "grids" / "toy" / "ring8" / "wgan.gif").is_file()


def test_runs_spread_over_worker_processes_match_the_runs_in_one_process(
    tmp_path: Path,
) -> None:
    def scores_and_gifs(workers: int) -> tuple[dict, dict[str, bytes], int]:
        root = tmp_path / f"w{workers}"
        toy = {**SMALL, "workers": workers}
        outcome = run_toy(load_params(write_params(root, {"toy": toy}, variants=["gan", "wgan_gp"])),
                          track=False)  # fmt: skip
        summary = json.loads((root / "toy" / "summary.json").read_text())
        rows = {p: {v: {k: x for k, x in r.items() if k != "seconds"} for v, r in rs.items()}
                for p, rs in summary["problems"].items()}  # fmt: skip
        gifs = {str(f.relative_to(root)): f.read_bytes() for f in (root / "toy").rglob("*.gif")}
        return rows, gifs, outcome.workers

    one, one_gifs, w1 = scores_and_gifs(1)
    two, two_gifs, w2 = scores_and_gifs(2)
    assert (w1, w2) == (1, 2)
    assert one == two and len(one_gifs) == 4 and one_gifs == two_gifs
    assert list(one["ring8"]) == ["gan", "wgan_gp"]  # the jobs' order, whatever finished first


def test_the_cli_runs_one_variant_and_refuses_unknown_names(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"toy": SMALL})
    runner = CliRunner()
    ok = runner.invoke(app, ["toy", "-p", str(path), "--variant", "lsgan", "--problem", "ring8"])
    assert ok.exit_code == 0, ok.output
    assert "ring8 lsgan: high_quality" in ok.output and "1 runs" in ok.output
    assert sorted(p.name for p in (tmp_path / "toy" / "ring8").iterdir()) == [
        "lsgan.gif", "lsgan.png",
    ]  # fmt: skip
    bad = runner.invoke(app, ["toy", "-p", str(path), "--problem", "spiral"])
    assert bad.exit_code != 0 and "unknown problem 'spiral'" in bad.output
    cond = runner.invoke(app, ["toy", "-p", str(path), "--variant", "cgan"])
    assert cond.exit_code != 0 and "cgan does not apply: conditional" in cond.output


def test_toy_params_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="toy.problems"):
        load_params(write_params(tmp_path, {"toy": {"problems": ["spiral"]}}))
    params = load_params(write_params(tmp_path, {"toy": {"variants": ["gan"]}}))
    run, skipped = applicable_variants(params)
    assert [v.name for v in run] == ["gan"] and skipped == {}
