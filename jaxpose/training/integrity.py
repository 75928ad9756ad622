"""Content checks of checkpointed arrays: per-array SHA-256 digests and a finiteness check.

At save time `array_digests` records, for every array of the state tree, its shape, dtype and the
SHA-256 of its bytes (C order, the saved dtype); the record is stored beside the arrays as a JSON
item of the checkpoint. At restore `verify_digests` recomputes them from the restored arrays, so a
flipped byte anywhere in an array file (disk, copy, or a hand edit) is a `CheckpointError` naming the
array, instead of a silently different model. `check_finite` then refuses NaN/Inf in the restored
parameters, model state and optimizer state: a run must never resume from (or evaluate) a
diverged state.

Digests are computed on the host from one replica of each array (training states are replicated over
the mesh); an array sharded across processes is gathered first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import jax
import numpy as np

DIGEST_VERSION = 1


def host_array(x) -> np.ndarray:
    """The full value of a (possibly sharded, possibly multi-process) array as a NumPy array."""
    if isinstance(x, jax.Array):
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        if not x.is_fully_addressable:
            from jax.experimental import multihost_utils  # multi-process only

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _digest(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    return {
        "shape": [int(d) for d in array.shape],
        "dtype": str(array.dtype),
        "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
    }


def array_digests(flat_arrays: Mapping[str, object]) -> dict:
    """`{"version": 1, "arrays": {name: {shape, dtype, sha256}}}` for a flat `{name: array}` mapping."""
    return {"version": DIGEST_VERSION, "arrays": {name: _digest(host_array(x)) for name, x in flat_arrays.items()}}


def _reading_order(name: str) -> tuple[int, str]:
    """Parameters first: they are what a reader recognises (optimizer moments repeat them)."""
    return ({"params": 0, "model_state": 1}.get(name.split("/")[0], 2), name)


def digest_mismatches(saved: Mapping, flat_arrays: Mapping[str, object]) -> list[str]:
    """Names (with the reason) of arrays whose content differs from the saved digests, parameters first."""
    if saved.get("version") != DIGEST_VERSION or not isinstance(saved.get("arrays"), Mapping):
        return [f"integrity record has an unknown format (version {saved.get('version')!r})"]
    recorded = saved["arrays"]
    problems = [f"{name}: no recorded checksum" for name in sorted(set(flat_arrays) - set(recorded), key=_reading_order)]
    problems += [f"{name}: recorded but not restored" for name in sorted(set(recorded) - set(flat_arrays), key=_reading_order)]
    for name in sorted(set(flat_arrays) & set(recorded), key=_reading_order):
        got = _digest(host_array(flat_arrays[name]))
        want = recorded[name]
        if got["shape"] != want.get("shape") or got["dtype"] != want.get("dtype"):
            problems.append(f"{name}: restored as {got['shape']} {got['dtype']}, saved as {want.get('shape')} {want.get('dtype')}")
        elif got["sha256"] != want.get("sha256"):
            problems.append(f"{name}: content checksum mismatch (sha256 {got['sha256'][:12]}…, saved {str(want.get('sha256'))[:12]}…)")
    return problems


def non_finite_arrays(flat_arrays: Mapping[str, object]) -> list[str]:
    """`name: k of n values are NaN/Inf` for every floating array holding a non-finite value."""
    problems = []
    for name in sorted(flat_arrays, key=_reading_order):
        x = flat_arrays[name]
        array = host_array(x)
        if not np.issubdtype(array.dtype, np.floating) and array.dtype.kind != "V":
            continue
        bad = int(np.count_nonzero(~np.isfinite(array.astype(np.float32))))
        if bad:
            problems.append(f"{name}: {bad} of {array.size} values are NaN/Inf")
    return problems
