"""``pipeline tune V --jobs N``: N worker processes on this machine share one study.

Each worker is a plain ``pipeline tune`` process (spawned, so no CUDA or MLflow state is
inherited; one torch CPU thread each, on CUDA they share the device) started with the same
``--trials``, so they join one session and finish that many trials in total (see
:mod:`pipeline.stages.tune`). The storage must take several writers: a journal file
(``journal://...``, Optuna's JournalFileBackend) or a database server. SQLite is refused:
several processes writing one SQLite file is where "database is locked" comes from.

This process only watches: it prints the study's progress, reaps its workers and, when one
fails, says so and lets the others go on (the dead worker's trial is failed and queued again
by the next worker to look, :func:`pipeline.stages.tune.local.sweep_dead`). It exits non-zero naming
the first failed worker's one-line reason; rerunning the same command continues the study.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError
from pipeline.infra.faults import WORKER_ENV
from pipeline.stages.tune.common import (
    ATTR_SESSION,
    OBJECTIVE,
    _log,
    _quiet_optuna,
    default_study_name,
    tune_command,
)
from pipeline.stages.tune.results import _fmt_params, counts, study_results
from pipeline.stages.tune.storage import open_storage, public_url, resolve_storage_url

if TYPE_CHECKING:
    import optuna


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    log: Path
    out: IO[bytes]
    reason: str | None = None  # set once it exited non-zero


def _reason(w: _Worker, rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    lines = [ln for ln in w.log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else f"exit code {rc}"


def _progress(storage: optuna.storages.BaseStorage, name: str) -> str | None:
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # not created yet
        return None
    c = counts(study)
    session = study.user_attrs.get(ATTR_SESSION)
    target = session.get("target") if isinstance(session, dict) else None
    done = f"{c.finished}/{target}" if target is not None else str(c.finished)
    return f"{name}: {done} trials finished ({c.running} running, {c.fail} failed)"


def run_workers(
    params: Params,
    variant: str,
    jobs: int,
    *,
    worker_args: list[str],
    trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    params_path: Path | str = "params.yaml",
    poll_s: float = 1.0,
) -> str:
    """Run ``jobs`` workers of the variant's study; returns a short summary.

    ``worker_args``: the ``pipeline tune`` options every worker gets (epochs, seed, device,
    timeout, ...), besides ``--params``/``--storage``/``--study``/``--trials``.
    """
    import optuna

    from pipeline.training.evaluator import checkpoint_path, load_checkpoint

    name = study_name or default_study_name(variant)
    url = resolve_storage_url(params, storage)
    again = tune_command(variant, params_path=params_path, storage=storage, study_name=name)
    if url.startswith("sqlite"):
        raise PipelineError(
            f"--jobs {jobs}: {public_url(url)} is SQLite, which takes one writer at a time "
            "(several processes on one file fail with 'database is locked'); give the workers "
            "a journal file, e.g. `--storage journal://optuna.journal` (or tune.storage), or a "
            "postgresql:// server"
        )
    load_checkpoint(checkpoint_path(params))  # fail once, here, not in every worker
    n = trials if trials is not None else params.tune.trials
    cmd = [sys.executable, "-m", "pipeline", "tune", variant, "--params", str(params_path)]
    cmd += ["--study", name, "--trials", str(n), *worker_args]
    if storage is not None:
        cmd += ["--storage", storage]
    logs = params.path(params.tune.out_dir) / ".cache" / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    workers: list[_Worker] = []
    for i in range(jobs):
        env = {**os.environ, WORKER_ENV: str(i), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        log = logs / f"{name}-{i}.log"
        out = log.open("ab")  # a rerun appends: the last session's lines stay
        # Own process group: a terminal's Ctrl-C reaches only this process, which passes one
        # SIGINT on to each worker (two could interrupt a worker's own clean-up).
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, process_group=0)
        workers.append(_Worker(i, proc, log, out))
    _log(
        f"{name}: {jobs} workers (pids {', '.join(str(w.proc.pid) for w in workers)}) on "
        f"{public_url(url)}; their logs: {logs}/{name}-<i>.log"
    )
    last = None

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `kill PARENT` stops the workers as Ctrl-C does

    main = threading.current_thread() is threading.main_thread()  # signals: main thread only
    old_term = signal.signal(signal.SIGTERM, terminate) if main else None
    try:
        with _quiet_optuna():
            store = open_storage(params, url)
            while True:
                alive = 0
                for w in workers:
                    rc = w.proc.poll()  # reaps: a dead worker is no zombie to its siblings
                    if rc is None:
                        alive += 1
                    elif rc != 0 and w.reason is None:
                        w.reason = _reason(w, rc)
                        _log(
                            f"{name}: worker {w.index} (pid {w.proc.pid}) failed: {w.reason}; "
                            "the others go on"
                        )
                line = _progress(store, name)
                if line is not None and line != last:
                    _log(line + f"; {alive}/{jobs} workers running")
                    last = line
                if not alive:
                    break
                time.sleep(poll_s)
    except KeyboardInterrupt:
        # Each worker fails its running trial and writes the results (like a single run).
        for w in workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGINT)
        for w in workers:
            w.proc.wait()
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, old_term)
        for w in workers:
            w.out.close()

    failed = [w for w in workers if w.reason is not None]
    with _quiet_optuna():
        study = optuna.load_study(study_name=name, storage=store)
    doc = study_results(study, variant)
    t = doc["trials"]
    lines = [
        f"{name}: {jobs} workers; study: {t['COMPLETE']} complete / {t['PRUNED']} pruned / "
        f"{t['FAIL']} failed"
    ]
    if doc["best_value"] is not None:
        lines.append(
            f"best {OBJECTIVE} {doc['best_value']:.3f} (trial {doc['best_trial']}: "
            f"{_fmt_params(doc['best_params'])})"
        )
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        _log("\n".join(lines))
        raise PipelineError(
            f"{name}: worker {first.index} (pid {first.proc.pid}) failed: {first.reason}{more}; "
            f"log {first.log}; rerun `{again} --jobs {jobs}` to continue the study"
        )
    return "\n".join(lines)
