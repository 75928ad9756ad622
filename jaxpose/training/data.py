"""Deterministic, counter-based data sampling: a batch is a pure function of (seed, step).

Because nothing but the step number determines which examples a step sees, the data-iterator
position saved in a checkpoint is just the step (plus the derived epoch), and a resumed run sees
exactly the batches an uninterrupted run would have seen.

Sampling without replacement within an epoch: the stream of example positions is
`p = step * batch_size + j`; position p belongs to epoch `p // num_items` and picks
`permutation(seed, epoch)[p % num_items]`. A batch may straddle two epochs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import numpy as np


@functools.lru_cache(maxsize=8)
def _epoch_permutation(seed: int, epoch: int, num_items: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), 0x6A70]))
    perm = rng.permutation(num_items)
    perm.setflags(write=False)
    return perm


def batch_indices(seed: int, step: int, batch_size: int, num_items: int) -> np.ndarray:
    """Indices (batch_size,) int64 into a dataset of `num_items` examples for training step `step`."""
    if num_items <= 0:
        raise ValueError(f"num_items must be positive, got {num_items}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    positions = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
    epochs = positions // num_items
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        here = epochs == epoch
        out[here] = _epoch_permutation(seed, int(epoch), num_items)[positions[here] % num_items]
    return out


def batch_epochs(step: int, batch_size: int, num_items: int) -> np.ndarray:
    """The epoch (batch_size,) int64 of each item of training step `step` (a batch may straddle two)."""
    positions = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
    return positions // num_items


def epoch_of_step(step: int, batch_size: int, num_items: int) -> int:
    """The epoch that the first example of training step `step` belongs to."""
    return (step * batch_size) // num_items


def steps_per_epoch(batch_size: int, num_items: int) -> float:
    """Training steps per pass over the data (fractional when batch_size does not divide it)."""
    return num_items / batch_size


def data_position(seed: int, step: int, batch_size: int, num_items: int) -> dict:
    """JSON-able iterator position stored with a checkpoint: the next step to run, and its epoch."""
    return {
        "next_step": int(step),
        "epoch": epoch_of_step(step, batch_size, num_items),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "num_items": int(num_items),
    }


def process_rows(global_batch_size: int, process_index: int, process_count: int) -> slice:
    """The contiguous rows of a global batch that process `process_index` feeds (multi-host)."""
    if global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the process count {process_count}"
        )
    per_process = global_batch_size // process_count
    return slice(process_index * per_process, (process_index + 1) * per_process)


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """In-memory examples: a dict of NumPy arrays sharing the leading (example) axis."""

    arrays: Mapping[str, np.ndarray]

    def __post_init__(self):
        if not self.arrays:
            raise ValueError("ArrayDataset needs at least one array")
        lengths = {name: np.shape(a)[0] if np.ndim(a) else None for name, a in self.arrays.items()}
        if None in lengths.values() or len(set(lengths.values())) != 1:
            raise ValueError(f"all arrays need the same leading (example) axis, got lengths {lengths}")
        if next(iter(lengths.values())) == 0:
            raise ValueError("ArrayDataset is empty")

    def __len__(self) -> int:
        return int(np.shape(next(iter(self.arrays.values())))[0])

    def take(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The examples at `indices` (K,), as a dict of (K, ...) arrays."""
        return {name: np.asarray(a)[indices] for name, a in self.arrays.items()}

    def train_batch(self, seed: int, step: int, batch_size: int) -> dict[str, np.ndarray]:
        """The global training batch for `step` (see `batch_indices`)."""
        return self.take(batch_indices(seed, step, batch_size, len(self)))

    def eval_batches(self, batch_size: int):
        """Yield `(batch, num_valid)` in order; the last batch is padded by repeating its last example."""
        n = len(self)
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(start + batch_size, n))
            valid = len(idx)
            if valid < batch_size:
                idx = np.concatenate([idx, np.full(batch_size - valid, idx[-1])])
            yield self.take(idx), valid
