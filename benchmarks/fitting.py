"""Benchmark the fitting pipeline: SMPLify-style fits, multi-modal renders and the refinement U-Net.

One process, one run; every case is timed the same way: the first call (tracing + compilation + one
run) is the warm-up, then `--repeats` timed calls (each ends with `jax.block_until_ready` on the whole
output) give the median and the minimum; compile time = first call − median (the one-off cost a
caller pays on the first call of a new shape).

1. Fitting (`jaxpose.fitting.smplify.fit_batch`, the public API, including its host-side input
   checks) with both default schedules, `default_stages("adam")` (100 + 300 Adam steps) and
   `default_stages("lbfgs")` (30 + 100 L-BFGS iterations), default weights, at batch 1 (time per
   person) and batch 64 (people/s). Low-resolution default body (1,229 vertices); dense observations
   only: the exact projections of the ground-truth vertices, every vertex with weight 1, no keypoints
   (as in tests/test_fitting_core.py). People: "wide" random poses, betas ~ N(0, 0.8²), initial
   estimates with 5° per-joint noise (2° at the root), betas + N(0, 0.3²), 2 cm translation noise;
   128×128 perspective camera framed on the ground-truth people (`frame_vertices`, front view,
   40° field of view, 5 % margin). The solvers stop early at tol 1e-6; the mean number of updates
   each stage actually took is reported. A vmapped batch runs until its slowest person stops.
2. Rendering (`jaxpose.fitting.renders.render_modalities`, one person, every modality from one
   rasterisation) of the low (1,229 v) and full (13,718 v) default bodies at 128² and 256², each with
   its own framed camera.
3. The refinement U-Net (`configs/refinement_small.py`'s model section through
   `jaxpose.fitting.task.make_model`; weights N(0, 0.05²) drawn with NumPy into its parameter shapes,
   as the time does not depend on the values), jitted forward pass on uniform random
   (B, 128, 128, 14) inputs at batch 1 and 32: ms per image.

`--quick` shrinks everything for a smoke test (batch 4 instead of 64, 64² instead of 256², Adam
10 + 20 steps and L-BFGS 3 + 8 iterations, U-Net batch 4 instead of 32). `--solvers`, `--fit-batches`,
`--render-bodies`, `--render-sizes` and `--cnn-batches` pick a subset (the JSON records the settings).
`--out` writes every number as JSON, `--markdown` the report printed at the end. Fitting compiles
are slow (tens of seconds each on 2 cores): the default run compiles 4 fits, 4 renders and 2 U-Nets.
A persistent compilation cache (`jax_compilation_cache_dir`) would turn compile times into cache
loads; the report names it when one is set.

    python -m benchmarks.fitting --out /tmp/bench/fitting.json --markdown /tmp/bench/fitting.md
    python -m benchmarks.fitting --quick --out /tmp/fitting_quick.json

JSON (`--out`): benchmark "fitting", command, quick, settings (the `Settings` fields), machine,
backend, devices, xla_flags, compilation_cache_dir, versions (python, jax, jaxlib, flax, numpy,
jaxpose_commit), started_utc / finished_utc, load_before / load_after, and three lists of rows. Every
row has compile_s, first_call_s, median_s, min_s (seconds) and times_s (the timed calls); besides:
  fitting: solver, stage_steps, body, vertices, image_size, batch, per_person_s, people_per_s,
           mean_iterations (per stage), initial_mean_error_px, final_mean_error_px
  render:  body, vertices, faces, image_size, covered_pixels
  cnn:     config, parameters, image_size, batch, ms_per_image
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import shlex
import sys

from benchmarks.common import load_average, machine_description, time_calls, versions

CNN_CONFIG = "configs/refinement_small.py"
FIT_IMAGE_SIZE = 128
CNN_IMAGE_SIZE = 128
QUICK_STEPS = {"adam": (10, 20), "lbfgs": (3, 8)}
SOLVERS = ("adam", "lbfgs")
# Keys of every row whose values must be positive finite numbers (the test checks them).
TIMING_KEYS = ("compile_s", "first_call_s", "median_s", "min_s")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one run measures (`--quick` shrinks every size)."""

    solvers: tuple[str, ...] = SOLVERS
    fit_batches: tuple[int, ...] = (1, 64)
    fit_steps: dict | None = None  # solver -> (stage 1, stage 2); None: the solvers' defaults
    render_sizes: tuple[int, ...] = (128, 256)
    render_bodies: tuple[str, ...] = ("low", "full")
    cnn_batches: tuple[int, ...] = (1, 32)
    repeats: int = 3
    seed: int = 0
    quick: bool = False

    @classmethod
    def quick_settings(cls, repeats: int = 3) -> "Settings":
        return cls(fit_batches=(1, 4), fit_steps=dict(QUICK_STEPS), render_sizes=(128, 64), cnn_batches=(1, 4),
                   repeats=repeats, quick=True)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def benchmark_people(body, count: int, seed: int = 0):
    """(ground-truth params, initial params) of `count` people, batched (see the module docstring)."""
    import numpy as np

    from jaxpose.bodies import sample_pose
    from jaxpose.fitting.params import params_from_pose

    rng = np.random.default_rng(seed)
    pose = np.asarray(sample_pose(rng, "wide", num_samples=count), np.float32).reshape(count, body.num_joints, 3)
    betas = (0.8 * rng.normal(size=(count, body.num_betas))).clip(-2.0, 2.0).astype(np.float32)
    noise = np.deg2rad(5.0) * rng.normal(size=pose.shape).astype(np.float32)
    noise[:, 0] *= 0.4
    gt = params_from_pose(pose, betas, np.zeros((count, 3), np.float32))
    init = params_from_pose(
        pose + noise,
        betas + 0.3 * rng.normal(size=betas.shape).astype(np.float32),
        0.02 * rng.normal(size=(count, 3)).astype(np.float32),
    )
    return gt, init


