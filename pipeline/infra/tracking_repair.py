"""What a killed training run leaves in MLflow, and how a rerun tidies it.

A SIGKILL gives the trainer no chance to close its records: a run created before
``run_id.txt`` was written stays RUNNING with no folder pointing at it, and a kill inside
model logging leaves a PENDING logged-model record. The rerun (holding the run folder's lock,
so no live trainer owns these records) closes or removes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient


FOLDER_TAG = "run_folder"
"""Tag of a training run: the absolute run folder it trains into (models/<V>), so that a
rerun can find the run a kill left RUNNING before run_id.txt was written."""


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def close_orphans(c: MlflowClient, exp_id: str, variant: str, out_dir: Path, keep: str) -> None:
    """Mark KILLED every RUNNING run of ``variant`` that trained into ``out_dir`` except
    ``keep``: runs of a trainer killed before it wrote run_id.txt or its first checkpoint.
    The caller holds the run folder's lock, so no live trainer owns them."""
    import sys

    folder = str(out_dir.resolve())
    runs = c.search_runs(
        [exp_id],
        filter_string=f"tags.variant = '{variant}' AND attributes.status = 'RUNNING'",
        max_results=1000,
    )
    for run in runs:
        if run.info.run_id == keep or run.data.tags.get(FOLDER_TAG) != folder:
            continue
        c.set_tag(
            run.info.run_id,
            "failure",
            f"orphaned: its trainer was killed before the first checkpoint; run {keep} replaces it",
        )
        c.set_terminated(run.info.run_id, "KILLED")
        print(
            f"{variant}: MLflow run {run.info.run_id} was left RUNNING by a killed trainer; "
            f"marked KILLED (run {keep} replaces it)",
            file=sys.stderr,
        )


def logged_model_ready(c: MlflowClient, run_id: str) -> bool:
    """Whether ``run_id`` already has a READY logged model; PENDING ones (a kill during
    log_model) are deleted, so that a repair leaves exactly one record."""
    from mlflow.entities import LoggedModelStatus

    exp_id = c.get_run(run_id).info.experiment_id
    models = c.search_logged_models([exp_id], filter_string=f"source_run_id = '{run_id}'")
    ready = False
    for model in models:
        if model.status == LoggedModelStatus.READY:
            ready = True
        elif model.status == LoggedModelStatus.PENDING:
            c.delete_logged_model(model.model_id)
    return ready
