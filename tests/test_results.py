"""profiles/lucic.yaml and the results snapshot's checks (the snapshot of a real chain is
tested in test_dvc.py, on the smoke profile's outputs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.core.variants.base import registry
from pipeline.infra.config import Params
from pipeline.infra.data import SPLITS
from pipeline.infra.params import load_params, merge_overrides
from tests.conftest import REPO


def _merged(root: Path, *profiles: str) -> tuple[dict, Params]:
    """params.yaml with ``profiles`` merged in turn, as scripts/results.sh merges them."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for name in profiles:
        raw = merge_overrides(raw, yaml.safe_load((REPO / "profiles" / name).read_text()))
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw, load_params(root / "params.yaml")


def test_the_lucic_profile_names_every_model_and_trains_them_alike_on_the_full_protocol(
    tmp_path: Path,
) -> None:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    profile = yaml.safe_load((REPO / "profiles" / "lucic.yaml").read_text())
    # A model added to params.yaml must be given a budget here or left out by name (null).
    assert set(profile["variants"]) == set(base["variants"]), "list every variant of params.yaml"
    _, params = _merged(tmp_path / "pass1", "lucic.yaml")
    dropped = {v for v, block in profile["variants"].items() if block is None}
    assert set(params.variants) == set(base["variants"]) - dropped
    # One budget for every model it keeps: the epochs each one actually trains, after its
    # published defaults, are the same (a comparison at unequal budgets would mean nothing).
    budgets = {registry.get(v).resolve(params.variants[v]).epochs for v in params.variants}
    assert len(budgets) == 1
    # Lucic et al.'s protocol: the whole training set, as many samples as real images, and the
    # real images are the whole MNIST test split.
    assert params.train.subset is None and params.classifier.subset is None
    assert params.sample.n == params.evaluate.n_real == SPLITS["test"][2]
    # The Inception evaluator needs downloaded weights and runs at ~6 images/s on a CPU.
    assert "inception" not in params.evaluate.extractors
    assert len(params.train.seeds) == 1  # the first pass trains each model once


def test_the_seeds_pass_only_adds_seeds_to_models_of_the_first_pass(tmp_path: Path) -> None:
    """profiles/lucic_seeds.yaml, merged over the first pass's params in the same copy: every
    setting a kept model's stages read is the first pass's, so DVC finds the first pass's
    runs up to date and only the new seeds train."""
    first_raw, first = _merged(tmp_path / "pass1", "lucic.yaml")
    second_raw, second = _merged(tmp_path / "pass2", "lucic.yaml", "lucic_seeds.yaml")
    assert set(first.train.seeds) < set(second.train.seeds)
    assert len(second.train.seeds) >= 2 and len(second.variants) >= 2  # intervals, pairs
    assert set(second.variants) < set(first.variants)
    for v in second.variants:
        assert second_raw["variants"][v] == first_raw["variants"][v], v
    for raw in (first_raw, second_raw):
        del raw["variants"], raw["train"]["seeds"]
    assert second_raw == first_raw


def test_a_chain_without_outputs_is_a_one_line_error_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    out = tmp_path / "snapshot"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "results", "--params", str(tmp_path / "params.yaml"),
         "--out", str(out), "--command", "make results", "--commit", "abc", "--profile", "p"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "metrics/gan/seed0.json: not found; run the whole chain" in proc.stderr
    assert not out.exists()


def test_null_under_variants_drops_a_model_and_nowhere_else() -> None:
    base = {"train": {"subset": 5}, "variants": {"gan": {}, "ddpm": {"epochs": 3}}}
    out = merge_overrides(base, {"train": {"subset": None}, "variants": {"ddpm": None}})
    assert out == {"train": {"subset": None}, "variants": {"gan": {}}}
    assert base["variants"] == {"gan": {}, "ddpm": {"epochs": 3}}  # the input is untouched


def test_a_left_out_model_is_stated_with_its_rate_and_the_hours_it_would_take(
    tmp_path: Path,
) -> None:
    from pipeline.infra.errors import PipelineError
    from pipeline.stages.results_extra import left_out_lines, read_left_out

    rate = {"steps_per_s": 0.5, "epochs": 10, "steps_per_epoch": 900, "steps": 4,
            "device": "cpu", "threads": 2}  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps({"ddpm": rate}))
    (line,) = left_out_lines(read_left_out(tmp_path / "r.json"))
    # 10 x 900 = 9,000 steps at 0.5 steps/s = 18,000 s = 5 h
    assert line.startswith("- **ddpm**: not trained here. Measured 0.5 steps/s")
    assert "(cpu, 2 threads, 4 timed steps" in line and "= 9,000 steps ≈ 5 h" in line
    assert read_left_out(None) == {}
    (tmp_path / "bad.json").write_text(json.dumps({"ddpm": {"steps_per_s": 1}}))
    with pytest.raises(PipelineError, match=r"bad.json: ddpm: each needs steps_per_s, epochs"):
        read_left_out(tmp_path / "bad.json")
    with pytest.raises(PipelineError, match=r"nope.json: not found"):
        read_left_out(tmp_path / "nope.json")
