"""io.download against a real local HTTP server: digest, check hook, nothing left behind."""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.io import DOWNLOAD_ERRORS, download


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    root = tmp_path / "www"
    root.mkdir()
    payload = bytes(range(256)) * 5000
    (root / "blob.bin").write_bytes(payload)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/blob.bin", payload
    finally:
        server.shutdown()
        server.server_close()


def test_download_writes_the_file_and_returns_its_digest(
    served: tuple[str, bytes], tmp_path: Path
) -> None:
    url, payload = served
    dest = tmp_path / "out" / "blob.bin"
    digest = download(url, dest)
    assert dest.read_bytes() == payload
    assert digest == hashlib.sha256(payload).hexdigest()
    assert download(url, dest, algorithm="md5") == hashlib.md5(payload).hexdigest()


def test_a_rejected_download_leaves_nothing_behind(
    served: tuple[str, bytes], tmp_path: Path
) -> None:
    url, _ = served
    out = tmp_path / "out"
    out.mkdir()

    def reject(digest: str) -> None:
        raise OSError(f"digest {digest[:8]} is not the expected one")

    with pytest.raises(OSError, match="not the expected one"):
        download(url, out / "blob.bin", check=reject)
    assert list(out.iterdir()) == []  # neither the file nor a temp file


def test_offline_creates_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "not-yet" / "blob.bin"
    with pytest.raises(DOWNLOAD_ERRORS):
        download("http://127.0.0.1:9/blob.bin", dest)
    assert not dest.parent.exists()


def test_atomic_outputs_get_the_modes_open_and_mkdir_would_give(tmp_path: Path) -> None:
    """Temp files are created owner-only; what they become must not stay that way."""
    import os
    import stat

    from pipeline.io import atomic_dir, atomic_path

    umask = os.umask(0)
    os.umask(umask)
    with atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "inner").write_text("y")
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~umask


def test_save_torch_gives_the_same_bytes_for_the_same_content(tmp_path: Path) -> None:
    import torch

    from pipeline.io import save_torch

    obj = {"w": torch.arange(12.0).reshape(3, 4), "meta": {"seed": 0}}
    save_torch(obj, tmp_path / "a.pt")
    save_torch(obj, tmp_path / "b.pt")  # another name: torch.save(path) would name the records
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "b.pt")["w"], obj["w"])