def posed_vertices(body, params):
    import jax

    from jaxpose.fitting.params import pose_body

    return jax.jit(jax.vmap(lambda p: pose_body(body, p).vertices))(params)


def framed_camera(vertices, size: int):
    """A front-view size×size perspective camera framing all `vertices` (..., 3)."""
    import numpy as np

    from jaxpose.render import frame_vertices

    points = np.asarray(vertices, np.float32).reshape(-1, 3)
    return frame_vertices(points, "front", height=size, width=size, margin=0.05, fov_degrees=40.0)


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------


def bench_fitting(settings: Settings, log=print) -> list[dict]:
    """One row per (solver, batch): see the module docstring, item 1."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxpose.bodies import default_body
    from jaxpose.fitting.smplify import FitConfig, Observations, default_stages, fit_batch
    from jaxpose.render import project

    body = default_body("low")
    largest = max(settings.fit_batches)
    gt, init = benchmark_people(body, largest, settings.seed)
    truth = posed_vertices(body, gt)
    camera = framed_camera(truth, FIT_IMAGE_SIZE)
    project_uv = jax.jit(lambda v: project(v, camera)[0])
    targets = project_uv(truth)
    rows = []
    for solver in settings.solvers:
        steps = None if settings.fit_steps is None else tuple(settings.fit_steps[solver])
        stages = default_stages(solver, steps)
        config = FitConfig(stages=stages)
        stage_steps = [int(stage.solver.num_steps) for stage in stages]
        for batch in settings.fit_batches:
            start = {key: value[:batch] for key, value in init.items()}
            obs = Observations(
                keypoints=jnp.zeros((batch, body.num_joints, 2), jnp.float32),
                keypoint_confidence=jnp.zeros((batch, body.num_joints), jnp.float32),
                dense_targets=targets[:batch],
                dense_weights=jnp.ones((batch, body.num_vertices), jnp.float32),
            )

            def call(start=start, obs=obs, config=config):
                return fit_batch(body, camera, start, obs, config=config)

            timings, result = time_calls(call, settings.repeats)
            error_px = jnp.linalg.norm(project_uv(result.vertices) - obs.dense_targets, axis=-1)
            initial_px = jnp.linalg.norm(project_uv(posed_vertices(body, start)) - obs.dense_targets, axis=-1)
            row = {
                "solver": solver,
                "stage_steps": stage_steps,
                "body": "low",
                "vertices": int(body.num_vertices),
                "image_size": FIT_IMAGE_SIZE,
                "batch": batch,
                **timings,
                "per_person_s": timings["median_s"] / batch,
                "people_per_s": batch / timings["median_s"],
                "mean_iterations": [float(x) for x in np.asarray(result.iterations, np.float64).mean(axis=0)],
                "initial_mean_error_px": float(initial_px.mean()),
                "final_mean_error_px": float(error_px.mean()),
            }
            rows.append(row)
            log(f"fit {solver} batch {batch}: compile {row['compile_s']:.2f} s, median {row['median_s']:.3f} s "
                f"({row['people_per_s']:.2f} people/s)")  # fmt: skip
    return rows


def bench_render(settings: Settings, log=print) -> list[dict]:
    """One row per (body, image size): see the module docstring, item 2."""
    import jax.numpy as jnp
    import numpy as np

    from jaxpose.bodies import default_body
    from jaxpose.fitting.renders import body_code_colors, render_modalities

    rows = []
    for resolution in settings.render_bodies:
        body = default_body(resolution)
        gt, _ = benchmark_people(body, 1, settings.seed)
        vertices = posed_vertices(body, gt)[0]
        faces = jnp.asarray(body.faces, jnp.int32)
        colors = jnp.full(vertices.shape, 0.5, jnp.float32)
        code = jnp.asarray(body_code_colors(body))
        for size in settings.render_sizes:
            camera = framed_camera(vertices, size)
            def render(camera=camera):
                return render_modalities(vertices, faces, camera, colors, code_colors=code)

            timings, output = time_calls(render, settings.repeats)
            row = {
                "body": resolution,
                "vertices": int(body.num_vertices),
                "faces": int(faces.shape[0]),
                "image_size": size,
                **timings,
                "covered_pixels": int(np.asarray(output["mask"]).sum()),
            }
            rows.append(row)
            log(f"render {resolution} {size}²: compile {row['compile_s']:.2f} s, median {row['median_s'] * 1e3:.1f} ms")
    return rows


def bench_cnn(settings: Settings, log=print) -> list[dict]:
    """One row per batch size: see the module docstring, item 3."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jaxpose.fitting.network_inputs import NUM_INPUT_CHANNELS
    from jaxpose.fitting.task import make_model
    from jaxpose.training.config import load_config

    config = load_config(CNN_CONFIG)
    # The model's own initialisers compile one small program per kernel shape (~10 s on 2 cores):
    # trace the model abstractly and fill its parameters with NumPy draws (time ignores the values).
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: make_model(config.model, nnx.Rngs(settings.seed))))
    rng = np.random.default_rng(settings.seed)
    state = jax.tree.map(lambda leaf: jnp.asarray((0.05 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)), abstract)
    parameters = int(sum(leaf.size for leaf in jax.tree.leaves(abstract)))

    @jax.jit
    def forward(state, inputs):
        return nnx.merge(graphdef, state)(inputs)

    rows = []
    for batch in settings.cnn_batches:
        shape = (batch, CNN_IMAGE_SIZE, CNN_IMAGE_SIZE, NUM_INPUT_CHANNELS)
        inputs = jax.random.uniform(jax.random.key(settings.seed), shape, jnp.float32)
        timings, output = time_calls(lambda inputs=inputs: forward(state, inputs), settings.repeats)
        if output.shape != (batch, CNN_IMAGE_SIZE, CNN_IMAGE_SIZE, 3):
            raise ValueError(f"unexpected U-Net output shape {output.shape}")
        row = {
            "config": CNN_CONFIG,
            "parameters": parameters,
            "image_size": CNN_IMAGE_SIZE,
            "batch": batch,
            **timings,
            "ms_per_image": timings["median_s"] / batch * 1e3,
        }
        rows.append(row)
        log(f"cnn batch {batch}: compile {row['compile_s']:.2f} s, {row['ms_per_image']:.2f} ms/image")
    return rows


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def run(settings: Settings, command: str = "", log=print) -> dict:
    """Measure every case; the JSON-serialisable result (schema in the module docstring)."""
    import jax

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = load_average()
    result = {
        "benchmark": "fitting",
        "command": command,
        "quick": settings.quick,
        "settings": dataclasses.asdict(settings),
        "machine": machine_description(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # A persistent compilation cache turns compile times into cache-load times: say so.
        "compilation_cache_dir": str(jax.config.jax_compilation_cache_dir or ""),
        "versions": versions(),
        "started_utc": started.strftime("%Y-%m-%d %H:%M:%S"),
        "load_before": load_before,
    }
    result["fitting"] = bench_fitting(settings, log)
    result["render"] = bench_render(settings, log)
    result["cnn"] = bench_cnn(settings, log)
    result["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    result["load_after"] = load_average()
    return result


def _steps(row: dict) -> str:
    return " + ".join(str(s) for s in row["stage_steps"])


def to_markdown(result: dict) -> str:
    fit_rows = [
        f"| {r['solver']} ({_steps(r)}) | {r['batch']} | {r['compile_s']:.1f} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
        f"{r['per_person_s'] * 1e3:.1f} | {r['people_per_s']:.2f} | {' + '.join(f'{x:.0f}' for x in r['mean_iterations'])} | "
        f"{r['initial_mean_error_px']:.2f} → {r['final_mean_error_px']:.2f} |"
        for r in result["fitting"]
    ]
    render_rows = [
        f"| {r['body']} ({r['vertices']:,} v, {r['faces']:,} f) | {r['image_size']}² | {r['compile_s']:.1f} | "
        f"{r['median_s'] * 1e3:.1f} | {r['min_s'] * 1e3:.1f} |"
        for r in result["render"]
    ]
    cnn_rows = [
        f"| {r['batch']} | {r['compile_s']:.1f} | {r['median_s'] * 1e3:.1f} | {r['min_s'] * 1e3:.1f} | {r['ms_per_image']:.2f} |"
        for r in result["cnn"]
    ]
    v = result["versions"]
    cnn = result["cnn"][0] if result["cnn"] else {"parameters": 0}
    lines = [
        "## Body fitting, renders and the refinement CNN (`benchmarks/fitting.py`)" + (" — QUICK smoke run" if result["quick"] else ""),
        "",
        f"Command (from the repo root): `{result['command']}`",
        f"Machine: {result['machine']}",
        f"Versions: Python {v['python']}, jaxlib {v['jaxlib']}, Flax {v['flax']}, NumPy {v['numpy']}; jaxpose {v['jaxpose_commit']}"
        + (f"; XLA_FLAGS={result['xla_flags']}" if result["xla_flags"] else "")
        + (f"; persistent compilation cache {result['compilation_cache_dir']} (compile = cache load)"
           if result["compilation_cache_dir"] else ""),
        f"Date: {result['started_utc']}–{result['finished_utc'][11:16]} UTC; load average (1/5/15 min) "
        f"{result['load_before']} before, {result['load_after']} after.",
        "",
        f"Every case: first call (compile + run) as warm-up, then {result['settings']['repeats']} timed "
        f"call{'s' if result['settings']['repeats'] != 1 else ''} "
        "(`block_until_ready`); compile = first call − median.",
        "",
        f"### Fitting (`fit_batch`, low body 1,229 v, {FIT_IMAGE_SIZE}² camera, dense exact targets, unit weights)",
        "",
        "| solver (steps per stage) | batch | compile (s) | median (s) | min (s) | per person (ms) | people/s | "
        "updates taken (mean per stage) | mean vertex error, start → fit (px) |",
        "|---|---|---|---|---|---|---|---|---|",
        *fit_rows,
        "",
        "### Rendering (`render_modalities`, one person, all modalities from one rasterisation)",
        "",
        "| body | image | compile (s) | median (ms) | min (ms) |",
        "|---|---|---|---|---|",
        *render_rows,
        "",
        f"### Refinement U-Net inference (`{CNN_CONFIG}` model, {cnn['parameters']:,} parameters, "
        f"{CNN_IMAGE_SIZE}² × 14 inputs, float32)",
        "",
        "| batch | compile (s) | median (ms) | min (ms) | ms / image |",
        "|---|---|---|---|---|",
        *cnn_rows,
        "",
    ]
    return "\n".join(lines)


def check_result(result: dict) -> None:
    """ValueError unless every section has rows and every timing is a positive finite number."""
    for section in ("fitting", "render", "cnn"):
        rows = result.get(section)
        if not rows:
            raise ValueError(f"section {section!r} has no rows")
        for row in rows:
            keys = TIMING_KEYS + {"fitting": ("per_person_s", "people_per_s"), "render": (), "cnn": ("ms_per_image",)}[section]
            for key in keys:
                value = row.get(key)
                if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                    raise ValueError(f"{section} row {row} has {key}={value!r}, not a positive finite number")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test (see above)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the warm-up (>= 3 for the report)")
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, help="fitting solvers (default: both)")
    parser.add_argument("--fit-batches", type=int, nargs="+", help="fitting batch sizes (default 1 64; quick 1 4)")
    parser.add_argument("--render-bodies", nargs="+", choices=("low", "full"), help="bodies to render (default: both)")
    parser.add_argument("--render-sizes", type=int, nargs="+", help="render image sizes (default 128 256; quick 128 64)")
    parser.add_argument("--cnn-batches", type=int, nargs="+", help="U-Net batch sizes (default 1 32; quick 1 4)")
    parser.add_argument("--out", help="write the results as JSON here (atomically)")
    parser.add_argument("--markdown", help="also write the markdown report here (atomically)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    settings = Settings.quick_settings(args.repeats) if args.quick else Settings(repeats=args.repeats)
    overrides = {"solvers": args.solvers, "fit_batches": args.fit_batches, "render_bodies": args.render_bodies,
                 "render_sizes": args.render_sizes, "cnn_batches": args.cnn_batches}  # fmt: skip
    for name, value in overrides.items():
        if value is not None:
            if name in ("fit_batches", "render_sizes", "cnn_batches") and min(value) < 1:
                parser.error(f"--{name.replace('_', '-')} must be positive")
            settings = dataclasses.replace(settings, **{name: tuple(value)})
    command = "python -m benchmarks.fitting " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    result = run(settings, command.strip(), log=lambda text: print(text, flush=True))
    report = to_markdown(result)
    print(report)
    from jaxpose.io.atomic import atomic_write_text

    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, report)
    check_result(result)  # after writing: a bad number is reported, the measurements are kept
    return 0


if __name__ == "__main__":
    sys.exit(main())
