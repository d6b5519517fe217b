"""Optuna tuning of one variant: search space, objective, storage, pruning, MLflow, --apply.

Modules: ``space`` (search space, defaults trial, pruner), ``objective`` (a trial), ``storage``
(Optuna storages, heartbeats), ``tracking`` (MLflow parent/child runs), ``study`` (run_study),
``results`` (best.json, plots), ``apply`` (--apply), ``common`` (shared names), ``local`` (this
machine's workers: liveness, dead trials, the claim lock), ``workers`` (``--jobs N``),
``dashboard`` (``make optuna-dashboard``).

Objective
    The MNIST-classifier FID (pipeline.stages.evaluate.score, classifier extractor only) of
    ``tune.sample_n`` samples drawn with a fixed seed after every epoch of a trial's training;
    lower is better. Each epoch's value is reported to Optuna (step = epoch, 1-based); the
    value of a finished trial is its last epoch's FID. A trial trains with
    :class:`pipeline.training.loop.Trainer` into a temporary directory that is deleted afterwards:
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
    A diverged run (:class:`~pipeline.core.divergence.DivergedError`: a NaN/inf loss, or the
    ``train.divergence`` bounds) or a non-finite FID prunes the trial too; any other exception
    (CUDA OOM, ...) fails it, with the reason in the trial's user
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
    heartbeat: there a worker fails and re-queues the RUNNING trials of dead workers of its
    own machine (by the trial's ``pid``/``host``, :mod:`pipeline.stages.tune.local`); another
    machine's killed trial stays RUNNING. ``--jobs N`` (:mod:`pipeline.stages.tune.workers`) starts
    N local workers of one study (journal or server storage; SQLite is refused).

    Running the same command again continues the same study. ``--trials N`` asks for N more
    finished (COMPLETE or PRUNED) trials, counted for the study, not per worker: the first
    worker records the session's target in the study (user attr ``session``), and workers
    started with the same N while it is not reached join it instead of adding N each; an
    interrupted session is therefore completed by the same command. With a heartbeat, running
    trials count towards the target (a worker starts no trial beyond it) and a worker leaves
    only when none is running or queued, so a dead worker's trial is always retried (which can
    finish one trial more than asked). Workers of one machine count and start trials under one
    lock (:class:`pipeline.stages.tune.local.Claim`), so they finish exactly the target; workers
    of different machines starting at the same instant can add one each. Without a
    heartbeat (journal) the live running trials of this machine's workers count, other
    machines' do not (as Optuna's ``MaxTrialsCallback``: up to workers - 1 extra). Ctrl-C fails the running trial (Optuna) and
    keeps everything finished; the result files are still written.

MLflow
    One parent run per study and tracking store (run name = study name, tag
    ``optuna.study``; its id is kept in the study's user attr ``mlflow_parent_run_id:<store>``
    so every worker and every session logging to that store nests under it) and one child run
    per trial (tag ``mlflow.parentRunId``, params = the trial's
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
