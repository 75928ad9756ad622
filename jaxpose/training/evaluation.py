"""Evaluation harness: score checkpoints and baselines on a test set and tabulate the results.

Every method is run batched through one jit-compiled function of fixed batch shape: the last batch
is padded (by repeating its last example) and the padded rows are dropped before aggregation, so a
test set never triggers more than one compilation per method. Metrics are per example; the table
reports mean ± sample std (ddof=1; 0 for a single example) over the test set.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from collections.abc import Callable, Mapping

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from jaxpose.io.atomic import atomic_write_text
from jaxpose.training import sharding as sharding_lib
from jaxpose.training import step as step_lib
from jaxpose.training.checkpoint import Checkpointer, resolve_checkpoint_dir
from jaxpose.training.config import config_differences
from jaxpose.training.data import ArrayDataset, process_rows
from jaxpose.training.optim import make_optimizer
from jaxpose.training.bundle import is_bundle, load_bundle, read_manifest
from jaxpose.training.state import LoadedCheckpoint, abstract_train_state, model_graphdef
from jaxpose.training.registry import build_task
from jaxpose.training.task import Task


@dataclasses.dataclass(frozen=True)
class MetricSummary:
    mean: float
    std: float
    count: int

    def __str__(self) -> str:
        return f"{self.mean:.6g} ± {self.std:.3g}"


def padded_batch_size(batch_size: int, mesh: Mesh) -> int:
    """`batch_size` rounded up to a multiple of the mesh size (each device gets equal rows)."""
    return int(math.ceil(batch_size / mesh.size) * mesh.size)


def per_example_metrics(
    compiled_step: Callable, leading_args: tuple, dataset: ArrayDataset, batch_size: int, mesh: Mesh,
    progress: str | None = None,
) -> dict[str, np.ndarray]:
    """Run `compiled_step(*leading_args, batch)` over the dataset; per-example metrics (N,) float64.

    `progress`: a label for a progress bar over batches (stderr, main process only; the first batch
    is marked "compiling" until it returns); None for none.
    """
    batch_size = padded_batch_size(batch_size, mesh)
    rows = process_rows(batch_size, jax.process_index(), jax.process_count())
    collected: dict[str, list[np.ndarray]] = {}
    num_batches = -(-len(dataset) // batch_size)
    bar = tqdm(total=num_batches, desc=progress, unit="batch", leave=True, dynamic_ncols=True,
               disable=progress is None or jax.process_index() != 0)  # fmt: skip
    for number, (batch, num_valid) in enumerate(dataset.eval_batches(batch_size)):
        if number == 0:
            bar.set_postfix_str("compiling…")
        local = {name: value[rows] for name, value in batch.items()}
        metrics = sharding_lib.to_host(compiled_step(*leading_args, sharding_lib.shard_batch(local, mesh, batch_size)))
        if number == 0:
            bar.set_postfix_str("", refresh=False)
        bar.update(1)
        for name, value in metrics.items():
            if np.shape(value) != (batch_size,):
                raise ValueError(f"eval metric {name!r} has shape {np.shape(value)}, expected per-example ({batch_size},)")
            collected.setdefault(name, []).append(np.asarray(value[:num_valid], np.float64))
    bar.close()
    return {name: np.concatenate(parts) for name, parts in collected.items()}


def summarize(per_example: Mapping[str, np.ndarray]) -> dict[str, MetricSummary]:
    out = {}
    for name, values in per_example.items():
        values = np.asarray(values, np.float64)
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[name] = MetricSummary(float(values.mean()), std, int(values.size))
    return out


class ModelEvaluator:
    """Scores a trained model's (params, model_state) on datasets with `eval_metrics(predict(model,
    batch), batch)`; compiled once per batch shape."""

    def __init__(self, graphdef, predict: Callable, eval_metrics: Callable, mesh: Mesh, batch_size: int,
                 compute_dtype=np.float32):  # fmt: skip
        self.mesh, self.batch_size = mesh, batch_size
        step = step_lib.make_eval_step(graphdef, predict, eval_metrics, compute_dtype)
        self._step = step_lib.jit_eval_step(step, mesh, 2)

    @classmethod
    def for_task(cls, task: Task, graphdef, mesh: Mesh, batch_size: int, compute_dtype=np.float32) -> "ModelEvaluator":
        """The evaluator of `task`'s own prediction and metrics."""
        return cls(graphdef, task.predict, task.eval_metrics, mesh, batch_size, compute_dtype)

    def __call__(self, params, model_state, dataset: ArrayDataset, progress: str | None = None) -> dict[str, np.ndarray]:
        """Per-example metrics (N,); `progress` labels a progress bar over batches (None: silent)."""
        return per_example_metrics(self._step, (params, model_state), dataset, self.batch_size, self.mesh, progress)

    @property
    def num_compilations(self) -> int:
        return self._step._cache_size()


def evaluate_predictions(
    predict: Callable[[dict], object], eval_metrics: Callable, dataset: ArrayDataset, mesh: Mesh, batch_size: int,
    progress: str | None = None,
) -> dict[str, np.ndarray]:
    """Per-example metrics (N,) of a non-learned `predict(batch)` (a baseline) on `dataset`; `progress`
    labels a progress bar (None: silent)."""
    compiled = step_lib.jit_eval_step(step_lib.make_predictions_eval_step(predict, eval_metrics), mesh, 0)
    return per_example_metrics(compiled, (), dataset, batch_size, mesh, progress)


def baseline(task: Task, name: str) -> Callable[[dict], object]:
    """`task`'s baseline `name`; KeyError naming the available ones otherwise."""
    if name not in task.baselines:
        raise KeyError(f"task {task.name!r} has no baseline {name!r}; available: {sorted(task.baselines) or 'none'}")
    return task.baselines[name]


def load_checkpoint(path: str | os.PathLike, mesh: Mesh, step: int | None = None) -> LoadedCheckpoint:
    """Restore a checkpoint for evaluation; its task and model are rebuilt from the config saved with it.

    `path` is a training workdir (or its checkpoints/ directory) or a model bundle (`jaxpose.training.bundle`;
    its one step, so `step` must be None or equal to it).
    """
    if is_bundle(path):
        bundle_step = int(read_manifest(path).get("step", 0))
        if step is not None and int(step) != bundle_step:
            raise ValueError(f"{path} is a model bundle of step {bundle_step}; step {step} is not in it")
        return load_bundle(path)
    directory = resolve_checkpoint_dir(path)
    checkpointer = Checkpointer(directory, create=False)
    try:
        config = checkpointer.read_config(step)
        task = build_task(config)
        tx, _ = make_optimizer(config.optimizer, 1.0, int(config.num_steps))
        restored = checkpointer.restore(abstract_train_state(task, tx, mesh), step=step)
    finally:
        checkpointer.close()
    name = directory.parent.name if directory.name == "checkpoints" else directory.name
    return LoadedCheckpoint(f"{name}@{restored.step}", restored.step, task, model_graphdef(task), restored.state, config)


def check_eval_configs(configs: Mapping[str, object]) -> None:
    """Methods compared in one table must use the same data definition (the `data` section).

    Keys of the data section that only shape the evaluation — named `eval_*` or `max_eval_*` (the test
    split, point counts, scoring protocol, ...) — may differ: the evaluation config's values apply to
    every method alike.
    """
    items = list(configs.items())
    for name, config in items[1:]:
        diffs = [d for d in config_differences(items[0][1], config, keys=("data",))
                 if not d.split(":", 1)[0].split(".")[-1].startswith(("eval_", "max_eval_"))]
        if diffs:
            raise ValueError(f"{name} and {items[0][0]} disagree on their data config:\n  " + "\n  ".join(diffs))


def _metric_names(results: Mapping[str, Mapping[str, MetricSummary]]) -> list[str]:
    names: list[str] = []
    for summary in results.values():
        names += [n for n in summary if n not in names]
    return names


def format_table(results: Mapping[str, Mapping[str, MetricSummary]]) -> str:
    """Plain-text table: rows = methods, columns = metrics (mean ± std)."""
    metrics = _metric_names(results)
    header = ["method", *metrics, "n"]
    rows = [
        [method, *(str(s[m]) if m in s else "—" for m in metrics), str(max((x.count for x in s.values()), default=0))]
        for method, s in results.items()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(cell.ljust(w) for cell, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def to_markdown(results: Mapping[str, Mapping[str, MetricSummary]]) -> str:
    metrics = _metric_names(results)
    lines = ["| method | " + " | ".join(metrics) + " | n |", "|---" * (len(metrics) + 2) + "|"]
    for method, s in results.items():
        cells = [str(s[m]) if m in s else "—" for m in metrics]
        count = max((x.count for x in s.values()), default=0)
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {count} |")
    return "\n".join(lines) + "\n"


def to_csv(results: Mapping[str, Mapping[str, MetricSummary]]) -> str:
    metrics = _metric_names(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", *(f"{m}_{stat}" for m in metrics for stat in ("mean", "std")), "n"])
    for method, s in results.items():
        cells = []
        for m in metrics:
            cells += [repr(s[m].mean), repr(s[m].std)] if m in s else ["", ""]
        writer.writerow([method, *cells, max((x.count for x in s.values()), default=0)])
    return buffer.getvalue()


def write_results(results: Mapping[str, Mapping[str, MetricSummary]], directory: str | os.PathLike, stem: str = "results") -> tuple[str, str]:
    """Write `<stem>.csv` and `<stem>.md` atomically; returns their paths."""
    csv_path = os.path.join(directory, f"{stem}.csv")
    md_path = os.path.join(directory, f"{stem}.md")
    atomic_write_text(csv_path, to_csv(results))
    atomic_write_text(md_path, to_markdown(results))
    return csv_path, md_path
