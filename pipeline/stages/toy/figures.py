"""The toy runs' animations, drawn with PIL (a matplotlib figure per frame would cost more
than the training): 1-D as in Goodfellow et al. 2014, Fig. 1 (p_data, p_g, D(x)); the ring
as a scatter of generated points over the 8 modes."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from pipeline.infra.io import atomic_path
from pipeline.stages.toy.problems import Problem, gaussian_bins, histogram
from pipeline.stages.toy.run import Frame, ToyResult

W1, H1, PAD = 360, 220, 24  # 1-D frame size and margin
SIDE = 260  # ring frame side
DATA, GEN, DISC, GRID = (90, 90, 90), (30, 150, 60), (40, 80, 200), (200, 200, 200)


def _frame_1d(problem: Problem, frame: Frame, probability: bool, bins: int) -> Image.Image:
    im = Image.new("RGB", (W1, H1), "white")
    draw = ImageDraw.Draw(im)
    edges = problem.edges(bins)
    p_data = gaussian_bins(problem.modes[0, 0].item(), problem.std, edges)
    p_gen = histogram(frame.samples[:, 0], edges)
    top, bottom, left, right = PAD, H1 - PAD, PAD, W1 - PAD
    ymax = 1.3 * p_data.max().item()

    def px(x: float) -> float:
        return left + (x - problem.lo) / (problem.hi - problem.lo) * (right - left)

    def py(v: float) -> float:  # v in [0, 1] of the panel height
        return bottom - min(max(v, 0.0), 1.0) * (bottom - top)

    draw.line([(left, bottom), (right, bottom)], fill=DATA)
    for i in range(bins):
        x0, x1 = px(edges[i].item()), px(edges[i + 1].item())
        draw.rectangle([x0, py(p_data[i].item() / ymax), x1, bottom], outline=DATA)
        if p_gen[i] > 0:
            draw.rectangle([x0 + 1, py(p_gen[i].item() / ymax), x1 - 1, bottom], fill=GEN)
    if frame.curve is not None:
        d = frame.curve.double()
        if probability:
            draw.line([(left, py(0.5)), (right, py(0.5))], fill=GRID)
        else:  # a critic's values have no fixed scale: rescaled to the panel
            span = (d.max() - d.min()).clamp_min(1e-12)
            d = (d - d.min()) / span
        xs = torch.linspace(problem.lo, problem.hi, len(d))
        pts = [(px(x), py(v)) for x, v in zip(xs.tolist(), d.tolist(), strict=True)]
        draw.line(pts, fill=DISC, width=2)
    for k in range(int(problem.lo), int(problem.hi) + 1):
        draw.text((px(k) - 3, bottom + 4), str(k), fill=DATA)
    label = "D(x)" if probability else "critic (rescaled)"
    draw.text((left, 4), f"step {frame.step}", fill="black")
    draw.text((left + 80, 4), "p_data", fill=DATA)
    draw.text((left + 130, 4), "p_g", fill=GEN)
    draw.text((left + 160, 4), label, fill=DISC)
    return im


def _frame_ring(problem: Problem, frame: Frame) -> Image.Image:
    im = Image.new("RGB", (SIDE, SIDE), "white")
    draw = ImageDraw.Draw(im)
    lo, hi = problem.lo, problem.hi

    def px(v: float, flip: bool = False) -> float:
        t = (v - lo) / (hi - lo)
        return (1 - t if flip else t) * (SIDE - 1)

    r = 3 * problem.std / (hi - lo) * SIDE
    for x, y in problem.modes.tolist():
        cx, cy = px(x), px(y, flip=True)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=DATA)
    for x, y in frame.samples.tolist():
        if lo <= x <= hi and lo <= y <= hi:
            cx, cy = px(x), px(y, flip=True)
            draw.rectangle([cx - 1, cy - 1, cx, cy], fill=GEN)
    draw.text((4, 4), f"step {frame.step}", fill="black")
    return im


def frames(result: ToyResult, problem: Problem, bins: int) -> list[Image.Image]:
    if problem.dim == 1:
        return [_frame_1d(problem, f, result.probability, bins) for f in result.frames]
    return [_frame_ring(problem, f) for f in result.frames]


def write_figures(images: list[Image.Image], gif: Path, last: Path) -> None:
    """The animation (last frame held longer) and the last frame as a PNG."""
    durations = [120] * (len(images) - 1) + [1500]
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0
    )
    with atomic_path(gif) as tmp:
        tmp.write_bytes(buf.getvalue())
    with atomic_path(last) as tmp:
        images[-1].save(tmp, format="PNG")
