"""run_study: open or resume a study, run this worker's share of the session's trials, write the
results.

Over 300 lines: one study session, start to finish; split after this round's parallel edits.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.variants._known import known
from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError, describe
from pipeline.infra.runlock import remove_abandoned
from pipeline.stages.tune.common import (
    ATTR_BUDGET,
    ATTR_FAIL,
    ATTR_HOST,
    ATTR_PID,
    ATTR_PRUNE,
    ATTR_ROLE,
    ATTR_SESSION,
    ATTR_VARIANT,
    MAX_FAILURES_IN_A_ROW,
    OBJECTIVE,
    SCRATCH_PREFIX,
    _log,
    _quiet_optuna,
    default_study_name,
    scratch_dir,
    tune_command,
)
from pipeline.stages.tune.local import Claim, live_running, sweep_dead
from pipeline.stages.tune.objective import _Objective
from pipeline.stages.tune.results import _fmt_params, counts, study_results, write_results
from pipeline.stages.tune.space import default_trial_params, make_pruner
from pipeline.stages.tune.storage import (
    _fail_stale,
    _heartbeat_enabled,
    _retry_callback,
    open_storage,
    public_url,
    resolve_storage_url,
)
from pipeline.stages.tune.tracking import _Tracker

if TYPE_CHECKING:
    import optuna


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
    params_path: Path | str | None = None,
) -> str:
    """Run (or continue) the variant's Optuna study; returns a short human summary.

    ``trials``: finished trials to add to the study (default ``tune.trials``), shared by all
    workers of the study (see the module docstring); ``timeout``: seconds after which no new
    trial starts; ``storage``: Optuna storage URL (default ``tune.storage``); ``study_name``:
    default ``tune-<variant>``; ``epochs``: training epochs per trial (``tune.epochs``);
    ``seed``: TPE sampler seed (``tune.seed``; trial k of the study samples with seed + k, so a
    resumed study does not repeat its start-up points); ``pruner``: replaces the configured one;
    ``params_path``: the params file as the user named it, repeated (with ``storage`` and
    ``study_name``) in the ``--apply`` hint of the summary.
    Writes ``<tune.out_dir>/<variant>/best.json`` (after every trial) and the plots (at the
    end, also after Ctrl-C or an error).
    """
    import optuna

    from pipeline.infra.devices import resolve_device
    from pipeline.training.evaluator import checkpoint_path, load_checkpoint

    v = known(variant)
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
    for gone in remove_abandoned(scratch_dir(params), SCRATCH_PREFIX):
        _log(f"removed {gone}, the scratch folder of a trial whose worker was killed")
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
        links = tracker.links()  # the study's MLflow experiment, for best.json
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
                write_results(params, st, variant, plots=False, mlflow=links)
            except Exception as err:
                _log(f"warning: best.json not updated ({describe(err)})")

        claim = Claim(params, name)
        retry = _retry_callback(cfg.max_retry)

        def run_trial(trial: optuna.Trial) -> float:
            # RUNNING with its worker recorded: other local workers now count it as live.
            trial.set_user_attr(ATTR_PID, os.getpid())
            trial.set_user_attr(ATTR_HOST, socket.gethostname())
            claim.release()
            return objective(trial)

        start = time.monotonic()
        stop = "target reached"
        status = "FINISHED"
        poll = min(float(cfg.heartbeat_s), 5.0)
        waited = False
        try:
            while True:
                claim.release()  # from the last pass, if no trial started
                claim.acquire()
                if timeout is not None and time.monotonic() - start >= timeout:
                    stop = "timeout"
                    break
                if fails_in_a_row >= MAX_FAILURES_IN_A_ROW:
                    last = mine[-1].user_attrs.get(ATTR_FAIL, "see the log") if mine else "?"
                    raise PipelineError(
                        f"{name}: {fails_in_a_row} trials in a row failed (last: {last}); stopped"
                    )
                _fail_stale(study)
                for number in sweep_dead(study, retry, tracker.on_stale):
                    _log(f"{name}: trial {number} FAIL: its worker died; queued again")
                now = counts(study)
                # With a heartbeat, running trials are live or soon failed and re-queued: they
                # count towards the target, and the worker waits for them before leaving, so
                # a dead worker's trial is always retried and nothing is left RUNNING/WAITING.
                # (A RUNNING trial that never sent a heartbeat, e.g. one started by plain
                # Optuna code, is waited for too: Ctrl-C is safe while waiting.) Without one
                # (journal), only this machine's workers are known: their live trials count,
                # their dead ones were swept above; other machines' trials do not count.
                heartbeat = _heartbeat_enabled(study)
                pending = now.running if heartbeat else live_running(study)
                if not now.waiting and now.finished + pending >= target:
                    if not pending:
                        break
                    if not waited:
                        _log(f"{name}: waiting for {pending} running trial(s) to finish")
                        waited = True
                    claim.release()
                    time.sleep(poll)
                    continue
                waited = False
                study.sampler = optuna.samplers.TPESampler(
                    seed=seed + len(study.get_trials(deepcopy=False))
                )
                try:
                    study.optimize(
                        run_trial, n_trials=1, catch=(Exception,), callbacks=[after_trial]
                    )
                    if objective.fatal is not None:
                        again = tune_command(
                            variant, params_path=params_path, storage=storage, study_name=name
                        )
                        raise PipelineError(
                            f"{name}: stopped: {objective.fatal} -- this process's CUDA state "
                            "is not safe after a failed capture; set train.cuda_graphs: false "
                            f"and rerun `{again}` (the study continues)"
                        )
                except (KeyboardInterrupt, PipelineError):
                    raise
                except Exception as err:  # storage trouble, or our trial was failed as stale
                    fails_in_a_row += 1
                    _log(f"warning: {name}: trial bookkeeping failed ({describe(err)})")
                    if fails_in_a_row >= MAX_FAILURES_IN_A_ROW:
                        raise PipelineError(
                            f"{name}: storage errors in a row ({describe(err)}); stopped"
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
            claim.release()
            try:
                path = write_results(params, study, variant, mlflow=links)
            except Exception as err:
                path = None
                _log(f"warning: tuning results not written ({describe(err)})")
            tracker.close(status)
            if stop == "interrupted":
                _log(
                    f"{name}: interrupted; {counts(study).finished} finished trial(s) kept"
                    + (f"; results -> {path}" if path else "")
                )

    apply_cmd = tune_command(
        variant, params_path=params_path, storage=storage, study_name=name, apply=True
    )
    return _summary(study, variant, mine, stop, path, apply_cmd)


def _summary(
    study: optuna.Study,
    variant: str,
    mine: list[optuna.trial.FrozenTrial],
    stop: str,
    path: Path | None,
    apply_cmd: str,
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
            f"{_fmt_params(doc['best_params'])}); apply with `{apply_cmd}`"
        )
    if path is not None:
        lines.append(f"results -> {path}")
    return "\n".join(lines)
