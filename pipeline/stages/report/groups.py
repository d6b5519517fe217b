"""Rows grouped by model family, the literature's rows beside their matches, and the
figures a model is known for (InfoGAN's code sweeps, say)."""

from __future__ import annotations

from pipeline.core.variants.base import FAMILIES
from pipeline.infra import layout
from pipeline.infra.metrics import InceptionScores, MetricsDoc
from pipeline.stages.report.assets import Asset, Picture, copy_asset
from pipeline.stages.report.inputs import Inputs, VariantData, rel
from pipeline.stages.report.page import Section, gallery, md_text, prose
from pipeline.stages.report.tables import Group, Subject

FLOOR_LABEL = "real vs real (MNIST train subset vs test)"
PUBLISHED_SOURCE = 'Lucic et al. 2018, "Are GANs Created Equal? A Large-Scale Study" (NeurIPS 2018)'
PUBLISHED_N = 10_000
"""Their protocol: 10k samples vs the 10k test images (MNIST Inception FID, best of 100
hyperparameter settings per model). The values live with each variant (Variant.published)."""


def published_subjects(v: VariantData) -> list[Subject]:
    return [
        Subject(
            f"published:{label}", "published", label,
            MetricsDoc(variant=label, n_generated=PUBLISHED_N, n_real=PUBLISHED_N,
                       inception=InceptionScores(fid=fid)),
            note=f"Lucic et al. 2018 (published), beside {v.name}",
        )
        for label, fid in v.published
    ]  # fmt: skip


def _subject(v: VariantData, notes: bool) -> Subject:
    summary = dict(v.summary or {})
    if v.sampling is not None and "seconds_per_1000" in v.sampling:
        summary["sampling_s_per_1000"] = v.sampling["seconds_per_1000"]
    return Subject(f"variant:{v.name}", "variant", v.name, v.metrics, summary or None,
                   v.description if notes else "")  # fmt: skip


def score_groups(inputs: Inputs, notes: bool = True, published: bool = False) -> list[Group]:
    """One group per model family (in FAMILIES order; a name the registry does not know goes
    last), each variant followed by its published rows when ``published``; then the floor.
    With a single family there is no title row."""
    order = {f: i for i, f in enumerate(FAMILIES)}
    families: dict[str, list[Subject]] = {}
    for v in sorted(inputs.variants, key=lambda v: order.get(v.family, len(order))):
        rows = families.setdefault(v.family, [])
        rows.append(_subject(v, notes))
        if published:
            rows += published_subjects(v)
    titled = len(families) > 1
    groups = [
        Group(f"variants family-{i}", rows, (family or "Other models") if titled else "")
        for i, (family, rows) in enumerate(families.items())
    ]
    return [*groups, Group("floor", [Subject("floor", "floor", FLOOR_LABEL, inputs.floor)])]


def figures_section(inputs: Inputs) -> tuple[Section | None, list[Asset]]:
    """The pictures models draw of themselves (``Algorithm.figures``); None when none has."""
    pictures = []
    for v in inputs.variants:
        for i, (path, caption) in enumerate(v.figures):
            where = rel(layout.figures_dir(inputs.params, v.name), inputs.params.root)
            pictures.append(Picture(
                f"figure-{v.name}-{i}", f"**{md_text(v.name)}** — {md_text(caption)}",
                copy_asset(path if path.is_file() else None, f"grids/{v.name}_{path.name}"),
                f"No figure ({where}/{path.name} missing)", f"{v.name}: {caption}",
            ))  # fmt: skip
    if not pictures:
        return None, []
    section = Section("figures", "Model figures", "Model figures", [
        prose("Pictures particular to a model, drawn from its final weights (for example "
              "InfoGAN varying one latent code at a time)."),
        gallery(pictures),
    ])  # fmt: skip
    return section, [p.asset for p in pictures if p.asset is not None]
