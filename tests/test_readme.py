"""The landing page: every model named, every relative link alive."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.core.variants.base import registry
from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_the_landing_page_names_every_registered_model() -> None:
    text = (REPO / "README.md").read_text()
    missing = [name for name in registry.names() if f"`{name}`" not in text]
    assert not missing, f"README.md does not name {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.exists(), f"{page.name}: link to {target}: {dest} does not exist"
        if anchor:
            assert anchor in _anchors(dest), f"{page.name}: link to {target}: no such heading"
