"""Reading what the other stages wrote. Nothing here raises for a missing or unreadable file:
each one becomes a one-line note, and the page shows "—" or a placeholder in its place."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.infra import layout
from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError, first_line
from pipeline.infra.metrics import MetricsDoc, parse
from pipeline.stages.report.fmt import to_float

Curves = dict[str, list[float | None]]


@dataclass
class VariantData:
    """Everything the report knows about one variant; any field may be missing."""

    name: str
    description: str = ""
    conditional: bool = False
    configured: dict[str, Any] | None = None  # hyperparameters from params.yaml + defaults
    metrics: MetricsDoc | None = None
    summary: dict[str, Any] | None = None
    curves: Curves | None = None
    grid: Path | None = None
    progress: Path | None = None
    samples: Path | None = None
    tuning: dict[str, Any] | None = None
    tuning_plots: list[Path] = field(default_factory=list)
    family: str = ""  # the report groups rows by it (pipeline.core.variants.FAMILIES)
    published: tuple[tuple[str, float], ...] = ()  # (row label, FID) from the literature
    figures: list[tuple[Path, str]] = field(default_factory=list)  # the model's own pictures
    sampling: dict[str, Any] | None = None  # what sampling cost (the sample stage's metrics)
    seed: int = 0  # the run the single-run fields above come from (the first of train.seeds)
    runs: dict[int, MetricsDoc | None] = field(default_factory=dict)  # every seed's scores
    seed_curves: dict[int, Curves | None] = field(default_factory=dict)  # every seed's curves


@dataclass
class Inputs:
    params: Params
    variants: list[VariantData]
    floor: MetricsDoc | None
    classifier: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)  # inputs that were missing or unreadable
    toy: dict[str, Any] | None = None  # toy.out_dir/summary.json (`pipeline toy`), optional
    noise: dict[str, Any] | None = None  # the noise stage's re-draws of the best run


def rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


class _Reader:
    """Reads optional files, recording a one-line note for each one missing or unreadable."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.notes: list[str] = []

    def rel(self, path: Path) -> str:
        return rel(path, self.params.root)

    def file(self, path: Path) -> Path | None:
        if path.is_file():
            return path
        self.notes.append(f"{self.rel(path)}: not found")
        return None

    def json(self, path: Path) -> dict[str, Any] | None:
        if self.file(path) is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            self.notes.append(f"{self.rel(path)}: unreadable ({first_line(err)})")
            return None
        if not isinstance(data, dict):
            self.notes.append(f"{self.rel(path)}: unreadable (not a JSON object)")
            return None
        return data

    def metrics(self, path: Path) -> MetricsDoc | None:
        data = self.json(path)
        if data is None:
            return None
        try:
            return parse(data, self.rel(path))
        except PipelineError as err:
            self.notes.append(str(err))
            return None

    def curves(self, path: Path) -> Curves | None:
        if self.file(path) is None:
            return None
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            self.notes.append(f"{self.rel(path)}: unreadable ({first_line(err)})")
            return None
        if not rows:
            self.notes.append(f"{self.rel(path)}: no rows")
            return None
        columns = list(rows[0].keys())
        return {col: [to_float(row.get(col)) for row in rows] for col in columns if col}


def _from_card(data: VariantData, summary: dict[str, Any] | None) -> bool:
    """Description, family and published rows from the run's own summary.json (its ``model``
    card, training/artifacts.model_card): no variant registry, so no torch, in the report.
    False when the summary has no usable card."""
    card = summary.get("model") if isinstance(summary, dict) else None
    if not isinstance(card, dict) or not isinstance(summary.get("hyper"), dict):
        return False
    try:
        published = tuple((str(label), float(fid)) for label, fid in card.get("published", []))
        data.description, data.family = str(card["description"]), str(card["family"])
        data.conditional = bool(card["conditional"])
    except (KeyError, TypeError, ValueError):
        return False
    data.published = published
    return True


def _variant_info(data: VariantData, block: Any) -> None:
    """Description, family, published rows and configured hyperparameters from the registry
    (nothing for a name the registry does not know)."""
    from pipeline.core.variants.base import registry

    try:
        variant = registry.get(data.name)
    except KeyError:
        return
    hyper = variant.resolve(block)
    data.description, data.conditional = variant.description, variant.conditional
    data.family, data.published = variant.family, variant.published
    data.configured = {
        "epochs": hyper.epochs,
        "lr": hyper.lr,
        "betas": list(hyper.betas),
        "n_critic": hyper.n_critic,
        "optimizer": hyper.optimizer,
        "options": dict(hyper.options),
    }


def _figures(reader: _Reader, folder: Path) -> list[tuple[Path, str]]:
    """The pictures listed in ``figures.json`` (a model without its own figures has none)."""
    index = folder / layout.FIGURES_INDEX
    if not index.is_file():
        return []
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
        return [(folder / e["file"], str(e["caption"])) for e in entries]
    except (OSError, ValueError, TypeError, KeyError) as err:
        reader.notes.append(f"{reader.rel(index)}: unreadable ({first_line(err)})")
        return []


def read_inputs(params: Params) -> Inputs:
    """Collect every input of the report; nothing here raises for a missing file."""
    reader = _Reader(params)
    variants = []
    seed = params.train.first_seed
    for name, block in params.variants.items():
        data = VariantData(name, seed=seed)
        data.summary = reader.json(layout.summary_path(params, name, seed))
        if not _from_card(data, data.summary):
            _variant_info(data, block)  # a run from before the card, or none yet
        # Only the seeds in params: a removed seed's files on disk are not aggregated.
        data.runs = {
            s: reader.metrics(layout.metrics_path(params, name, s)) for s in params.train.seeds
        }
        data.metrics = data.runs[seed]
        data.curves = reader.curves(layout.curves_path(params, name, seed))
        # The other seeds' curves feed only the quality section's mean and band (its Seeds
        # column counts them); a missing one is not a note of its own.
        data.seed_curves = {seed: data.curves} | {
            s: reader.curves(path) for s in params.train.seeds
            if s != seed and (path := layout.curves_path(params, name, s)).is_file()
        }  # fmt: skip
        data.grid = reader.file(layout.final_grid(params, name, seed))
        data.progress = reader.file(layout.progress_gif(params, name, seed))
        data.samples = reader.file(layout.sample_grid(params, name, seed))
        data.figures = _figures(reader, layout.figures_dir(params, name, seed))
        # Runs sampled before the cost was recorded have no file: the cell shows "—".
        if layout.sampling_path(params, name, seed).is_file():
            data.sampling = reader.json(layout.sampling_path(params, name, seed))
        # Tuning is optional: its absence is not worth a note.
        tuning = layout.tuning_results(params, name)
        if (tuning / "best.json").is_file():
            data.tuning = reader.json(tuning / "best.json")
        if tuning.is_dir():
            data.tuning_plots = sorted(tuning.glob("*.png"))
        variants.append(data)
    floor = reader.metrics(layout.metrics_path(params, layout.FLOOR))
    classifier = reader.json(layout.classifier_metrics(params))
    # The toy stage is optional too: without its summary the report has no toy section.
    toy_summary = layout.toy_summary(params)
    toy = reader.json(toy_summary) if toy_summary.is_file() else None
    noise = reader.json(layout.noise_path(params)) if params.evaluate.noise_draws else None
    return Inputs(params, variants, floor, classifier, reader.notes, toy, noise)
