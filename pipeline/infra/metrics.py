"""The metrics document (``<evaluate.out_dir>/<variant>/seed<S>.json``) as typed models.

Written by pipeline.stages.evaluate, read by the report (its score tables and plots), ``scores.csv``,
the MLflow logger and the tests. Each score is one annotated field: its name in the JSON, its
torch-fidelity result key, and how the report shows it (:class:`Show`). Adding or renaming a
metric is an edit here; every reader follows.

Every field may be absent when reading (an old file without a newer key still loads: the
report shows "—"); unknown keys are ignored. A section is absent when its extractor was not in
``evaluate.extractors``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.infra.errors import PipelineError

Better = Literal["lower", "higher"]
Format = Literal["float", "pm", "of10", "percent"]


@dataclass(frozen=True)
class Show:
    """How a score is computed and shown.

    ``source``: torch-fidelity's result key (None: computed by us). ``table``: ``score`` (the
    main table) or ``detail`` (the classifier's second table). ``fmt``: ``float`` with
    ``digits``, ``pm`` (mean ± the ``std`` field), ``of10`` ("7 / 10"), ``percent``
    (``None`` in a computed section reads "n/a": label accuracy of unconditional samples).
    """

    label: str
    better: Better | None = None
    digits: int = 2
    source: str | None = None
    table: Literal["score", "detail"] = "score"
    fmt: Format = "float"
    std: str | None = None
    scale: float = 1.0
    title: str = ""


@dataclass(frozen=True)
class Std:
    """The spread of a mean field (shown with it, not as a column)."""

    source: str | None = None


@dataclass(frozen=True)
class Count:
    """A sample count a score was computed with (scores.csv, MLflow; the report's counts)."""


Num = float | None


class Section(BaseModel):
    """Scores of one feature extractor."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    network: str | None = None
    seconds: Num = None

    @classmethod
    def scores(cls) -> Iterator[tuple[str, Show]]:
        """(field name, Show) of every displayed score, in field order."""
        for name, info in cls.model_fields.items():
            for meta in info.metadata:
                if isinstance(meta, Show):
                    yield name, meta

    @classmethod
    def sources(cls) -> dict[str, str]:
        """Our field name -> torch-fidelity's result key, for every score it computes."""
        out = {}
        for name, info in cls.model_fields.items():
            for meta in info.metadata:
                if isinstance(meta, Show | Std) and meta.source is not None:
                    out[name] = meta.source
        return out

    @classmethod
    def numeric_fields(cls) -> list[str]:
        """Scores, their spreads and sample counts (the columns of scores.csv), in field order."""
        return [
            name
            for name, info in cls.model_fields.items()
            if any(isinstance(m, Show | Std | Count) for m in info.metadata)
        ]


class FidelityScores(Section):
    """What every extractor gives: FID on its features and IS on its class posterior."""

    fid: Annotated[Num, Show("FID", "lower", source="frechet_inception_distance")] = None
    is_mean: Annotated[
        Num, Show("IS", "higher", source="inception_score_mean", fmt="pm", std="is_std")
    ] = None
    is_std: Annotated[Num, Std("inception_score_std")] = None


class InceptionScores(FidelityScores):
    """inception-v3-compat FID/IS/KID; torch-fidelity's VGG16 precision/recall."""

    kid_mean: Annotated[
        Num,
        Show("KID ×10³", "lower", source="kernel_inception_distance_mean", fmt="pm",
             std="kid_std", scale=1e3),
    ] = None  # fmt: skip
    kid_std: Annotated[Num, Std("kernel_inception_distance_std")] = None
    kid_subset_size: Annotated[int | None, Count()] = None
    kid_subsets: Annotated[int | None, Count()] = None
    precision: Annotated[Num, Show("Precision†", "higher", 3, source="precision")] = None
    recall: Annotated[Num, Show("Recall†", "higher", 3, source="recall")] = None


class ClassifierScores(FidelityScores):
    """Our MNIST CNN as the feature extractor, plus class statistics of its predictions.

    torch-fidelity computes FID, IS and precision/recall; pipeline.core.features the rest:
    KID on the features centred and scaled by the real set's statistics, FID-infinity (FID
    at ``fid_inf_points`` sizes from ``fid_inf_n_min`` to ``fid_inf_n_max`` generated images,
    extrapolated to infinitely many), and density/coverage with ``prdc_k`` neighbours.
    """

    fid_inf: Annotated[
        Num, Show("FID∞", "lower", title="FID extrapolated to infinitely many samples "
                  "(Chong & Forsyth 2020): without FID's bias for the sample size")
    ] = None  # fmt: skip
    coverage: Annotated[int | None, Show("Coverage", "higher", fmt="of10")] = None
    kl_test_labels: Annotated[
        Num, Show("KL to test labels", "lower", 4, title="KL(samples' digit shares || the "
                  "MNIST test set's label shares), nats: 0 when digits come as often as in "
                  "the test set (not uniform: MNIST's classes are not balanced)")
    ] = None  # fmt: skip
    label_accuracy: Annotated[Num, Show("Label acc.", "higher", fmt="percent")] = None
    kid_mean: Annotated[
        Num,
        Show("KID ×10³", "lower", table="detail", fmt="pm", std="kid_std", scale=1e3,
             title="On the features centred and scaled by the real set's statistics"),
    ] = None  # fmt: skip
    kid_std: Annotated[Num, Std()] = None
    precision: Annotated[
        Num, Show("Precision", "higher", 3, source="precision", table="detail")
    ] = None
    recall: Annotated[Num, Show("Recall", "higher", 3, source="recall", table="detail")] = None
    density: Annotated[
        Num, Show("Density", None, 3, table="detail", title="Naeem et al. 2020: 1 when "
                  "samples are spread like the real set, above 1 when crowded near its modes")
    ] = None  # fmt: skip
    knn_coverage: Annotated[
        Num, Show("k-NN coverage", "higher", 3, table="detail", title="Naeem et al. 2020: "
                  "share of real images with a sample among their k nearest neighbours")
    ] = None  # fmt: skip
    kid_subset_size: Annotated[int | None, Count()] = None
    kid_subsets: Annotated[int | None, Count()] = None
    fid_inf_n_min: Annotated[int | None, Count()] = None
    fid_inf_n_max: Annotated[int | None, Count()] = None
    fid_inf_points: Annotated[int | None, Count()] = None
    prdc_k: Annotated[int | None, Count()] = None
    histogram: list[float] | None = None  # share of samples per predicted digit 0-9


EXTRACTORS: dict[str, type[Section]] = {
    "inception": InceptionScores,
    "classifier": ClassifierScores,
}
"""The sections of a metrics document, by ``evaluate.extractors`` name, in table order."""


class MetricsDoc(BaseModel):
    """One scored image set: a variant's samples, or the floor's MNIST train images."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    variant: str
    seed: int | None = None  # the training seed (None: the floor, or a file from before seeds)
    n_generated: int | None = None
    n_real: int | None = None
    classifier: ClassifierScores | None = None
    inception: InceptionScores | None = None

    def section(self, extractor: str) -> Section | None:
        return getattr(self, extractor)

    def computed(self) -> list[str]:
        """The extractors whose section is present."""
        return [name for name in EXTRACTORS if self.section(name) is not None]

    def to_json(self) -> dict[str, Any]:
        """The document as written: absent sections left out, null scores kept."""
        return self.model_dump(exclude={e for e in EXTRACTORS if self.section(e) is None})

    def flat(self) -> dict[str, float]:
        """Numeric leaves as MLflow metrics: ``eval.classifier.fid``, ``eval.classifier.hist_3``."""
        out: dict[str, float] = {}
        for key in ("n_generated", "n_real"):
            value = getattr(self, key)
            if value is not None:
                out[f"eval.{key}"] = float(value)
        for extractor in EXTRACTORS:
            section = self.section(extractor)
            if section is None:
                continue
            values: dict[str, Any] = section.model_dump(exclude={"network", "histogram"})
            for digit, share in enumerate(getattr(section, "histogram", None) or []):
                values[f"hist_{digit}"] = share
            for key, value in values.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    out[f"eval.{extractor}.{key}"] = float(value)
        return out


def csv_columns() -> list[tuple[str, str | None, str]]:
    """scores.csv's score columns: (column, extractor or None for top level, field)."""
    cols: list[tuple[str, str | None, str]] = [
        ("n_generated", None, "n_generated"),
        ("n_real", None, "n_real"),
    ]
    for extractor in ("inception", "classifier"):
        cols.extend(
            (f"{extractor}_{f}", extractor, f) for f in EXTRACTORS[extractor].numeric_fields()
        )
    return cols


def value(doc: MetricsDoc | None, extractor: str | None, field: str) -> float | None:
    """A numeric field of ``doc`` (None when the document, section or value is absent)."""
    if doc is None:
        return None
    holder = doc if extractor is None else doc.section(extractor)
    v = getattr(holder, field, None) if holder is not None else None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def parse(data: Any, where: str) -> MetricsDoc:
    """A metrics document from decoded JSON, or a one-line PipelineError naming ``where``."""
    try:
        return MetricsDoc.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise PipelineError(f"{where}: unreadable ({loc}: {first['msg']})") from None


def load(path: Path) -> MetricsDoc:
    """Read and validate ``path``; one-line PipelineError when unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PipelineError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    return parse(data, str(path))
