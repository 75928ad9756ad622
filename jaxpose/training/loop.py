"""`train_and_evaluate(config, workdir, task)`: the training loop tying the engine together.

Per step: the global batch for `step` is a pure function of (seed, step); each process feeds its
rows, sharded over the mesh; the jitted pure update runs; metrics are fetched every `log_every`
steps. Checkpoints every `checkpoint_every` steps and at the end (and on Ctrl-C); an existing
checkpoint in `workdir/checkpoints` is resumed exactly. Files are written by process 0 only.

Faults: the workdir is locked for the run (a second run on it fails at once, `workdir_lock.py`);
`config.json` is written only once the config is known to match the checkpoint being resumed; a step
whose loss, gradient or update is not finite leaves the state unchanged and stops the run with
`TrainingDivergedError` naming the step and the last good checkpoint, so a non-finite state is never
saved (`step.py`).

Workdir layout: config.json, metrics.jsonl, tensorboard/, loss_curve.png, checkpoints/<step>/, .lock.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import contextlib
import signal
import threading
import time
from collections.abc import Callable

import jax
import ml_collections
from flax import nnx
from jax.sharding import Mesh

from jaxpose.training import logs
from jaxpose.training import sharding as sharding_lib
from jaxpose.training import step as step_lib
from jaxpose.training.checkpoint import CheckpointError, Checkpointer
from jaxpose.training.config import save_config
from jaxpose.training.data import batch_epochs, batch_indices, data_position, process_rows, steps_per_epoch
from jaxpose.training.distributed import is_main_process
from jaxpose.training.evaluation import ModelEvaluator, summarize
from jaxpose.training.optim import make_optimizer, validate_optimizer_config
from jaxpose.training.state import TrainState, abstract_train_state, create_train_state, model_graphdef
from jaxpose.training.registry import build_task
from jaxpose.training.task import Task
from jaxpose.training.workdir_lock import workdir_lock

REQUIRED_KEYS = (
    "task", "seed", "batch_size", "num_steps", "log_every", "eval_every", "checkpoint_every",
    "keep_checkpoints", "eval_batch_size", "compute_dtype", "optimizer",
)  # fmt: skip


class TrainingDivergedError(RuntimeError):
    """A train step produced a non-finite loss, gradient or update; the run stopped before it."""


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    graphdef: nnx.GraphDef
    step: int
    resumed_from: int | None
    interrupted: bool


def validate_config(config: ml_collections.ConfigDict) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise ValueError(f"config is missing required keys: {', '.join(missing)}")
    for key in ("batch_size", "num_steps", "log_every", "eval_batch_size", "keep_checkpoints"):
        if int(config[key]) <= 0:
            raise ValueError(f"config.{key} must be positive, got {config[key]}")
    for key in ("eval_every", "checkpoint_every"):
        if int(config[key]) < 0:
            raise ValueError(f"config.{key} must be >= 0 (0 disables), got {config[key]}")
    validate_optimizer_config(config.optimizer)


class _InterruptFlag:
    """First SIGINT asks the loop to stop after the current step (it then checkpoints); a second one
    raises KeyboardInterrupt as usual."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    task: Task | None = None,
    mesh: Mesh | None = None,
    on_step_end: Callable[[int, TrainState], None] | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train the task that `config.task` names, built from `config`, for `config.num_steps` steps in
    `workdir`.

    `task` defaults to `build_task(config)`; pass one only to train a task you built from this config
    yourself (e.g. with a replaced dataset in a test). `mesh` defaults to every device; `on_step_end(step, state)` runs after each step (the state must
    not be kept: its buffers are donated to the next step).
    """
    validate_config(config)
    task = build_task(config) if task is None else task
    if task.name != config.task:
        raise ValueError(f"config.task is {config.task!r} but the task given is {task.name!r}")
    main = is_main_process()
    workdir = pathlib.Path(workdir)
    with workdir_lock(workdir) if main else contextlib.nullcontext():
        return _train(config, workdir, task, mesh, on_step_end, show_progress and main, main)


def _non_finite_step(step_number: int, metrics: dict, checkpointer: Checkpointer, workdir: pathlib.Path):
    """The error for step `step_number` (1-based) whose update was rejected as non-finite."""
    checkpointer.wait_until_finished()
    last = checkpointer.latest_step()
    where = f"{workdir / 'checkpoints' / str(last)} (step {last})" if last is not None else "none (no checkpoint yet)"
    values = sharding_lib.to_host({k: metrics[k] for k in ("loss", "grad_norm") if k in metrics})
    shown = ", ".join(f"{k} {float(v):.4g}" for k, v in values.items())
    return TrainingDivergedError(
        f"step {step_number}: non-finite loss, gradient or update ({shown}); the run stopped and that step was not "
        f"applied or saved. Last good checkpoint: {where}. Lower optimizer.lr, enable optimizer.clip_grad_norm, "
        "or check the data for NaN/Inf"
    )


def _train(config, workdir: pathlib.Path, task: Task, mesh, on_step_end, show_progress: bool, main: bool) -> TrainResult:
    mesh = sharding_lib.make_mesh() if mesh is None else mesh
    seed, batch_size, num_steps = int(config.seed), int(config.batch_size), int(config.num_steps)
    sharding_lib.check_batch_size(batch_size, mesh)
    compute_dtype = step_lib.compute_dtype_from_name(config.compute_dtype, task)

    train_data = task.make_train_data()
    num_items = len(train_data)
    eval_data = task.make_eval_data(None, None) if int(config.eval_every) > 0 else None
    tx, schedule = make_optimizer(config.optimizer, steps_per_epoch(batch_size, num_items), num_steps)
    graphdef = model_graphdef(task)

    checkpointer = Checkpointer(workdir / "checkpoints", max_to_keep=int(config.keep_checkpoints))
    try:
        resumed_from = checkpointer.latest_step()
        if resumed_from is not None:
            abstract = abstract_train_state(task, tx, mesh)
            restored = checkpointer.restore(abstract, step=resumed_from, expected_config=config)
            expected_position = data_position(seed, resumed_from, batch_size, num_items)
            if restored.data_position != expected_position:
                raise CheckpointError(
                    f"checkpoint {workdir / 'checkpoints' / str(resumed_from)}: data-iterator position "
                    f"{restored.data_position} does not match this run's data {expected_position}"
                )
            state = restored.state
        else:
            _, state = create_train_state(task, tx, mesh)
    except BaseException:
        checkpointer.close()
        raise
    if main:  # only now: a rejected resume must not overwrite the config of the run it belongs to
        save_config(config, workdir / "config.json")
    start = resumed_from or 0

    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(graphdef, task, tx, schedule, compute_dtype), mesh
    )
    evaluator = ModelEvaluator.for_task(task, graphdef, mesh, int(config.eval_batch_size), compute_dtype) if eval_data else None
    logger = logs.MetricsLogger(workdir, enabled=main, resume_step=resumed_from)
    progress = logs.Progress(start, num_steps, batch_size, enabled=show_progress)
    rows = process_rows(batch_size, jax.process_index(), jax.process_count())

    def save(step_done: int) -> None:
        position = data_position(seed, step_done, batch_size, num_items)
        checkpointer.save(step_done, state, config, position)

    def check(step_number: int, metrics: dict | None) -> None:
        if metrics is not None and not float(sharding_lib.to_host(metrics[step_lib.FINITE_METRIC])):
            raise _non_finite_step(step_number, metrics, checkpointer, workdir)

    step = start
    previous_metrics = None
    try:
        with _InterruptFlag() as interrupt:
            while step < num_steps and not interrupt.requested:
                indices = batch_indices(seed, step, batch_size, num_items)[rows]
                if getattr(train_data, "epoch_aware", False):
                    examples = train_data.take(indices, epochs=batch_epochs(step, batch_size, num_items)[rows])
                else:
                    examples = train_data.take(indices)
                batch = sharding_lib.shard_batch(examples, mesh, batch_size)
                if step == start:
                    progress.note("compiling the train step (the first step waits for it)…")
                    compile_start = time.perf_counter()
                state, metrics = train_step(state, batch)
                if step == start:
                    progress.note(f"train step compiled in {time.perf_counter() - compile_start:.1f} s")
                # At most two steps in flight: the next batch is prepared on the host while this step
                # runs, but the dispatch queue (and the host batches it holds) stays bounded.
                check(step, previous_metrics)
                previous_metrics = metrics
                step += 1
                last = step == num_steps
                log_now = step % int(config.log_every) == 0 or last
                eval_now = evaluator is not None and (step % int(config.eval_every) == 0 or last)
                save_now = bool(int(config.checkpoint_every)) and step % int(config.checkpoint_every) == 0
                if log_now or eval_now or save_now:  # this step's state is about to be read: it must be finite
                    check(step, metrics)
                if log_now:
                    scalars = sharding_lib.to_host(metrics)
                    scalars.pop(step_lib.FINITE_METRIC)
                    rate = progress.update(step, float(scalars["loss"]))
                    scalars["items_per_second"] = rate
                    logger.write(step, {f"train/{k}": v for k, v in scalars.items()})
                if eval_now:
                    if evaluator.num_compilations == 0:
                        progress.note("compiling the eval step…")
                    summary = summarize(evaluator(state.params, state.model_state, eval_data))
                    logger.write(step, {f"eval/{k}": v.mean for k, v in summary.items()})
                if save_now:
                    save(step)
                if on_step_end is not None:
                    on_step_end(step, state)
            interrupted = step < num_steps
            check(step, previous_metrics)
            if step > start or resumed_from is None:
                save(step)
            checkpointer.wait_until_finished()
            if main:
                logs.write_loss_curve(logs.read_jsonl(logger.path), workdir / logs.LOSS_CURVE_FILE)
    finally:
        progress.close()
        logger.close()
        checkpointer.close()
    return TrainResult(state, graphdef, step, resumed_from, interrupted)
