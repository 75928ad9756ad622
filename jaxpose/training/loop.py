"""`train_and_evaluate(config, workdir, task)`: the training loop tying the engine together.

Per step: the global batch for `step` is a pure function of (seed, step); each process feeds its
rows, sharded over the mesh; the jitted pure update runs; metrics are fetched every `log_every`
steps. Checkpoints every `checkpoint_every` steps and at the end (and on Ctrl-C); an existing
checkpoint in `workdir/checkpoints` is resumed exactly. Files are written by process 0 only.

Workdir layout: config.json, metrics.jsonl, tensorboard/, loss_curve.png, checkpoints/<step>/.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import threading
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
from jaxpose.training.optim import make_optimizer
from jaxpose.training.state import TrainState, abstract_train_state, create_train_state, model_graphdef
from jaxpose.training.registry import build_task
from jaxpose.training.task import Task

REQUIRED_KEYS = (
    "task", "seed", "batch_size", "num_steps", "log_every", "eval_every", "checkpoint_every",
    "keep_checkpoints", "eval_batch_size", "compute_dtype", "optimizer",
)  # fmt: skip


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
    if main:
        workdir.mkdir(parents=True, exist_ok=True)
        save_config(config, workdir / "config.json")
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
    start = resumed_from or 0

    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(graphdef, task, tx, schedule, compute_dtype), mesh
    )
    evaluator = ModelEvaluator.for_task(task, graphdef, mesh, int(config.eval_batch_size), compute_dtype) if eval_data else None
    logger = logs.MetricsLogger(workdir, enabled=main, resume_step=resumed_from)
    progress = logs.Progress(start, num_steps, batch_size, enabled=main and show_progress)
    rows = process_rows(batch_size, jax.process_index(), jax.process_count())

    def save(step_done: int) -> None:
        position = data_position(seed, step_done, batch_size, num_items)
        checkpointer.save(step_done, state, config, position)

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
                state, metrics = train_step(state, batch)
                # At most two steps in flight: the next batch is prepared on the host while this step
                # runs, but the dispatch queue (and the host batches it holds) stays bounded.
                jax.block_until_ready(previous_metrics)
                previous_metrics = metrics
                step += 1
                last = step == num_steps
                if step % int(config.log_every) == 0 or last:
                    scalars = sharding_lib.to_host(metrics)
                    rate = progress.update(step, float(scalars["loss"]))
                    scalars["items_per_second"] = rate
                    logger.write(step, {f"train/{k}": v for k, v in scalars.items()})
                if evaluator is not None and (step % int(config.eval_every) == 0 or last):
                    summary = summarize(evaluator(state.params, state.model_state, eval_data))
                    logger.write(step, {f"eval/{k}": v.mean for k, v in summary.items()})
                if int(config.checkpoint_every) and step % int(config.checkpoint_every) == 0:
                    save(step)
                if on_step_end is not None:
                    on_step_end(step, state)
            interrupted = step < num_steps
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
