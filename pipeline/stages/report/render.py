"""The page through the Jinja2 templates (HTML with autoescape, Markdown without; both with
StrictUndefined), scores.csv, and the atomic writes."""

from __future__ import annotations

import csv
import functools
import io
from importlib.resources import files
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from markdown_it import MarkdownIt
from markupsafe import Markup

from pipeline.infra.io import atomic_dir, atomic_path
from pipeline.infra.metrics import csv_columns, value
from pipeline.stages.report import fmt
from pipeline.stages.report.inputs import Inputs
from pipeline.stages.report.page import Page

FLOOR_CSV_NAME = "floor (real vs real)"


@functools.cache
def _markdown() -> MarkdownIt:
    # Raw HTML in the prose is shown as text, so names and paths can never inject markup.
    return MarkdownIt("commonmark", {"html": False})


def _env(html: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("pipeline.stages.report", "templates"),
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    if html:
        env.filters["md"] = lambda text: Markup(_markdown().render(text).rstrip("\n"))
        env.filters["md_inline"] = lambda text: Markup(_markdown().renderInline(text))
    else:
        env.filters["cell"] = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    return env


def render_html(page: Page) -> str:
    css = (
        files("pipeline.stages.report")
        .joinpath("templates", "style.css")
        .read_text(encoding="utf-8")
    )
    return _env(html=True).get_template("index.html.j2").render(page=page, css=Markup(css.strip()))


def render_markdown(page: Page) -> str:
    text = _env(html=False).get_template("comparison.md.j2").render(page=page)
    # Blank lines between blocks come from the template; never more than one in a row.
    lines: list[str] = []
    for line in text.splitlines():
        if line.strip() or (lines and lines[-1].strip()):
            lines.append(line.rstrip() if not line.endswith("  ") else line)
    return "\n".join(lines).rstrip() + "\n"


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def scores_csv(inputs: Inputs) -> str:
    """One row per variant plus the floor, every score as a full-precision number (empty when
    missing): a variant's score is its mean over the seeds that have it (``n_seeds``: how many
    metrics files it has; per-seed values are in the metrics files), the training figures
    those of its first seed. The data of `dvc plots show` and of any further analysis."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    columns = csv_columns()
    # The training figures, budget included (g_iters, d_iters, images_seen), from summary.json.
    training = ("train_time_s", "steps_per_s", "g_iters", "d_iters", "images_seen")
    writer.writerow(["variant", "n_seeds", *(name for name, _, _ in columns), *training])
    rows = [(v.name, [d for d in v.runs.values() if d is not None], v.summary)
            for v in inputs.variants]  # fmt: skip
    rows.append((FLOOR_CSV_NAME, [inputs.floor] if inputs.floor else [], None))
    for name, docs, summary in rows:
        values = [_mean([value(d, extractor, f) for d in docs]) for _, extractor, f in columns]
        values += [fmt.num(summary, key) for key in training]
        n_seeds = "" if name == FLOOR_CSV_NAME else str(len(docs))
        writer.writerow([name, n_seeds, *("" if v is None else repr(v) for v in values)])
    return buf.getvalue()


def write(page: Page, html: str, markdown: str, csv_text: str, out_dir: Path) -> Path:
    """Write plots/ and grids/, scores.csv, comparison.md and last index.html, each atomically;
    return the path of index.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_top: dict[str, list] = {}
    for asset in page.assets:
        by_top.setdefault(asset.rel.split("/", 1)[0], []).append(asset)
    for top in ("plots", "grids"):
        # Each folder is swapped in whole, so files of a variant dropped from params go too.
        with atomic_dir(out_dir / top) as tmp:
            for asset in by_top.get(top, []):
                target = tmp / asset.rel.split("/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(asset.data)
    _write_utf8(out_dir / "scores.csv", csv_text)
    _write_utf8(out_dir / "comparison.md", markdown)
    index = out_dir / "index.html"
    _write_utf8(index, html)
    return index


def _write_utf8(path: Path, text: str) -> None:
    # Explicit UTF-8 (the page has "—", "★", "±"): the locale's encoding may be ASCII.
    with atomic_path(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
