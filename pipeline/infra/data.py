"""MNIST: fetch the four original .gz files (md5-checked), decode, store as uint8 tensors.

Sources, in order of preference: a local mirror (directory, ``file://`` or ``http(s)://`` URL
holding the four files) from ``$PIPELINE_MNIST_MIRROR`` or ``data.mirror``; otherwise
torchvision's official mirrors. Prepared data: ``<data.dir>/mnist/{train,test}.pt``, each a
dict ``{"images": uint8 [N, 28, 28], "labels": int64 [N]}``, loadable onto a GPU in one call.
"""

from __future__ import annotations

import gzip
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.infra import layout
from pipeline.infra.config import MIRROR_ENV, Params
from pipeline.infra.errors import PipelineError
from pipeline.infra.io import DOWNLOAD_ERRORS, atomic_dir, download, file_hash, write_json

# (file name, md5) exactly as torchvision.datasets.MNIST.resources lists them.
RESOURCES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
IMG_SHAPE = (1, 28, 28)
N_CLASSES = 10


class DataError(PipelineError):
    pass


def official_mirrors() -> list[str]:
    from torchvision.datasets import MNIST

    return list(MNIST.mirrors)


def _verify(path: Path, name: str, shown: str) -> None:
    if not path.is_file():
        raise DataError(f"{shown}: missing MNIST file")
    got = file_hash(path, "md5")
    if got != RESOURCES[name]:
        raise DataError(
            f"{shown}: md5 mismatch (got {got}, expected {RESOURCES[name]}); "
            "the file is corrupt or truncated"
        )


def _download(url: str, dest: Path) -> None:
    try:
        download(url, dest)
    except DOWNLOAD_ERRORS as err:
        reason = getattr(err, "reason", err)
        raise DataError(f"{url}: download failed ({reason})") from None


def fetch_raw(mirror: str | None, workdir: Path) -> dict[str, Path]:
    """Paths of the four verified .gz files, downloaded into ``workdir`` when not local."""
    if mirror and not mirror.startswith(("http://", "https://")):
        base = Path(mirror.removeprefix("file://")).expanduser()
        if not base.is_dir():
            raise DataError(
                f"{base}: MNIST mirror directory not found (from {MIRROR_ENV}/data.mirror)"
            )
        out = {}
        for name in RESOURCES:
            _verify(base / name, name, str(base / name))
            out[name] = base / name
        return out

    bases = [mirror] if mirror else official_mirrors()
    out = {}
    for name in RESOURCES:
        dest = workdir / name
        errors = []
        for base in bases:
            url = base.rstrip("/") + "/" + name
            try:
                _download(url, dest)
                _verify(dest, name, url)
                out[name] = dest
                break
            except DataError as err:
                errors.append(str(err))
        else:
            hint = "" if mirror else f"; offline? set {MIRROR_ENV} to a directory with the files"
            raise DataError(f"{name}: could not be fetched: {' | '.join(errors)}{hint}")
    return out


def _read_idx(path: Path, magic: int, count: int) -> torch.Tensor:
    """Decode one IDX file (gzip). Images -> uint8 [N, 28, 28]; labels -> int64 [N]."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a readable gzip file ({err})") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != magic:
        raise DataError(f"{path}: not an MNIST IDX file (bad magic number)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = (count, 28, 28) if ndim == 3 else (count,)
    if tuple(dims) != expected or len(raw) != header + count * (784 if ndim == 3 else 1):
        raise DataError(f"{path}: unexpected shape {tuple(dims)} / size (expected {expected})")
    data = torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)
    return data.clone() if ndim == 3 else data.to(torch.int64)


@dataclass(frozen=True)
class Prepared:
    dir: Path
    counts: dict[str, int]
    train_mean: float


def mnist_dir(params: Params) -> Path:
    return layout.mnist_dir(params)


def prepare(params: Params) -> Prepared:
    """Fetch, verify, decode and atomically write MNIST under ``<data.dir>/mnist``."""
    target = mnist_dir(params)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download.") as work:
        files = fetch_raw(params.mnist_mirror(), Path(work))
        splits = {}
        for split, (img_name, lbl_name, count) in SPLITS.items():
            images = _read_idx(files[img_name], 0x0803, count)
            labels = _read_idx(files[lbl_name], 0x0801, count)
            splits[split] = {"images": images, "labels": labels}
        with atomic_dir(target) as tmp:
            for split, tensors in splits.items():
                torch.save(tensors, tmp / f"{split}.pt")
            train_mean = splits["train"]["images"].float().mean().item() / 255.0
            write_json(
                tmp / "meta.json",
                {
                    "counts": {s: int(t["labels"].numel()) for s, t in splits.items()},
                    "md5": RESOURCES,
                    "train_pixel_mean": round(train_mean, 6),
                },
            )
    return Prepared(target, {s: int(t["labels"].numel()) for s, t in splits.items()}, train_mean)


def load_split(
    params: Params, split: str, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images [N, 28, 28], int64 labels [N]) of a prepared split, on ``device``."""
    return read_split(mnist_dir(params), split, device)


def read_split(
    folder: Path, split: str, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`load_split` from the prepared MNIST folder ``folder`` (``<data.dir>/mnist``)."""
    path = folder / f"{split}.pt"
    if not path.is_file():
        raise DataError(f"{path}: prepared MNIST not found; run `pipeline prepare` first")
    # weights_only: a crafted file cannot run code; whatever it holds, the error names the
    # file and the fix rather than the unpickler's complaint.
    rebuild = f"run `pipeline prepare` to rebuild {folder}"
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise DataError(
            f"{path}: unreadable prepared MNIST ({type(err).__name__}); {rebuild}"
        ) from None
    count = SPLITS[split][2] if split in SPLITS else None
    images = data.get("images") if isinstance(data, dict) else None
    labels = data.get("labels") if isinstance(data, dict) else None
    ok = (
        isinstance(images, torch.Tensor)
        and isinstance(labels, torch.Tensor)
        and images.dtype == torch.uint8
        and labels.dtype == torch.int64
        and tuple(images.shape) == (count, 28, 28)
        and tuple(labels.shape) == (count,)
    )
    if not ok:
        raise DataError(
            f"{path}: not prepared MNIST (expected uint8 images [{count}, 28, 28] and int64 "
            f"labels [{count}]); {rebuild}"
        )
    return images, labels


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28] in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    return images.unsqueeze(1).float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [N, 1, 28, 28] in [-1, 1] -> uint8 [N, 1, 28, 28] (rounded, clamped)."""
    return images.add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)
