"""Device selection shared by every stage."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch

from pipeline.infra.errors import PipelineError

# cuBLAS's deterministic workspace setting. ATen reads CUBLAS_WORKSPACE_CONFIG once per
# process, when cuBLAS first runs: set it at process start (deterministic_cublas), not when
# deterministic mode is entered after other CUDA work.
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(name: str) -> torch.device:
    """ "auto" -> CUDA when present, else CPU; otherwise the named device, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PipelineError(
            f"device {name!r}: not a valid torch device (auto, cpu, cuda, cuda:N)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError(
            f"device {name!r}: CUDA is not available on this machine; use auto or cpu"
        )
    return device


def precision_tag(device: torch.device, tf32: bool) -> str:
    """How float32 matmuls and convolutions run on ``device``: "tf32" or "fp32" (a CPU never
    uses TF32). Part of every cache key of features computed there."""
    return f"{device.type}-{'tf32' if tf32 and device.type == 'cuda' else 'fp32'}"


def deterministic_cublas() -> None:
    """Set CUBLAS_WORKSPACE_CONFIG (unless set) for deterministic cuBLAS. Call at process
    start, before the first CUDA matmul: the CLI's train and tune commands do when
    train.deterministic is on, the tests' conftest and scripts/gpu_check.sh always."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


@contextlib.contextmanager
def numerics(tf32: bool, deterministic: bool = False) -> Iterator[None]:
    """Run the block with an explicit float32 precision and determinism, then put back the
    process-wide flags as they were.

    ``tf32``: cuBLAS matmuls and cuDNN convolutions may use TensorFloat-32 on Ampere and later
    (torch leaves convolutions on TF32 by default and matmuls off; here both follow the flag).
    ``deterministic``: cudnn.deterministic, cudnn.benchmark off and
    torch.use_deterministic_algorithms (an op without a deterministic kernel raises), so that
    a CUDA run repeats bit for bit; cuBLAS then needs CUBLAS_WORKSPACE_CONFIG, which ATen
    reads once per process: deterministic_cublas() at process start. Set here too when unset,
    which is only in time where CUDA has not run yet (a warning says so otherwise)."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )  # fmt: skip
    matmul.allow_tf32 = cudnn.allow_tf32 = tf32
    if deterministic:
        if "CUBLAS_WORKSPACE_CONFIG" not in os.environ and torch.cuda.is_initialized():
            warnings.warn(
                "deterministic mode entered after CUDA started without CUBLAS_WORKSPACE_CONFIG: "
                "cuBLAS may not be deterministic in this process (set it at process start)",
                stacklevel=3,
            )
        deterministic_cublas()
        cudnn.deterministic, cudnn.benchmark = True, False
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = saved[:4]
        torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, then put back the process's count."""
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def use_threads(n: int | None) -> None:
    """``train.threads``: the torch CPU threads of this process (None keeps torch's default,
    one per core). Several torch processes on a small machine (a tuning worker beside a
    training run, parallel DVC stages) each take every core by default and then run several
    times slower than with one thread each."""
    if n is not None:
        torch.set_num_threads(n)
