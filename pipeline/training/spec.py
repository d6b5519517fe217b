"""A run's identity: everything that determines its result, checked on resume."""

from __future__ import annotations

import ast
import hashlib
import inspect
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.core.hyper import Hyper
from pipeline.core.variants._known import known
from pipeline.core.variants.base import Variant
from pipeline.infra.config import Params

PACKAGE = Path(__file__).resolve().parents[1]
# The sources every run's math depends on, whatever the variant (relative to pipeline/).
CORE_FILES = (
    "training/loop.py",
    "training/optim.py",
    "training/graphs.py",
    "infra/data.py",
    "infra/checkpoint.py",
    "core/algorithms/base.py",
    "core/hyper.py",
    "core/variants/base.py",
)


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a training run's result (the identity checked on resume)."""

    variant: str
    hyper: Hyper
    seed: int
    batch_size: int
    z_dim: int
    subset: int | None
    fast: bool = True  # fast and classic paths round differently (and lay out Adam state)
    code: str = ""  # hash of the source that defines the training math (see code_hash)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hyper"]["betas"] = list(self.hyper.betas)
        return d

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> RunSpec:
        return cls(**{**cfg, "hyper": Hyper.from_dict(cfg["hyper"])})


def _source_files(obj: Any, seen: set[int], out: set[Path], depth: int = 0) -> None:
    """The pipeline source files defining ``obj`` and the functions, classes and dataclass
    fields it is made of (nets, objectives, penalties, hooks, helper modules)."""
    if id(obj) in seen or depth > 4:
        return
    seen.add(id(obj))
    target = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    try:
        path = Path(inspect.getsourcefile(target) or "").resolve()
    except (TypeError, OSError):  # a builtin, or a class made at run time
        path = Path()
    if path.is_file() and PACKAGE in path.parents:
        out.add(path)
    if is_dataclass(obj) and not inspect.isclass(obj):
        for f in fields(obj):
            _source_files(getattr(obj, f.name), seen, out, depth + 1)
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            _source_files(item, seen, out, depth + 1)


def code_files(variant: Variant) -> list[str]:
    """Paths (relative to pipeline/) of every source a variant's run depends on."""
    found: set[Path] = {PACKAGE / rel for rel in CORE_FILES}
    _source_files(variant.algorithm, set(), found)
    _source_files(variant.options, set(), found)
    variant_file = PACKAGE / "core" / "variants" / f"{variant.name}.py"
    if variant_file.is_file():  # a variant registered from elsewhere (tests) has no file here
        found.add(variant_file)
    return sorted(p.relative_to(PACKAGE).as_posix() for p in found if p.is_file())


def _drop_docstring(body: list[ast.stmt]) -> None:
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        # Removed, not replaced: adding a docstring where there was none changes nothing.
        del body[0]
        if not body:
            body.append(ast.Pass())


class _Normalise(ast.NodeTransformer):
    """Strips what cannot change a run's math: docstrings, and where a module imports from
    inside this package (a move renames ``pipeline.core.nets`` to ``pipeline.core.nets``; the
    names imported and their aliases stay in the hash, so swapping ``bce`` for ``hinge``
    still counts). Comments and layout are gone already: the AST has neither."""

    def _body(self, node: ast.AST) -> ast.AST:
        _drop_docstring(node.body)  # type: ignore[attr-defined]
        return self.generic_visit(node)

    visit_Module = visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _body

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.level or (node.module or "").split(".")[0] == PACKAGE.name:
            return ast.ImportFrom(module=None, names=node.names, level=0)
        return node

    def visit_Import(self, node: ast.Import) -> ast.AST:
        # ``import pipeline.x as y``: keep the alias, drop the package path behind it.
        names = [
            ast.alias(name="" if a.name.split(".")[0] == PACKAGE.name else a.name, asname=a.asname)
            for a in node.names
        ]
        return ast.Import(names=names)


def source_digest(source: str) -> str:
    """sha256 of a module's code as Python sees it: its AST without docstrings, line numbers
    or the locations of in-package imports, so comments, docstrings, formatting and moves
    leave it unchanged, while any changed expression changes it."""
    tree = _Normalise().visit(ast.parse(source))
    dumped = ast.dump(tree, annotate_fields=False, include_attributes=False)
    return hashlib.sha256(dumped.encode()).hexdigest()


def hash_sources(paths: Iterable[Path]) -> str:
    """One digest of a set of modules, independent of their paths and of their order: moving
    or renaming a module keeps it, editing one's code does not."""
    h = hashlib.sha256()
    for digest in sorted(source_digest(Path(p).read_text()) for p in paths):
        h.update(digest.encode())
    return h.hexdigest()[:16]


def code_hash(name: str) -> str:
    """Digest of the sources that define a run's math (the trainer, the algorithm, nets,
    losses and hooks the variant uses, data scaling, the variant's file; see
    :func:`hash_sources`). Part of the run identity: with ``persist: true`` in dvc.yaml a code
    change must retrain, not reuse the old checkpoint, while a docstring, a comment or a
    module move must not retrain anything."""
    return hash_sources(PACKAGE / rel for rel in code_files(known(name)))


def _epochs_for_budget(params: Params, variant: Variant, hyper: Hyper, subset: int | None) -> int:
    """train.budget g_updates: the epochs that give ``variant`` train.g_updates generator
    updates on this data size and batch size (an explicit ``epochs`` still wins)."""
    from pipeline.infra.data import SPLITS
    from pipeline.training.budget import epochs_for_g_updates

    n = subset if subset is not None else params.train.subset
    images = min(n, SPLITS["train"][2]) if n is not None else SPLITS["train"][2]
    target = params.train.g_updates
    assert target is not None  # the config refuses budget g_updates without it
    steps = images // params.train.batch_size
    return epochs_for_g_updates(variant.algorithm, hyper, target, steps)


def run_spec(
    params: Params,
    name: str,
    *,
    epochs: int | None = None,
    subset: int | None = None,
    hyper: Hyper | None = None,
    seed: int | None = None,
) -> RunSpec:
    """The identity of training ``name`` with training seed ``seed`` (None: the first of
    ``train.seeds``). Its epochs: ``epochs``, else under ``train.budget: g_updates`` the
    fewest that reach train.g_updates generator updates, else the variant's."""
    variant = known(name)
    if hyper is None:
        hyper = variant.resolve(params.variants.get(name))
    if epochs is None and params.train.budget == "g_updates":
        epochs = _epochs_for_budget(params, variant, hyper, subset)
    if epochs is not None:
        hyper = replace(hyper, epochs=epochs)
    return RunSpec(
        variant=name,
        hyper=hyper,
        seed=params.train.first_seed if seed is None else seed,
        batch_size=params.train.batch_size,
        z_dim=params.train.z_dim,
        subset=subset if subset is not None else params.train.subset,
        fast=params.train.fast,
        code=code_hash(name),
    )
