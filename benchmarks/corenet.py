"""Benchmark the full 3D-CoreNet model: per-pair inference latency and peak memory, training throughput.

Inference: CoreNet at the official widths (features 64-128-256, 4 residual blocks, θ/φ 256,
decoder 1024-512-256, fc kernel 3), `model.eval()`, one identity/pose pair per call, jitted over
(params, identity, pose); compile time is measured separately (`lower().compile()`), latency is
the median of `--repeats` calls after one warm-up call. Each (mode, identity size) case runs in a
fresh subprocess so its peak resident memory (`ru_maxrss`) is its own; a baseline subprocess that
only imports JAX and touches the backend is subtracted.

Point sets (all bbox-centred metres; built once in the parent process and handed to the workers
through an .npz file, so the body forward's own memory is not counted):
  * 1,229:  the low-resolution default body's vertices (identity betas, one `sample_pose` pose);
  * 13,718: the full-resolution default body's vertices (same betas and pose);
  * other N (6,890 and 27,554 by default): N area-weighted uniform random samples of the posed
    full-resolution body surface (no default body of that size is shipped);
  * pose mesh: 6,890 area-weighted surface samples of another identity in another pose.

Training: for each `--train CONFIG[:STEPS]` the engine's own pieces (task data, `create_train_state`,
`make_train_step`, `jit_train_step`) run in a fresh subprocess; the first step (compile + run) is
reported as compile time, then one more warm-up step, then STEPS timed steps give steps/s and
pairs/s (batch size × steps/s).

Default training cases: corenet_small (10 timed steps) and corenet_official (2 timed steps), both on
low-resolution (1,229-vertex) data. The official config on full-resolution data does not fit in
memory in dense mode at batch 8 on a 24 GB machine; measure it in online mode at a smaller batch:

    python -m benchmarks.corenet --out report.md
    python -m benchmarks.corenet --id-sizes 1229 --modes online --repeats 2 --train none
    python -m benchmarks.corenet --skip-inference \
        --train configs/corenet_official.py:1:full:model.matching_mode=online,batch_size=2
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import statistics
import sys
import tempfile
import time

from benchmarks.common import (
    LATENCY_COLUMNS,
    latency_cells,
    dense_estimate_gib,
    load_average,
    machine_description,
    max_rss_bytes,
    run_worker,
    worker_baseline,
)

DEFAULT_ID_SIZES = (1229, 6890, 13718, 27554)
POSE_SIZE = 6890
LOW_VERTICES = 1229
FULL_VERTICES = 13718
DEFAULT_TRAIN = ("configs/corenet_small.py:10:low", "configs/corenet_official.py:2:low")
# Throughput does not depend on how many meshes the dataset holds, only on their size: the benchmark
# builds small datasets of the default body (identities, poses, resolution) in a temporary directory.
TRAIN_DATASETS = {"low": (4, 6, "low"), "full": (2, 3, "full")}


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def surface_samples(vertices, faces, count: int, seed: int):
    """`count` area-weighted uniform samples on a triangle mesh: (count, 3) float32.

    vertices (V, 3), faces (F, 3) int. Faces are drawn with probability ∝ area, then a uniform
    barycentric point in the face (square-root trick).
    """
    import numpy as np

    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    corners = vertices[faces]  # (F, 3, 3)
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=-1)
    if not np.all(np.isfinite(areas)) or areas.sum() <= 0:
        raise ValueError("mesh has no positive-area faces to sample from")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(faces), size=count, p=areas / areas.sum())
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    weights = np.stack([1.0 - s, s * (1.0 - r2), s * r2], axis=-1)  # (count, 3)
    return np.einsum("nk,nkd->nd", weights, corners[chosen]).astype(np.float32)


def bbox_centred(points):
    import numpy as np

    points = np.asarray(points, np.float32)
    return points - 0.5 * (points.max(axis=0) + points.min(axis=0))


def posed_body(resolution: str, betas_seed: int, pose_seed: int):
    """(vertices (V, 3) float32, faces (F, 3)) of the default body with seeded betas and pose."""
    import jax
    import numpy as np

    from jaxpose.bodies import default_body, forward, sample_pose

    body = default_body(resolution)
    betas = np.random.default_rng(betas_seed).normal(size=body.num_betas).clip(-2.0, 2.0).astype(np.float32)
    pose = np.asarray(sample_pose(pose_seed, "npt"), np.float32)
    with jax.numpy_rank_promotion("allow"):
        vertices = np.asarray(forward(body, betas, pose).vertices, np.float32)
    return vertices, np.asarray(body.faces)


def identity_points(size: int):
    """(points (size, 3), description) of the identity point set for `size` (module docstring)."""
    if size == LOW_VERTICES:
        vertices, _ = posed_body("low", 1, 11)
        return bbox_centred(vertices), "low-resolution default body vertices"
    vertices, faces = posed_body("full", 1, 11)
    if size == FULL_VERTICES:
        return bbox_centred(vertices), "full-resolution default body vertices"
    return bbox_centred(surface_samples(vertices, faces, size, seed=size)), "area-weighted samples of the full body surface"


def build_train_dataset(directory: str, resolution: str) -> str:
    """A small NPT-style dataset of the default body at `resolution` (see TRAIN_DATASETS)."""
    from jaxpose.pose_transfer.npt_data import NptConfig, generate_npt_dataset

    identities, poses, body_resolution = TRAIN_DATASETS[resolution]
    generate_npt_dataset(directory, NptConfig(identities=identities, poses=poses, resolution=body_resolution),
                         progress=False)
    return directory


def pose_points(size: int = POSE_SIZE):
    vertices, faces = posed_body("full", 2, 22)
    return bbox_centred(surface_samples(vertices, faces, size, seed=7)), "area-weighted samples of another identity's full body surface"


# ----------------------------------------------------------------------------------------------
# Workers (each runs in its own process)
# ----------------------------------------------------------------------------------------------


def _worker_inference(inputs_path: str, mode: str, size: int, block_size: int, repeats: int) -> dict:
    # Imported here, not at the top: the baseline process runs this module too and must import JAX only.
    import jax
    import numpy as np
    from flax import nnx

    from jaxpose.matching import matching_from_name
    from jaxpose.pose_transfer.corenet import CoreNet

    with np.load(inputs_path) as arrays:
        identity = jax.device_put(arrays[f"identity_{size}"][None])
        pose = jax.device_put(arrays["pose"][None])
    geometry, solver = matching_from_name(mode, block_size=block_size)
    model = CoreNet(matching_geometry=geometry, matching_solver=solver, rngs=nnx.Rngs(0))
    model.eval()
    graphdef, state = nnx.split(model)

    @jax.jit
    def transfer(state, identity_xyz, pose_xyz):
        return nnx.merge(graphdef, state)(identity_xyz, pose_xyz).output

    start = time.perf_counter()
    compiled = transfer.lower(state, identity, pose).compile()
    compile_s = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    output = compiled(state, identity, pose)
    output.block_until_ready()
    if output.shape != identity.shape or not np.all(np.isfinite(np.asarray(output))):
        raise FloatingPointError(f"bad output {output.shape} for mode={mode} size={size}")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compiled(state, identity, pose).block_until_ready()
        times.append(time.perf_counter() - start)
    return {
        "compile_s": compile_s,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "temp_bytes": int(analysis.temp_size_in_bytes),
        "max_rss": max_rss_bytes(),
    }


def _worker_train(config_path: str, overrides: list[list[str]], timed_steps: int) -> dict:
    import jax

    from jaxpose.training import sharding as sharding_lib
    from jaxpose.training import step as step_lib
    from jaxpose.training.config import apply_overrides, load_config
    from jaxpose.training.data import batch_indices, steps_per_epoch
    from jaxpose.training.optim import make_optimizer
    from jaxpose.training.registry import build_task
    from jaxpose.training.state import create_train_state, model_graphdef

    config = apply_overrides(load_config(config_path), [tuple(o) for o in overrides])
    task = build_task(config)
    mesh = sharding_lib.make_mesh()
    batch_size = int(config.batch_size)
    start = time.perf_counter()
    train_data = task.make_train_data()
    data_s = time.perf_counter() - start
    tx, schedule = make_optimizer(config.optimizer, steps_per_epoch(batch_size, len(train_data)), int(config.num_steps))
    graphdef = model_graphdef(task)
    _, state = create_train_state(task, tx, mesh)
    dtype = step_lib.compute_dtype_from_name(config.compute_dtype, task)
    train_step = step_lib.jit_train_step(step_lib.make_train_step(graphdef, task, tx, schedule, dtype), mesh)

    def batch(step):
        return sharding_lib.shard_batch(train_data.take(batch_indices(int(config.seed), step, batch_size, len(train_data))), mesh, batch_size)

    def run(step, state):
        state, metrics = train_step(state, batch(step))
        loss = float(sharding_lib.to_host(metrics)["loss"])
        if loss != loss:
            raise FloatingPointError(f"NaN loss at step {step}")
        return state

    start = time.perf_counter()
    state = run(0, state)  # compiles
    first_step_s = time.perf_counter() - start
    state = run(1, state)  # warm-up
    start = time.perf_counter()
    for step in range(2, 2 + timed_steps):
        state = run(step, state)
    elapsed = time.perf_counter() - start
    example = train_data.take(batch_indices(0, 0, 1, len(train_data)))
    shapes = {k: list(v.shape[1:]) for k, v in example.items()}
    return {
        "config": config_path,
        "batch_size": batch_size,
        "matching_mode": str(config.model.get("matching_mode", "")) if "model" in config else "",
        "devices": len(jax.devices()),
        "example_shapes": shapes,
        "data_s": data_s,
        "first_step_s": first_step_s,
        "timed_steps": timed_steps,
        "steps_per_s": timed_steps / elapsed,
        "pairs_per_s": timed_steps * batch_size / elapsed,
        "max_rss": max_rss_bytes(),
    }


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def format_inference_table(rows: list[dict], baseline_rss: int) -> str:
    lines = [
        "| mode | N_id | identity points | N_pose | " + LATENCY_COLUMNS,
        "|" + "---|" * 9,
    ]
    for row in rows:
        lines.append(f"| {row['mode']} | {row['n']:,} | {row['points']} | {row['m']:,} |" + latency_cells(row, baseline_rss, 1))
    return "\n".join(lines)


def format_train_table(rows: list[dict], baseline_rss: int) -> str:
    lines = [
        "| config (overrides) | batch | example shapes | first step incl. compile (s) | timed steps "
        "| steps/s | pairs/s | peak RSS − baseline (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = row["spec"]
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error']} | | | | | | |")
            continue
        shapes = ", ".join(f"{k} {tuple(v)}" for k, v in row["example_shapes"].items() if k in ("identity", "pose"))
        lines.append(
            f"| {name} | {row['batch_size']} | {shapes or '—'} | {row['first_step_s']:.1f} | {row['timed_steps']} | "
            f"{row['steps_per_s']:.3f} | {row['pairs_per_s']:.2f} | {(row['max_rss'] - baseline_rss) / 2**20:.0f} |"
        )
    return "\n".join(lines)


def linear_fit_note(rows: list[dict], baseline_rss: int, mode: str = "online") -> str:
    """Least-squares line of peak RSS over N_id for one mode, with the max relative residual."""
    import numpy as np

    ok = [r for r in rows if r["mode"] == mode and "max_rss" in r]
    if len(ok) < 3:
        return ""
    n = np.array([r["n"] for r in ok], np.float64)
    mib = np.array([(r["max_rss"] - baseline_rss) / 2**20 for r in ok])
    slope, intercept = np.polyfit(n, mib, 1)
    residual = np.max(np.abs(slope * n + intercept - mib))
    return (f"{mode} peak RSS − baseline ≈ {intercept:.0f} MiB + {slope * 1000:.1f} MiB per 1,000 identity "
            f"vertices (least squares over {len(ok)} sizes; largest residual {residual:.0f} MiB).")


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """One training-throughput case: `PATH[:STEPS[:RESOLUTION[:KEY=VALUE,KEY=VALUE...]]]`."""

    path: str
    steps: int = 5
    resolution: str = "low"
    overrides: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "TrainSpec":
        parts = text.split(":", 3)
        steps = int(parts[1]) if len(parts) > 1 and parts[1] else 5
        resolution = parts[2] if len(parts) > 2 and parts[2] else "low"
        overrides = []
        for item in (parts[3].split(",") if len(parts) > 3 and parts[3] else []):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--train {text!r}: override {item!r} is not KEY=VALUE")
            overrides.append((key, value))
        if steps < 1:
            raise ValueError(f"--train {text!r}: timed steps must be >= 1")
        if resolution not in TRAIN_DATASETS:
            raise ValueError(f"--train {text!r}: resolution must be one of {sorted(TRAIN_DATASETS)}")
        return cls(parts[0], steps, resolution, tuple(overrides))

    @property
    def label(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self.overrides)
        return f"{self.path} ({self.resolution}-res data{extra})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--id-sizes", type=int, nargs="+", default=list(DEFAULT_ID_SIZES))
    parser.add_argument("--modes", nargs="+", default=["dense", "online"], choices=["dense", "online"])
    parser.add_argument("--block-size", type=int, default=1024, help="rows per block (online)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after one warm-up")
    parser.add_argument("--dense-max-gib", type=float, default=8.0,
                        help="skip dense cases whose estimated working set (4 N×M float32) exceeds this")
    parser.add_argument("--train", nargs="+", default=list(DEFAULT_TRAIN),
                        metavar="CONFIG[:STEPS[:RES[:K=V,...]]]",
                        help="training-throughput cases: config, timed steps, dataset resolution (low|full), "
                        "config overrides (values without commas); 'none' skips training")
    parser.add_argument("--skip-inference", action="store_true", help="training throughput only")
    parser.add_argument("--out", type=str, default=None, help="write the markdown report here")
    parser.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        worker_args = json.loads(args.worker)
        kind, rest = worker_args[0], worker_args[1:]
        result = {"baseline": worker_baseline, "inference": _worker_inference, "train": _worker_train}[kind](*rest)
        print(json.dumps(result))
        return 0

    if args.repeats < 1 or min(args.id_sizes) < 2 or args.block_size < 1:
        parser.error("sizes must be >= 2, repeats and block size positive")
    try:
        train_specs = [] if args.train == ["none"] else [TrainSpec.parse(s) for s in args.train]
    except ValueError as error:
        parser.error(str(error))

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = load_average()
    baseline = run_worker("benchmarks.corenet", ["baseline"])
    if "error" in baseline:
        raise RuntimeError(f"baseline process failed: {baseline['error']}")
    base_rss = baseline["max_rss"]

    with tempfile.TemporaryDirectory() as tmp:
        inputs_path = os.path.join(tmp, "inputs.npz")
        import numpy as np

        arrays, descriptions = {}, {}
        for size in args.id_sizes:
            arrays[f"identity_{size}"], descriptions[size] = identity_points(size)
        arrays["pose"], pose_description = pose_points()
        np.savez(inputs_path, **arrays)
        rows = []
        for mode in ([] if args.skip_inference else args.modes):
            for size in args.id_sizes:
                row = {"mode": mode, "n": size, "m": POSE_SIZE, "points": descriptions[size]}
                estimate = dense_estimate_gib(size, POSE_SIZE)
                if mode == "dense" and estimate > args.dense_max_gib:
                    row["skipped"] = f"est. {estimate:.1f} GiB > --dense-max-gib {args.dense_max_gib}"
                else:
                    row.update(run_worker("benchmarks.corenet", ["inference", inputs_path, mode, size, args.block_size, args.repeats]))
                rows.append(row)
                print(format_inference_table([row], base_rss).splitlines()[-1], flush=True)

        train_rows = []
        datasets = {}
        for spec in train_specs:
            if spec.resolution not in datasets:
                datasets[spec.resolution] = build_train_dataset(os.path.join(tmp, f"data_{spec.resolution}"), spec.resolution)
            overrides = [["data.root", datasets[spec.resolution]], *map(list, spec.overrides)]
            row = {"spec": spec.label, **run_worker("benchmarks.corenet", ["train", spec.path, overrides, spec.steps])}
            train_rows.append(row)
            print(format_train_table([row], base_rss).splitlines()[-1], flush=True)

    load_after = load_average()
    inference_table = format_inference_table(rows, base_rss) if rows else "(not run)"
    train_table = format_train_table(train_rows, base_rss) if train_rows else "(not run)"
    fit = linear_fit_note(rows, base_rss)
    command = "python -m benchmarks.corenet " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report = "\n".join([
        "## 3D-CoreNet full model (official widths)",
        "",
        f"Command (from the repo root): `{command}`",
        f"Machine: {machine_description()}",
        f"Date: {started:%Y-%m-%d %H:%M} UTC; load average (1/5/15 min) {load_before} before, {load_after} after.",
        "",
        "### Inference, one pair per call",
        "",
        f"CoreNet official widths, `model.eval()`, jitted, float32, {args.repeats} timed calls after one "
        f"warm-up; online block {args.block_size} rows. Pose mesh: {POSE_SIZE:,} points ({pose_description}). "
        f"Baseline RSS (JAX imported, backend initialised): {base_rss / 2**20:.0f} MiB. Dense cases above "
        f"{args.dense_max_gib} GiB estimated working set (4 N×M float32) are skipped.",
        "",
        inference_table,
        "",
        fit,
        "",
        "### Training throughput",
        "",
        "The engine's jitted train step (forward, backward, Adam update, on-device vertex shuffling and "
        "edge loss) with the config's model, loss, optimiser and batch size, on a small dataset of the "
        "default body built by the benchmark at the stated resolution (the step cost depends on the mesh "
        "size, not on how many meshes the dataset holds). The first step includes compilation; then one "
        "warm-up step and the timed steps.",
        "",
        train_table,
        "",
    ])
    print(inference_table)
    print(fit)
    print(train_table)
    if args.out:
        from jaxpose.io.atomic import atomic_write_text

        atomic_write_text(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
