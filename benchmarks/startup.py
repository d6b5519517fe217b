"""What each stage command pays to start: its imports, measured in the real command.

Usage (from the repo root; MNIST from $PIPELINE_MNIST_MIRROR or ../shared/data/mnist):

    OMP_NUM_THREADS=1 python benchmarks/startup.py [--repeats 3] [--only train,sample] [--out reports/benchmarks/startup_cpu.md]

Builds a tiny project in a temporary folder (prepared MNIST, a one-epoch classifier, gan
trained for one epoch on 512 images, its samples and scores), then runs each stage command as
DVC runs it, a fresh ``python -m pipeline.cli ...`` process, under ``python -X importtime``.
Per command it reports the median over the repeats of: the imports the process paid (the sum
of its top-level imports' cumulative times, as ``-X importtime`` reports them), the wall time
of the whole command, and whether torch, torchvision, torch_fidelity and mlflow were imported.
For ``train`` also the seconds to its first line (the device and budget, printed before the
first step). The goals of issue 25 are on the imports: train and sample <= 3 s, report <= 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HEAVY = ("torch", "torchvision", "torch_fidelity", "mlflow", "matplotlib", "scipy")
LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)$")


def _project(root: Path) -> Path:
    from tests.conftest import TINY, deep_update, write_params

    over = deep_update(TINY, {"data": {"dir": str(root / "data")},
                              "train": {"score_every": 0, "seeds": [0]},
                              "classifier": {"epochs": 1, "subset": 2048}})  # fmt: skip
    return write_params(root, over, variants=["gan"])


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, set[str], float]:
    """(import seconds, wall seconds, heavy modules imported, seconds to the first line)."""
    cmd = [sys.executable, "-X", "importtime", "-m", "pipeline.cli", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True,
                            stdout=subprocess.DEVNULL)  # fmt: skip
    imports_us, heavy, first = 0, set(), float("nan")
    assert proc.stderr is not None
    for line in proc.stderr:
        m = LINE.match(line.rstrip("\n"))
        if m is None:
            if first != first and ": training on " in line:  # the trainer's first line
                first = time.perf_counter() - start
            continue
        cumulative, indent, name = int(m.group(1)), m.group(2), m.group(3)
        if not indent:
            imports_us += cumulative
        if name in HEAVY:
            heavy.add(name)
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit {proc.returncode})")
    return imports_us / 1e6, time.perf_counter() - start, heavy, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "reports/benchmarks/startup_cpu.md")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated commands to report (their inputs are still built)",
    )
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    commands = {
        "prepare": ["prepare"],
        "classifier": ["classifier"],
        "train": ["train", "gan", "--epochs", "1"],
        "sample": ["sample", "gan"],
        "evaluate": ["evaluate", "gan"],
        "report": ["report"],
    }
    only = set(filter(None, args.only.split(",")))
    if only - set(commands):
        raise SystemExit(f"--only: unknown commands {sorted(only - set(commands))}")
    order = list(commands)
    last = max((order.index(c) for c in only), default=len(order) - 1)
    needed = set(order[: last + 1])  # each command reads what the ones before it wrote
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params = _project(root)
        rows = []
        for name, cmd in commands.items():
            if name not in needed:
                continue
            runs = []
            repeats = args.repeats if (name in only or not only) else 1
            for i in range(repeats if name not in ("prepare", "classifier") else 1):
                if name == "train" and i:  # a finished run would train nothing: start over
                    import shutil

                    shutil.rmtree(root / "models" / "gan", ignore_errors=True)
                runs.append(_run([*cmd, "--params", str(params)], root, env))
            imports = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            first = statistics.median(r[3] for r in runs)
            heavy = sorted(set().union(*(r[2] for r in runs)))
            if only and name not in only:
                continue
            rows.append((name, imports, wall, first, heavy, len(runs)))
            print(f"{name}: imports {imports:.2f} s, wall {wall:.2f} s, {', '.join(heavy)}")
    load = os.getloadavg()
    lines = [
        "# Stage start-up on the CPU (imports each stage process pays)",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/startup.py --repeats {args.repeats}`. "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average at the end {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} (1 / 5 / 15 min). Medians over the repeats (prepare and classifier once).",
        "",
        "| command | imports (s) | wall (s) | first line (s) | heavy modules imported | runs |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name, imports, wall, first, heavy, n in rows:
        shown = f"{first:.2f}" if name == "train" else "—"
        lines.append(
            f"| {name} | {imports:.2f} | {wall:.2f} | {shown} | {', '.join(heavy)} | {n} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
