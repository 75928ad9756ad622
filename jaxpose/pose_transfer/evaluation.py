"""The pose-transfer evaluation harness: `jaxpose eval corenet|npt` and the demo's table.

One table with any mix of pose-transfer checkpoints (each rebuilt by the task its saved config
names), an extra "raw OT warp" row per 3D-CoreNet checkpoint, and the baselines, reported as mean ± std
over the vertex-permutation seeds (each value a mean over triples). EMD is the exact assignment
(SciPy, host) unless asked otherwise. Protocol details: `jaxpose.pose_transfer.protocol` and
docs/pose_transfer.md, "Evaluation protocol".
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from jaxpose.io.atomic import atomic_write_text
from jaxpose.pose_transfer import protocol
from jaxpose.pose_transfer.host_callbacks import EMD_CHOICES, EmdTimer
from jaxpose.pose_transfer.pairs import open_data
from jaxpose.pose_transfer.test_lists import trivial_pair_counts
from jaxpose.pose_transfer.units import UNITS_NOTE
from jaxpose.training import evaluation
from jaxpose.training.data import ArrayDataset
from jaxpose.training.evaluation import LoadedCheckpoint
from jaxpose.training.protocol import EvaluationReport, EvaluationRequest, summarize_over_seeds, unique_row
from jaxpose.training.sharding import make_mesh
from jaxpose.training.step import compute_dtype_from_name

POSE_TRANSFER_TASKS = ("corenet", "npt")
DEFAULT_SEEDS = (0, 1, 2)


def parse_seeds(text: str) -> tuple[int, ...]:
    """"0,1,2" -> (0, 1, 2); ValueError on anything else."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--permutation_seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ValueError("--permutation_seeds is empty")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--permutation_seeds has repeated seeds: {text!r}")
    return seeds


def _notes(*, triples, seeds, emd, row_seconds, timer, num_vertices, data_root) -> str:
    trivial = trivial_pair_counts(triples)
    lines = [
        UNITS_NOTE,
        f"Test set: {data_root}, {len(triples)} triples ({num_vertices} vertices per mesh); trivial pairs: "
        f"{trivial['same_identity']} with the same identity (GT = pose mesh), {trivial['same_pose']} with "
        "the same pose (GT = identity mesh).",
        f"Learned rows: mean ± sample std over permutation seeds {','.join(map(str, seeds))} of the per-seed "
        "mean over triples. Baselines do not depend on the vertex order: run once (± 0).",
    ]
    if emd == "exact":
        lines.append(f"EMD: exact assignment (SciPy linear_sum_assignment), {timer.seconds:.1f} s host time for "
                     f"{timer.pairs} pairs.")  # fmt: skip
    elif emd == "sinkhorn":
        lines.append(f"EMD: ott-jax Sinkhorn approximation (ε = 1e-3 m), {timer.seconds:.1f} s for {timer.pairs} pairs.")
    lines.append("Wall time per row (s): " + ", ".join(f"{k}: {v:.1f}" for k, v in row_seconds.items()))
    return "\n".join(lines)


