"""3D-CoreNet throughput against the machine's own limits: achieved GFLOP/s and the distance to a floor.

One process; cases in this fixed order:
  1. matmul: jitted float32 2048×2048 @ 2048×2048, median of `--repeats` calls: the "matmul rate".
     Measured again at the end (shared machine); both are printed, the floors use their mean.
  2. bandwidth: jitted `x * 1.0001 + 1` over 256 MiB float32 in place (x donated: a fresh output per
     call is page-faulted in, ~10x slower on CPU); bandwidth = 2 × 256 MiB (read + write) / time.
  3. inference: CoreNet at the official widths (`CoreNet()` defaults), `model.eval()`, one pair per
     call, jitted over (params, identity, pose); identity and pose N random points each (normal × 0.3,
     (1, N, 3)), N in `--sizes`; matching "dense" (log domain) and "dense_scaling" (scaling domain,
     `CoreNetIteration(lse_mode=False)`), the same parameters.
  4. train: the engine's step (`build_task`, `create_train_state`, `make_train_step`, `jit_train_step`,
     `batch_indices`, `shard_batch`, as `benchmarks/corenet.py`) of corenet_small with
     model.matching_mode=dense ("before") and dense_scaling ("after"), corenet_medium and npt_small as
     they are, and (`--with-official`) corenet_official, 1 timed step; on one device, on a low-resolution
     `jaxpose data npt` dataset (`--data DIR`, else 8 identities × 24 poses built in a temporary
     directory; data.root and data.build are set to it). Batches are assembled before timing;
     `--train-steps` timed steps, each blocked on the metrics.
Every case: compile = `jitted.lower(*args).compile()` (timed); its XLA cost analysis gives flops,
transcendentals and bytes accessed; time = median of the timed calls after one warm-up call.
FLOP floor = flops / matmul rate; roofline floor = max(FLOP floor, bytes accessed / bandwidth).

`--cases` (comma-separated) picks groups (inference, train) or train case names; matmul and bandwidth
always run. `--override [NAME:]KEY=VALUE` (repeatable) edits the train configs: unscoped, every
selected config that has KEY (at least one must); scoped, the case NAME or the cases of config NAME
(e.g. `npt_small:model.pose_widths=(8,16,16)`).

    python -m benchmarks.corenet_throughput --out corenet_throughput.md
    python -m benchmarks.corenet_throughput --sizes 1229 --train-steps 2
    python -m benchmarks.corenet_throughput --cases train --with-official --data data/npt_low
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import pathlib
import re
import shlex
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

from benchmarks.common import load_average, machine_description, time_calls, versions

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODES = ("dense", "dense_scaling")
# (name, config, fixed overrides, description), run in this order.
TRAIN_CASES = (
    ("corenet_small_dense", "configs/corenet_small.py", (("model.matching_mode", "dense"),), "before: log domain"),
    ("corenet_small_scaling", "configs/corenet_small.py", (("model.matching_mode", "dense_scaling"),),
     "after: scaling domain"),
    ("corenet_medium", "configs/corenet_medium.py", (), "as is"),
    ("npt_small", "configs/npt_small.py", (), "as is"),
)
OFFICIAL_CASE = ("corenet_official", "configs/corenet_official.py", (), "as is, 1 timed step")
SCOPES = {c[0] for c in TRAIN_CASES + (OFFICIAL_CASE,)} | {pathlib.Path(c[1]).stem for c in TRAIN_CASES}
GROUPS = ("matmul", "bandwidth", "inference", "train")
RNG_LOOP = re.compile(r"threefry|_shuffle")  # the train step's RNG: small integer loops, not counted


def cost(compiled) -> dict:
    """XLA's cost analysis of a compiled program, and how many non-RNG while loops its optimised HLO has."""
    whiles = [re.search(r'op_name="([^"]*)"', line) for line in compiled.as_text().splitlines() if " while(" in line]
    analysis = compiled.cost_analysis()
    analysis = (analysis[0] if isinstance(analysis, (list, tuple)) else analysis) or {}
    return {"flops": float(analysis.get("flops", 0.0)), "bytes": float(analysis.get("bytes accessed", 0.0)),
            "transcendentals": float(analysis.get("transcendentals", 0.0)),
            "loops": sum(not (m and RNG_LOOP.search(m.group(1))) for m in whiles)}  # fmt: skip


