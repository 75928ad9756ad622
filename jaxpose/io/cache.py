"""A dict of arrays computed once and cached in an npz file (written atomically, checked when read)."""

from __future__ import annotations

import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from jaxpose.io.arrays import load_npz
from jaxpose.io.atomic import atomic_save_npz


def cached_arrays(
    path: str | os.PathLike,
    make: Callable[[], dict[str, np.ndarray]],
    *,
    what: str,
    label: str,
    required_keys: Sequence[str],
    count_key: str,
    expected_count: int,
    count_name: str = "items",
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """The arrays in `path` if it exists, else `make()`, saved there atomically first.

    A cache that exists but cannot be read, lacks one of `required_keys`, or whose `count_key` array does
    not hold `expected_count` rows raises ValueError naming the file (`what`, e.g. "refinement dataset
    cache") and what is wrong; nothing is regenerated over it silently. `label` prefixes the progress
    lines on stderr ("loaded …", "saved …").
    """
    path = pathlib.Path(path)
    if path.exists():
        try:
            data = load_npz(path, what)
        except ValueError as exc:
            raise ValueError(f"corrupt {what} {path}: {exc}; delete the file to regenerate it") from exc
        missing = [key for key in required_keys if key not in data]
        if missing or len(data[count_key]) != expected_count:
            problem = (f"missing arrays {missing}" if missing
                       else f"{len(data[count_key])} {count_name} instead of {expected_count}")  # fmt: skip
            raise ValueError(f"corrupt {what} {path}: {problem}; delete the file to regenerate it")
        if progress:
            print(f"{label}: loaded {path}", file=sys.stderr, flush=True)
        return data
    data = make()
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_npz(path, **data)
    if progress:
        print(f"{label}: saved {path} in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return data


__all__ = ["cached_arrays"]