def evaluate(
    checkpoints: Sequence[LoadedCheckpoint],
    baselines: Sequence[str],
    *,
    data_root: str,
    list_file: str | None = None,
    config: ml_collections.ConfigDict | None = None,
    permutation_seeds: Sequence[int] = DEFAULT_SEEDS,
    emd: str = "exact",
    raw_warp: bool = True,
    batch_size: int = 8,
    max_triples: int | None = None,
    mesh: Mesh | None = None,
    show_progress: bool = False,
) -> EvaluationReport:
    """Score restored pose-transfer checkpoints (any mix of corenet / npt) and baselines on one test set.

    Rows: "<task> [<run>@<step>]" per checkpoint, "<task> raw OT warp [<run>@<step>]" per 3D-CoreNet
    checkpoint when `raw_warp`, then "copy_identity" / "deformation_transfer (oracle S0)".
    `config` supplies `eval.*` defaults (list seed, number of generated triples; default: the first
    checkpoint's); `max_triples` overrides `config.eval.max_triples`. `mesh` defaults to the first
    device only (see below); pass a multi-device mesh only with `emd="none"` and no
    deformation-transfer baseline. `show_progress`: a progress bar per row and seed, over batches.
    """
    for name in baselines:
        if name not in protocol.BASELINES:
            raise KeyError(f"unknown pose-transfer baseline {name!r}; available: {sorted(protocol.BASELINES)}")
    if not checkpoints and not baselines:
        raise ValueError("give at least one checkpoint or baseline")
    for checkpoint in checkpoints:
        if checkpoint.task.name not in POSE_TRANSFER_TASKS:
            raise ValueError(f"checkpoint {checkpoint.name} is for task {checkpoint.task.name!r}, not a pose-transfer "
                             f"task {POSE_TRANSFER_TASKS}")  # fmt: skip
    seeds = tuple(int(s) for s in permutation_seeds)
    if not seeds:
        raise ValueError("need at least one permutation seed")
    if batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    # One device by default: the host callbacks (exact EMD, deformation transfer) inside a multi-device
    # SPMD program make every other device wait in a collective, which XLA aborts after 40 s.
    mesh = make_mesh(jax.devices()[:1]) if mesh is None else mesh
    if config is None:
        config = checkpoints[0].config if checkpoints else ml_collections.ConfigDict({"eval": {}})
    config = ml_collections.ConfigDict(config.to_dict())
    if max_triples is not None:
        config.eval.max_triples = int(max_triples)
    data = open_data(data_root)
    triples = protocol.test_triples(config, data, list_file)
    base = ArrayDataset(protocol.eval_arrays(data, triples, seeds[0]))
    datasets = {seed: protocol.with_permutation_seed(base, seed) for seed in seeds}

    timer = EmdTimer()
    metrics_fn = protocol.make_eval_metrics(emd, timer)
    results, row_seconds = {}, {}
    for checkpoint in checkpoints:
        task = checkpoint.task
        dtype = compute_dtype_from_name(checkpoint.config.get("compute_dtype", "float32"), task)
        variants = [(f"{task.name} [{checkpoint.name}]", protocol.predict)]
        if raw_warp and task.name == "corenet":
            variants.append((f"{task.name} raw OT warp [{checkpoint.name}]", protocol.predict_raw_warp))
        for row, predict_fn in variants:
            start = time.perf_counter()
            evaluator = evaluation.ModelEvaluator(checkpoint.graphdef, predict_fn, metrics_fn, mesh, batch_size, dtype)
            per_seed = []
            for seed in seeds:
                label = f"{row} seed {seed}" if show_progress else None
                per_example = evaluator(checkpoint.state.params, checkpoint.state.model_state, datasets[seed], label)
                per_seed.append({k: float(np.mean(v)) for k, v in per_example.items()})
            row = unique_row(results, row)
            results[row] = summarize_over_seeds(per_seed, len(triples))
            row_seconds[row] = time.perf_counter() - start
    for name in baselines:
        start = time.perf_counter()
        per_example = evaluation.evaluate_predictions(protocol.BASELINES[name], metrics_fn, base, mesh, batch_size,
                                                      progress=protocol.BASELINE_ROW_NAMES[name] if show_progress else None)
        row = unique_row(results, protocol.BASELINE_ROW_NAMES[name])
        results[row] = summarize_over_seeds([{k: float(np.mean(v)) for k, v in per_example.items()}], len(triples))
        row_seconds[row] = time.perf_counter() - start
    notes = _notes(triples=triples, seeds=seeds, emd=emd, row_seconds=row_seconds, timer=timer,
                   num_vertices=data.num_vertices, data_root=str(data.root))  # fmt: skip
    return EvaluationReport(results, len(triples), notes)


def write_evaluation(report: EvaluationReport, directory: str | os.PathLike) -> tuple[str, str]:
    """`<directory>/results.csv` and `results.md` (table + protocol notes), written atomically."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = directory / "results.csv", directory / "results.md"
    atomic_write_text(csv_path, evaluation.to_csv(report.results))
    notes = "".join(f"- {line}\n" for line in report.notes.splitlines())
    atomic_write_text(md_path, evaluation.to_markdown(report.results) + "\n" + notes)
    return str(csv_path), str(md_path)


class PoseTransferProtocol:
    """`jaxpose eval corenet|npt`: the 3D-CoreNet test protocol over several permutation seeds."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.description = ("Score pose-transfer checkpoints (3D-CoreNet and/or NPT: each checkpoint's saved config "
                              "names its task) and baselines (" + ", ".join(sorted(protocol.BASELINES)) + ") on one "
                              "test list, with the 3D-CoreNet test protocol (fixed vertex permutations, bbox "
                              "centring); --data defaults to the first checkpoint's data.root. " + UNITS_NOTE)  # fmt: skip
        parser.add_argument("--permutation_seeds", default=None, metavar="S,S,...",
                            help="vertex-permutation seeds (default: config.eval.permutation_seeds, else 0,1,2)")
        parser.add_argument("--emd", choices=EMD_CHOICES, default="exact", help="EMD method (default exact)")
        parser.add_argument("--no_raw_warp", action="store_true", help="omit the 3D-CoreNet raw OT warp rows")
        parser.add_argument("--max_triples", type=int, help="use only the first N triples of the list")

    def make_mesh(self, options: argparse.Namespace | None = None) -> Mesh:
        del options
        return make_mesh(jax.devices()[:1])  # host callbacks: see `evaluate`

    def evaluate(self, request: EvaluationRequest) -> EvaluationReport:
        options, config = request.options, request.config
        data_root = request.data_dir or (config.data.root if config is not None else None)
        if data_root is None:
            raise ValueError("give --data DIR (or a --checkpoint / --config whose data.root names the dataset)")
        if options is not None and options.permutation_seeds is not None:
            seeds = parse_seeds(options.permutation_seeds)
        elif config is not None and "permutation_seeds" in config.get("eval", {}):
            seeds = tuple(int(s) for s in config.eval.permutation_seeds)
        else:
            seeds = DEFAULT_SEEDS
        batch_size = request.batch_size or (int(config.eval_batch_size) if config is not None else 8)
        return evaluate(
            request.checkpoints, request.baselines, data_root=data_root, list_file=request.list_file, config=config,
            permutation_seeds=seeds, emd=getattr(options, "emd", "exact"),
            raw_warp=not getattr(options, "no_raw_warp", False), batch_size=batch_size,
            max_triples=getattr(options, "max_triples", None), mesh=request.mesh, show_progress=True,
        )  # fmt: skip
