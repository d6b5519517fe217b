"""profiles/lucic.yaml and the results snapshot's checks (the snapshot of a real chain is
tested in test_dvc.py, on the smoke profile's outputs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_params, merge_overrides
from tests.conftest import REPO


def test_the_lucic_profile_trains_every_variant_for_20_epochs_on_the_full_protocol(
    tmp_path: Path,
) -> None:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    profile = yaml.safe_load((REPO / "profiles" / "lucic.yaml").read_text())
    assert set(profile["variants"]) == set(base["variants"]), "list every variant of params.yaml"
    merged = merge_overrides(base, profile)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    params = load_params(tmp_path / "params.yaml")
    assert {v.epochs for v in params.variants.values()} == {20}
    # the protocol of Lucic et al.: full training set, 10k samples vs the 10k test images
    assert params.train.subset is None and params.classifier.subset is None
    assert params.sample.n == 10_000 and params.evaluate.n_real == 10_000
    assert params.evaluate.extractors == ["classifier"]  # the CPU can run it
    assert params.train.seeds == [0]  # one seed: the snapshot's budget


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


def test_the_seeds_pass_trains_gan_and_wgan_gp_at_three_seeds_reusing_pass_one(
    tmp_path: Path,
) -> None:
    """profiles/lucic_seeds.yaml over pass 1's params: gan and wgan_gp only, seeds 0-2, and
    everything a train stage depends on unchanged, so DVC finds seed 0 up to date."""
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    pass1 = merge_overrides(base, yaml.safe_load((REPO / "profiles" / "lucic.yaml").read_text()))
    seeds = yaml.safe_load((REPO / "profiles" / "lucic_seeds.yaml").read_text())
    pass2 = merge_overrides(pass1, seeds)
    assert set(pass2["variants"]) == {"gan", "wgan_gp"} and pass2["train"]["seeds"] == [0, 1, 2]
    assert "ddpm" not in pass1["variants"]  # left out by null, stated with its rate instead
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    for key in stage["params"]:
        section, _, rest = key.partition(".")
        if section == "variants":
            for v in pass2["variants"]:
                assert pass2["variants"][v] == pass1["variants"][v]
        else:
            assert pass2[section].get(rest) == pass1[section].get(rest), key
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(pass2, sort_keys=False))
    assert load_params(tmp_path / "params.yaml").train.seeds == [0, 1, 2]


def test_null_under_variants_drops_a_model_and_nowhere_else() -> None:
    base = {"train": {"subset": 5}, "variants": {"gan": {}, "ddpm": {"epochs": 3}}}
    out = merge_overrides(base, {"train": {"subset": None}, "variants": {"ddpm": None}})
    assert out == {"train": {"subset": None}, "variants": {"gan": {}}}
    assert base["variants"] == {"gan": {}, "ddpm": {"epochs": 3}}  # the input is untouched


def test_a_left_out_model_is_stated_with_its_rate_and_the_hours_it_would_take(
    tmp_path: Path,
) -> None:
    from pipeline.errors import PipelineError
    from pipeline.results_extra import left_out_lines, read_left_out

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
