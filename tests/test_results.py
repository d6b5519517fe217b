"""profiles/lucic.yaml and the results snapshot's checks (the snapshot of a real chain is
tested in test_dvc.py, on the smoke profile's outputs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.infra.params import load_params, merge_overrides
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
