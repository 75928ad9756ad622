"""3D-CoreNet ablations at one training budget, over several training seeds (RESULTS.md §1).

    python -m train.corenet_ablations --data data/npt_medium --test-data runs/demo/data \\
        --workdir runs/corenet_ablations --steps 300 --seeds 0,1 --out runs/corenet_ablations/ablations.md

Variants (each `configs/<name>.py`, all with the same overrides): corenet_small (the reference:
residual decoder, ElaIN, edge loss), corenet_small_no_elain ("w/o ElaIN"), corenet_small_no_edge
("w/o L_edg"), corenet_small_absolute (the paper's absolute-coordinate decoder). Common overrides: the
training data `--data` (a `jaxpose data npt` directory; its settings become `data.build`), the
scaling-domain dense matching, `--steps` steps with the constant-then-linear schedule stretched over
them, and `seed`. Each (variant, seed) trains in WORKDIR/<variant>_seed<s> (resumed if interrupted,
reused if finished), then is scored on the first `--max-triples` triples of `--test-data`'s test list
(permutation seed 0, the 3D-CoreNet protocol): PMD and CD of the output and PMD of the raw OT warp.
The table gives mean ± sample std over training seeds, and the per-seed values.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import jax
import ml_collections

from benchmarks.common import load_average, machine_description
from jaxpose.io.atomic import atomic_write_text
from jaxpose.pose_transfer.demo import configs_dir, rescaled_schedule_overrides
from jaxpose.pose_transfer.evaluation import evaluate
from jaxpose.training.config import apply_overrides, load_config
from jaxpose.training.evaluation import load_checkpoint
from jaxpose.training.loop import train_and_evaluate
from jaxpose.training.sharding import make_mesh

VARIANTS = ("corenet_small", "corenet_small_no_elain", "corenet_small_no_edge", "corenet_small_absolute")
BUILD_KEYS = ("identities", "poses", "resolution", "seed", "beta_mode", "num_test_triples", "precision")


def variant_config(name: str, data_dir: pathlib.Path, steps: int, seed: int) -> ml_collections.ConfigDict:
    """`configs/<name>.py` with the common overrides (module docstring)."""
    meta = json.loads((data_dir / "meta.json").read_text())
    config = load_config(configs_dir() / f"{name}.py")
    build = [(f"data.build.{k}", str(meta["config"][k])) for k in BUILD_KEYS if k in meta.get("config", {})]
    config = apply_overrides(config, [("data.root", str(data_dir)), *build, ("model.matching_mode", "dense_scaling"),
                                      ("num_steps", str(steps)), ("seed", str(seed)), ("eval_every", "0")])  # fmt: skip
    return apply_overrides(config, rescaled_schedule_overrides(config, steps))


def score(workdir: pathlib.Path, test_data: str, max_triples: int) -> dict[str, float]:
    loaded = load_checkpoint(workdir, make_mesh(jax.devices()[:1]))
    report = evaluate([loaded], [], data_root=test_data, permutation_seeds=(0,), emd="none", raw_warp=True,
                      max_triples=max_triples)  # fmt: skip
    (output, warp) = report.results.values()
    return {"PMD": output["PMD_1e-4m2"].mean, "CD": output["CD_1e-4m2"].mean, "warp PMD": warp["PMD_1e-4m2"].mean}


def table(scores: dict[str, list[dict[str, float]]], seeds: list[int]) -> str:
    columns = ("PMD", "CD", "warp PMD")
    lines = ["| variant | " + " | ".join(f"{c} (mean ± std)" for c in columns) + " | PMD per seed |",
             "|---" * (len(columns) + 2) + "|"]  # fmt: skip
    for name, runs in scores.items():
        cells = []
        for column in columns:
            values = [run[column] for run in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.2f} ± {spread:.2f}")
        per_seed = ", ".join(f"s{s}: {run['PMD']:.2f}" for s, run in zip(seeds, runs))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {per_seed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.corenet_ablations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="training data (a `jaxpose data npt` directory)")
    parser.add_argument("--test-data", required=True, help="test data whose test list scores the runs")
    parser.add_argument("--workdir", required=True, help="parent of the per-run workdirs")
    parser.add_argument("--steps", type=int, default=300, help="training steps of every run (default 300)")
    parser.add_argument("--seeds", default="0,1", help="training seeds (default 0,1)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="configs to train (default: all four)")
    parser.add_argument("--max-triples", type=int, default=100, help="test triples scored (default 100)")
    parser.add_argument("--out", help="write the Markdown table here too")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    workdir, data_dir = pathlib.Path(args.workdir), pathlib.Path(args.data)
    started, load_before = time.perf_counter(), load_average()
    scores: dict[str, list[dict[str, float]]] = {}
    for name in args.variants.split(","):
        for seed in seeds:
            run_dir = workdir / f"{name}_seed{seed}"
            print(f"=== {name}, seed {seed}: {args.steps} steps -> {run_dir}", flush=True)
            train_and_evaluate(variant_config(name, data_dir, args.steps, seed), run_dir, show_progress=False)
            scores.setdefault(name, []).append(score(run_dir, args.test_data, args.max_triples))
            print(json.dumps(scores[name][-1]), flush=True)
    text = (f"{table(scores, seeds)}\n\n- {args.steps} steps per run, batch 8, training seeds {args.seeds}; training data "
            f"{args.data}; scored on the first {args.max_triples} triples of {args.test_data}'s test list "
            "(permutation seed 0); units ×10⁻⁴ m².\n"
            f"- Command: python -m train.corenet_ablations {' '.join(sys.argv[1:] if argv is None else argv)}\n"
            f"- Machine: {machine_description()}; load average before {load_before}, after {load_average()}; "
            f"total {(time.perf_counter() - started) / 60:.1f} min.\n")  # fmt: skip
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
