"""The two comparison rows of the paper's ablations, trained at the same regressor budget as the loop.

  supervised     the same ConvNet trained on the *ground-truth* segment-scale parameters
                 (`ground_truth_params`) — the fully 3D-supervised upper bound
  no_iteration   the same ConvNet trained only on the first registration (iteration 0), for as many
                 steps as the whole loop's regressor trainings together ("no iteration, long training")

Both are scored with the loop's protocol MPJPE on the test split, and written next to the loop's curves
(``comparisons.json``) so that `results_table` can put everything in one table.
"""

from __future__ import annotations

import json
import pathlib

import ml_collections

from jaxpose.deform_learn.loop import (
    CURVES_FILE, LoopData, error_summary, load_loop_data, model_predictions, params_joints, regressor_config,
)  # fmt: skip
from jaxpose.deform_learn.params import PARAM_KEYS
from jaxpose.io.atomic import atomic_write_text
from jaxpose.training.loop import train_and_evaluate
from jaxpose.training.registry import build_task

COMPARISONS_FILE = "comparisons.json"
ROWS = ("supervised", "no_iteration")


def comparison_config(config: ml_collections.ConfigDict, workdir: pathlib.Path, row: str) -> ml_collections.ConfigDict:
    """The engine config of comparison `row` ("supervised" or "no_iteration")."""
    steps = int(config.regressor.num_steps) * int(config.num_iterations)
    if row == "supervised":
        return regressor_config(config, None, None, num_steps=steps)
    if row == "no_iteration":
        targets = workdir / "iteration_0" / "registrations.npz"
        if not targets.exists():
            raise FileNotFoundError(f"{targets} is missing: run the loop (at least its first registration) first")
        return regressor_config(config, targets, None, num_steps=steps)
    raise ValueError(f"unknown comparison row {row!r}; expected one of {ROWS}")


def run_comparisons(config: ml_collections.ConfigDict, workdir, rows=ROWS, *, data: LoopData | None = None) -> dict:
    """Train and score the comparison `rows`; returns and writes ``comparisons.json`` (merged with earlier rows)."""
    workdir = pathlib.Path(workdir)
    data = load_loop_data(config) if data is None else data
    path = workdir / COMPARISONS_FILE
    results = json.loads(path.read_text()) if path.exists() else {}
    for row in rows:
        rconfig = comparison_config(config, workdir, row)
        task = build_task(rconfig)
        result = train_and_evaluate(rconfig, workdir / row, task=task, show_progress=bool(config.get("show_progress", True)))
        predictions = model_predictions(result, task, task.make_eval_data(None, None).arrays, int(rconfig.eval_batch_size))
        joints = params_joints(data.body, {key: predictions[key] for key in PARAM_KEYS})
        results[row] = {**error_summary(data.body, joints, data.test["joints_cam"], data.bone_length, "convnet_test"),
                        "num_steps": int(rconfig.num_steps)}  # fmt: skip
        atomic_write_text(path, json.dumps(results, indent=2) + "\n")
    return results


def _cell(row: dict, prefix: str) -> str:
    """"mean ± std" of a row's ``{prefix}_mpjpe_mm`` (just the mean for rows written without a std)."""
    mean, std = row[f"{prefix}_mpjpe_mm"], row.get(f"{prefix}_mpjpe_std_mm")
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def results_table(workdir) -> str:
    """Markdown: the loop's three curves per iteration, then the final ConvNet and the comparison rows."""
    workdir = pathlib.Path(workdir)
    curves = [json.loads(line) for line in (workdir / CURVES_FILE).read_text().splitlines() if line.strip()]
    lines = ["Protocol MPJPE (mm, skeleton scaled to the canonical bone length), mean ± std over images; PA-MPJPE (mm).",
             "", "| iteration | ConvNet test MPJPE | lifter test MPJPE | registration train MPJPE | ConvNet test PA-MPJPE |",
             "|---|---|---|---|---|"]  # fmt: skip
    for row in curves:
        lines.append(f"| {row['iteration']} | {_cell(row, 'convnet_test')} | {_cell(row, 'lifter_test')} | "
                     f"{_cell(row, 'registration_train')} | {row.get('convnet_test_pa_mpjpe_mm', float('nan')):.1f} |")  # fmt: skip
    comparisons_path = workdir / COMPARISONS_FILE
    comparisons = json.loads(comparisons_path.read_text()) if comparisons_path.exists() else {}
    lines += ["", "| regressor | test MPJPE (mm) | test PA-MPJPE (mm) |", "|---|---|---|"]
    final = curves[-1]
    lines.append(f"| deform-and-learn, final ConvNet (iteration {final['iteration']}) | {_cell(final, 'convnet_test')} | "
                 f"{final.get('convnet_test_pa_mpjpe_mm', float('nan')):.1f} |")  # fmt: skip
    labels = {"no_iteration": "no iteration, long training (first registration only)",
              "supervised": "fully 3D-supervised (ground-truth parameters), upper bound"}  # fmt: skip
    for row in ("no_iteration", "supervised"):
        if row in comparisons:
            result = comparisons[row]
            lines.append(f"| {labels[row]} ({result['num_steps']} steps) | {_cell(result, 'convnet_test')} | "
                         f"{result.get('convnet_test_pa_mpjpe_mm', float('nan')):.1f} |")  # fmt: skip
    last = curves[-1]
    if "tpose_test_mpjpe_mm" in last:
        lines.append(f"| reference: the T-pose start (no learning) | {last['tpose_test_mpjpe_mm']:.1f} | |")
        lines.append(f"| reference: the ground-truth joints (floor of the size normalisation) | {last['ground_truth_test_mpjpe_mm']:.1f} | |")
    return "\n".join(lines) + "\n"


__all__ = ["COMPARISONS_FILE", "ROWS", "comparison_config", "results_table", "run_comparisons"]
