"""The code part of a run's identity: what retrains a finished run, and what must not."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from pipeline.core.variants._known import known
from pipeline.training.spec import PACKAGE, code_files, code_hash, hash_sources, source_digest

ORIGINAL = '''"""Module docstring."""
from pipeline.core.losses import bce as loss
import pipeline.core.nets as nets


def step(x):
    """Doc."""
    return loss(x * 2.0) + nets.width  # why: scale
'''


def test_docstrings_comments_and_layout_leave_the_digest() -> None:
    edited = '''"""Another module docstring, longer.

With a second paragraph."""
from pipeline.core.losses import bce as loss

# a new comment
import pipeline.core.nets as nets


def step(x):
    """Rewritten doc."""
    return loss(
        x * 2.0
    ) + nets.width
'''
    no_docs = ORIGINAL.replace('"""Module docstring."""\n', "").replace('    """Doc."""\n', "")
    assert source_digest(edited) == source_digest(ORIGINAL) == source_digest(no_docs)


def test_a_changed_expression_or_imported_name_changes_the_digest() -> None:
    for change in (
        ORIGINAL.replace("x * 2.0", "x * 3.0"),
        ORIGINAL.replace("bce as loss", "hinge as loss"),
        ORIGINAL.replace("+ nets.width", "- nets.width"),
    ):
        assert source_digest(change) != source_digest(ORIGINAL)


def test_a_moved_module_keeps_the_hash(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "step.py").write_text(ORIGINAL)
    (tmp_path / "a" / "losses.py").write_text("def bce(x):\n    return -x\n")
    before = hash_sources([tmp_path / "a" / "step.py", tmp_path / "a" / "losses.py"])
    moved = tmp_path / "core" / "objectives"
    moved.mkdir(parents=True)
    (moved / "training_step.py").write_text(
        ORIGINAL.replace("pipeline.core.losses", "pipeline.core.losses").replace(
            "import pipeline.core.nets", "import pipeline.core.nets"
        )
    )
    (moved / "losses.py").write_text("def bce(x):\n    return -x\n")
    # Order does not matter either: the set of modules is hashed, not a list of paths.
    assert hash_sources([moved / "losses.py", moved / "training_step.py"]) == before
    relative = ORIGINAL.replace("from pipeline.core.losses", "from ..losses")
    (moved / "training_step.py").write_text(relative)
    assert hash_sources([moved / "losses.py", moved / "training_step.py"]) == before


def test_the_real_sources_moved_and_reworded_keep_gans_identity(tmp_path: Path) -> None:
    """A copy of the package with core/nets.py moved back to the top (every import of it
    rewritten, as the move into core/ did) and the trainer's docstrings and comments edited
    hashes as the package does; one changed constant in the losses does not."""
    files = code_files(known("gan"))
    assert {"core/nets.py", "training/loop.py", "core/losses.py"} <= set(files)
    copy = tmp_path / "pipeline"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "core" / "nets.py").rename(copy / "nets.py")
    for path in copy.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\bpipeline\.core\.nets\b", "pipeline.core.nets", text))
    loop = copy / "training" / "loop.py"
    text = loop.read_text()
    assert '"""' in text and "#" in text
    loop.write_text(text.replace('"""', '"""Reworded. ', 1).replace("# ", "# note: ", 3))

    def moved(rel: str) -> Path:
        return copy / ("nets.py" if rel == "core/nets.py" else rel)

    assert hash_sources(moved(rel) for rel in files) == code_hash("gan")
    losses = copy / "core" / "losses.py"
    source = losses.read_text()
    changed = re.sub(r"(?<![\w.])0\.5(?![\w.])", "0.25", source, count=1)
    assert changed != source
    losses.write_text(changed)
    assert hash_sources(moved(rel) for rel in files) != code_hash("gan")
