"""The training run's MLflow record (a TrainCallback): one run per (variant, seed), nested
under the variant's parent, with params, per-epoch metrics, grids, the checkpoint and the
generator as a logged model. The store, client and naming helpers are in tracking.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline.infra.config import Params
from pipeline.infra.faults import kill_point
from pipeline.infra.tracking import (
    client,
    flat_str_params,
    git_commit,
    log_metrics,
    model_name,
    run_name,
    setup,
    variant_parent,
)
from pipeline.infra.tracking_repair import (
    FOLDER_TAG,
    close_orphans,
    logged_model_ready,
    torch_threads,
)


class TrainRecorder:
    """Records a training run in MLflow (a TrainCallback).

    One run per (variant, training seed), named ``<variant>-seed<S>``, tagged ``variant`` and
    ``seed`` and nested under the variant's parent run (:func:`variant_parent`): params
    (flattened resolved config), per-epoch metrics (step = epoch),
    sample grids, the progress GIF, the final checkpoint and the generator as an MLflow model
    named ``<variant>-generator``.
    The run id goes to ``run_id.txt`` beside the checkpoint; a resumed run continues it.
    The run is opened in a thread while the first epoch trains (importing mlflow and
    creating the run take about two seconds on a CPU); every later hook first waits for it
    and fails the run if it could not be opened. The stage checks the store before the
    output folder changes (:func:`~pipeline.infra.tracking.check_store`), so that is rare.
    The two threads import side by side: measured, what opening the run imports (mlflow,
    sqlalchemy, alembic, pandas, ...) and what a scored first epoch imports (torch-fidelity,
    torchvision, PIL, tqdm) share only tqdm.auto's chain, which both import in one order.
    ``load_generator(checkpoint, device) -> (net, config)`` reads the generator to log (handed
    in by the training layer, which knows the nets; tracking sits below it).
    """

    def __init__(
        self,
        params: Params,
        train_config: Mapping[str, Any],
        load_generator: Callable[[Path, str], tuple[Any, Any]],
    ) -> None:
        self.params = params
        self.load_generator = load_generator
        self.train_config = dict(train_config)
        self.run_id: str | None = None
        self.out_dir: Path | None = None
        self._opening: threading.Thread | None = None
        self._open_error: BaseException | None = None

    def on_start(self, spec: Any, out_dir: Path, resumed_epoch: int) -> None:
        self.out_dir = out_dir
        self._opening = threading.Thread(
            target=self._open_in_thread, args=(spec, out_dir), name="mlflow-run", daemon=True
        )
        self._opening.start()

    def _open_in_thread(self, spec: Any, out_dir: Path) -> None:
        try:
            self._open(spec, out_dir)
        except BaseException as err:  # raised in the trainer's thread by _opened
            self._open_error = err

    def _opened(self) -> None:
        """Wait for the run to be open; raise what opening it raised."""
        if self._opening is not None:
            self._opening.join()
            self._opening = None
        err, self._open_error = self._open_error, None
        if err is not None:
            raise err

    def _open(self, spec: Any, out_dir: Path) -> None:
        from mlflow.entities import Param

        from pipeline.infra.io import write_text
        from pipeline.infra.layout import RUN_ID_FILE, read_run_id
        from pipeline.infra.params import flatten

        c = client(self.params)
        exp_id = setup(self.params)
        run_id = read_run_id(out_dir)
        if run_id is not None:
            try:
                c.get_run(run_id)
                c.update_run(run_id, status="RUNNING")
            except Exception:  # the id belongs to another store: start a new run
                run_id = None
        if run_id is None:
            tags = {
                "variant": spec.variant,
                "seed": str(spec.seed),
                "mlflow.parentRunId": variant_parent(c, exp_id, spec.variant),
                "mlflow.source.git.commit": git_commit(self.params.root),
                "git_commit": git_commit(self.params.root),
                "stage": "train",
                FOLDER_TAG: str(out_dir.resolve()),
            }
            run = c.create_run(exp_id, run_name=run_name(spec.variant, spec.seed), tags=tags)
            run_id = run.info.run_id
            kill_point("run-created")  # tests: the run exists, run_id.txt does not yet
            resolved = {"run": spec.as_dict(), "train": self.train_config}
            p = [Param(k, v) for k, v in flat_str_params(flatten(resolved)).items()]
            for i in range(0, len(p), 100):
                c.log_batch(run_id, params=p[i : i + 100])
            write_text(out_dir / RUN_ID_FILE, run_id + "\n")
        self.run_id = run_id
        # The CPU threads this process trains with (train.threads, or torch's default).
        c.set_tag(run_id, "torch_threads", str(torch_threads()))
        close_orphans(c, exp_id, spec.variant, out_dir, keep=run_id)

    def on_epoch_end(self, event: Any) -> None:
        import math
        import sys

        self._opened()
        metrics = {
            f"train.{k}": v
            for k, v in event.metrics.items()
            if k not in ("epoch", "step") and not math.isnan(v)
        }
        try:
            log_metrics(self.params, self.run_id, metrics, step=event.epoch)
            if event.grid is not None:
                client(self.params).log_artifact(self.run_id, str(event.grid), "grids")
        except Exception as err:  # a tracking hiccup must not kill hours of training
            print(f"warning: MLflow logging of epoch {event.epoch} failed: {err}", file=sys.stderr)

    def on_end(self, result: Any) -> None:
        import mlflow
        from mlflow.entities import RunTag

        self._opened()
        c = client(self.params)
        for name in ("progress.gif", "grid.png", "config.json", "checkpoint.pt"):
            path = result.out_dir / name
            if path.is_file():
                c.log_artifact(
                    self.run_id, str(path), "checkpoint" if name.endswith(".pt") else None
                )
        c.log_batch(
            self.run_id,
            metrics=[],
            params=[],
            tags=[RunTag("train_time_s", f"{result.train_time_s:.1f}"),
                  RunTag("steps_per_s", f"{result.steps_per_s:.1f}")],
        )  # fmt: skip
        if self.params.tracking.log_model and not logged_model_ready(c, self.run_id):
            generator, _ = self.load_generator(result.checkpoint, "cpu")
            # MLflow warns that pickled models run code on load; that is the documented
            # trade-off of serialization_format="pickle" (pt2 needs example inputs).
            logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
            with mlflow.start_run(run_id=self.run_id):
                # The record is created first (PENDING) and filled by log_model (READY); a
                # kill in between leaves a PENDING one, which the repair deletes above.
                model = mlflow.initialize_logged_model(
                    name=model_name(result.variant),
                    source_run_id=self.run_id,
                    params=c.get_run(self.run_id).data.params,
                )
                kill_point("model-logging")
                mlflow.pytorch.log_model(
                    generator,
                    name=model_name(result.variant),
                    model_id=model.model_id,
                    serialization_format="pickle",
                    pip_requirements=["torch", "torchvision"],
                )
        c.set_terminated(self.run_id, "FINISHED")

    def on_already_complete(self, result: Any) -> None:
        """A rerun of a finished checkpoint: if its MLflow run did not end FINISHED (killed
        while logging the final artifacts, say), log them again and finish it. RUNNING counts
        as unfinished too (a SIGKILL leaves it so); a failure here is only a warning."""
        import sys

        from pipeline.infra.layout import read_run_id

        run_id = read_run_id(result.out_dir)
        if run_id is None:
            return  # trained without tracking: nothing to repair
        try:
            status = client(self.params).get_run(run_id).info.status
        except Exception:  # another tracking store, or none reachable: not ours to repair
            return
        if status == "FINISHED":
            return
        print(
            f"{result.variant}: MLflow run {run_id} was left {status}; "
            "logging its final artifacts again",
            file=sys.stderr,
        )
        self.run_id, self.out_dir = run_id, result.out_dir
        try:
            self.on_end(result)
        except Exception as err:  # the trained model is fine; only its record is incomplete
            print(f"warning: MLflow run {run_id} not repaired: {err}", file=sys.stderr)

    def on_failure(self, exc: BaseException) -> None:
        try:
            self._opened()
        except BaseException:  # the run never opened: nothing to mark
            return
        if self.run_id is None:
            return
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        try:
            c = client(self.params)
            c.set_tag(self.run_id, "failure", f"{type(exc).__name__}: {exc}"[:5000])
            c.set_terminated(self.run_id, status)
        except Exception:  # never hide the original error behind a tracking error
            pass
