"""Pure train and eval steps over the `nnx.split` pytrees, compiled with plain `jax.jit`.

`train_step(state, batch) -> (state, metrics)` merges the module inside, computes the task loss and
its gradient with respect to the parameters, applies the optax update, and carries the non-Param
variables the forward pass wrote (e.g. spectral-norm vectors) into the new state. Nothing outside the
arguments is read or mutated.

Divergence guard: when the loss, the gradient norm or the update norm is not finite, the step returns
its input state unchanged (step counter included) and the metric `finite` = 0; the loop stops the run
there (see `loop.py`), so a NaN never reaches the parameters or a checkpoint.

Mixed precision: with `compute_dtype=bfloat16` parameters, model state and floating batch entries are
cast to bf16 for the forward/backward pass; the parameters, optimiser state and model state stay
float32 (gradients arrive in float32 through the cast), and the loss is reported in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from jaxpose.training import sharding as sharding_lib
from jaxpose.training.state import TrainState, merge_model, split_model
from jaxpose.training.task import Task

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
FINITE_METRIC = "finite"
"""Train-step metric: 1 when the step's loss, gradient and update were finite (and applied), else 0."""


def compute_dtype_from_name(name: str, task: Task | None = None):
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got {name!r}")
    if task is not None and name != "float32" and not task.supports_mixed_precision:
        raise ValueError(f"task {task.name!r} does not support compute_dtype={name!r}; use float32")
    return COMPUTE_DTYPES[name]


def cast_floating(tree, dtype):
    """Cast floating-point leaves of `tree` to `dtype`; integer/bool leaves are left alone."""
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, tree
    )


def _cast_like(tree, reference):
    return jax.tree.map(lambda x, ref: x.astype(ref.dtype), tree, reference)


def make_train_step(
    graphdef: nnx.GraphDef,
    task: Task,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule | None = None,
    compute_dtype=jnp.float32,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """The pure update `(state, batch) -> (state, metrics)`; metrics are float32 scalars."""

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(state.rng, state.step)
        compute_batch = cast_floating(batch, compute_dtype)
        compute_model_state = cast_floating(state.model_state, compute_dtype)

        def loss_of(params):
            model = merge_model(graphdef, cast_floating(params, compute_dtype), compute_model_state)
            loss, metrics = task.loss_fn(model, compute_batch, rng)
            _, _, new_model_state = split_model(model)
            return loss.astype(jnp.float32), (metrics, new_model_state)

        (loss, (task_metrics, new_model_state)), grads = jax.value_and_grad(loss_of, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {name: jnp.asarray(v, jnp.float32) for name, v in task_metrics.items()}
        metrics["loss"] = loss
        metrics["grad_norm"] = optax.tree.norm(grads).astype(jnp.float32)
        if schedule is not None:
            metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            model_state=_cast_like(new_model_state, state.model_state),
            opt_state=opt_state,
        )
        finite = jnp.isfinite(loss) & jnp.isfinite(metrics["grad_norm"]) & jnp.isfinite(optax.tree.norm(updates))
        metrics[FINITE_METRIC] = finite.astype(jnp.float32)
        new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
        return new_state, metrics

    return train_step


def make_eval_step(
    graphdef: nnx.GraphDef, predict: Callable, eval_metrics: Callable, compute_dtype=jnp.float32
) -> Callable[[dict, dict, dict], dict]:
    """The pure `(params, model_state, batch) -> per-example metrics {(B,)}` of a trained model:
    `eval_metrics(predict(model, batch), batch)`.

    The module is put in evaluation mode (`deterministic`, `use_running_average`, no `update_stats`),
    and whatever it writes to its variables is discarded.
    """

    def eval_step(params: dict, model_state: dict, batch: dict) -> dict:
        model = merge_model(
            graphdef, cast_floating(params, compute_dtype), cast_floating(model_state, compute_dtype)
        )
        model.eval(update_stats=False)
        batch = cast_floating(batch, compute_dtype)
        metrics = eval_metrics(predict(model, batch), batch)
        return {name: jnp.asarray(v, jnp.float32) for name, v in metrics.items()}

    return eval_step


def make_predictions_eval_step(predict: Callable[[dict], object], eval_metrics: Callable) -> Callable[[dict], dict]:
    """The pure `batch -> per-example metrics {(B,)}` of a non-learned `predict(batch)` (a baseline)."""

    def baseline_step(batch: dict) -> dict:
        metrics = eval_metrics(predict(batch), batch)
        return {name: jnp.asarray(v, jnp.float32) for name, v in metrics.items()}

    return baseline_step


def jit_train_step(train_step, mesh: Mesh):
    """Compile the update for `mesh`: batch sharded on axis 0, state and metrics replicated, the
    input state donated (its buffers are reused for the output)."""
    rep = sharding_lib.replicated(mesh)
    return jax.jit(
        train_step,
        in_shardings=(rep, sharding_lib.batch_sharded(mesh)),
        out_shardings=(rep, rep),
        donate_argnums=(0,),
    )


def jit_eval_step(eval_step, mesh: Mesh, num_replicated_args: int):
    """Compile an eval step whose first `num_replicated_args` args are replicated and whose last is
    the sharded batch; per-example outputs come back replicated (readable on every process)."""
    rep = sharding_lib.replicated(mesh)
    in_shardings = (rep,) * num_replicated_args + (sharding_lib.batch_sharded(mesh),)
    return jax.jit(eval_step, in_shardings=in_shardings, out_shardings=rep)
