"""Image files of the report: copied/written beside comparison.md and embedded into
index.html as data URIs; long progression GIFs thinned to a size budget."""

from __future__ import annotations

import base64
import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Asset:
    rel: str  # path under the report directory, e.g. "grids/gan.png"
    data: bytes

    @property
    def mime(self) -> str:
        return "image/gif" if self.rel.endswith(".gif") else "image/png"

    @property
    def data_uri(self) -> str:
        return f"data:{self.mime};base64," + base64.b64encode(self.data).decode("ascii")

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) in pixels read from the PNG/GIF header, None when unreadable."""
        d = self.data
        if d[:8] == b"\x89PNG\r\n\x1a\n" and len(d) >= 24:
            return struct.unpack(">II", d[16:24])
        if d[:6] in (b"GIF87a", b"GIF89a") and len(d) >= 10:
            return struct.unpack("<HH", d[6:10])
        return None


@dataclass(frozen=True)
class Picture:
    """One image with its caption, or a note saying why it is missing."""

    id: str  # HTML id (the click-to-enlarge target)
    caption: str  # Markdown (prose rendered for HTML, kept as is for comparison.md)
    asset: Asset | None
    missing: str = ""
    alt: str = ""
    sample_grid: bool = True  # pixels: integer scale, nearest-neighbour, click to enlarge
    link: str = ""  # Markdown path when the image lives outside the report's own folders
    zoom: Asset | None = None  # shown instead of ``asset`` when enlarged (an animation, say)


def copy_asset(path: Path | None, rel: str) -> Asset | None:
    if path is None:
        return None
    try:
        return Asset(rel, path.read_bytes())
    except OSError:
        return None


def gif_asset(path: Path | None, rel: str, max_bytes: int) -> tuple[Asset | None, int]:
    """The GIF as is, or, above ``max_bytes``, every k-th frame counted back from the last one
    (the final grid matters most), k growing until it fits; returns the asset and k.
    index.html embeds every GIF, so one long training run must not make the page hundreds of
    MB."""
    asset = copy_asset(path, rel)
    if asset is None or len(asset.data) <= max_bytes:
        return asset, 1
    from PIL import Image, ImageSequence

    stride = math.ceil(len(asset.data) / max_bytes)
    try:
        with Image.open(io.BytesIO(asset.data)) as im:
            frames = [f.copy() for f in ImageSequence.Iterator(im)]
            duration = int(im.info.get("duration", 200))
    except (OSError, ValueError, EOFError):
        return asset, 1  # unreadable as a GIF: embed the bytes and let the browser decide
    if len(frames) <= 1:
        return asset, 1
    while True:
        kept = frames[::-1][::stride][::-1]
        buf = io.BytesIO()
        kept[0].save(
            buf,
            format="GIF",
            save_all=True,
            append_images=kept[1:],
            duration=min(duration * stride, 1000),
            loop=0,
        )
        if buf.tell() <= max_bytes or len(kept) == 1:
            return Asset(rel, buf.getvalue()), stride
        stride *= 2
