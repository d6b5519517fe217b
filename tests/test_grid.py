"""`pipeline grid`'s parts on their own: the workers' device pinning and the live view. The
grid end to end (real Dask, DVC, MLflow, a killed client and worker) is in test_dvc.py,
on the project the DVC tests share."""

from __future__ import annotations

import re
import time
from pathlib import Path


def test_gpu_workers_are_pinned_per_device_and_cpu_workers_see_none(tmp_path: Path) -> None:
    from pipeline.infra.params import load_params
    from pipeline.stages.grid.cluster import worker_specs
    from tests.conftest import write_params

    p = load_params(write_params(tmp_path, {"grid": {"per_device": 2}}))
    gpu = worker_specs(p, [0, 1], cores=16)
    assert {k: v["CUDA_VISIBLE_DEVICES"] for k, v in gpu.items()} == {
        "gpu0-0": "0", "gpu0-1": "0", "gpu1-0": "1", "gpu1-1": "1"
    }  # fmt: skip
    cpu = worker_specs(p, [], cores=3)
    assert len(cpu) == 3 and all(v["OMP_NUM_THREADS"] == "1" for v in cpu.values())
    p = load_params(write_params(tmp_path, {"grid": {"workers": 5}}))
    assert len(worker_specs(p, [], cores=2)) == 5
    # No more workers than chains (each pays its imports), spread over the GPUs first.
    assert list(worker_specs(p, [], cores=2, chains=2)) == ["cpu-0", "cpu-1"]
    p = load_params(write_params(tmp_path, {"grid": {"per_device": 2}}))
    spread = worker_specs(p, [0, 1], cores=16, chains=3)
    assert [env["CUDA_VISIBLE_DEVICES"] for env in spread.values()] == ["0", "1", "0"]


def test_the_live_view_reads_epoch_and_speed_from_the_curves_file(tmp_path: Path) -> None:
    from rich.console import Console

    from pipeline.stages.grid.view import ChainRow, table

    curves = tmp_path / "seed0.csv"
    row = ChainRow("gan-0", ("train", "sample", "evaluate"), epochs=4, curves=curves)
    curves.write_text("epoch,step,steps_per_s\n1,10,12.5\n")  # resumed after epoch 1
    row.on_stage("train", time.time() - 20)
    curves.write_text("epoch,step,steps_per_s\n1,10,12.5\n2,20,25.0\n")
    console = Console(width=120, record=True)
    console.print(table([row, ChainRow("gan-1", ("evaluate",), 4, tmp_path / "none")], "g", 0))
    text = console.export_text()
    # one epoch in 20 s since it started here, two to go: ~40 s
    assert re.search(r"gan-0 +│ running │ train │ epoch 2/4, 25.0 steps/s │ ~40 s", text), text
    assert re.search(r"gan-1 +│ queued", text), text
