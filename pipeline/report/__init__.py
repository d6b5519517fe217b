"""Comparison report: one self-contained HTML page, its Markdown twin, the plots and
scores.csv, from what the other stages wrote.

``inputs`` reads the stage outputs (a missing or unreadable file becomes a note, never an
error); ``view``/``sections`` turn them into a page (``page``: sections of blocks; ``tables``:
table data whose score columns come from pipeline.metrics; ``plots``: matplotlib;
``assets``: images, GIF thinning); ``render`` fills the Jinja2 templates in ``templates/``
(HTML autoescaped, both with StrictUndefined; prose is Markdown written once and rendered for
the HTML with markdown-it) and writes everything atomically. The same inputs give the same
bytes: there is no timestamp, and the PNGs carry no version metadata.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import layout
from pipeline.config import Params
from pipeline.report.fmt import MISSING, NOT_APPLICABLE, NOT_COMPUTED
from pipeline.report.inputs import Inputs, read_inputs
from pipeline.report.render import FLOOR_CSV_NAME, render_html, render_markdown, scores_csv, write
from pipeline.report.view import FLOOR_LABEL, build_page

__all__ = [
    "FLOOR_CSV_NAME",
    "FLOOR_LABEL",
    "MISSING",
    "NOT_APPLICABLE",
    "NOT_COMPUTED",
    "build_report",
    "read_inputs",
    "render_files",
]


def render_files(inputs: Inputs) -> tuple[str, str, str]:
    """(index.html, comparison.md, scores.csv) as text, in memory."""
    page = build_page(inputs)
    return render_html(page), render_markdown(page), scores_csv(inputs)


def build_report(params: Params) -> Path:
    """Read every stage's outputs and write the report; returns the path of index.html."""
    inputs = read_inputs(params)
    page = build_page(inputs)
    return write(
        page, render_html(page), render_markdown(page), scores_csv(inputs),
        layout.report_dir(params),
    )  # fmt: skip
