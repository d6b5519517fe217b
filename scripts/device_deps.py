"""What the GPU machine lacks of our Python needs, and an import probe for it (issue 27).

    python scripts/device_deps.py requirements   # the bundle's list, one requirement a line
    python scripts/device_deps.py probe          # import every module the GPU check imports

The requirement list is pyproject's dependencies minus what that machine has preinstalled
(../shared/tools/device-preinstalled.txt) and minus torch/torchvision (never carried), with
the versions checked there pinned. The probe imports every module of the package and of the
benchmarks (a module-level import that fails shows) and every dependency by its import name
(the ones imported inside functions, such as prdc in the evaluate stage, show too); it prints
one line per failure and exits 1 if any, so the check stops in its first seconds instead of
after a torch-fidelity pass.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREINSTALLED = REPO.parent / "shared" / "tools" / "device-preinstalled.txt"

# Versions run on the GPU machine (DESIGN.md, "Known traps"); the rest take the newest.
PINS = {
    "mlflow": "3.17.2",
    "optuna": "5.0.0",
    "torch-fidelity": "0.4.0",
    "dvc": "3.67.1",
    "prdc": "0.2",
}
# Never carried: the machine's own builds (CUDA wheels cannot be resolved from here).
NEVER = {"torch", "torchvision", "torchaudio", "triton"}
# Needed by the check beyond pyproject's runtime list: the grid's `dvc commit` is in it.
EXTRA = ["dvc"]
# Distribution name -> import name, where they differ.
IMPORT_NAMES = {
    "pyyaml": "yaml",
    "pillow": "PIL",
    "ruamel-yaml": "ruamel.yaml",
    "markdown-it-py": "markdown_it",
    "torch-fidelity": "torch_fidelity",
    "scikit-learn": "sklearn",
}
# Packages imported by name in the code but reached through another distribution.
ALSO_IMPORTED = ["scipy.stats", "sklearn.neighbors", "sqlalchemy", "pydantic_core"]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependencies() -> list[str]:
    """pyproject's runtime dependencies, as distribution names (normalised)."""
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    names = [re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0] for d in doc["project"]["dependencies"]]
    return [norm(n) for n in names]


def preinstalled(path: Path = PREINSTALLED) -> set[str]:
    return {norm(line.strip()) for line in path.read_text().splitlines() if line.strip()}


def requirements(path: Path = PREINSTALLED) -> list[str]:
    """The requirements to carry as wheels: pinned where checked there."""
    have = preinstalled(path) | NEVER
    out = []
    for name in dict.fromkeys([*dependencies(), *EXTRA]):
        if name not in have:
            out.append(f"{name}=={PINS[name]}" if name in PINS else name)
    return out


def modules() -> list[str]:
    """Every module the check can import: the package's, the benchmarks', every dependency's."""
    import pipeline

    found = [
        m.name
        for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.")
        if m.name != "pipeline.__main__"
    ]  # fmt: skip  (it runs the CLI)
    found += ["pipeline", "train_speed", "speed_report"]
    found += [IMPORT_NAMES.get(d, d.replace("-", "_")) for d in [*dependencies(), *EXTRA]]
    return [*dict.fromkeys(found + ALSO_IMPORTED)]


def probe() -> int:
    """Import every module of modules(); one line per failure; the number of failures."""
    sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
    failed = 0
    for name in modules():
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 -- any failure to import is the finding
            failed += 1
            print(f"import {name}: {type(exc).__name__}: {exc}".splitlines()[0], flush=True)
    print(f"import probe: {len(modules()) - failed} of {len(modules())} modules import")
    return failed


def main(argv: list[str]) -> int:
    if argv == ["requirements"]:
        print("\n".join(requirements()))
        return 0
    if argv == ["probe"]:
        os.environ.setdefault("MPLBACKEND", "Agg")
        return 1 if probe() else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
