"""Evaluation protocols: how `jaxpose eval NAME` turns checkpoints and baselines into one table.

A protocol is an object with two methods:
  * `add_arguments(parser)` — its own command-line options (none for the standard protocol);
  * `evaluate(request) -> EvaluationReport` — given the restored checkpoints (each with the task its
    saved config names), the baseline names and the test set's task, produce rows of metric summaries.

Each system owns its protocol (pose transfer scores fixed vertex permutations over several seeds and
adds a raw-warp row; see `jaxpose.pose_transfer.evaluation`); `StandardProtocol` scores every method
once on the task's test set: mean ± sample std over examples.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence

import ml_collections
import numpy as np
from jax.sharding import Mesh

from jaxpose.training import evaluation
from jaxpose.training.evaluation import LoadedCheckpoint, MetricSummary
from jaxpose.training.sharding import make_mesh
from jaxpose.training.registry import build_task
from jaxpose.training.step import compute_dtype_from_name


@dataclasses.dataclass(frozen=True)
class EvaluationRequest:
    """What to evaluate. `config` is the evaluation config (the test set and the baselines' task; None
    when neither --config nor a checkpoint was given); `batch_size` None means the config's
    `eval_batch_size`; `options` holds the protocol's own command-line options (or None)."""

    config: ml_collections.ConfigDict | None
    checkpoints: Sequence[LoadedCheckpoint]
    baselines: Sequence[str]
    mesh: Mesh
    batch_size: int | None = None
    data_dir: str | None = None
    list_file: str | None = None
    options: argparse.Namespace | None = None


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """Rows (method -> {metric: MetricSummary}) and free-text notes on the protocol (may be empty)."""

    results: Mapping[str, Mapping[str, MetricSummary]]
    examples: int
    notes: str = ""


def eval_batch_size(request: EvaluationRequest, default: int | None = None) -> int:
    """The request's batch size, else the config's `eval_batch_size`, else `default`; must be positive."""
    size = request.batch_size
    if size is None and request.config is not None and "eval_batch_size" in request.config:
        size = int(request.config.eval_batch_size)
    size = default if size is None else size
    if size is None or size <= 0:
        raise ValueError(f"the evaluation batch size must be positive, got {size}")
    return int(size)


def unique_row(results: Mapping, name: str) -> str:
    """`name`, primed until it is not already a row of `results`."""
    while name in results:
        name += "'"
    return name


class StandardProtocol:
    """Every checkpoint and baseline scored once on the task's test set (mean ± std over examples).

    Rows: "<task>:<run>@<step>" per checkpoint, "baseline:<name>" per baseline.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        del parser  # no options of its own

    def make_mesh(self, options: argparse.Namespace | None = None) -> Mesh:
        del options
        return make_mesh()

    def evaluate(self, request: EvaluationRequest) -> EvaluationReport:
        if request.config is None:
            raise ValueError("--config FILE is required when no --checkpoint is given")
        task = build_task(request.config)
        batch_size = eval_batch_size(request)
        predictors = {name: evaluation.baseline(task, name) for name in request.baselines}
        dataset = task.make_eval_data(request.data_dir, request.list_file)
        results: dict[str, dict[str, MetricSummary]] = {}
        for checkpoint in request.checkpoints:
            dtype = compute_dtype_from_name(checkpoint.config.get("compute_dtype", "float32"), checkpoint.task)
            # The checkpoint predicts; the test set's task scores (its config may differ in eval_* keys,
            # e.g. another scoring protocol, which the checkpoint's own metrics would not know).
            evaluator = evaluation.ModelEvaluator(checkpoint.graphdef, checkpoint.task.predict, task.eval_metrics,
                                                  request.mesh, batch_size, dtype)  # fmt: skip
            row = unique_row(results, f"{checkpoint.task.name}:{checkpoint.name}")
            per_example = evaluator(checkpoint.state.params, checkpoint.state.model_state, dataset, progress=row)
            results[row] = evaluation.summarize(per_example)
        for name, predict in predictors.items():
            row = unique_row(results, f"baseline:{name}")
            per_example = evaluation.evaluate_predictions(predict, task.eval_metrics, dataset, request.mesh,
                                                          batch_size, progress=row)  # fmt: skip
            results[row] = evaluation.summarize(per_example)
        return EvaluationReport(results, len(dataset))


def summarize_over_seeds(per_seed_means: Sequence[Mapping[str, float]], count: int) -> dict[str, MetricSummary]:
    """{column: MetricSummary(mean over seeds, sample std over seeds (0 for one seed), count)} of
    per-seed means (one dict of column -> mean per seed)."""
    out = {}
    for name in per_seed_means[0]:
        values = np.asarray([m[name] for m in per_seed_means], np.float64)
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[name] = MetricSummary(float(values.mean()), std, int(count))
    return out
