import functools
import gzip
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from pipeline.infra.config import MIRROR_ENV
from pipeline.infra.data import RESOURCES, DataError, load_split, prepare, to_model_range
from pipeline.infra.params import load_params
from tests.conftest import write_params


def test_prepared_mnist_matches_the_reference_numbers(prepared_dir: Path, tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path, {"data": {"dir": str(prepared_dir)}}))
    images, labels = load_split(params, "train")
    assert images.shape == (60_000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60_000,) and labels.dtype == torch.int64
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert images.float().mean().item() / 255 == pytest.approx(0.1307, abs=1e-4)
    test_images, test_labels = load_split(params, "test")
    assert test_images.shape == (10_000, 28, 28) and test_labels.shape == (10_000,)
    assert torch.bincount(labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    x = to_model_range(images[:10])
    assert x.shape == (10, 1, 28, 28) and x.min() >= -1 and x.max() <= 1


def _mirror_copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.glob("*.gz"):
        shutil.copy(f, dst / f.name)
    return dst


@pytest.mark.parametrize("damage", ["truncate", "corrupt", "missing"])
def test_bad_mirror_file_names_the_file_and_leaves_nothing(
    damage: str, mnist_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = _mirror_copy(mnist_mirror, tmp_path / "mirror")
    victim = mirror / "t10k-labels-idx1-ubyte.gz"
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:1000])
    elif damage == "corrupt":
        raw = bytearray(victim.read_bytes())
        raw[200] ^= 0xFF
        victim.write_bytes(bytes(raw))
    else:
        victim.unlink()
    monkeypatch.setenv("PIPELINE_MNIST_MIRROR", str(mirror))
    params = load_params(write_params(tmp_path / "proj"))
    with pytest.raises(DataError) as err:
        prepare(params)
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and "\n" not in msg
    assert ("missing" in msg) if damage == "missing" else ("md5" in msg)
    data_dir = tmp_path / "proj" / "data"
    assert not data_dir.exists() or list(data_dir.iterdir()) == []


def test_undecodable_gzip_is_a_one_line_error(tmp_path: Path) -> None:
    from pipeline.infra.data import _read_idx

    bad = tmp_path / "x.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 3))
    with pytest.raises(DataError, match="x.gz"):
        _read_idx(bad, 0x0801, 10)
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable gzip"):
        _read_idx(bad, 0x0801, 10)


def test_prepare_replaces_existing_output_atomically(mnist_mirror: Path, tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path))
    out = prepare(params)
    stale = out.dir / "stale.txt"
    stale.write_text("from an older run")
    prepare(params)
    assert not stale.exists()
    assert sorted(p.name for p in out.dir.iterdir()) == ["meta.json", "test.pt", "train.pt"]
    # no temp dirs left beside it
    assert sorted(p.name for p in out.dir.parent.iterdir()) == ["mnist"]


@pytest.mark.parametrize("scheme", ["http", "file"])
def test_url_mirror(
    scheme: str, mnist_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mirror given as a URL: a local HTTP server on 127.0.0.1, or a file:// URL."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(mnist_mirror))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = (
            f"http://127.0.0.1:{server.server_port}/" if scheme == "http" else mnist_mirror.as_uri()
        )
        monkeypatch.setenv("PIPELINE_MNIST_MIRROR", url)
        out = prepare(load_params(write_params(tmp_path)))
    finally:
        server.shutdown()
    assert out.counts == {"train": 60_000, "test": 10_000}
    assert out.train_mean == pytest.approx(0.1307, abs=1e-4)


def test_relative_data_mirror_resolves_against_the_params_folder(
    mnist_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`data.mirror: mirror` means <params folder>/mirror whatever the working directory."""
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    proj.mkdir()
    elsewhere.mkdir()
    (proj / "mirror").symlink_to(mnist_mirror)
    path = proj / "params.yaml"
    path.write_text("data:\n  mirror: mirror\n")
    monkeypatch.delenv(MIRROR_ENV)
    monkeypatch.chdir(elsewhere)
    params = load_params(path)
    assert params.mnist_mirror() == str(proj.resolve() / "mirror")
    out = prepare(params)
    assert out.dir == proj.resolve() / "data" / "mnist"
    assert out.counts == {"train": 60_000, "test": 10_000}


@pytest.mark.parametrize(
    "mirror", ["http://127.0.0.1:9/mnist/", "file:///srv/mnist", "/abs/mnist", None]
)
def test_urls_and_absolute_data_mirrors_are_kept(
    mirror: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MIRROR_ENV)
    params = load_params(write_params(tmp_path, {"data": {"mirror": mirror}}))
    assert params.mnist_mirror() == mirror


def test_mirror_env_var_stays_relative_to_the_working_directory(
    mnist_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.infra.data import fetch_raw

    (tmp_path / "proj").mkdir()
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "m").symlink_to(mnist_mirror)
    params = load_params(write_params(tmp_path / "proj", {"data": {"mirror": "elsewhere"}}))
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv(MIRROR_ENV, "m")
    assert params.mnist_mirror() == "m"
    files = fetch_raw(params.mnist_mirror(), tmp_path)
    assert sorted(files) == sorted(RESOURCES)
