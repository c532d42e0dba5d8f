"""Resolves ``--config=NAME[:ARG]`` to ``configs/NAME.py`` and applies ``--config.a.b=v``.

Configs are code: each ``configs/<name>.py`` defines ``get_config(arg)``. A path to any such
file works in place of a name.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import ml_collections

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
_NOT_CONFIGS = {"__init__", "common"}
OVERRIDE_PREFIX = "--config."


def available_configs() -> list[str]:
    """Names accepted by ``--config``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem not in _NOT_CONFIGS)


def resolve_config_file(spec: str) -> tuple[Path, str]:
    """Splits ``NAME[:ARG]`` or ``PATH[:ARG]`` into the config file and its argument."""
    name, _, arg = spec.partition(":")
    candidate = Path(name)
    if candidate.suffix == ".py" or candidate.parent != Path("."):
        if not candidate.is_file():
            raise ValueError(f"Config file {candidate} does not exist.")
        return candidate.resolve(), arg
    path = CONFIG_DIR / f"{name}.py"
    if name in _NOT_CONFIGS or not path.is_file():
        raise ValueError(
            f"Unknown config {name!r}; available: {', '.join(available_configs())} "
            f"(in {CONFIG_DIR}), or a path to a .py file defining get_config(arg)."
        )
    return path, arg


def load_config(
    spec: str, overrides: Mapping[str, str] | Iterable[tuple[str, str]] = ()
) -> ml_collections.ConfigDict:
    """Builds a config from ``NAME[:ARG]`` and dotted-field overrides given as strings.

    Args:
      spec: a config name in ``configs/`` or a path, optionally with ``:ARG``.
      overrides: ``{"optim.batch_size": "2", ...}``; values are parsed as Python literals and
        must fit the type of the field they replace.

    Returns:
      The config, locked so that a misspelt field fails instead of being created.
    """
    path, arg = resolve_config_file(spec)
    module_spec = importlib.util.spec_from_file_location(f"lumbar_jax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"Config file {path} defines no get_config(arg).")
    config = module.get_config(arg)
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for dotted, text in items:
        apply_override(config, dotted, text)
    config.lock()
    return config


def apply_override(config: ml_collections.ConfigDict, dotted: str, text: str) -> None:
    """Sets ``config.<dotted>`` from a string, keeping the field's type."""
    *parents, leaf = dotted.split(".")
    node = config
    for depth, key in enumerate([*parents, leaf]):
        if not isinstance(node, ml_collections.ConfigDict) or key not in node:
            where = ".".join(["config", *parents[:depth]])
            fields = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(none)"
            raise ValueError(f"Unknown config field 'config.{dotted}': {where} has {fields}.")
        if depth < len(parents):
            node = node[key]
    node[leaf] = _parse_value(text, node[leaf], dotted)


def _parse_value(text: str, current: Any, dotted: str) -> Any:
    if isinstance(current, str):
        return text
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"config.{dotted} is a bool; got {text!r}.")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"config.{dotted}: cannot parse {text!r} as a Python literal.") from e
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if current is not None and not isinstance(value, type(current)):
        raise ValueError(
            f"config.{dotted} is {type(current).__name__} ({current!r}); got {text!r}."
        )
    return value


def split_config_args(argv: list[str]) -> tuple[str | None, dict[str, str], list[str]]:
    """Takes ``--config=SPEC`` and ``--config.a.b=v`` out of argv.

    Returns:
      (spec or None, overrides in order, the remaining argv for absl).
    """
    spec, overrides, rest = None, {}, []
    args = iter(argv)
    for a in args:
        if a.startswith("--config=") or a == "--config":
            spec = a.partition("=")[2] if "=" in a else next(args, "")
        elif a.startswith(OVERRIDE_PREFIX):
            key, eq, value = a[len(OVERRIDE_PREFIX) :].partition("=")
            overrides[key] = value if eq else next(args, "")
        else:
            rest.append(a)
    return spec, overrides, rest


def to_dict(config: ml_collections.ConfigDict) -> dict:
    """A JSON-ready dict (tuples become lists)."""
    return json.loads(config.to_json())


def save_config(config: ml_collections.ConfigDict, workdir: Path) -> Path:
    """Writes the resolved config to ``workdir/config.json``."""
    path = Path(workdir) / "config.json"
    path.write_text(json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")
    return path


def from_dict(data: dict) -> ml_collections.ConfigDict:
    """The inverse of ``to_dict`` (lists become tuples again)."""

    def tuples(x):
        if isinstance(x, dict):
            return {k: tuples(v) for k, v in x.items()}
        if isinstance(x, list):
            return tuple(tuples(v) for v in x)
        return x

    return ml_collections.ConfigDict(tuples(data))


def read_config(path: Path) -> ml_collections.ConfigDict:
    """Reads a config saved by ``save_config``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"Cannot read config {path}: {e}") from e
    return from_dict(data)


def absl_flags_parser(overrides: dict[str, str]):
    """A ``flags_parser`` for ``absl.app.run`` that accepts ``--config.a.b=v`` overrides.

    absl does not know those flags; they are taken out of argv into ``overrides`` and the
    rest (with ``--config=SPEC``, a string flag the entry point defines) goes to absl.
    """
    from absl import flags

    def parse(argv: list[str]) -> list[str]:
        _, found, rest = split_config_args(argv)
        overrides.update(found)
        spec = next((a for a in argv if a.startswith("--config=")), None)
        return flags.FLAGS(rest + ([spec] if spec else []))

    return parse
