"""The task protocol: what a model must provide to be trained and evaluated by the engine.

A `Task` bundles pure functions; the engine owns everything else (state, sharding, optimiser,
checkpoints, logging). Batches are dicts of arrays whose leading axis is the example axis.

Conventions:
  * `make_model(config, rngs)` builds the Flax NNX module. Parameters are `nnx.Param`; any other
    NNX variable (spectral-norm vectors, batch statistics, ...) is model state that the engine carries
    in `TrainState.model_state` and updates with whatever the forward pass wrote.
  * `loss_fn(model, batch, rng) -> (loss, metrics)`: scalar loss (mean over the batch) and a dict of
    scalar metrics, for a training batch. `rng` is a per-step key (`fold_in(seed_key, step)`).
  * `make_train_data(config)` / `make_eval_data(config, data_dir, list_file)` return an
    `ArrayDataset` (all examples in memory, fixed shapes). `data_dir`/`list_file` come from
    `jaxpose eval --data DIR --list FILE`; `None` means the task's default evaluation set.
  * `predict(model, batch)` returns a prediction pytree; `eval_metrics(prediction, batch)` returns a
    dict of per-example metrics, each of shape (B,). Baselines are named non-learned `batch ->
    prediction` functions scored by the same `eval_metrics`.
  * Training data may be any object with `__len__` (items per epoch) and `take(indices)`; if it sets
    `epoch_aware = True`, the loop calls `take(indices, epochs=...)` with each item's epoch (B,), so
    an item can be redrawn every epoch while staying a pure function of (seed, step).
  * `eval_main(argv, prog) -> int`, when set, replaces the generic `jaxpose eval TASK` command for
    this task (for evaluation protocols the generic table cannot express).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
from flax import nnx

from jaxpose.training.data import ArrayDataset

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Task:
    """A trainable/evaluable model family, registered under `name` (see `registry`)."""

    name: str
    make_model: Callable[[ml_collections.ConfigDict, nnx.Rngs], nnx.Module]
    loss_fn: Callable[[nnx.Module, Batch, jax.Array], tuple[jax.Array, Metrics]]
    make_train_data: Callable[[ml_collections.ConfigDict], ArrayDataset]
    make_eval_data: Callable[[ml_collections.ConfigDict, str | None, str | None], ArrayDataset]
    predict: Callable[[nnx.Module, Batch], Any]
    eval_metrics: Callable[[Any, Batch], Metrics]
    baselines: Mapping[str, Callable[[Batch], Any]] = dataclasses.field(default_factory=dict)
    # False for models whose numerics need float32 throughout; `compute_dtype` must then be float32.
    supports_mixed_precision: bool = True
    description: str = ""
    # Optional task-specific `jaxpose eval TASK ...` command: (argv after TASK, prog) -> exit code.
    eval_main: Callable[[list[str], str], int] | None = None
