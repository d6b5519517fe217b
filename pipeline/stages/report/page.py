"""The page as data: sections of blocks (prose, tables, galleries, plots, code), which the
HTML and Markdown templates both walk. Prose is Markdown, written once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.stages.report.assets import Asset, Picture
from pipeline.stages.report.tables import Table

BlockKind = Literal["prose", "table", "gallery", "plot", "code", "notes", "footnotes", "h3"]


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    text: str = ""  # prose / h3 / code: Markdown (or the literal code)
    css: str = ""  # prose: a class for its wrapper (lead, hint, callout)
    table: Table | None = None
    pictures: list[Picture] = field(default_factory=list)
    wide: bool = False  # gallery of plots rather than sample grids
    asset: Asset | None = None  # plot
    items: list[str] = field(default_factory=list)  # notes (literal) / footnotes (Markdown)


def prose(text: str, css: str = "") -> Block:
    return Block("prose", text=text, css=css)


def h3(text: str) -> Block:
    return Block("h3", text=text)


def table(t: Table) -> Block:
    return Block("table", table=t)


def gallery(pictures: list[Picture], wide: bool = False) -> Block:
    return Block("gallery", pictures=pictures, wide=wide)


def plot(asset: Asset, alt: str) -> Block:
    return Block("plot", asset=asset, text=alt)


def code(text: str) -> Block:
    return Block("code", text=text)


def footnotes(items: list[str]) -> Block:
    return Block("footnotes", items=items)


def notes(items: list[str]) -> Block:
    return Block("notes", items=items)


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    toc: str  # its name in the table of contents
    blocks: list[Block]


@dataclass(frozen=True)
class Page:
    title: str
    intro: list[Block]
    sections: list[Section]
    footer: str
    assets: list[Asset] = field(default_factory=list)  # written under plots/ and grids/


def md_text(text: str) -> str:
    """Plain text (a name, a description) made literal inside Markdown prose."""
    for ch in "\\`*[]<>":
        text = text.replace(ch, "\\" + ch)
    return text