def measure(case: str, group: str, jitted, args, repeats: int, note: str = "", donated: bool = False) -> dict:
    """Compile, cost analysis, warm-up + `repeats` timed calls; `donated`: feed each output back as args[0]."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - start
    args = list(args)

    def call():
        out = compiled(*args)
        args[0] = out if donated else args[0]
        return out

    timings, _ = time_calls(call, repeats)
    row = {"case": case, "group": group, "note": note, **cost(compiled), "compile_s": compile_s,
           "median_s": timings["median_s"], "times_s": timings["times_s"]}  # fmt: skip
    print(f"{case}: compile {compile_s:.1f} s, median {row['median_s']:.4g} s, "
          f"{row['flops'] / row['median_s'] / 1e9:.2f} GFLOP/s", flush=True)  # fmt: skip
    return row


def bench_matmul(size: int, repeats: int, when: str) -> dict:
    a, b = (jax.random.normal(key, (size, size), jnp.float32) for key in jax.random.split(jax.random.key(0)))
    return measure(f"matmul {size}×{size} @ {size}×{size} ({when})", "matmul", jax.jit(jnp.matmul), (a, b), repeats)


def bench_bandwidth(mib: int, repeats: int) -> dict:
    x = jnp.ones((mib * 2**20 // 4,), jnp.float32)
    nbytes, jitted = x.nbytes, jax.jit(lambda x: x * 1.0001 + 1, donate_argnums=0)
    row = measure(f"bandwidth x*1.0001+1, {mib} MiB in place", "bandwidth", jitted, (x,), repeats, donated=True)
    row["bandwidth"] = 2 * nbytes / row["median_s"]  # read + write
    return row


def bench_inference(sizes, repeats: int) -> list[dict]:
    """One row per (N, mode); the parameters are initialised once (eagerly) and shared by both modes."""
    from flax import nnx

    from jaxpose.matching import matching_from_name
    from jaxpose.pose_transfer.corenet import CoreNet

    state, rows = nnx.state(CoreNet(rngs=nnx.Rngs(0))), []
    for size in sizes:
        keys = jax.random.split(jax.random.key(size))
        identity, pose = (jax.random.normal(key, (1, size, 3), jnp.float32) * 0.3 for key in keys)
        for mode in MODES:
            geometry, solver = matching_from_name(mode)
            model = nnx.eval_shape(lambda: CoreNet(matching_geometry=geometry, matching_solver=solver, rngs=nnx.Rngs(0)))
            model.eval()  # a static attribute: part of the graphdef, the state is the same
            graphdef = nnx.graphdef(model)

            def transfer(state, identity_xyz, pose_xyz, graphdef=graphdef):
                return nnx.merge(graphdef, state)(identity_xyz, pose_xyz).output

            rows.append(measure(f"inference {mode} N={size:,}", "inference", jax.jit(transfer), (state, identity, pose),
                                repeats, f"official widths, {size:,} identity + {size:,} pose points"))  # fmt: skip
    return rows


def has_key(config, dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    return hasattr(config, "keys") and head in config and (not rest or has_key(config[head], rest))


def train_configs(cases, overrides, data_dir: str) -> list:
    """(case, config) for each train case, with data.root/data.build of `data_dir` and the overrides."""
    import ml_collections

    from jaxpose.training.config import apply_overrides, load_config

    meta_path = pathlib.Path(data_dir) / "meta.json"
    build = json.loads(meta_path.read_text()).get("config") if meta_path.is_file() else None
    used, configs = set(), []
    for case in cases:
        name, path, fixed, _ = case
        config = load_config(ROOT / path)
        extra = []
        for scope, key, value in overrides:
            if (scope is None and has_key(config, key)) or scope in (name, pathlib.Path(path).stem):
                extra.append((key, value))
                used.add((scope, key, value))
        config = apply_overrides(config, [*fixed, *extra, ("data.root", str(data_dir))])
        if build is not None:
            config.data.build = ml_collections.ConfigDict(build)
        configs.append((case, config))
    unused = [f"{k}={v}" for s, k, v in overrides if s is None and (s, k, v) not in used]
    if unused:
        raise ValueError(f"--override {', '.join(unused)} matches no selected train case")
    return configs


def bench_train(case, config, timed_steps: int) -> dict:
    from jaxpose.training import sharding as sharding_lib
    from jaxpose.training import step as step_lib
    from jaxpose.training.data import batch_indices, steps_per_epoch
    from jaxpose.training.optim import make_optimizer
    from jaxpose.training.registry import build_task
    from jaxpose.training.state import create_train_state

    name, path, _, description = case
    task = build_task(config)
    mesh = sharding_lib.make_mesh(jax.devices()[:1])  # one device: cost analysis and time of one program
    batch_size = int(config.batch_size)
    train_data = task.make_train_data()
    tx, schedule = make_optimizer(config.optimizer, steps_per_epoch(batch_size, len(train_data)), int(config.num_steps))
    graphdef, state = create_train_state(task, tx, mesh)
    dtype = step_lib.compute_dtype_from_name(config.compute_dtype, task)
    train_step = step_lib.jit_train_step(step_lib.make_train_step(graphdef, task, tx, schedule, dtype), mesh)
    indices = [batch_indices(int(config.seed), step, batch_size, len(train_data)) for step in range(timed_steps + 1)]
    batches = [sharding_lib.shard_batch(train_data.take(i), mesh, batch_size) for i in indices]
    start = time.perf_counter()
    compiled = train_step.lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - start
    times = []
    for step, batch in enumerate(batches):  # step 0: warm-up
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        if not math.isfinite(float(sharding_lib.to_host(metrics)["loss"])):
            raise FloatingPointError(f"{name}: non-finite loss at step {step}")
        times += [time.perf_counter() - start] if step else []
    mode = f", {config.model.matching_mode}" if "matching_mode" in config.model else ""
    vertices = next(iter(batches[0].values())).shape[1]
    row = {"case": f"train {name}", "group": "train", **cost(compiled), "compile_s": compile_s,
           "median_s": statistics.median(times), "times_s": times,
           "note": f"{path} ({description}{mode}), batch {batch_size}, {vertices:,} vertices"}  # fmt: skip
    print(f"{row['case']}: compile {compile_s:.1f} s, median {row['median_s']:.4g} s", flush=True)
    return row


def add_floors(rows: list[dict], rate: float, bandwidth: float) -> None:
    for row in rows:
        row["gflops_per_s"] = row["flops"] / row["median_s"] / 1e9
        row["flop_floor_s"] = row["flops"] / rate
        row["roofline_floor_s"] = max(row["flop_floor_s"], row["bytes"] / bandwidth)
        for floor in ("flop", "roofline"):
            row[f"{floor}_ratio"] = row["median_s"] / row[f"{floor}_floor_s"] if row[f"{floor}_floor_s"] > 0 else math.inf


COLUMNS = ("case", "GFLOP", "transc. (M)", "bytes (MiB)", "while loops (non-RNG)", "compile (s)", "median (ms)",
           "GFLOP/s", "FLOP floor (ms)", "time / FLOP floor", "roofline floor (ms)", "time / roofline", "notes")  # fmt: skip


def format_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['flops'] / 1e9:.4g} | {r['transcendentals'] / 1e6:.3g} | {r['bytes'] / 2**20:.4g} | "
            f"{r['loops']} | {r['compile_s']:.1f} | {r['median_s'] * 1e3:.4g} | {r['gflops_per_s']:.3g} | "
            f"{r['flop_floor_s'] * 1e3:.4g} | {r['flop_ratio']:.3g} | {r['roofline_floor_s'] * 1e3:.4g} | "
            f"{r['roofline_ratio']:.3g} | {r['note']} |"
        )
    return "\n".join(lines)


def parse_override(text: str):
    head, sep, value = text.partition("=")
    if not sep or not head:
        raise ValueError(f"--override {text!r} is not [NAME:]KEY=VALUE")
    scope, _, key = head.rpartition(":")
    return (scope or None, key, value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1229,6890", help="inference point counts, comma-separated")
    parser.add_argument("--cases", default="matmul,bandwidth,inference,train", help="groups or train cases (above)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (not train) after a warm-up")
    parser.add_argument("--train-steps", type=int, default=5, help="timed train steps after a warm-up step")
    parser.add_argument("--with-official", action="store_true", help="also corenet_official (1 timed step; slow)")
    parser.add_argument("--data", help="a low-resolution `jaxpose data npt` directory (default: built, 8 × 24)")
    parser.add_argument("--override", action="append", default=[], metavar="[NAME:]KEY=VALUE", help="see above")
    parser.add_argument("--matmul-size", type=int, default=2048, help=argparse.SUPPRESS)
    parser.add_argument("--bandwidth-mib", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write the markdown report here (atomically)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        overrides = [parse_override(o) for o in args.override]
    except ValueError as error:
        parser.error(str(error))
    selected = {c.strip() for c in args.cases.split(",") if c.strip()}
    cases = [c for c in TRAIN_CASES + ((OFFICIAL_CASE,) if args.with_official else ())
             if "train" in selected or c[0] in selected]  # fmt: skip
    unknown = (selected - set(GROUPS) - SCOPES) | ({o[0] for o in overrides} - SCOPES - {None})
    if unknown or min(sizes, default=2) < 2 or args.repeats < 1 or args.train_steps < 1:
        parser.error(f"unknown case or override scope {sorted(unknown)}, or sizes < 2, "
                     "or non-positive --repeats / --train-steps")
    command = "python -m benchmarks.corenet_throughput " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data
        if cases and data_dir is None:
            from jaxpose.pose_transfer.npt_data import NptConfig, generate_npt_dataset

            data_dir = str(pathlib.Path(tmp) / "data")
            generate_npt_dataset(data_dir, NptConfig(identities=8, poses=24, resolution="low"), progress=False)
        try:  # every train config is built (and its overrides checked) before anything is measured
            configs = train_configs(cases, overrides, data_dir) if cases else []
        except (KeyError, ValueError) as error:
            parser.error(str(error))
        started, load_before = datetime.datetime.now(datetime.timezone.utc), load_average()
        rows = [bench_matmul(args.matmul_size, args.repeats, "start"), bench_bandwidth(args.bandwidth_mib, args.repeats)]
        if "inference" in selected:
            rows += bench_inference(sizes, args.repeats)
        for case, config in configs:
            rows.append(bench_train(case, config, 1 if case[0] == "corenet_official" else args.train_steps))
    rows.append(bench_matmul(args.matmul_size, args.repeats, "end"))
    rates = [r["flops"] / r["median_s"] for r in rows if r["group"] == "matmul"]
    rate = statistics.mean(rates)
    bandwidth = next(r["bandwidth"] for r in rows if r["group"] == "bandwidth")
    add_floors(rows, rate, bandwidth)
    report = "\n".join([
        "## 3D-CoreNet throughput against the FLOP and roofline floors (`benchmarks/corenet_throughput.py`)",
        "",
        f"Machine: {machine_description()}",
        f"Date: {started:%Y-%m-%d %H:%M} UTC; load average (1/5/15 min) {load_before} before, {load_average()} after.",
        f"Command (from the repo root): `{command.strip()}`",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in versions().items()),
        f"Train data: {args.data or 'built: 8 identities × 24 poses, low resolution'}. Overrides: "
        f"{', '.join(args.override) or 'none'}.",
        "",
        f"Matmul rate ({args.matmul_size}² float32, median of {args.repeats}): {rates[0] / 1e9:.2f} GFLOP/s at the start, "
        f"{rates[-1] / 1e9:.2f} GFLOP/s at the end; floors use the mean, {rate / 1e9:.2f} GFLOP/s. "
        f"Bandwidth (x*1.0001+1 over {args.bandwidth_mib} MiB in place, read + write): {bandwidth / 2**30:.2f} GiB/s.",
        "",
        "FLOP floor = XLA flops / matmul rate; roofline floor = max(FLOP floor, bytes accessed / bandwidth); ratios "
        "are median time / floor. Flops, transcendentals (exp, log: not in flops) and bytes accessed are XLA's "
        "cost-analysis estimates of the optimised program, not measured traffic. XLA counts a while loop's body once "
        "whatever its trip count: rows with non-RNG while loops > 0 undercount flops and bytes (the log-domain "
        "\"dense\" Sinkhorn runs all but one iteration in a lax.scan), so their floors are too low and their ratios "
        "too high (the train steps' RNG loops, small integer work, are not counted). A roofline ratio below 1 means "
        f"XLA's bytes estimate exceeds the real memory traffic (cache reuse). Timed calls after one warm-up call: "
        f"{args.repeats} (matmul, bandwidth, inference), train {args.train_steps} steps (corenet_official 1).",
        "",
        format_table(rows),
        "",
    ])
    print(report)
    if args.out:
        from jaxpose.io.atomic import atomic_write_text

        atomic_write_text(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
