"""scripts/check_report.py: the headless-Chromium check `make smoke` runs on the real report."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, write_params

sys.path.insert(0, str(REPO / "scripts"))
import check_report  # noqa: E402


def _seen(**over: object) -> dict:
    heads = ["Samples (gen / real)", "FID ↓", "Sampling s/1k"]
    rows = {"variant:gan": ["1,000 / 1,000", "8.1", "0.18"],
            "variant:infogan": ["1,000 / 1,000", "9.3", "0.20"]}  # fmt: skip
    seen = {"images": 4, "bad": [], "heads": heads, "rows": rows, "groups": ["GAN losses"],
            "sections": ["scores", "figures"], "figures": {"figure-infogan-0": 1}}  # fmt: skip
    return {**seen, **over}


def _project(tmp_path: Path) -> Path:
    write_params(tmp_path, variants=["gan", "infogan"])
    figures = tmp_path / "models" / "infogan" / "seed0" / "figures"  # the first seed's run
    figures.mkdir(parents=True)
    (figures / "figures.json").write_text("{}")
    return tmp_path


def test_a_complete_page_has_no_findings(tmp_path: Path) -> None:
    assert check_report.findings(_project(tmp_path), _seen()) == []


def test_each_gap_is_named(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "toy").mkdir()
    (project / "toy" / "summary.json").write_text("{}")
    seen = _seen(
        bad=["gan samples"],
        rows={"variant:infogan": ["1,000 / 1,000", "9.3", "—"]},
        figures={},
        groups=[],
    )
    assert check_report.findings(project, seen) == [
        "1 of 4 images do not decode: ['gan samples']",
        "the score table has no family headings",
        "gan: no row in the score table",
        "infogan: no sampling cost ('—')",
        "infogan: its figures are not in the Model figures section",
        "pipeline toy ran but the page has no toy section",
    ]
    no_column = _seen(heads=["Samples (gen / real)", "FID ↓"])
    assert check_report.findings(project, no_column)[0].startswith("no Sampling column")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_chromium_sees_an_image_that_does_not_decode(tmp_path: Path) -> None:
    """The fake-inputs report of tests/test_report.py, one grid's PNG bytes cut short."""
    from pipeline.stages.report import build_report
    from tests.test_report import VARIANTS, make_stage_outputs

    index = build_report(make_stage_outputs(tmp_path / "p"))
    seen = check_report.render(index)
    assert seen["images"] > 0 and seen["bad"] == []
    assert set(seen["rows"]) >= {f"variant:{v}" for v in VARIANTS}
    page = index.read_text(encoding="utf-8")
    first = re.search(r'src="data:image/png;base64,([^"]+)" alt="([^"]+)"', page)
    assert first
    broken = page.replace(first.group(1), first.group(1)[:40], 1)
    index.write_text(broken, encoding="utf-8")
    assert check_report.render(index)["bad"] == [json.loads(f'"{first.group(2)}"')]
