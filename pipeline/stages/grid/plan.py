"""The DVC side of the grid: which chains are out of date, what they need first, whether the
tree still matches what they ran on, and recording a finished chain.

DVC stays the single source of truth: staleness is DVC's own ``status``, the upstream stages
run through DVC's ``reproduce`` and a finished chain is written to dvc.lock by DVC's
``commit``. Every call opens the repo afresh (it takes DVC's repo lock for its duration and
reads dvc.lock as it is now), always from the one client process, so no two DVC writers race.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.infra.errors import PipelineError

CHAIN_STAGES = ("train", "sample", "evaluate")


class GridError(PipelineError):
    pass


@dataclass(frozen=True)
class Chain:
    """One (variant, seed) chain and the stages of it this grid runs (from the first one
    DVC reports out of date; the later ones read its outputs, so they run too)."""

    variant: str
    seed: int
    stages: tuple[str, ...] = CHAIN_STAGES

    @property
    def name(self) -> str:
        return f"{self.variant}-{self.seed}"

    def stage_names(self) -> list[str]:
        return [f"{stage}@{self.name}" for stage in self.stages]


@dataclass
class Plan:
    chains: list[Chain]
    upstream: list[str]  # stages the chains read (prepare, classifier), up to date or not
    stale_upstream: list[str]
    deps: list[Path] = field(default_factory=list)  # what a commit vouches for (besides params)


def _repo(root: Path):
    from dvc.repo import Repo

    try:
        return Repo(str(root))
    except Exception as err:  # NotDvcRepoError and friends: one line
        raise GridError(f"{root}: not a DVC project ({err}); run `dvc init` there") from None


def _status(root: Path) -> dict[str, list]:
    with _repo(root) as repo:
        raw = repo.status()
    # Keys are "train@gan-0" (or "dvc.yaml:train@gan-0" for a dvc.yaml in a subfolder).
    return {key.rsplit(":", 1)[-1]: value for key, value in raw.items()}


def plan(root: Path, variants: list[str], seeds: list[int]) -> Plan:
    """The out-of-date chains, per DVC, and the stages upstream of the chains."""
    status = _status(root)
    chains = []
    for v in variants:
        for s in seeds:
            stale = [st for st in CHAIN_STAGES if f"{st}@{v}-{s}" in status]
            if stale:
                chains.append(Chain(v, s, CHAIN_STAGES[CHAIN_STAGES.index(stale[0]) :]))
    chain_stages = {f"{st}@{v}-{s}" for v in variants for s in seeds for st in CHAIN_STAGES}
    upstream: set[str] = set()
    deps: set[Path] = set()
    with _repo(root) as repo:
        chain_outs = {
            Path(o.fs_path) for st in repo.index.stages if st.addressing in chain_stages
            for o in st.outs
        }  # fmt: skip
        for st in repo.index.stages:
            if st.addressing not in chain_stages:
                continue
            for dep in st.deps:
                if Path(dep.fs_path) not in chain_outs:  # params.yaml is one of them
                    deps.add(Path(dep.fs_path))
            for up in repo.stage.collect(st.addressing, with_deps=True):
                if up.addressing not in chain_stages:
                    upstream.add(up.addressing)
    return Plan(
        chains=chains,
        upstream=sorted(upstream),
        stale_upstream=sorted(u for u in upstream if u in status),
        deps=sorted(deps),
    )


def repro_upstream(root: Path, stages: list[str]) -> None:
    """Bring what the chains read up to date with DVC itself (``dvc repro <stage>``)."""
    with _repo(root) as repo:
        try:
            repo.reproduce(stages)
        except Exception as err:
            raise GridError(
                f"dvc repro {' '.join(stages)} failed ({err}); the chains need them first"
            ) from None


def commit(root: Path, chain: Chain) -> None:
    """Record a finished chain's stages in dvc.lock (``dvc commit -f``): their deps, params
    and outputs as they are now, so ``dvc repro`` finds them up to date."""
    with _repo(root) as repo:
        for name in chain.stage_names():
            repo.commit(name, force=True)


class Fingerprint:
    """A hash of params.yaml and every file the chain stages depend on (code, MNIST, the
    classifier), taken before the grid starts and again before each commit: a commit vouches
    that its outputs come from the tree dvc.lock will record, which an edit during the grid
    would break. Files whose size and mtime are unchanged are not read again."""

    def __init__(self, params_file: Path, deps: list[Path]) -> None:
        self.paths = [params_file, *deps]
        self._seen: dict[Path, tuple[int, int, str]] = {}
        self.start = self.digests()

    def _digest(self, path: Path) -> str:
        st = path.stat()
        cached = self._seen.get(path)
        if cached and cached[:2] == (st.st_size, st.st_mtime_ns):
            return cached[2]
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        self._seen[path] = (st.st_size, st.st_mtime_ns, h.hexdigest())
        return h.hexdigest()

    def digests(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for top in self.paths:
            files = [top] if not top.is_dir() else sorted(
                Path(d) / f for d, _, fs in os.walk(top) for f in fs
                if "__pycache__" not in d and not f.endswith(".pyc")
            )  # fmt: skip
            for f in files:
                out[str(f)] = self._digest(f) if f.exists() else "missing"
        return out

    def changed(self) -> list[str]:
        """The files that differ from the start (added, removed or edited)."""
        now = self.digests()
        return sorted(k for k in self.start.keys() | now.keys() if self.start.get(k) != now.get(k))
