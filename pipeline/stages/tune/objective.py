"""The trial objective: train with the pipeline's Trainer on the training set less a held-out
slice, score the classifier FID against that slice each epoch (never the test set the final
scores use: pipeline.stages.tune.holdout), report, prune.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.hyper import Hyper
from pipeline.core.variants.base import Variant
from pipeline.infra.config import Params
from pipeline.infra.errors import describe
from pipeline.infra.faults import kill_point
from pipeline.infra.runlock import scratch_folder
from pipeline.stages.tune.common import (
    ATTR_FAIL,
    ATTR_HOST,
    ATTR_PID,
    ATTR_PRUNE,
    ATTR_RUN,
    OBJECTIVE,
    SCRATCH_PREFIX,
    scratch_dir,
)
from pipeline.stages.tune.holdout import Holdout, cache_dir, holdout
from pipeline.stages.tune.space import suggest
from pipeline.stages.tune.tracking import _Tracker
from pipeline.training.graphs import GraphCaptureError

if TYPE_CHECKING:
    import optuna
    import torch

    from pipeline.training.loop import EpochEnd, Trainer, TrainResult
    from pipeline.training.spec import RunSpec


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
        reference: Holdout,
    ) -> None:
        self.trial, self.eval_params, self.variant = trial, eval_params, variant
        self.reference = reference
        self.sample_n, self.device, self.tracker, self.run_id = sample_n, device, tracker, run_id
        self.values: list[float] = []

    def on_start(self, spec: RunSpec, out_dir: Path, resumed_epoch: int) -> None:
        pass

    def on_epoch_end(self, event: EpochEnd) -> None:
        import optuna

        from pipeline.stages.evaluate.scoring import score
        from pipeline.training.artifacts import evaluating
        from pipeline.training.sampling import generate

        with evaluating(event.nets):
            images, labels = generate(
                self.variant,
                event.nets,
                self.sample_n,
                event.spec.z_dim,
                self.eval_params.sample.seed,
                self.eval_params.sample.batch_size,
                event.device,
            )
        ref = self.reference
        doc = score(
            self.eval_params, self.variant.name, images, labels, str(event.device), full=False,
            reference=(ref.images, ref.labels),
        )  # fmt: skip
        value = (
            float(doc.classifier.fid)
            if doc.classifier and doc.classifier.fid is not None
            else math.nan
        )
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"non-finite {OBJECTIVE} at epoch {event.epoch}")
        self.values.append(value)
        self.trial.report(value, event.epoch)
        self.tracker.epoch(self.run_id, value, event.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {event.epoch} ({OBJECTIVE} {value:.3f})")

    def on_end(self, result: TrainResult) -> None:
        pass

    def on_already_complete(self, result: TrainResult) -> None:
        pass  # trials train in fresh temporary folders: never complete beforehand

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
    # A failed CUDA graph capture: the trial is FAIL and the study must stop in this process
    # (its CUDA state is not safe to train the next trial in); run_study raises it.
    fatal: Exception | None = None
    reference: Holdout = field(init=False)  # the held-out slice (tune.holdout)

    def __post_init__(self) -> None:
        p = self.params
        big = self.epochs + 1  # no intermediate checkpoints or grids: the temp dir is thrown away
        # No quality curve: the objective scores every epoch itself.
        self.train_params = p.with_section(
            "train", checkpoint_every=big, grid_every=big, score_every=0
        )
        # Classifier metrics only, against held-out training images; their feature cache
        # lives with the tuning results (keyed by the slice), so that tuning writes nothing
        # under models/ or metrics/ (DVC stage outputs).
        self.reference = holdout(p)
        self.eval_params = p.with_section(
            "evaluate", extractors=["classifier"], cache_dir=cache_dir(p)
        )

    def trainer(self, spec: RunSpec, out_dir: Path, callbacks: list[_EpochScorer]) -> Trainer:
        """A trial's trainer: the training set less the held-out reference."""
        from pipeline.training.loop import Trainer
        from pipeline.training.setup import run_setup

        return Trainer(
            run_setup(self.train_params), spec, out_dir, self.device, callbacks=callbacks,
            curves_path=None, progress=False, indices=self.reference.train_indices,
        )  # fmt: skip

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        from pipeline.core.divergence import DivergedError
        from pipeline.training.spec import run_spec

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
            self.reference,
        )
        # A locked scratch folder under the project's tuning cache: a killed worker's folder
        # is removed when the next study starts (pipeline.infra.runlock.remove_abandoned).
        scratch = contextlib.ExitStack()
        out_dir = scratch.enter_context(
            scratch_folder(
                scratch_dir(self.params),
                f"{SCRATCH_PREFIX}{self.variant.name}-{trial.number}-",
                "tuning trial",
            )
        )
        kill_point("trial-started")  # tests: a worker killed mid-trial
        try:
            self.trainer(spec, out_dir, [scorer]).run()
            self.tracker.artifact(run_id, out_dir / "grid.png")
            value = scorer.values[-1]
            self.tracker.end_trial(run_id, "COMPLETE", value)
            return value
        except optuna.TrialPruned as exc:
            trial.set_user_attr(ATTR_PRUNE, str(exc))
            self.tracker.end_trial(run_id, "PRUNED", None, str(exc))
            raise
        except DivergedError as exc:  # NaN/inf losses, or train.divergence's bounds
            trial.set_user_attr(ATTR_PRUNE, str(exc))
            self.tracker.end_trial(run_id, "PRUNED", None, str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except Exception as exc:
            if isinstance(exc, GraphCaptureError):
                self.fatal = exc
            reason = describe(exc)
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
            scratch.close()
            if self.device.type == "cuda":
                import torch

                torch.cuda.empty_cache()
