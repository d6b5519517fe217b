"""io.download against a real local HTTP server: digest, check hook, nothing left behind."""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.infra.io import DOWNLOAD_ERRORS, download


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

    from pipeline.infra.io import atomic_dir, atomic_path

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

    from pipeline.infra.io import save_torch

    obj = {"w": torch.arange(12.0).reshape(3, 4), "meta": {"seed": 0}}
    save_torch(obj, tmp_path / "a.pt")
    save_torch(obj, tmp_path / "b.pt")  # another name: torch.save(path) would name the records
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "b.pt")["w"], obj["w"])


def _leftovers(folder: Path, name: str) -> list[Path]:
    """What a kill between write and rename leaves: a temp file, a temp folder, an old one."""
    made = [folder / f".{name}.abcd1234.tmp", folder / f".{name}.x1y2z3_4.old"]
    made[0].write_bytes(b"half")
    made[1].mkdir()
    (made[1] / "x").write_text("previous")
    return made


def test_an_atomic_write_removes_what_a_killed_write_of_that_file_left(tmp_path: Path) -> None:
    from pipeline.infra.io import atomic_dir, write_json

    left = _leftovers(tmp_path, "a.json")
    other = _leftovers(tmp_path, "b.json")  # another file's: not this write's to remove
    write_json(tmp_path / "a.json", {"x": 1})
    assert not any(p.exists() for p in left) and all(p.exists() for p in other)
    left = _leftovers(tmp_path, "out")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f").write_text("new")
    assert not any(p.exists() for p in left) and (tmp_path / "out" / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a.json", "out", *(p.name for p in other)]
    )


def test_a_live_writers_temp_is_not_removed(tmp_path: Path) -> None:
    """Two writers of one file: the second's sweep leaves the first's temp (it holds its lock)."""
    import subprocess
    import sys

    from pipeline.infra.io import atomic_path, write_json

    target = tmp_path / "a.json"
    with atomic_path(target) as first:
        first.write_text('{"first": true}')
        # The sweep in another process (a lock held in this one is what it sees).
        code = "import sys, pathlib; from pipeline.infra.io import write_json; "
        code += "write_json(pathlib.Path(sys.argv[1]), {'second': True})"
        subprocess.run([sys.executable, "-c", code, str(target)], check=True, timeout=120)
        assert first.exists()
        write_json(target, {"third": True})  # and in this process, through another lock
        assert first.exists()
    assert target.read_text() == '{"first": true}'  # the first writer's rename came last
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_the_sample_stage_removes_its_leftovers(tmp_path: Path, prepared_dir: Path) -> None:
    """``.samples.pt.<random>.old`` and friends beside samples.pt (as a kill leaves them) are
    gone after the next sample run; .dvcignore keeps DVC from counting them meanwhile."""
    import subprocess
    import sys

    from pipeline.infra import layout
    from pipeline.infra.params import load_params
    from pipeline.stages.sample import sample_variant
    from pipeline.stages.train import train_variant
    from tests.conftest import REPO, TINY, deep_update, write_params

    params = load_params(
        write_params(tmp_path, deep_update(TINY, {"data": {"dir": str(prepared_dir)}}))
    )
    train_variant(params, "gan", epochs=1, subset=128, track=False, progress=False)
    folder = layout.sample_dir(params, "gan")
    folder.mkdir(parents=True)
    left = [*_leftovers(folder, "samples.pt"), *_leftovers(folder, "grid.png")]
    sampling = layout.sampling_path(params, "gan")
    sampling.parent.mkdir(parents=True)
    left += _leftovers(sampling.parent, sampling.name)
    sample_variant(params, "gan")
    assert not [p for p in left if p.exists()]
    assert sorted(p.name for p in folder.iterdir()) == ["grid.png", "samples.pt"]
    # DVC's own reading of .dvcignore: the leftovers are not part of the stage's output.
    rel = [str(p.relative_to(tmp_path)) for p in left] + ["samples/gan/seed0/samples.pt"]
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "check-ignore", *rel],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sorted(out.stdout.split()) == sorted(rel[:-1]), out.stderr
