"""The training state as an explicit pytree, and its construction from a task and config.

`TrainState` holds everything that changes during training; the NNX `graphdef` (static structure) is
kept beside it. Parameters (`nnx.Param`) and every other NNX variable (spectral-norm vectors, batch
statistics: `model_state`) are stored as pure nested dicts of arrays, so the state is an ordinary
pytree that `jax.jit`, optax and Orbax handle directly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from jaxpose.training import sharding as sharding_lib
from jaxpose.training.task import Task


@flax.struct.dataclass
class TrainState:
    """step: () int32, steps taken; params / model_state: nested dicts of arrays;
    opt_state: optax state over params; rng: (2,) uint32 base key (per-step keys are folded in)."""

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """A trained model restored for evaluation (from a checkpoint or a model bundle): `name` is
    "<run>@<step>", `task` is built from the config saved with it; `state.opt_state` may be None."""

    name: str
    step: int
    task: Task
    graphdef: object
    state: TrainState
    config: object


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict, dict]:
    """(graphdef, params, model_state) with the two states as pure nested dicts."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def merge_model(graphdef: nnx.GraphDef, params: dict, model_state: dict) -> nnx.Module:
    """A fresh module from its graphdef and states (inputs are not mutated)."""
    return nnx.merge(graphdef, params, model_state)


def _keys(seed: int) -> tuple[jax.Array, jax.Array]:
    base = jax.random.PRNGKey(seed)
    return jax.random.fold_in(base, 0), jax.random.fold_in(base, 1)


def model_graphdef(task: Task) -> nnx.GraphDef:
    """The model's static structure, without allocating parameters."""
    abstract = nnx.eval_shape(lambda: task.make_model(nnx.Rngs(0)))
    return nnx.graphdef(abstract)


def init_train_state(task: Task, tx: optax.GradientTransformation) -> TrainState:
    """A fresh state from `task.config.seed` (pure; call under `jax.jit` to place it on devices)."""
    init_key, train_key = _keys(int(task.config.seed))
    model = task.make_model(nnx.Rngs(params=init_key, default=init_key))
    _, params, model_state = split_model(model)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state=model_state,
        opt_state=tx.init(params),
        rng=train_key,
    )


def create_train_state(task: Task, tx: optax.GradientTransformation, mesh: Mesh) -> tuple[nnx.GraphDef, TrainState]:
    """(graphdef, state) with the state replicated over `mesh`."""
    init = jax.jit(lambda: init_train_state(task, tx), out_shardings=sharding_lib.replicated(mesh))
    return model_graphdef(task), init()


def abstract_train_state(task: Task, tx: optax.GradientTransformation, mesh: Mesh) -> TrainState:
    """The state's shapes/dtypes as ShapeDtypeStructs replicated over `mesh` (a restore target)."""
    shapes = jax.eval_shape(lambda: init_train_state(task, tx))
    return sharding_lib.with_sharding(shapes, sharding_lib.replicated(mesh))
