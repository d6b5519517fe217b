"""Reading params files: YAML without duplicate keys, validation against the schema in
pipeline/infra/config.py with one-line errors naming the dotted key, and profile merges.

Nothing here imports torch or the variant registry: `pipeline report` and `pipeline config
merge` load params without them. Commands that train, sample or score also check the
``variants:`` blocks against the registry (pipeline/training/params.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.infra.config import Params
from pipeline.infra.errors import ConfigError


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def format_validation_error(err: ValidationError, source: str, prefix: str = "") -> str:
    """The first problem as one line: ``params.yaml: train.batch_size: Input should be ...``."""
    first = err.errors()[0]
    loc = ".".join(p for p in (prefix, _dotted(first["loc"])) if p) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(err.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {loc}: {msg}{suffix}"


def parse_params(raw: Any, root: Path, source: str = "params.yaml") -> Params:
    """Validate an already-loaded mapping; raises ConfigError with the dotted key.

    ``None`` (an empty file, or one of comments only) is refused: silently taking every
    default would start the full 200-epoch jobs. An explicit ``{}`` means "all defaults"."""
    if raw is None:
        raise ConfigError(
            f"{source}: the params file is empty; give at least one section "
            "(write `{}` to take every default)"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    if "root" in raw:
        raise ConfigError(f"{source}: root: unknown key")
    try:
        params = Params.model_validate({**raw, "root": root})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    return params


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the
    last one silently). Keys merged in with ``<<:`` may still be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first on line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path | str) -> Any:
    """A YAML file's content (UTF-8, no duplicate keys). Raises ConfigError naming the file
    (and the line, for a YAML problem) on one line."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a params file (give the .yaml file)")
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: not valid UTF-8 (byte 0x{err.object[err.start]:02x} "
            f"at offset {err.start}); save the file as UTF-8"
        ) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the params file ({err.strerror})") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate a params file. Raises ConfigError (one line) on any problem."""
    path = Path(path)
    raw = read_yaml(path)
    return parse_params(raw, path.resolve().parent, source=path.name)


def to_plain(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict (paths as strings, tuples as lists)."""
    return model.model_dump(mode="json")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; used for MLflow params."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def merge_overrides(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in ``over`` replaces. One removal:
    a model set to null under the top-level ``variants:`` of ``over`` is dropped (a profile
    that leaves a model out, e.g. ddpm in profiles/lucic.yaml)."""
    out = _merge(base, over)
    dropped = [k for k, v in (over.get("variants") or {}).items() if v is None]
    if dropped and isinstance(out.get("variants"), dict):
        out["variants"] = {k: v for k, v in out["variants"].items() if k not in dropped}
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def merge_profile(target: Path, profile: Path) -> None:
    """Merge the profile ``profile`` into the params file ``target`` in place (scripts/smoke.sh,
    `make results`), then validate the result; on a ConfigError nothing is written."""
    base, over = read_yaml(target) or {}, read_yaml(profile) or {}
    if not isinstance(base, dict) or not isinstance(over, dict):
        raise ConfigError(
            f"{target if not isinstance(base, dict) else profile}: "
            "the top level must be a mapping of sections"
        )
    merged = merge_overrides(base, over)
    text = f"# params.yaml merged with {profile}\n" + yaml.safe_dump(merged, sort_keys=False)
    parse_params(merged, target.resolve().parent, source=target.name)
    target.write_text(text)
