"""Same seed -> same numbers: the first training steps of every pre-existing variant, pinned.

The values in ``tests/golden/first_steps.json`` were produced by the trainer before the step
protocol (commit aaaf033). A refactor of the training code must reproduce them; a change
that is meant to alter the numbers regenerates the file with

    PIN_REGENERATE=1 pytest tests/test_pinned_steps.py

and says so in its commit message. On the torch release that wrote the file the comparison is
exact; on another release (e.g. the GPU machine's) CPU kernels may round differently, so a
relative tolerance of 1e-5 applies there. The runs use two CPU threads (the file was written
with two), because the thread count changes how reductions round.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from pipeline.config import load_params
from pipeline.sample import load_generator
from pipeline.training import train_variant
from tests.conftest import write_params

GOLDEN = Path(__file__).parent / "golden" / "first_steps.json"
PINNED = ["gan", "cgan", "dcgan", "wgan", "wgan_gp"]
STEPS = 20
KEYS = ["d_loss", "g_loss", "d_real", "d_fake", "wasserstein", "gp", "grad_norm_d", "grad_norm_g"]


def _run(name: str, root: Path, prepared_dir: Path) -> dict[str, float | None]:
    path = write_params(
        root, {"data": {"dir": str(prepared_dir)}, "train": {"log_every": 7, "device": "cpu"}}
    )
    params = load_params(path)
    result = train_variant(
        params, name, epochs=1, subset=64 * STEPS, device="cpu", track=False, progress=False
    )
    (row,) = result.history
    g, _ = load_generator(result.checkpoint, "cpu")
    out: dict[str, float | None] = {
        k: (None if k not in row or math.isnan(row[k]) else row[k]) for k in KEYS
    }
    out["generator_sum"] = float(sum(p.detach().double().sum() for p in g.parameters()))
    return out


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", PINNED)
def test_first_steps_match_the_pinned_values(
    name: str, tmp_path: Path, prepared_dir: Path, two_threads: None
) -> None:
    got = _run(name, tmp_path, prepared_dir)
    if os.environ.get("PIN_REGENERATE"):
        doc = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
        doc["torch"] = torch.__version__
        doc.setdefault("values", {})[name] = got
        GOLDEN.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        pytest.skip("golden values regenerated")
    doc = json.loads(GOLDEN.read_text())
    want = doc["values"][name]
    exact = doc["torch"] == torch.__version__
    for key, value in want.items():
        if value is None:
            assert got[key] is None, f"{name}.{key}: expected no value, got {got[key]}"
        elif exact:
            assert got[key] == value, f"{name}.{key}: {got[key]!r} != pinned {value!r}"
        else:
            assert got[key] == pytest.approx(value, rel=1e-5), f"{name}.{key}"
