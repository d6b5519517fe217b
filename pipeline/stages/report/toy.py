"""The toy section: `pipeline toy`'s scores per problem and variant, the last frame of each
animation (the GIF when enlarged)."""

from __future__ import annotations

from typing import Any

from pipeline.infra import layout
from pipeline.stages.report import fmt
from pipeline.stages.report.assets import Picture, copy_asset
from pipeline.stages.report.inputs import Inputs, rel
from pipeline.stages.report.page import (
    Block,
    Section,
    footnotes,
    gallery,
    h3,
    md_text,
    prose,
    table,
)
from pipeline.stages.report.tables import Cell, plain_table

TITLES = {
    "gaussian1d": "1-D Gaussian N(4, 0.5) (Goodfellow et al. 2014, Fig. 1)",
    "ring8": "Ring of 8 Gaussians (Metz et al. 2017; Srivastava et al. 2017)",
}
# (summary key, header, formatter) per score; a problem shows the ones its rows have
SCORES = (
    ("modes", "Modes covered (of 8) ↑", lambda v: f"{v:.0f}"),
    ("high_quality", "High-quality share ↑", lambda v: f"{v:.1%}"),
    ("js", "JS divergence (nats) ↓", lambda v: f"{v:.3f}"),
)


def _cell(row: dict[str, Any], key: str, form: Any) -> Cell:
    value = fmt.num(row, key)
    return Cell(form(value)) if value is not None else Cell(fmt.MISSING, state="missing")


def _problem(inputs: Inputs, name: str, rows: dict[str, Any]) -> list[Block]:
    params = inputs.params
    scores = [s for s in SCORES if any(s[0] in r for r in rows.values() if isinstance(r, dict))]
    headers = ["Variant", *(s[1] for s in scores), "Steps", "G steps", "Time", "MLflow run"]
    body, pics = [], []
    for variant, row in rows.items():
        row = row if isinstance(row, dict) else {}
        run_id = row.get("run_id")
        body.append([
            variant, *(_cell(row, key, form) for key, _, form in scores),
            fmt.integer(fmt.num(row, "steps")) or fmt.MISSING,
            fmt.integer(fmt.num(row, "g_iters")) or fmt.MISSING,
            fmt.duration(fmt.num(row, "seconds")) or fmt.MISSING,
            Cell(str(run_id), code=True) if run_id else Cell(fmt.MISSING, state="missing"),
        ])  # fmt: skip
        gif = layout.toy_animation(params, name, variant)
        png = gif.with_suffix(".png")
        pics.append(Picture(
            f"toy-{name}-{variant}", f"**{md_text(variant)}** — last frame; click for the animation "
            f"([GIF](grids/toy/{name}/{variant}.gif))",
            copy_asset(png, f"grids/toy/{name}/{variant}.png"),
            f"No figure ({rel(png, params.root)} missing)", f"{variant}: {name}",
            zoom=copy_asset(gif, f"grids/toy/{name}/{variant}.gif"),
        ))  # fmt: skip
    text_cols = {len(headers) - 1}
    return [
        h3(TITLES.get(name, name)),
        table(plain_table(f"toy-{name}-table", headers, body, text_cols=text_cols)),
        gallery(pics),
    ]


def toy_section(inputs: Inputs) -> Section | None:
    summary = inputs.toy
    if summary is None:
        return None
    params = inputs.params
    problems = summary.get("problems") if isinstance(summary.get("problems"), dict) else {}
    blocks: list[Block] = [prose(
        "Seconds-long diagnostics (`pipeline toy`): each variant's own objective, penalty and "
        "after-D-step hook on small MLPs, on vector data. The 1-D frames show p_data (outline), "
        "p_g (green) and D(x) (blue; a critic's values rescaled to the panel), as in the GAN "
        "paper's Figure 1; the ring frames show generated points over the 8 modes (circles: 3 "
        "std). A point is high quality within 3 std of a mode; a mode is covered with at least "
        f"{params.toy.cover_min} of them. Outputs in `{rel(layout.toy_dir(params), params.root)}/`."
    )]  # fmt: skip
    for name, rows in problems.items():
        if isinstance(rows, dict):
            blocks += _problem(inputs, name, rows)
    skipped = summary.get("not_applicable")
    if isinstance(skipped, dict) and skipped:
        blocks.append(footnotes([
            "Not applicable: " + "; ".join(f"{md_text(k)} ({md_text(str(v))})" for k, v in skipped.items())
        ]))  # fmt: skip
    return Section("toy", "Toy problems: 1-D Gaussian and 8-Gaussian ring", "Toy problems", blocks)
