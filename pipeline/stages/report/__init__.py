"""Comparison report: one self-contained HTML page, its Markdown twin, the plots and
scores.csv, from what the other stages wrote.

``inputs`` reads the stage outputs (a missing or unreadable file becomes a note, never an
error); ``view``/``sections`` turn them into a page (``page``: sections of blocks; ``tables``:
table data whose score columns come from pipeline.infra.metrics; ``plots``: matplotlib;
``assets``: images, GIF thinning); ``render`` fills the Jinja2 templates in ``templates/``
(HTML autoescaped, both with StrictUndefined; prose is Markdown written once and rendered for
the HTML with markdown-it) and writes everything atomically. The same inputs give the same
bytes: there is no timestamp, and the PNGs carry no version metadata.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.infra.config import Params
    from pipeline.stages.report.inputs import Inputs

# Importing the package imports nothing heavy (matplotlib, scipy, jinja2 come with the modules
# that use them): the trainer and the CLI's --help import from beside it. These names resolve
# on first use (PEP 562).
_LAZY = {
    "FLOOR_CSV_NAME": "pipeline.stages.report.render",
    "FLOOR_LABEL": "pipeline.stages.report.view",
    "MISSING": "pipeline.stages.report.fmt",
    "NOT_APPLICABLE": "pipeline.stages.report.fmt",
    "NOT_COMPUTED": "pipeline.stages.report.fmt",
    "read_inputs": "pipeline.stages.report.inputs",
}

__all__ = [*_LAZY, "build_report", "render_files"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def render_files(inputs: Inputs) -> tuple[str, str, str]:
    """(index.html, comparison.md, scores.csv) as text, in memory."""
    from pipeline.stages.report.render import render_html, render_markdown, scores_csv
    from pipeline.stages.report.view import build_page

    page = build_page(inputs)
    return render_html(page), render_markdown(page), scores_csv(inputs)


def build_report(params: Params) -> Path:
    """Read every stage's outputs and write the report; returns the path of index.html."""
    from pipeline.infra import layout
    from pipeline.stages.report.inputs import read_inputs
    from pipeline.stages.report.render import render_html, render_markdown, scores_csv, write
    from pipeline.stages.report.view import build_page

    inputs = read_inputs(params)
    page = build_page(inputs)
    return write(
        page, render_html(page), render_markdown(page), scores_csv(inputs),
        layout.report_dir(params),
    )  # fmt: skip
