"""Workers of one study on this machine: who is alive, the trials of the dead, and one lock
that makes "is the target reached? then start a trial" atomic between local workers.

A journal storage has no heartbeat: without these, a killed worker's trial stayed RUNNING
forever and several workers could together finish up to workers - 1 trials more than asked.
Each trial records its worker's pid and host (``ATTR_PID``/``ATTR_HOST``), so a worker can
tell, on its own machine, a trial that is really running from one whose process is gone.
(A pid reused by an unrelated process after the worker died makes its trial look alive until
that process ends; trials of other machines are never judged.)
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pipeline.infra.config import Params
from pipeline.stages.tune.common import ATTR_HOST, ATTR_PID

if TYPE_CHECKING:
    import optuna


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed child not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): it exists
    return state not in ("Z", "X")


def _local_pid(trial: optuna.trial.FrozenTrial) -> int | None:
    pid = trial.user_attrs.get(ATTR_PID)
    if trial.user_attrs.get(ATTR_HOST) != socket.gethostname() or not isinstance(pid, int):
        return None
    return pid


def live_running(study: optuna.Study) -> int:
    """RUNNING trials whose worker is a live process of this machine."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return sum(1 for t in running if (pid := _local_pid(t)) is not None and pid_alive(pid))


def sweep_dead(
    study: optuna.Study,
    retry: Callable[[optuna.Study, optuna.trial.FrozenTrial], None],
    on_dead: Callable[[optuna.Study, optuna.trial.FrozenTrial], None],
) -> list[int]:
    """Fail the RUNNING trials of this machine's dead workers and re-queue each once (``retry``,
    Optuna's retry callback: same parameters, ``failed_trial`` system attr); ``on_dead`` closes
    its MLflow run. Call it under :func:`claim`, so two local workers never sweep one trial.
    Returns the numbers of the trials failed here."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    swept = []
    for t in trials:
        pid = _local_pid(t)
        if t.state != TrialState.RUNNING or pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        try:
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # a heartbeat check of another worker failed it first
        dead = copy.deepcopy(storage.get_trial(t._trial_id))
        if dead.state != TrialState.FAIL:
            continue
        swept.append(t.number)
        if t.number not in retried:
            retry(study, dead)
        on_dead(study, dead)
    return swept


class Claim:
    """An exclusive lock file per study in the project's tuning cache, held from "count the
    trials" until the new trial is RUNNING with its pid recorded (or nothing was started)."""

    def __init__(self, params: Params, study_name: str) -> None:
        self.path = params.path(params.tune.out_dir) / ".cache" / f"claim-{study_name}.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no lock, the old check-then-start race (one extra)
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = self.path.open("a")
            fcntl.flock(f, fcntl.LOCK_EX)
            self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()
