"""MLflow for a study: in the study's own experiment (``{tracking.experiment}/{study}``), one
parent run per study and tracking store, one nested run per trial."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.hyper import Hyper
from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError, describe
from pipeline.stages.tune.common import (
    ATTR_PARENT,
    ATTR_ROLE,
    ATTR_RUN,
    OBJECTIVE,
    PARENT_WAIT_S,
    PENDING,
    _log,
    _poll,
)
from pipeline.stages.tune.storage import public_url

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient


def parent_attr(params: Params) -> str:
    """The study user attr holding the MLflow parent run id for this worker's tracking store.

    Workers sharing a tracking server share one parent run; workers logging to their own
    SQLite file (one per machine) each get theirs, so no worker points at a run its store
    does not hold.
    """
    from pipeline.infra.tracking import resolve_uri

    uri = resolve_uri(params)
    if not uri.startswith(("http://", "https://")):
        uri = f"{socket.gethostname()}:{uri}"
    return f"{ATTR_PARENT}:{hashlib.sha1(uri.encode()).hexdigest()[:10]}"


class _Tracker:
    """One MLflow parent run per study, one nested run per trial (MlflowClient, explicit ids)."""

    def __init__(self, params: Params, variant: str, study_name: str, storage_url: str) -> None:
        self.params = params
        self.variant = variant
        self.study_name = study_name
        self.storage_url = public_url(storage_url)
        self.parent_id: str | None = None
        from pipeline.infra.tracking import study_experiment

        # The study's own experiment: trials do not crowd the comparison's run list.
        self.experiment = study_experiment(params, study_name)
        self._warned: set[str] = set()

    def client(self) -> MlflowClient:
        from pipeline.infra.tracking import client

        return client(self.params)

    def prepare(self) -> None:
        """Create the store and experiment up front, one worker at a time.

        Workers started together on one machine would otherwise run MLflow's SQLite schema
        migrations concurrently, which corrupts a new database: a file lock beside it
        serialises them. Other races (the experiment created twice) are retried.
        """
        from pipeline.infra.tracking import TrackingError, resolve_uri, setup

        uri = resolve_uri(self.params)
        lock_path = None
        if uri.startswith("sqlite:///"):
            # In the temp dir (not beside the database, where git would see it).
            digest = hashlib.sha1(uri.encode()).hexdigest()[:16]
            lock_path = Path(tempfile.gettempdir()) / f"pipeline-mlflow-{digest}.lock"
        for attempt in range(4):
            try:
                with _file_lock(lock_path):
                    setup(self.params)
                    setup(self.params, self.experiment)
                return
            except TrackingError:
                raise
            except Exception as err:
                if attempt == 3:
                    raise PipelineError(f"MLflow setup failed: {describe(err)}") from None
                time.sleep(1.0 + attempt)

    def _new_parent(self, budget: dict[str, Any]) -> str:
        from pipeline.infra.tracking import git_commit, setup

        c = self.client()
        tags = {
            "optuna.study": self.study_name,
            "optuna.storage": self.storage_url,
            "variant": self.variant,
            "stage": "tune",
            "git_commit": git_commit(self.params.root),
        }
        run = c.create_run(setup(self.params, self.experiment), run_name=self.study_name, tags=tags)
        c.log_batch(
            run.info.run_id,
            params=_mlflow_params({"variant": self.variant, **budget}),
        )
        return run.info.run_id

    def links(self) -> dict[str, str | None] | None:
        """Where the study is in MLflow, for best.json and the report: the experiment's name
        and id and this store's parent run; None when the store cannot say."""
        from pipeline.infra.tracking import setup

        def read() -> dict[str, str | None]:
            exp_id = setup(self.params, self.experiment)
            return {"experiment": self.experiment, "experiment_id": exp_id,
                    "parent_run_id": self.parent_id}  # fmt: skip

        return self._safe("experiment lookup", read)

    def claim(self, study: optuna.Study) -> None:
        """Creator only, right after creating the study: "my parent run is on its way"."""
        study.set_user_attr(parent_attr(self.params), PENDING)

    def attach(self, study: optuna.Study, created: bool, budget: dict[str, Any]) -> None:
        """Find (or create and record) the study's parent run in this tracking store."""
        from mlflow.exceptions import MlflowException

        key = parent_attr(self.params)
        parent = study.user_attrs.get(key)
        if not created:
            # A study created a moment ago: its creator may be about to claim this store, or
            # be creating the parent run right now. Wait for it rather than make a second one.
            if parent is None and not study.get_trials(deepcopy=False):
                parent = _poll(lambda: study.user_attrs.get(key), 5.0, lambda v: v is not None)
            if parent == PENDING:
                parent = _poll(
                    lambda: study.user_attrs.get(key), PARENT_WAIT_S, lambda v: v != PENDING
                )
        if parent == PENDING:
            parent = None
        c = self.client()
        if parent is not None:
            try:
                c.get_run(parent)
            except MlflowException:  # deleted from the store since
                parent = None
        if parent is None:
            parent = self._new_parent(budget)
            study.set_user_attr(key, parent)
        self.parent_id = parent
        with contextlib.suppress(MlflowException):
            c.update_run(parent, status="RUNNING")

    def _safe(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as err:  # tracking must never fail a trial
            key = f"{what}: {describe(err)}"
            if key not in self._warned:
                self._warned.add(key)
                _log(f"warning: MLflow {what} failed ({describe(err)}); tuning goes on")
            return None

    def start_trial(self, trial: optuna.Trial, hyper: Hyper, epochs: int) -> str | None:
        def create() -> str:
            from pipeline.infra.tracking import setup

            c = self.client()
            tags = {
                "mlflow.parentRunId": self.parent_id or "",
                "optuna.study": self.study_name,
                "optuna.trial": str(trial.number),
                "optuna.state": "RUNNING",
                "variant": self.variant,
                "stage": "tune-trial",
                "worker": f"{socket.gethostname()}:{os.getpid()}",
            }
            if trial.user_attrs.get(ATTR_ROLE):
                tags["optuna.role"] = str(trial.user_attrs[ATTR_ROLE])
            run = c.create_run(
                setup(self.params, self.experiment),
                run_name=f"{self.study_name}-{trial.number}",
                tags=tags,
            )
            values = {
                **dict(trial.params),
                "epochs": epochs,
                "hyper.lr": hyper.lr,
                "hyper.betas": list(hyper.betas),
                "hyper.n_critic": hyper.n_critic,
                "hyper.optimizer": hyper.optimizer,
                **{f"hyper.options.{k}": v for k, v in hyper.options.items()},
            }
            c.log_batch(run.info.run_id, params=_mlflow_params(values))
            return run.info.run_id

        return self._safe("trial run creation", create)

    def epoch(self, run_id: str | None, value: float, epoch: int) -> None:
        if run_id is None:
            return
        self._safe(
            "metric logging",
            lambda: self.client().log_metric(run_id, OBJECTIVE, value, step=epoch),
        )

    def end_trial(
        self, run_id: str | None, state: str, value: float | None, reason: str | None = None
    ) -> None:
        if run_id is None:
            return
        status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED"}.get(state, "FAILED")
        if reason == "interrupted":
            status = "KILLED"

        def end() -> None:
            from mlflow.entities import Metric, RunTag

            c = self.client()
            tags = [RunTag("optuna.state", state)]
            if reason:
                tags.append(RunTag("reason", reason[:5000]))
            metrics = []
            if value is not None:
                metrics.append(Metric(f"final_{OBJECTIVE}", value, int(time.time() * 1000), 0))
            c.log_batch(run_id, metrics=metrics, tags=tags)
            c.set_terminated(run_id, status)

        self._safe("trial run end", end)

    def artifact(self, run_id: str | None, path: Path) -> None:
        if run_id is not None and path.is_file():
            self._safe("artifact logging", lambda: self.client().log_artifact(run_id, str(path)))

    def progress(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Best-so-far on the parent run (step = trial number)."""
        if self.parent_id is None:
            return
        try:
            best = study.best_value
        except ValueError:
            return
        parent = self.parent_id
        self._safe(
            "parent metric",
            lambda: self.client().log_metric(parent, f"best_{OBJECTIVE}", best, step=trial.number),
        )

    def close(self, status: str) -> None:
        if self.parent_id is not None:
            parent = self.parent_id
            self._safe("parent run end", lambda: self.client().set_terminated(parent, status))

    def on_stale(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Heartbeat lost: the dead worker's trial run ends FAILED too."""
        run_id = trial.user_attrs.get(ATTR_RUN)
        self.end_trial(run_id, "FAIL", None, "worker stopped sending heartbeats (killed?)")


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX; a no-op elsewhere or for None)."""
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _mlflow_params(values: dict[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    from pipeline.infra.tracking import flat_str_params

    return [Param(k, v) for k, v in flat_str_params(values).items()]
