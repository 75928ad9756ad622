"""Benchmark 3D-CoreNet's OT warp (`jaxpose.matching.ot_warp`): latency, compile time, peak memory.

Each (mode, identity size) case runs in a fresh subprocess, so its peak resident memory
(`ru_maxrss`) belongs to that case alone; a baseline subprocess that only imports JAX and touches
the backend is subtracted. Latency is the median of `--repeats` timed calls after one warm-up call,
features given (warp only: normalisation, 5 Sinkhorn iterations, row-normalised plan, T̂·P).

    python -m benchmarks.matching --out /work/notes/matching_benchmarks.md
    python -m benchmarks.matching --id-sizes 1229 6890 --modes online --repeats 5
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time

from benchmarks.common import LATENCY_COLUMNS, latency_cells, dense_estimate_gib, machine_description, max_rss_bytes, run_worker, worker_baseline

DEFAULT_ID_SIZES = (1229, 6890, 13718, 27554)


def _worker_case(mode: str, n: int, m: int, dim: int, block_size: int, epsilon: float,
                 num_iterations: int, repeats: int) -> dict:
    # Imported here, not at the top: the baseline process runs this module too and must import JAX only.
    import jax
    import numpy as np

    from jaxpose.matching import matching_from_name, ot_warp

    rng = np.random.default_rng(0)
    x = jax.device_put(rng.normal(size=(n, dim)).astype(np.float32))
    y = jax.device_put(rng.normal(size=(m, dim)).astype(np.float32))
    points = jax.device_put(rng.normal(size=(m, 3)).astype(np.float32))
    geometry, solver = matching_from_name(mode, block_size=block_size, num_iterations=num_iterations)

    def warp(x_features, y_features, y_points, eps):
        return ot_warp(x_features, y_features, y_points, epsilon=eps, geometry=geometry, solver=solver)

    eps = np.float32(epsilon)
    start = time.perf_counter()
    compiled = jax.jit(warp).lower(x, y, points, eps).compile()
    compile_s = time.perf_counter() - start
    temp_bytes = compiled.memory_analysis().temp_size_in_bytes

    result = compiled(x, y, points, eps)
    result.block_until_ready()
    if not np.all(np.isfinite(np.asarray(result))):
        raise FloatingPointError(f"non-finite warp for matching {mode!r}, n={n} m={m}")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compiled(x, y, points, eps).block_until_ready()
        times.append(time.perf_counter() - start)
    return {
        "compile_s": compile_s,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "temp_bytes": temp_bytes,
        "max_rss": max_rss_bytes(),
    }


def _format_table(rows: list[dict], baseline_rss: int) -> str:
    lines = [
        "| mode | N_id | N_pose | " + LATENCY_COLUMNS,
        "|" + "---|" * 8,
    ]
    for row in rows:
        lines.append(f"| {row['mode']} | {row['n']:,} | {row['m']:,} |" + latency_cells(row, baseline_rss, 2))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--id-sizes", type=int, nargs="+", default=list(DEFAULT_ID_SIZES),
                        help="identity vertex counts N_id")
    parser.add_argument("--pose-size", type=int, default=6890, help="pose vertex count N_pose")
    parser.add_argument("--dim", type=int, default=256, help="feature width")
    parser.add_argument("--modes", nargs="+", default=["dense", "online"], choices=["dense", "online"])
    parser.add_argument("--block-size", type=int, default=1024, help="rows per block (online)")
    parser.add_argument("--epsilon", type=float, default=0.03)
    parser.add_argument("--num-iterations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after one warm-up")
    parser.add_argument("--dense-max-gib", type=float, default=6.0,
                        help="skip dense cases whose estimated working set (4 N×M float32) exceeds this")
    parser.add_argument("--out", type=str, default=None, help="write the markdown report here")
    parser.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        worker_args = json.loads(args.worker)
        result = worker_baseline() if worker_args[0] == "baseline" else _worker_case(*worker_args)
        print(json.dumps(result))
        return 0

    if args.repeats < 1 or args.pose_size < 1 or args.dim < 1 or min(args.id_sizes) < 1:
        parser.error("sizes, dim and repeats must be positive")

    baseline = run_worker("benchmarks.matching", ["baseline"])
    if "error" in baseline:
        raise RuntimeError(f"baseline process failed: {baseline['error']}")
    rows = []
    for mode in args.modes:
        for n in args.id_sizes:
            row = {"mode": mode, "n": n, "m": args.pose_size}
            estimate = dense_estimate_gib(n, args.pose_size)
            if mode == "dense" and estimate > args.dense_max_gib:
                row["skipped"] = f"est. {estimate:.1f} GiB > --dense-max-gib {args.dense_max_gib}"
            else:
                row.update(run_worker("benchmarks.matching", [mode, n, args.pose_size, args.dim, args.block_size,
                                            args.epsilon, args.num_iterations, args.repeats]))
            rows.append(row)
            print(_format_table([row], baseline["max_rss"]).splitlines()[-1], flush=True)

    table = _format_table(rows, baseline["max_rss"])
    command = "python -m benchmarks.matching " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    report = "\n".join([
        "# jaxpose.matching benchmark: 3D-CoreNet OT warp (inference, features given)",
        "",
        f"Command (from the repo root): `{command}`",
        f"Machine: {machine_description()}",
        f"Setting: feature width {args.dim}, ε = {args.epsilon}, {args.num_iterations} Sinkhorn "
        f"iterations, online block {args.block_size} rows, float32, {args.repeats} timed runs after "
        "one warm-up. Baseline RSS (JAX imported, backend initialised): "
        f"{baseline['max_rss'] / 2**20:.0f} MiB.",
        "Peak RSS includes the inputs and the compiled executable; XLA temp is the compiler's "
        "scratch allocation for one call.",
        "",
        table,
        "",
    ])
    print(table)
    if args.out:
        from jaxpose.io.atomic import atomic_write_text

        atomic_write_text(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
