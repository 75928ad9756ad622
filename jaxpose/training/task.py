"""The task contract: what a model family provides to be trained and evaluated by the engine.

A `Task` is built from one config (`TaskDefinition.make_task(config)`): every function in it closes
over that config, so nothing configurational travels inside batches. The engine owns everything else
(state, sharding, optimiser, checkpoints, logging). Batches are dicts of arrays whose leading axis is
the example axis.

Conventions:
  * `make_model(rngs)` builds the Flax NNX module. Parameters are `nnx.Param`; any other NNX
    variable (spectral-norm vectors, batch statistics, ...) is model state that the engine carries in
    `TrainState.model_state` and updates with whatever the forward pass wrote.
  * `loss_fn(model, batch, rng) -> (loss, metrics)`: scalar loss (mean over the batch) and a dict of
    scalar metrics, for a training batch. `rng` is a per-step key (`fold_in(seed_key, step)`).
  * `make_train_data()` / `make_eval_data(data_dir, list_file)` return datasets. `data_dir` and
    `list_file` come from `jaxpose eval --data DIR --list FILE`; `None` means the task's own test set.
    Training data may be any object with `__len__` (items per epoch) and `take(indices)`; if it sets
    `epoch_aware = True`, the loop calls `take(indices, epochs=...)` with each item's epoch (B,), so an
    item can be redrawn every epoch while staying a pure function of (seed, step).
  * `predict(model, batch)` returns a prediction pytree; `eval_metrics(prediction, batch)` returns a
    dict of per-example metrics, each of shape (B,). Baselines are named non-learned `batch ->
    prediction` functions scored by the same `eval_metrics` (see `jaxpose.training.evaluation`).

A `TaskDefinition` is what the registry holds under a name: the factory, and the evaluation protocol
(`jaxpose.training.protocol`) that `jaxpose eval NAME` runs for it.
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
    """A model family bound to one config (`config.task == name`)."""

    name: str
    config: ml_collections.ConfigDict
    make_model: Callable[[nnx.Rngs], nnx.Module]
    loss_fn: Callable[[nnx.Module, Batch, jax.Array], tuple[jax.Array, Metrics]]
    make_train_data: Callable[[], Any]
    make_eval_data: Callable[[str | None, str | None], ArrayDataset]
    predict: Callable[[nnx.Module, Batch], Any]
    eval_metrics: Callable[[Any, Batch], Metrics]
    baselines: Mapping[str, Callable[[Batch], Any]] = dataclasses.field(default_factory=dict)
    # False for models whose numerics need float32 throughout; `compute_dtype` must then be float32.
    supports_mixed_precision: bool = True


@dataclasses.dataclass(frozen=True)
class TaskDefinition:
    """A registered task: `make_task(config) -> Task`, and the protocol `jaxpose eval` runs for it.

    `protocol` is an object with `add_arguments(parser)` and `evaluate(request) -> EvaluationReport`
    (`jaxpose.training.protocol.StandardProtocol` unless the system needs its own).
    """

    name: str
    make_task: Callable[[ml_collections.ConfigDict], Task]
    protocol: Any
    description: str = ""

    def __call__(self, config: ml_collections.ConfigDict) -> Task:
        named = str(config.get("task", self.name))
        if ":" not in named and named != self.name:  # "module:ATTRIBUTE" specs name definitions directly
            raise ValueError(f"config.task is {named!r} but this is the {self.name!r} task")
        task = self.make_task(config)
        if task.name != self.name:
            raise ValueError(f"task definition {self.name!r} built a task named {task.name!r}")
        return task
