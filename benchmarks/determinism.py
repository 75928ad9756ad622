"""Is 3D-CoreNet training bit-reproducible, and what makes two machines of the same kind disagree?

    python -m benchmarks.determinism --data runs/demo/data --steps 30 --out determinism.md

Trains `--config` (default configs/corenet_small.py on `--data`) for `--steps` steps in fresh
subprocesses that differ only in their environment, and compares each run's final parameters and loss
curve with the reference run's:
  reference          default flags;
  repeat             the same again (run-to-run determinism on one machine);
  max ISA AVX2       XLA_FLAGS=--xla_cpu_max_isa=AVX2: the code XLA would generate on a CPU without
                     AVX-512 (what another host of the "same kind" of VM may have);
  1 thread           taskset to one core: Eigen's thread pool splits work differently;
  scaling vs log     model.matching_mode=dense (the log domain) instead of the config's: the same
                     function, rounded differently (how far training carries a change at rounding level).
Per run: max |Δ parameter| over all parameters, and the step at which the logged loss first differs,
and the relative loss difference at the last step. A row of zeros means bit-identical training.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.common import load_average, machine_description, versions
from jaxpose.io.atomic import atomic_write_text

CASES = (
    ("reference", {}, None, []),
    ("repeat", {}, None, []),
    ("max ISA AVX2", {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}, None, []),
    ("1 thread", {}, "0", []),
    ("log-domain matching", {}, None, ["model.matching_mode=dense"]),
)


def _worker(args: dict) -> None:
    """Train in this process; write the final parameters (flattened) and the per-step losses to args["out"]."""
    import jax

    from jaxpose.training import sharding as sharding_lib
    from jaxpose.training import step as step_lib
    from jaxpose.training.bundle import flatten_arrays
    from jaxpose.training.config import apply_overrides, load_config
    from jaxpose.training.data import batch_indices, steps_per_epoch
    from jaxpose.training.optim import make_optimizer
    from jaxpose.training.registry import build_task
    from jaxpose.training.state import create_train_state

    overrides = [tuple(o.split("=", 1)) for o in args["overrides"]]
    config = apply_overrides(load_config(args["config"]), [("data.root", args["data"]), *overrides])
    task = build_task(config)
    mesh = sharding_lib.make_mesh(jax.devices()[:1])
    data = task.make_train_data()
    batch = int(config.batch_size)
    tx, schedule = make_optimizer(config.optimizer, steps_per_epoch(batch, len(data)), int(config.num_steps))
    graphdef, state = create_train_state(task, tx, mesh)
    train_step = step_lib.jit_train_step(step_lib.make_train_step(graphdef, task, tx, schedule), mesh)
    losses = []
    for step in range(args["steps"]):
        arrays = sharding_lib.shard_batch(data.take(batch_indices(int(config.seed), step, batch, len(data))), mesh, batch)
        state, metrics = train_step(state, arrays)
        losses.append(float(sharding_lib.to_host(metrics)["loss"]))
    params = flatten_arrays(jax.device_get(state.params))
    np.savez(args["out"], losses=np.asarray(losses, np.float64), **{f"p/{k}": v for k, v in params.items()})


def run_case(name, env_extra, cpus, extra_overrides, common: dict, directory: str) -> dict:
    out = os.path.join(directory, f"{len(os.listdir(directory))}.npz")
    args = {**common, "overrides": common["overrides"] + extra_overrides, "out": out}
    env = {**os.environ, **env_extra}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # compiled code must come from this run's flags
    command = [sys.executable, "-m", "benchmarks.determinism", "--worker", json.dumps(args)]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    with np.load(out) as data:
        return {"name": name, "losses": data["losses"], "seconds": time.perf_counter() - start,
                "params": {k: data[k] for k in data.files if k.startswith("p/")}}  # fmt: skip


def compare(run: dict, reference: dict) -> str:
    delta = max(float(np.max(np.abs(run["params"][k] - reference["params"][k]))) for k in reference["params"])
    differs = np.nonzero(run["losses"] != reference["losses"])[0]
    first = str(int(differs[0])) if differs.size else "never"
    last = abs(run["losses"][-1] - reference["losses"][-1]) / abs(reference["losses"][-1])
    return f"| {run['name']} | {delta:.3g} | {first} | {last:.3g} | {run['seconds']:.0f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.determinism", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="configs/corenet_small.py")
    parser.add_argument("--data", help="a `jaxpose data npt` directory matching the config's data.build")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cases", default=",".join(c[0] for c in CASES), help="comma-separated case names")
    parser.add_argument("--out", help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if args.worker:
        _worker(json.loads(args.worker))
        return 0
    if not args.data:
        parser.error("--data is required")
    wanted = args.cases.split(",")
    unknown = set(wanted) - {c[0] for c in CASES}
    if unknown or "reference" not in wanted:
        parser.error(f"--cases must include reference and name known cases; unknown: {sorted(unknown)}")
    common = {"config": args.config, "data": args.data, "steps": args.steps, "overrides": list(args.override)}
    before = load_average()
    with tempfile.TemporaryDirectory() as directory:
        runs = [run_case(*case, common, directory) for case in CASES if case[0] in wanted]
    reference = runs[0]
    lines = [
        f"# Training determinism: {args.config}, {args.steps} steps\n",
        f"Machine: {machine_description()}; load average before {before}, after {load_average()}.",
        f"Versions: {json.dumps(versions())}.",
        "Command: python -m benchmarks.determinism " + " ".join(sys.argv[1:] if argv is None else argv) + "\n",
        "| run | max abs param diff vs reference | first step whose loss differs | rel. loss diff at last step | seconds |",
        "|---|---|---|---|---|",
        *(compare(run, reference) for run in runs[1:]),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
