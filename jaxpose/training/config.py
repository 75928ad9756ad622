"""Configs as data: `configs/<name>.py` files with `get_config()`, command-line overrides, JSON saving.

One override syntax is used by every entry point: `--config.optimizer.lr=1e-3` (or
`--config.optimizer.lr 1e-3`). A value is parsed according to the type of the field it replaces
(bool: true/false/1/0/yes/no; int; float; str verbatim; tuple/list/None-valued fields: a Python
literal), so a typo in a key or a value of the wrong type is an error, not a silent new field.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import pathlib
from collections.abc import Sequence

import ml_collections

from jaxpose.io.atomic import atomic_write_text

# Config sections that must agree between a checkpoint and the run resuming/evaluating it.
RESUME_CRITICAL_KEYS = ("task", "model", "data", "seed", "batch_size")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def load_config(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """Import the Python file at `path` and return its `get_config()` (a ConfigDict)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"_jaxpose_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path} defines no get_config()")
    config = module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise TypeError(f"{path}: get_config() returned {type(config).__name__}, expected ConfigDict")
    return config


def _all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        full = f"{prefix}{key}"
        keys.append(full)
        if isinstance(value, ml_collections.ConfigDict):
            keys += _all_keys(value, full + ".")
    return keys


def _parse_value(text: str, current, key: str):
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"--config.{key}: expected a boolean (true/false), got {text!r}")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"--config.{key}: expected an integer, got {text!r}") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"--config.{key}: expected a number, got {text!r}") from None
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if current is None:
            return text
        raise ValueError(f"--config.{key}: expected a Python literal, got {text!r}") from None
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if current is not None and not isinstance(value, type(current)):
        raise ValueError(
            f"--config.{key}: expected {type(current).__name__}, got {type(value).__name__} ({text!r})"
        )
    return value


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, str]]
) -> ml_collections.ConfigDict:
    """A copy of `config` with each `(dotted.key, value_text)` override applied (typed, see module doc)."""
    config = ml_collections.ConfigDict(config.to_dict())
    for key, text in overrides:
        parent = config
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(parent, ml_collections.ConfigDict) or part not in parent:
                known = _all_keys(config)
                close = difflib.get_close_matches(key, known, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise KeyError(f"--config.{key}: no such config key{hint}")
            if depth < len(parts) - 1:
                parent = parent[part]
        current = parent[parts[-1]]
        if isinstance(current, ml_collections.ConfigDict):
            raise ValueError(f"--config.{key} is a section; override its fields instead")
        parent[parts[-1]] = _parse_value(text, current, key)
    return config


def split_config_args(argv: Sequence[str]) -> tuple[str | None, list[tuple[str, str]], list[str]]:
    """Split argv into (config file, [(key, value)] overrides, remaining args).

    Accepts `--config FILE`, `--config=FILE`, `--config.key=value` and `--config.key value`.
    """
    config_path, overrides, rest = None, [], []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--config" or arg.startswith("--config="):
            if "=" in arg:
                config_path = arg.split("=", 1)[1]
            else:
                if i + 1 >= len(args):
                    raise ValueError("--config needs a file argument")
                config_path = args[i + 1]
                i += 1
        elif arg.startswith("--config."):
            body = arg[len("--config.") :]
            if "=" in body:
                key, value = body.split("=", 1)
            else:
                if i + 1 >= len(args):
                    raise ValueError(f"{arg} needs a value")
                key, value = body, args[i + 1]
                i += 1
            if not key:
                raise ValueError(f"malformed override {arg!r}")
            overrides.append((key, value))
        else:
            rest.append(arg)
        i += 1
    return config_path, overrides, rest


def config_to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def config_from_dict(data: dict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(data)


def save_config(config: ml_collections.ConfigDict, path: str | os.PathLike) -> None:
    """Write the resolved config as JSON, atomically."""
    atomic_write_text(path, config_to_json(config) + "\n")


def _normalise(value):
    if isinstance(value, ml_collections.ConfigDict):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def config_differences(expected, found, keys: Sequence[str] = RESUME_CRITICAL_KEYS) -> list[str]:
    """Human-readable differences `key: found X, expected Y` between two configs, over `keys`."""
    expected, found = _normalise(expected), _normalise(found)
    diffs: list[str] = []

    def walk(a, b, prefix):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                name = f"{prefix}.{k}" if prefix else k
                if k not in b:
                    diffs.append(f"{name}: missing in checkpoint config (expected {a[k]!r})")
                elif k not in a:
                    diffs.append(f"{name}: checkpoint has {b[k]!r}, absent from the current config")
                else:
                    walk(a[k], b[k], name)
        elif a != b:
            diffs.append(f"{prefix}: checkpoint has {b!r}, config has {a!r}")

    for key in keys:
        if key in expected or key in found:
            walk(expected.get(key), found.get(key), key)
    return diffs
