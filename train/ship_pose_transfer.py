"""Turn a trained pose-transfer workdir into a shipped model bundle, with its provenance and check triples.

    python -m train.ship_pose_transfer --workdir runs/corenet_medium --name corenet_medium \\
        --config configs/corenet_medium.py --check-data runs/demo/data \\
        --command "jaxpose data npt --out data/npt_medium --identities 32 --poses 96 --resolution low --seed 1" \\
        --command "python -m train.corenet --config configs/corenet_medium.py --workdir runs/corenet_medium"

Writes `jaxpose/pose_transfer/weights/<name>/` (a `jaxpose.training.bundle`: config.json, weights.npz,
manifest.json) plus `check.npz`: the first `--check-triples` non-trivial triples (different identity,
different pose) of `--check-data`'s test list — inputs, ground truth, permutation keys — and the PMD /
CD the model scores on them here, so `tests/test_pretrained.py` can verify that the shipped weights load
and reproduce those numbers. The manifest's provenance: the config file, the commands, the training
time (sum of the engine's logged step intervals, gaps over 10 minutes — pauses between resumed runs —
left out), the machine, the git commit, and the mean PMD/CD over the whole test list of `--check-data`
(permutation seed 0).
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np

from benchmarks.common import machine_description
from jaxpose.io.atomic import atomic_write_bytes
from jaxpose.pose_transfer import protocol
from jaxpose.pose_transfer.demo import non_trivial
from jaxpose.pose_transfer.evaluation import evaluate
from jaxpose.pose_transfer.pairs import open_data
from jaxpose.pose_transfer.pretrained import WEIGHTS_DIR
from jaxpose.training.bundle import export_bundle
from jaxpose.training.evaluation import load_checkpoint
from jaxpose.training.logs import read_jsonl
from jaxpose.training.sharding import make_mesh
from jaxpose.training.state import merge_model

CHECK_FILE = "check.npz"
MAX_GAP_S = 600.0
EVAL_KEY = "eval/PMD_1e-4m2"


def learning_curve(metrics_file: pathlib.Path) -> dict[str, list[float]]:
    """The engine's in-training held-out PMD (×1e-4 m²) and the training loss against step."""
    records = read_jsonl(metrics_file)
    evals = [(r["step"], r[EVAL_KEY]) for r in records if EVAL_KEY in r]
    losses = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]
    return {"eval_steps": [s for s, _ in evals], "eval_pmd": [v for _, v in evals],
            "loss_steps": [s for s, _ in losses], "loss": [v for _, v in losses]}  # fmt: skip


def save_learning_curve(curve: dict, title: str, path: pathlib.Path) -> None:
    """Two panels: training loss (logged batches and a 10-point running mean) and held-out PMD, vs step."""
    from matplotlib.figure import Figure  # local: only this command draws

    figure = Figure(figsize=(9, 3.4), dpi=100, layout="constrained")
    loss_axes, pmd_axes = figure.subplots(1, 2)
    loss = np.asarray(curve["loss"])
    loss_axes.plot(curve["loss_steps"], loss, color="0.75", lw=0.8, label="logged batch")
    if len(loss) >= 10:
        smooth = np.convolve(loss, np.ones(10) / 10, mode="valid")
        loss_axes.plot(curve["loss_steps"][9:], smooth, color="C0", label="running mean of 10")
    loss_axes.set(yscale="log", xlabel="step", ylabel="training loss (1000·MSE + 0.5·edge)")
    loss_axes.legend(fontsize=8)
    pmd_axes.plot(curve["eval_steps"], curve["eval_pmd"], marker="o", color="C1")
    pmd_axes.set(xlabel="step", ylabel="held-out PMD (×1e-4 m²)", ylim=(0, None))
    figure.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def training_seconds(metrics_file: pathlib.Path) -> float:
    """Seconds of training from the engine's metrics.jsonl: sum of intervals between logged steps
    (each ≤ MAX_GAP_S; longer gaps are pauses between resumed runs), the first interval counted twice."""
    times = [json.loads(line)["time"] for line in metrics_file.read_text().splitlines() if '"train/loss"' in line]
    gaps = [b - a for a, b in zip(times, times[1:])]
    kept = [g for g in gaps if g <= MAX_GAP_S]
    return float(sum(kept) + (kept[0] if kept else 0.0))


def check_arrays(loaded, data_dir: str, count: int) -> dict[str, np.ndarray]:
    """Inputs of `count` non-trivial test triples and the model's PMD / CD on them (seed 0 permutations)."""
    data = open_data(data_dir)
    triples = non_trivial(data.test_triples(None))[:count]
    batch = protocol.eval_arrays(data, triples, 0)
    model = merge_model(loaded.graphdef, loaded.state.params, loaded.state.model_state)
    model.eval(update_stats=False)
    inputs = {k: batch[k] for k in ("identity", "pose", "gt", "identity_faces", "permutation_key")}
    metrics = jax.jit(lambda b: protocol.eval_metrics(protocol.predict(model, b), b))(inputs)
    return {**inputs, **{f"metric/{k}": np.asarray(v) for k, v in metrics.items()},
            "triples": np.asarray(triples, np.int64)}  # fmt: skip


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.ship_pose_transfer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="training workdir (latest checkpoint is shipped)")
    parser.add_argument("--name", required=True, help="bundle name under jaxpose/pose_transfer/weights/")
    parser.add_argument("--config", required=True, help="the config file the run was trained with (recorded)")
    parser.add_argument("--check-data", required=True, help="a `jaxpose data npt` directory with a test list")
    parser.add_argument("--check-triples", type=int, default=4, help="non-trivial triples stored in check.npz")
    parser.add_argument("--command", action="append", default=[], help="a command of the recipe (repeatable)")
    parser.add_argument("--out-dir", default=str(WEIGHTS_DIR), help="parent directory of the bundle")
    parser.add_argument("--curve", help="also draw the learning curve to this PNG")
    args = parser.parse_args(argv)

    workdir = pathlib.Path(args.workdir)
    loaded = load_checkpoint(workdir, make_mesh(jax.devices()[:1]))
    report = evaluate([loaded], [], data_root=args.check_data, permutation_seeds=(0,), emd="none", raw_warp=True,
                      batch_size=8, max_triples=0)  # fmt: skip (0: the whole list)
    test_list = {row: {metric: summary.mean for metric, summary in columns.items()}
                 for row, columns in report.results.items()}  # fmt: skip
    hours = training_seconds(workdir / "metrics.jsonl") / 3600
    curve = learning_curve(workdir / "metrics.jsonl")
    if args.curve:
        save_learning_curve(curve, f"{args.name}: {args.config}, {int(loaded.step)} steps, {hours:.2f} h "
                            "on 2 CPU cores", pathlib.Path(args.curve))  # fmt: skip
    provenance = {
        "config": args.config,
        "commands": list(args.command),
        "training_time": f"{hours:.2f} h",
        "training_steps": int(loaded.step),
        "hardware": machine_description(),
        "git_commit": git_commit(),
        "learning_curve": {"steps": curve["eval_steps"], "held_out_pmd": curve["eval_pmd"],
                           "data": "the first config.eval.max_triples triples of data.root's test list"},
        "test_list": {"data": str(args.check_data), "permutation_seed": 0, "num_triples": report.examples,
                      "results": test_list},  # fmt: skip
    }
    check = check_arrays(loaded, args.check_data, args.check_triples)
    out = export_bundle(loaded, pathlib.Path(args.out_dir) / args.name, provenance=provenance,
                        extra_npz={CHECK_FILE: check}, overwrite=True)  # fmt: skip
    print(json.dumps(provenance, indent=1))
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
