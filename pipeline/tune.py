"""Optuna tuning of one variant: search space, objective, storage, pruning, MLflow, --apply.

Objective
    The MNIST-classifier FID (pipeline.evaluate.score, classifier extractor only) of
    ``tune.sample_n`` samples drawn with a fixed seed after every epoch of a trial's training;
    lower is better. Each epoch's value is reported to Optuna (step = epoch, 1-based); the
    value of a finished trial is its last epoch's FID. A trial trains with
    :class:`pipeline.train.Trainer` into a temporary directory that is deleted afterwards:
    tuning never writes to ``models/``, ``samples/`` or ``metrics/`` (the evaluator's cache of
    real-image features goes to ``<tune.out_dir>/.cache``).

Search space (:func:`suggest`, ranges from ``tune:`` in params.yaml, Lucic et al. 2018)
    lr log-uniform; beta1, beta2 uniform for Adam variants only (wgan uses RMSprop);
    n_critic for critic variants (``Variant.tunes_n_critic``); plus the variant's own
    ``tune_space`` hook (wgan: clip), whose values go into ``Hyper.options``. The first trial of
    a new study is the variant's published defaults (``Variant.resolve(None)``), enqueued, so
    ``best.json`` can compare the best trial with the defaults at the same budget.

Pruning
    ``PatientPruner(MedianPruner(n_startup_trials, n_warmup_steps), patience)``: a trial is
    stopped when (a) its FID is worse than the median of earlier trials at the same epoch
    (only once ``pruner_startup_trials`` trials have finished, and from the report of epoch
    ``pruner_warmup_epochs`` on) and (b) its last ``pruner_patience + 1`` epochs did not beat
    its own earlier best: a 2,000-sample FID is noisy and GAN curves are not monotone, so a
    slow but improving trial is kept. The earliest prune is at epoch
    ``max(pruner_warmup_epochs, pruner_patience + 2)`` (epoch 3 with the defaults);
    ``pruner_patience: 0`` gives the plain median rule.
    A NaN/inf loss (:class:`~pipeline.train.NonFiniteLossError`) or a non-finite FID prunes the
    trial too; any other exception (CUDA OOM, ...) fails it, with the reason in the trial's user
    attr ``fail_reason``, and the study goes on (it stops after
    :data:`MAX_FAILURES_IN_A_ROW` failures in a row, which point at a setup problem).

Storage, resuming and several workers
    ``--storage`` takes any Optuna storage URL. ``sqlite:///optuna.db`` (the default; a
    relative path resolves against the params file's folder) is for ONE worker at a time.
    For several workers on one study use a server (``postgresql://user@host/db``; the
    psycopg2 driver is picked when psycopg 3 is absent) or, without a server,
    ``journal:///abs/path/optuna.log`` (``journal://rel.log`` is relative to the params file)
    on a shared file system (Optuna's JournalFileBackend). RDB storages (SQLite included) run
    a heartbeat (``tune.heartbeat_s``): a trial whose worker died is failed by the next worker
    after ``tune.grace_s`` and re-queued up to ``tune.max_retry`` times (Optuna's retry
    callback; the retry carries a ``failed_trial`` system attr). Journal storages have no
    heartbeat: a killed worker's trial stays RUNNING there and is not retried.

    Running the same command again continues the same study. ``--trials N`` asks for N more
    finished (COMPLETE or PRUNED) trials, counted for the study, not per worker: the first
    worker records the session's target in the study (user attr ``session``), and workers
    started with the same N while it is not reached join it instead of adding N each; an
    interrupted session is therefore completed by the same command. With a heartbeat, running
    trials count towards the target (a worker starts no trial beyond it) and a worker leaves
    only when none is running or queued, so a dead worker's trial is always retried (which can
    finish one trial more than asked); two workers starting at the same instant can also add
    one. Without a heartbeat (journal) a worker behaves like Optuna's ``MaxTrialsCallback``:
    up to workers - 1 extra trials can finish. Ctrl-C fails the running trial (Optuna) and
    keeps everything finished; the result files are still written.

MLflow
    One parent run per study and tracking store (run name = study name, tag
    ``optuna.study``; its id is kept in the study's user attr ``mlflow_parent_run_id:<store>``
    so every worker and every session logging to that store nests under it) and one child run per trial (tag ``mlflow.parentRunId``, params = the trial's
    hyperparameters, metric ``classifier_fid`` per epoch (step = epoch) and
    ``final_classifier_fid``, tag ``optuna.state`` = COMPLETE / PRUNED / FAIL). Tracking errors
    inside a trial are warnings, never a failed trial.

Results (read by the report)
    ``<tune.out_dir>/<variant>/best.json`` and Optuna's matplotlib plots there
    (``optimization_history.png``, ``intermediate_values.png``, ``param_importances.png``).
    ``--apply`` (:func:`apply_best`) writes the best trial into ``variants.<variant>`` of the
    params file (comments and layout kept, via ruamel.yaml round-trip) and the block it
    replaced into ``applied.json`` beside ``best.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Params, TuneConfig, load_params, parse_params
from pipeline.errors import PipelineError
from pipeline.io import write_json, write_text
from pipeline.variants import Hyper, Variant, registry

if TYPE_CHECKING:
    import optuna
    import torch
    from mlflow import MlflowClient

    from pipeline.train import EpochEnd, RunSpec, TrainResult

OBJECTIVE = "classifier_fid"
MAX_FAILURES_IN_A_ROW = 3
"""A worker stops after this many of its trials failed in a row (a setup problem, not bad luck)."""

# Study user attrs
ATTR_VARIANT = "variant"
ATTR_BUDGET = "budget"
ATTR_SESSION = "session"
ATTR_PARENT = "mlflow_parent_run_id"  # + ":<tracking store digest>", see parent_attr()
PENDING = "pending"
# Trial user attrs
ATTR_ROLE = "role"  # "defaults" on the enqueued published-defaults trial
ATTR_PID = "pid"
ATTR_HOST = "host"
ATTR_RUN = "mlflow_run_id"
ATTR_FAIL = "fail_reason"
ATTR_PRUNE = "prune_reason"

PARENT_WAIT_S = 30.0  # how long a joining worker waits for the creator's MLflow parent run


def parent_attr(params: Params) -> str:
    """The study user attr holding the MLflow parent run id for this worker's tracking store.

    Workers sharing a tracking server share one parent run; workers logging to their own
    SQLite file (one per machine) each get theirs, so no worker points at a run its store
    does not hold.
    """
    from pipeline.tracking import resolve_uri

    uri = resolve_uri(params)
    if not uri.startswith(("http://", "https://")):
        uri = f"{socket.gethostname()}:{uri}"
    return f"{ATTR_PARENT}:{hashlib.sha1(uri.encode()).hexdigest()[:10]}"


def _poll(get: Callable[[], Any], seconds: float, done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + seconds
    value = get()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.25)
        value = get()
    return value


def default_study_name(variant: str) -> str:
    return f"tune-{variant}"


def results_dir(params: Params, variant: str) -> Path:
    return params.path(params.tune.out_dir) / variant


def _variant(name: str) -> Variant:
    try:
        return registry.get(name)
    except KeyError:
        raise PipelineError(
            f"unknown variant {name!r} (known: {', '.join(registry.names())})"
        ) from None


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# search space


def suggest(
    trial: optuna.Trial, variant: Variant, base_hyper: Hyper, tune_cfg: TuneConfig
) -> Hyper:
    """The trial's hyperparameters: ``base_hyper`` with the tuned fields drawn from ``trial``.

    Parameter names: ``lr`` (log-uniform), ``beta1``/``beta2`` (Adam only), ``n_critic``
    (critic variants only) and whatever the variant's ``tune_space`` suggests (into options).
    Works with any trial-like object, e.g. ``optuna.trial.FixedTrial``.
    """
    lr = trial.suggest_float("lr", *tune_cfg.lr, log=True)
    betas = tuple(base_hyper.betas)
    if base_hyper.optimizer == "adam":
        betas = (
            trial.suggest_float("beta1", *tune_cfg.beta1),
            trial.suggest_float("beta2", *tune_cfg.beta2),
        )
    n_critic = base_hyper.n_critic
    if variant.tunes_n_critic:
        n_critic = trial.suggest_int("n_critic", *tune_cfg.n_critic)
    options = dict(base_hyper.options)
    if variant.tune_space is not None:
        options.update(variant.tune_space(trial))
    return Hyper(
        epochs=base_hyper.epochs,
        lr=lr,
        betas=betas,  # type: ignore[arg-type]
        n_critic=n_critic,
        optimizer=base_hyper.optimizer,
        options=options,
    )


def default_trial_params(variant: Variant) -> dict[str, Any]:
    """The published defaults (``Variant.resolve(None)``) as trial parameters (for enqueueing).

    Option defaults are all listed; the ones the variant's ``tune_space`` does not suggest are
    ignored by Optuna.
    """
    hyper = variant.resolve(None)
    out: dict[str, Any] = {"lr": hyper.lr}
    if hyper.optimizer == "adam":
        out["beta1"], out["beta2"] = hyper.betas
    if variant.tunes_n_critic:
        out["n_critic"] = hyper.n_critic
    if variant.tune_space is not None:
        out.update(hyper.options)
    return out


def block_updates(trial_params: dict[str, Any]) -> dict[str, Any]:
    """Trial parameters -> the fields of a ``variants.<name>`` params block."""
    out: dict[str, Any] = {}
    options: dict[str, float] = {}
    for key, value in trial_params.items():
        if key == "lr":
            out["lr"] = float(value)
        elif key == "n_critic":
            out["n_critic"] = int(value)
        elif key not in ("beta1", "beta2"):
            options[key] = float(value)
    if "beta1" in trial_params or "beta2" in trial_params:
        out["betas"] = [float(trial_params["beta1"]), float(trial_params["beta2"])]
    if options:
        out["options"] = options
    return out


def make_pruner(tune_cfg: TuneConfig) -> optuna.pruners.BasePruner:
    """Median rule with start-up trials and warm-up epochs, tolerant of one noisy epoch."""
    import optuna

    median = optuna.pruners.MedianPruner(
        n_startup_trials=tune_cfg.pruner_startup_trials,
        n_warmup_steps=tune_cfg.pruner_warmup_epochs,
    )
    if tune_cfg.pruner_patience == 0:
        return median
    return optuna.pruners.PatientPruner(median, patience=tune_cfg.pruner_patience)


# --------------------------------------------------------------------------------------------
# storage


def resolve_storage_url(params: Params, url: str | None = None) -> str:
    """``url`` (default ``tune.storage``) with relative file paths made absolute.

    ``sqlite:///rel.db`` and ``journal://rel.log`` resolve against the params file's folder;
    ``sqlite:////abs.db`` and ``journal:///abs.log`` are absolute. ``postgresql://`` (or
    ``postgres://``) gets the psycopg2 driver when psycopg 3 is not installed.
    """
    url = url or params.tune.storage
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rest = url[len("sqlite:///") :]
        if rest and rest != ":memory:" and not rest.startswith(":"):
            return "sqlite:///" + str(params.path(rest).resolve())
        return url
    if url.startswith("journal://"):
        rest = url[len("journal://") :]
        if not rest:
            raise PipelineError(f"storage {url!r}: journal://PATH needs a file path")
        return "journal://" + str(params.path(rest).resolve())
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            import importlib.util

            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
                return "postgresql+psycopg2://" + url[len(scheme) :]
            return "postgresql://" + url[len(scheme) :]
    return url


def public_url(url: str) -> str:
    """The storage URL without a password (for logs, MLflow tags and best.json)."""
    if url.startswith("journal://") or "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://***"


def _retry_callback(max_retry: int) -> Callable[..., None]:
    import optuna.storages as st

    cls = getattr(st, "RetryHeartbeatStaleTrialCallback", None) or st.RetryFailedTrialCallback
    return cls(max_retry=max_retry)


def open_storage(
    params: Params,
    url: str | None = None,
    on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.storages.BaseStorage:
    """An Optuna storage object for ``url`` (see :func:`resolve_storage_url`).

    RDB storages get a heartbeat (``tune.heartbeat_s``, grace ``tune.grace_s``) and a callback
    that re-queues a trial whose worker died (``tune.max_retry`` times), then calls
    ``on_stale``. Journal URLs open a JournalFileBackend (no heartbeat).
    """
    import optuna

    resolved = resolve_storage_url(params, url)
    cfg = params.tune
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if resolved.startswith("journal://"):
            from optuna.storages.journal import JournalFileBackend

            path = Path(resolved[len("journal://") :])
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        retry = _retry_callback(cfg.max_retry)

        def stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            retry(study, trial)
            if on_stale is not None:
                on_stale(study, trial)

        engine_kwargs: dict[str, Any] = {}
        if resolved.startswith("sqlite"):
            Path(resolved[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            # The heartbeat thread writes beside the trial: wait for the lock, don't fail.
            engine_kwargs["connect_args"] = {"timeout": 60}
        else:
            engine_kwargs["pool_pre_ping"] = True
        kwargs: dict[str, Any] = {
            "engine_kwargs": engine_kwargs,
            "heartbeat_interval": cfg.heartbeat_s,
            "grace_period": cfg.grace_period_s(),
        }
        try:
            try:
                return optuna.storages.RDBStorage(
                    resolved, heartbeat_stale_trial_callback=stale, **kwargs
                )
            except TypeError:  # optuna < 4.9
                return optuna.storages.RDBStorage(resolved, failed_trial_callback=stale, **kwargs)
        except ImportError as err:
            raise PipelineError(
                f"storage {public_url(resolved)}: its database driver is not installed ({err})"
            ) from None
        except Exception as err:
            raise PipelineError(
                f"storage {public_url(resolved)}: cannot open it ({_reason(err)})"
            ) from None


def _heartbeat_enabled(study: optuna.Study) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


def _fail_stale(study: optuna.Study) -> None:
    import optuna

    if not _heartbeat_enabled(study):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


# --------------------------------------------------------------------------------------------
# MLflow


class _Tracker:
    """One MLflow parent run per study, one nested run per trial (MlflowClient, explicit ids)."""

    def __init__(self, params: Params, variant: str, study_name: str, storage_url: str) -> None:
        self.params = params
        self.variant = variant
        self.study_name = study_name
        self.storage_url = public_url(storage_url)
        self.parent_id: str | None = None
        self._warned: set[str] = set()

    def client(self) -> MlflowClient:
        from pipeline.tracking import client

        return client(self.params)

    def prepare(self) -> None:
        """Create the store and experiment up front, one worker at a time.

        Workers started together on one machine would otherwise run MLflow's SQLite schema
        migrations concurrently, which corrupts a new database: a file lock beside it
        serialises them. Other races (the experiment created twice) are retried.
        """
        from pipeline.tracking import TrackingError, resolve_uri, setup

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
                return
            except TrackingError:
                raise
            except Exception as err:
                if attempt == 3:
                    raise PipelineError(f"MLflow setup failed: {_reason(err)}") from None
                time.sleep(1.0 + attempt)

    def _new_parent(self, budget: dict[str, Any]) -> str:
        from pipeline.tracking import git_commit, setup

        c = self.client()
        tags = {
            "optuna.study": self.study_name,
            "optuna.storage": self.storage_url,
            "variant": self.variant,
            "stage": "tune",
            "git_commit": git_commit(self.params.root),
        }
        run = c.create_run(setup(self.params), run_name=self.study_name, tags=tags)
        c.log_batch(
            run.info.run_id,
            params=_mlflow_params({"variant": self.variant, **budget}),
        )
        return run.info.run_id

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
            key = f"{what}: {_reason(err)}"
            if key not in self._warned:
                self._warned.add(key)
                _log(f"warning: MLflow {what} failed ({_reason(err)}); tuning goes on")
            return None

    def start_trial(self, trial: optuna.Trial, hyper: Hyper, epochs: int) -> str | None:
        def create() -> str:
            from pipeline.tracking import setup

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
                setup(self.params), run_name=f"{self.study_name}-{trial.number}", tags=tags
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

    from pipeline.tracking import flat_str_params

    return [Param(k, v) for k, v in flat_str_params(values).items()]


# --------------------------------------------------------------------------------------------
# the objective


class _EpochScorer:
    """A TrainCallback: after each epoch, sample, score, report to Optuna, maybe prune."""

    def __init__(
        self,
        trial: optuna.Trial,
        eval_params: Params,
        variant: Variant,
        sample_n: int,
        device: torch.device,
        tracker: _Tracker,
        run_id: str | None,
    ) -> None:
        self.trial, self.eval_params, self.variant = trial, eval_params, variant
        self.sample_n, self.device, self.tracker, self.run_id = sample_n, device, tracker, run_id
        self.values: list[float] = []

    def on_start(self, spec: RunSpec, out_dir: Path, resumed_epoch: int) -> None:
        pass

    def on_epoch_end(self, event: EpochEnd) -> None:
        import optuna

        from pipeline.evaluate import score
        from pipeline.sample import generate

        g = event.generator
        g.eval()
        try:
            images, labels = generate(
                g,
                self.sample_n,
                event.spec.z_dim,
                self.variant.conditional,
                self.eval_params.sample.seed,
                self.eval_params.sample.batch_size,
                event.device,
            )
        finally:
            g.train()
        doc = score(self.eval_params, self.variant.name, images, labels, str(event.device))
        value = float(doc["classifier"]["fid"])
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"non-finite {OBJECTIVE} at epoch {event.epoch}")
        self.values.append(value)
        self.trial.report(value, event.epoch)
        self.tracker.epoch(self.run_id, value, event.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {event.epoch} ({OBJECTIVE} {value:.3f})")

    def on_end(self, result: TrainResult) -> None:
        pass

    def on_failure(self, exc: BaseException) -> None:
        pass


@dataclass
class _Objective:
    params: Params
    variant: Variant
    base_hyper: Hyper
    epochs: int
    device: torch.device
    tracker: _Tracker

    def __post_init__(self) -> None:
        p = self.params
        big = self.epochs + 1  # no intermediate checkpoints or grids: the temp dir is thrown away
        self.train_params = p.model_copy(
            update={
                "train": p.train.model_copy(update={"checkpoint_every": big, "grid_every": big})
            }
        )
        # Classifier metrics only; the real-feature cache lives with the tuning results, so
        # that tuning writes nothing under models/ or metrics/ (DVC stage outputs).
        evaluate = p.evaluate.model_copy(
            update={"extractors": ["classifier"], "cache_dir": p.path(p.tune.out_dir) / ".cache"}
        )
        self.eval_params = p.model_copy(update={"evaluate": evaluate})

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        from pipeline.train import NonFiniteLossError, Trainer, run_spec

        trial.set_user_attr(ATTR_PID, os.getpid())
        trial.set_user_attr(ATTR_HOST, socket.gethostname())
        hyper = suggest(trial, self.variant, self.base_hyper, self.params.tune)
        spec = run_spec(self.train_params, self.variant.name, epochs=self.epochs, hyper=hyper)
        run_id = self.tracker.start_trial(trial, hyper, self.epochs)
        trial.set_user_attr(ATTR_RUN, run_id)  # a retry must not point at its dead original's run
        scorer = _EpochScorer(
            trial,
            self.eval_params,
            self.variant,
            self.params.tune.sample_n,
            self.device,
            self.tracker,
            run_id,
        )
        out_dir = Path(tempfile.mkdtemp(prefix=f"tune-{self.variant.name}-{trial.number}-"))
        try:
            trainer = Trainer(
                self.train_params,
                spec,
                out_dir,
                self.device,
                callbacks=[scorer],
                curves_path=None,
                progress=False,
            )
            trainer.run()
            self.tracker.artifact(run_id, out_dir / "grid.png")
            value = scorer.values[-1]
            self.tracker.end_trial(run_id, "COMPLETE", value)
            return value
        except optuna.TrialPruned as exc:
            trial.set_user_attr(ATTR_PRUNE, str(exc))
            self.tracker.end_trial(run_id, "PRUNED", None, str(exc))
            raise
        except NonFiniteLossError as exc:
            trial.set_user_attr(ATTR_PRUNE, str(exc))
            self.tracker.end_trial(run_id, "PRUNED", None, str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except Exception as exc:
            reason = _reason(exc)
            with contextlib.suppress(Exception):
                trial.set_user_attr(ATTR_FAIL, reason[:2000])
            self.tracker.end_trial(run_id, "FAIL", None, reason)
            raise
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                trial.set_user_attr(ATTR_FAIL, "interrupted (Ctrl-C)")
            self.tracker.end_trial(run_id, "FAIL", None, "interrupted")
            raise
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
            if self.device.type == "cuda":
                import torch

                torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# study bookkeeping


@dataclass(frozen=True)
class Counts:
    complete: int
    pruned: int
    fail: int
    running: int
    waiting: int

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def counts(study: optuna.Study) -> Counts:
    from optuna.trial import TrialState as S

    states = [t.state for t in study.get_trials(deepcopy=False)]
    return Counts(*(states.count(s) for s in (S.COMPLETE, S.PRUNED, S.FAIL, S.RUNNING, S.WAITING)))


def _open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    pruner: optuna.pruners.BasePruner,
) -> tuple[optuna.Study, bool]:
    """(study, created): only the worker that really created the study gets True."""
    import optuna

    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="minimize", pruner=pruner
        )
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, pruner=pruner)
        return study, False


def _check_study(study: optuna.Study, variant: str, budget: dict[str, Any]) -> None:
    import optuna

    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise PipelineError(f"study {study.study_name!r} does not minimise; use another --study")
    attrs = study.user_attrs
    other = attrs.get(ATTR_VARIANT)
    if other is not None and other != variant:
        raise PipelineError(
            f"study {study.study_name!r} tunes {other}, not {variant}; use another --study"
        )
    old = attrs.get(ATTR_BUDGET)
    if old is not None:
        diff = [f"{k} {old.get(k)} -> {v}" for k, v in budget.items() if old.get(k) != v]
        if diff:
            raise PipelineError(
                f"study {study.study_name!r} was run with another per-trial budget "
                f"({'; '.join(diff)}): its scores would not be comparable; restore those "
                "settings or use another --study"
            )


def _session_target(study: optuna.Study, n: int) -> tuple[int, bool]:
    """(finished trials the study should reach, joined an unfinished session)."""
    finished = counts(study).finished
    session = study.user_attrs.get(ATTR_SESSION)
    if isinstance(session, dict) and session.get("trials") == n and finished < session["target"]:
        return int(session["target"]), True
    target = finished + n
    study.set_user_attr(ATTR_SESSION, {"trials": n, "target": target})
    return target, False


def _fmt_params(p: dict[str, Any]) -> str:
    def one(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={one(v)}" for k, v in p.items())


def study_results(study: optuna.Study, variant: str) -> dict[str, Any]:
    """The ``best.json`` document (see the module docstring)."""
    from optuna.trial import TrialState as S

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == S.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None  # type: ignore[arg-type, return-value]
    defaults = [t for t in trials if t.user_attrs.get(ATTR_ROLE) == "defaults"]
    default_value = next((t.value for t in defaults if t.state == S.COMPLETE), None)
    durations = [
        t.duration.total_seconds()
        for t in trials
        if t.state in (S.COMPLETE, S.PRUNED) and t.duration is not None
    ]
    mean_s = sum(durations) / len(durations) if durations else None
    budget = study.user_attrs.get(ATTR_BUDGET, {})
    return {
        "variant": variant,
        "study": study.study_name,
        "objective": f"{OBJECTIVE} (minimize)",
        "best_value": best.value if best else None,
        "best_params": dict(best.params) if best else {},
        "best_trial": best.number if best else None,
        "default_value": default_value,
        "default_params": dict(defaults[0].params) if defaults else None,
        "trials": {
            s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")
        },
        "epochs_per_trial": budget.get("epochs"),
        "sample_n": budget.get("sample_n"),
        # One worker's throughput: 3600 / mean duration of the finished (complete or pruned) trials.
        "trials_per_hour": round(3600.0 / mean_s, 3) if mean_s else None,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _plot(fn: Callable[[], Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = fn()
    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.tight_layout()
    from pipeline.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_results(params: Params, study: optuna.Study, variant: str, plots: bool = True) -> Path:
    """``best.json`` (+ the plots) under ``<tune.out_dir>/<variant>/``; returns best.json."""
    from optuna.visualization import matplotlib as ovm

    out = results_dir(params, variant)
    doc = study_results(study, variant)
    path = out / "best.json"
    write_json(path, doc)
    if not plots:
        return path
    n_complete = doc["trials"]["COMPLETE"]
    jobs: list[tuple[str, Callable[[], Any]]] = []
    if n_complete:
        jobs.append(("optimization_history", lambda: ovm.plot_optimization_history(study)))
        jobs.append(("intermediate_values", lambda: ovm.plot_intermediate_values(study)))
    if n_complete >= 2 and len(doc["best_params"]) > 1:
        jobs.append(("param_importances", lambda: ovm.plot_param_importances(study)))
    for name, fn in jobs:
        try:
            _plot(fn, out / f"{name}.png")
        except Exception as err:  # e.g. importances of constant parameters
            _log(f"warning: {name} plot not written ({_reason(err)})")
    return path


# --------------------------------------------------------------------------------------------
# run_study


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own one line per trial instead
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def run_study(
    params: Params,
    variant: str,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> str:
    """Run (or continue) the variant's Optuna study; returns a short human summary.

    ``trials``: finished trials to add to the study (default ``tune.trials``), shared by all
    workers of the study (see the module docstring); ``timeout``: seconds after which no new
    trial starts; ``storage``: Optuna storage URL (default ``tune.storage``); ``study_name``:
    default ``tune-<variant>``; ``epochs``: training epochs per trial (``tune.epochs``);
    ``seed``: TPE sampler seed (``tune.seed``; trial k of the study samples with seed + k, so a
    resumed study does not repeat its start-up points); ``pruner``: replaces the configured one.
    Writes ``<tune.out_dir>/<variant>/best.json`` (after every trial) and the plots (at the
    end, also after Ctrl-C or an error).
    """
    import optuna

    from pipeline.classifier import checkpoint_path, load_checkpoint
    from pipeline.devices import resolve_device

    v = _variant(variant)
    cfg = params.tune
    n = trials if trials is not None else cfg.trials
    epochs = epochs if epochs is not None else cfg.epochs
    seed = seed if seed is not None else cfg.seed
    if n < 1 or epochs < 1:
        raise PipelineError("--trials and --epochs must be >= 1")
    if timeout is not None and timeout <= 0:
        raise PipelineError("--timeout must be > 0 seconds")
    name = study_name or default_study_name(variant)
    # The objective needs the evaluator CNN: fail before creating anything.
    load_checkpoint(checkpoint_path(params))
    dev = resolve_device(device or params.train.device)
    budget = {
        "epochs": epochs,
        "sample_n": cfg.sample_n,
        "n_real": params.evaluate.n_real,
        "subset": params.train.subset,
        "batch_size": params.train.batch_size,
    }
    url = resolve_storage_url(params, storage)
    tracker = _Tracker(params, variant, name, url)
    tracker.prepare()

    with _quiet_optuna():
        store = open_storage(params, url, on_stale=tracker.on_stale)
        study, created = _open_study(store, name, pruner or make_pruner(cfg))
        if created:
            tracker.claim(study)
            study.set_user_attr(ATTR_VARIANT, variant)
            study.set_user_attr(ATTR_BUDGET, budget)
            tracker.attach(study, True, budget)
            study.enqueue_trial(default_trial_params(v), user_attrs={ATTR_ROLE: "defaults"})
        else:
            _check_study(study, variant, budget)
            tracker.attach(study, False, budget)
        target, joined = _session_target(study, n)
        c0 = counts(study)
        _log(
            f"{name}: {'created' if created else 'continuing'} in {public_url(url)}; "
            f"{c0.finished} finished trial(s), target {target}"
            + (" (joining the unfinished session of the same --trials)" if joined else "")
            + f"; {epochs} epoch(s) per trial on {dev}"
        )
        objective = _Objective(
            params, v, v.resolve(params.variants.get(variant)), epochs, dev, tracker
        )
        mine: list[optuna.trial.FrozenTrial] = []
        fails_in_a_row = 0

        def after_trial(st: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
            nonlocal fails_in_a_row
            mine.append(t)
            fails_in_a_row = fails_in_a_row + 1 if t.state.name == "FAIL" else 0
            what = f"{t.value:.3f}" if t.value is not None else ""
            why = t.user_attrs.get(ATTR_FAIL) or t.user_attrs.get(ATTR_PRUNE) or ""
            secs = t.duration.total_seconds() if t.duration else 0.0
            _log(
                f"{name}: trial {t.number} {t.state.name} {what} ({_fmt_params(t.params)}) "
                f"{secs:.0f} s {why}".rstrip()
            )
            tracker.progress(st, t)
            try:
                write_results(params, st, variant, plots=False)
            except Exception as err:
                _log(f"warning: best.json not updated ({_reason(err)})")

        start = time.monotonic()
        stop = "target reached"
        status = "FINISHED"
        poll = min(float(cfg.heartbeat_s), 5.0)
        waited = False
        try:
            while True:
                if timeout is not None and time.monotonic() - start >= timeout:
                    stop = "timeout"
                    break
                if fails_in_a_row >= MAX_FAILURES_IN_A_ROW:
                    last = mine[-1].user_attrs.get(ATTR_FAIL, "see the log") if mine else "?"
                    raise PipelineError(
                        f"{name}: {fails_in_a_row} trials in a row failed (last: {last}); stopped"
                    )
                _fail_stale(study)
                now = counts(study)
                # With a heartbeat, running trials are live or soon failed and re-queued: they
                # count towards the target, and the worker waits for them before leaving, so
                # a dead worker's trial is always retried and nothing is left RUNNING/WAITING.
                # Without one (journal), a RUNNING trial may be a dead worker's forever.
                # (A RUNNING trial that never sent a heartbeat, e.g. one started by plain
                # Optuna code, is waited for too: Ctrl-C is safe while waiting.)
                heartbeat = _heartbeat_enabled(study)
                pending = now.running if heartbeat else 0
                if not now.waiting and now.finished + pending >= target:
                    if not pending:
                        break
                    if not waited:
                        _log(f"{name}: waiting for {now.running} running trial(s) to finish")
                        waited = True
                    time.sleep(poll)
                    continue
                waited = False
                study.sampler = optuna.samplers.TPESampler(
                    seed=seed + len(study.get_trials(deepcopy=False))
                )
                try:
                    study.optimize(
                        objective, n_trials=1, catch=(Exception,), callbacks=[after_trial]
                    )
                except (KeyboardInterrupt, PipelineError):
                    raise
                except Exception as err:  # storage trouble, or our trial was failed as stale
                    fails_in_a_row += 1
                    _log(f"warning: {name}: trial bookkeeping failed ({_reason(err)})")
                    if fails_in_a_row >= MAX_FAILURES_IN_A_ROW:
                        raise PipelineError(
                            f"{name}: storage errors in a row ({_reason(err)}); stopped"
                        ) from None
        except KeyboardInterrupt:
            status = "KILLED"
            stop = "interrupted"
            raise
        except BaseException:
            status = "FAILED"
            stop = "error"
            raise
        finally:
            try:
                path = write_results(params, study, variant)
            except Exception as err:
                path = None
                _log(f"warning: tuning results not written ({_reason(err)})")
            tracker.close(status)
            if stop == "interrupted":
                _log(
                    f"{name}: interrupted; {counts(study).finished} finished trial(s) kept"
                    + (f"; results -> {path}" if path else "")
                )

    return _summary(params, study, variant, mine, stop, path)


def _summary(
    params: Params,
    study: optuna.Study,
    variant: str,
    mine: list[optuna.trial.FrozenTrial],
    stop: str,
    path: Path | None,
) -> str:
    doc = study_results(study, variant)
    by_state = {s: sum(t.state.name == s for t in mine) for s in ("COMPLETE", "PRUNED", "FAIL")}
    t = doc["trials"]
    lines = [
        f"{study.study_name}: {len(mine)} trial(s) run here ({by_state['COMPLETE']} complete, "
        f"{by_state['PRUNED']} pruned, {by_state['FAIL']} failed; {stop}); study: "
        f"{t['COMPLETE']} complete / {t['PRUNED']} pruned / {t['FAIL']} failed"
    ]
    if doc["best_value"] is not None:
        default = doc["default_value"]
        versus = f" vs defaults {default:.3f}" if default is not None else ""
        lines.append(
            f"best {OBJECTIVE} {doc['best_value']:.3f}{versus} (trial {doc['best_trial']}: "
            f"{_fmt_params(doc['best_params'])}); apply with `pipeline tune {variant} --apply`"
        )
    if path is not None:
        lines.append(f"results -> {path}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# --apply


def _yaml_float(representer: Any, value: float) -> Any:
    # repr() round-trips exactly; YAML 1.1 (PyYAML, which load_params uses) needs a dot in
    # the mantissa and a signed exponent to read "1e-05" as a float.
    text = repr(float(value))
    if "e" in text and "." not in text.split("e")[0]:
        mant, exp = text.split("e")
        text = f"{mant}.0e{exp}"
    if "e" in text and text.split("e")[1][0] not in "+-":
        mant, exp = text.split("e")
        text = f"{mant}e+{exp}"
    if text in ("inf", "-inf", "nan"):
        text = {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}[text]
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _edit_params_text(text: str, variant: str, updates: dict[str, Any], comment: str) -> str:
    """The params file with ``variants.<variant>`` updated; comments and layout kept."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    y = YAML()  # round-trip mode
    y.preserve_quotes = True
    y.width = 4096
    y.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    y.representer.add_representer(float, _yaml_float)
    doc = y.load(text)
    if doc is None:
        doc = CommentedMap()
    variants = doc.get("variants")
    if variants is None:
        variants = doc["variants"] = CommentedMap()
    block = variants.get(variant)
    if block is None:
        block = variants[variant] = CommentedMap()
    for key, value in updates.items():
        if key == "betas":
            seq = block.get("betas")
            if isinstance(seq, CommentedSeq) and len(seq) == len(value):
                for i, b in enumerate(value):  # in place: the list keeps its style
                    seq[i] = float(b)
            else:
                seq = CommentedSeq([float(b) for b in value])
                seq.fa.set_flow_style()
                block["betas"] = seq
        elif key == "options":
            options = block.get("options")
            if options is None:
                options = CommentedMap()
                options.fa.set_flow_style()
                block["options"] = options
            for k, val in value.items():
                options[k] = float(val)
        else:
            block[key] = value
    variants.yaml_add_eol_comment(comment, variant)
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def apply_best(
    params: Params,
    params_path: Path | str,
    variant: str,
    *,
    storage: str | None = None,
    study_name: str | None = None,
) -> str:
    """Write the study's best trial into ``variants.<variant>`` of ``params_path``.

    Sets lr, betas, n_critic and options as tuned (epochs stay); comments and layout of the
    file are kept; the block it replaces goes to ``<tune.out_dir>/<variant>/applied.json`` (the
    published defaults also stay in pipeline/variants/<variant>.py). Returns what changed.
    """
    import optuna
    import yaml

    v = _variant(variant)
    params_path = Path(params_path)
    name = study_name or default_study_name(variant)
    url = resolve_storage_url(params, storage)
    for prefix in ("sqlite:///", "journal://"):
        if url.startswith(prefix) and not Path(url[len(prefix) :]).is_file():
            raise PipelineError(
                f"no tuning storage at {url[len(prefix) :]}; run `pipeline tune {variant}` first"
            )
    with _quiet_optuna():
        store = open_storage(params, url)
        try:
            study = optuna.load_study(storage=store, study_name=name)
        except KeyError:
            raise PipelineError(
                f"no study {name!r} in {public_url(url)}; run `pipeline tune {variant}` first"
            ) from None
        doc = study_results(study, variant)
    if doc["best_value"] is None:
        raise PipelineError(f"study {name!r} has no complete trial yet; nothing to apply")
    updates = block_updates(doc["best_params"])
    old_block = params.variants.get(variant)
    previous = old_block.model_dump(mode="json", exclude_unset=True) if old_block else {}
    resolved_before = v.resolve(old_block)

    text = params_path.read_text()
    default = doc["default_value"]
    comment = (
        f"tuned: {name} trial {doc['best_trial']}, FID {doc['best_value']:.2f}"
        + (f" (defaults {default:.2f})" if default is not None else "")
        + f" at {doc['epochs_per_trial']} epochs; old block in applied.json"
    )
    new_text = _edit_params_text(text, variant, updates, comment)
    # What load_params will read back must be exactly the trial's values.
    new_params = parse_params(
        yaml.safe_load(new_text), params_path.resolve().parent, params_path.name
    )
    hyper = v.resolve(new_params.variants.get(variant))
    check = {"lr": hyper.lr, "betas": list(hyper.betas), "n_critic": hyper.n_critic}
    for key, value in updates.items():
        got = hyper.options if key == "options" else check[key]
        if key == "options":
            got = {k: hyper.options[k] for k in value}
        if got != value:
            raise PipelineError(f"{params_path}: writing variants.{variant}.{key} failed")

    write_json(
        results_dir(params, variant) / "applied.json",
        {
            "variant": variant,
            "study": name,
            "trial": doc["best_trial"],
            "value": doc["best_value"],
            "default_value": default,
            "applied": updates,
            "previous_block": previous,
            "published_defaults": {
                "lr": v.lr,
                "betas": list(v.betas),
                "n_critic": v.n_critic,
                "options": dict(v.options),
            },
            "params_file": str(params_path.resolve()),
            "applied_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    write_text(params_path, new_text)
    load_params(params_path)  # fail loudly (one line) should the result not validate

    def show(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.4g}"
        if isinstance(x, list | tuple):
            return "[" + ", ".join(show(i) for i in x) + "]"
        if isinstance(x, dict):
            return "{" + ", ".join(f"{k}: {show(i)}" for k, i in x.items()) + "}"
        return str(x)

    before = {
        "lr": resolved_before.lr,
        "betas": list(resolved_before.betas),
        "n_critic": resolved_before.n_critic,
        "options": {k: resolved_before.options.get(k) for k in updates.get("options", {})},
    }
    changes = "; ".join(f"{k} {show(before[k])} -> {show(val)}" for k, val in updates.items())
    return (
        f"{changes} (study {name} trial {doc['best_trial']}, {OBJECTIVE} "
        f"{doc['best_value']:.3f}); previous block -> "
        f"{results_dir(params, variant) / 'applied.json'}; `dvc repro` retrains {variant}"
    )
