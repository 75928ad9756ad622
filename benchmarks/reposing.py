"""Reposing benchmark (INS Fig. 5 set-up): extract once + repose vs. extract per pose, P poses at R³.

* INS (extract once): the pose-independent canonical occupancy on an R³ grid, marching cubes + largest
  component, then `INS.repose` of its vertices to all P poses (H_c⁻¹ → forward LBS → H_d⁻¹) in ONE
  compiled call (`jaxpose.skinning.repose.make_reposer`: `lax.map` over batches of `--pose_batch`
  poses × chunks of `--vertex_chunk` vertices, vmapped over a batch's poses; no per-pose Python
  dispatch, one host transfer at the end).
* SNARF (extract per pose): for each pose, the pose-conditioned canonical occupancy on the same grid,
  marching cubes + largest component, then forward LBS of that mesh's vertices with SNARF's skinning
  field (one compiled function over fixed chunks of `VERTEX_BUCKET` vertices, the last padded).
  `--snarf_poses_timed N` times the first N poses only and extrapolates SNARF's totals to all P poses
  as (N-pose mean) × P — its per-pose work is the same every pose (one grid query, marching cubes,
  LBS) — so full-size networks can be timed in a CPU budget; the report says when it did.

Both grids go through one jitted function each (`jaxpose.skinning.extraction.evaluate_on_grid`, chunks
of `--chunk` points, `lax.map`). Every compiled function is compiled ahead of time (`jit(...).lower(...)
.compile()`, its time reported apart), so the times are steady-state wall clock of the executions,
host transfers, marching cubes and Python glue, on this machine.

Models: `--ins_checkpoint` / `--snarf_checkpoint` (trained workdirs), or `--ins_config` / `--snarf_config`
(random weights at that config's network sizes, default configs/ins_small.py / configs/snarf_small.py).
Timing depends on the network sizes and on the extracted meshes' vertex counts, not on the weights as
such; but the zero level set of a random network is no body (configs/ins_small.py's random SIREN gives a
sponge of 37,638 vertices at 64³, the reference surface below 26,888 at 128³), so with untrained weights
both grid functions get the same analytic term
`REFERENCE_SCALE · (REFERENCE_RADIUS − distance to the star-pose skeleton)` added to the network's
logits (capsules around the 23 bones: a body-sized surface; `--untrained_surface network` extracts the
raw networks' level sets instead). The term is computed once on the grid before any timing; each grid
evaluation adds it (one add per point, the same on both sides) to the networks' logits, which are still
evaluated in full at every grid point. The report says which weights were used.

The grid box is the subject's star-pose bounding box padded by `PADDING_M`. Poses: the held-out motions
kick / walkB / randomC of the synthetic clothed subject (first P of 3 × ⌈P/3⌉ frames). `--figure PNG` also
renders the canonical mesh coloured by canonical position and a few of its reposed copies.

    python -m benchmarks.reposing --ins_checkpoint runs/ins_small --snarf_checkpoint runs/snarf_small \\
        --out /work/notes/ins_benchmarks_run.md --figure /work/notes/ins_correspondence.png
    python -m benchmarks.reposing --ins_config configs/ins_full.py --snarf_config configs/snarf_full.py \\
        --data_root runs/ins_data_small --snarf_poses_timed 5 --out /work/notes/ins_benchmarks_run.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpose.bodies import rectified_bone_transforms, star_pose
from jaxpose.bodies.model import forward
from jaxpose.skinning import extraction
from jaxpose.skinning.field import lbs_points
from jaxpose.skinning.repose import PADDING_M, POSE_BATCH, VERTEX_CHUNK, canonical_bounds, make_reposer

VERTEX_BUCKET = 4096
"""Vertices per call of SNARF's compiled forward-LBS function (the last chunk of a mesh padded)."""
REFERENCE_RADIUS = 0.07
"""Capsule radius (m) of the untrained models' reference surface around the star-pose skeleton."""
REFERENCE_SCALE = 1000.0
"""Logits per metre of the reference term: the networks' own logits (|l| ≲ 2 at init) move the surface ≲ 2 mm."""
DEFAULT_CONFIGS = {"ins": "configs/ins_small.py", "snarf": "configs/snarf_small.py"}


def _cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _parameter_count(model) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def _model(task_name: str, checkpoint: str | None, config_path: str | None, seed: int):
    """(model, config, description, trained) from a checkpoint, or random weights at a config's sizes."""
    if checkpoint and config_path:
        raise ValueError(f"give --{task_name}_checkpoint or --{task_name}_config, not both")
    if checkpoint:
        from jaxpose.training import evaluation
        from jaxpose.training.sharding import make_mesh
        from jaxpose.training.state import merge_model

        loaded = evaluation.load_checkpoint(checkpoint, make_mesh(jax.devices()[:1]))
        if loaded.task.name != task_name:
            raise ValueError(f"{checkpoint} is a {loaded.task.name!r} checkpoint, not {task_name!r}")
        model = merge_model(loaded.graphdef, loaded.state.params, loaded.state.model_state)
        return model, loaded.config, f"trained checkpoint {checkpoint}@{loaded.step}", True
    from jaxpose.skinning.task import make_ins, make_snarf
    from jaxpose.training.config import load_config

    config_path = config_path or DEFAULT_CONFIGS[task_name]
    config = load_config(config_path)
    if str(config.get("task", task_name)) != task_name:
        raise ValueError(f"{config_path} configures task {config.task!r}, not {task_name!r}")
    make = make_ins if task_name == "ins" else make_snarf
    model = make(config.model, nnx.Rngs(seed))  # no warm start: plain random initialisation
    return model, config, f"UNTRAINED (random init, seed {seed}) at the network sizes of {config_path}", False


def benchmark_poses(num_poses: int, subject: str = "synth01") -> np.ndarray:
    from jaxpose.skinning.clothed import TEST_MOTIONS, motion_poses

    per = -(-num_poses // len(TEST_MOTIONS))
    poses = np.concatenate([motion_poses(m, per, 0, subject)[0] for m in TEST_MOTIONS])
    return poses[:num_poses]


def skeleton_segments(body) -> tuple[np.ndarray, np.ndarray]:
    """Star-pose bone segments (start (S, 3), end (S, 3)) of the minimal body: joint parent[j] → joint j."""
    out = forward(body, jnp.zeros((body.num_betas,), jnp.float32), jnp.asarray(star_pose(body.num_joints)))
    joints = np.asarray(out.joints, np.float32)
    children = [j for j, p in enumerate(body.parents) if p >= 0]
    return joints[[body.parents[j] for j in children]], joints[children]


def reference_logits(points: jax.Array, starts: jax.Array, ends: jax.Array) -> jax.Array:
    """REFERENCE_SCALE · (REFERENCE_RADIUS − distance to the nearest segment): (N, 3) -> (N,), positive inside."""
    axis = (ends - starts)[None]  # (1, S, 3)
    offsets = points[:, None] - starts[None]  # (N, S, 3)
    t = jnp.clip(jnp.sum(offsets * axis, -1) / jnp.sum(axis * axis, -1), 0.0, 1.0)  # (N, S)
    distance = jnp.sqrt(jnp.min(jnp.sum((offsets - t[..., None] * axis) ** 2, -1), -1))
    return REFERENCE_SCALE * (REFERENCE_RADIUS - distance)


def _compiled_grid(occupancy_fn, points, offset, chunk, *args):
    """AOT-compiled `evaluate_on_grid(lambda p: occupancy_fn(p, *args), points) + offset` (offset (N,) and args
    traced) and its compile seconds."""
    start = time.perf_counter()
    compiled = jax.jit(lambda p, o, *a: extraction.evaluate_on_grid(lambda q: occupancy_fn(q, *a), p, chunk) + o).lower(
        points, offset, *args).compile()
    return compiled, time.perf_counter() - start


def run(args) -> dict:
    from jaxpose.skinning.data import ensure_dataset
    from jaxpose.skinning.repose import subject_body

    load_start = _load_average()
    ins, ins_config, ins_source, ins_trained = _model("ins", args.ins_checkpoint, args.ins_config, args.seed)
    snarf, _, snarf_source, snarf_trained = _model("snarf", args.snarf_checkpoint, args.snarf_config, args.seed)
    if getattr(snarf, "pose_conditioned", True) is False:
        raise ValueError("the SNARF side must be pose-conditioned (SNARF-NC needs no per-pose extraction)")
    data = ins_config.data
    if args.subject:
        data.subject = args.subject
    if args.data_root:
        data.root = args.data_root
        if not (pathlib.Path(args.data_root) / "meta.json").is_file():
            data.frames_per_motion = 1  # only the subject's body is needed here
    ensure_dataset(data)
    body, star_vertices = subject_body(data)
    bounds = canonical_bounds(star_vertices)
    r = args.resolution
    points = jnp.asarray(extraction.grid_points(bounds, r))
    poses = benchmark_poses(args.poses, str(data.subject))
    num_poses = len(poses)
    transforms = rectified_bone_transforms(body, jnp.zeros((body.num_betas,), jnp.float32), jnp.asarray(poses),
                                           jnp.asarray(star_pose(body.num_joints)))  # fmt: skip
    transforms = jax.block_until_ready(transforms)
    reference = args.untrained_surface == "reference" and not (ins_trained and snarf_trained)
    if reference:  # computed once, before any timing; each grid evaluation then adds it (one add per point)
        starts, ends = (jnp.asarray(a) for a in skeleton_segments(body))
        offset = jax.jit(lambda p: extraction.evaluate_on_grid(lambda q: reference_logits(q, starts, ends), p,
                                                               args.chunk))(points)  # fmt: skip
    else:
        offset = jnp.zeros((points.shape[0],), jnp.float32)
    offset = jax.block_until_ready(offset)

    # --- INS: extract once, repose all --------------------------------------------------------------
    ins_grid, ins_grid_compile = _compiled_grid(lambda p: ins.canonical_occupancy(p), points, offset, args.chunk)
    t0 = time.perf_counter()
    values = np.asarray(ins_grid(points, offset)).reshape(r, r, r)
    t1 = time.perf_counter()
    vertices, faces = extraction.marching_cubes_mesh(values, bounds)
    vertices, faces = extraction.largest_component(vertices, faces)
    t2 = time.perf_counter()
    reposer = make_reposer(ins, pose_batch=args.pose_batch, vertex_chunk=args.vertex_chunk)
    verts_j = jnp.asarray(vertices)
    a = time.perf_counter()
    repose_compiled = reposer.compile(verts_j, transforms)
    ins_repose_compile = time.perf_counter() - a
    t3 = time.perf_counter()
    posed = np.asarray(repose_compiled(verts_j, transforms))  # (P, V, 3) on the host: the result, as the CLI needs it
    t4 = time.perf_counter()
    if posed.shape != (num_poses, len(vertices), 3) or not np.all(np.isfinite(posed)):
        raise RuntimeError(f"INS reposing gave {posed.shape} / non-finite vertices")
    ins_total = t4 - t3 + (t2 - t0)

    # --- SNARF: extract per pose ---------------------------------------------------------------------
    timed = num_poses if args.snarf_poses_timed is None else max(1, min(int(args.snarf_poses_timed), num_poses))
    snarf_grid, snarf_grid_compile = _compiled_grid(lambda p, pose: snarf.canonical_logits(p, pose), points, offset,
                                                    args.chunk, jnp.asarray(poses[0]))  # fmt: skip
    skin_graph, skin_state = nnx.split(snarf.skinning)

    def forward_lbs(skin_state, verts, tr):
        field = nnx.merge(skin_graph, skin_state)
        return lbs_points(verts, field(verts), tr)

    a = time.perf_counter()
    bucket = jnp.zeros((VERTEX_BUCKET, 3), jnp.float32)
    lbs_compiled = jax.jit(forward_lbs).lower(skin_state, bucket, transforms[0]).compile()
    snarf_lbs_compile = time.perf_counter() - a
    phases = {"grid": 0.0, "mc": 0.0, "lbs": 0.0}
    snarf_vertices = []
    t5 = time.perf_counter()
    for k in range(timed):
        a = time.perf_counter()
        grid = np.asarray(snarf_grid(points, offset, jnp.asarray(poses[k]))).reshape(r, r, r)
        b = time.perf_counter()
        v, f = extraction.marching_cubes_mesh(grid, bounds)
        v, f = extraction.largest_component(v, f)
        c = time.perf_counter()
        n = v.shape[0]
        padded = np.concatenate([v, np.repeat(v[:1], (-n) % VERTEX_BUCKET, axis=0)])
        pending = [lbs_compiled(skin_state, jnp.asarray(padded[s:s + VERTEX_BUCKET]), transforms[k])
                   for s in range(0, len(padded), VERTEX_BUCKET)]  # fmt: skip
        out = np.concatenate([np.asarray(p) for p in pending])[:n]
        d = time.perf_counter()
        phases["grid"] += b - a
        phases["mc"] += c - b
        phases["lbs"] += d - c
        snarf_vertices.append(n)
        if not np.all(np.isfinite(out)):
            raise RuntimeError(f"SNARF forward LBS gave non-finite vertices for pose {k}")
    t6 = time.perf_counter()
    scale = num_poses / timed
    snarf_total = (t6 - t5) * scale
    load_end = _load_average()

    if args.figure:
        from jaxpose.render.figures import save_mesh_grid_png

        colours = (vertices - vertices.min(0)) / np.maximum(vertices.max(0) - vertices.min(0), 1e-9)
        picks = np.unique(np.linspace(0, num_poses - 1, 4).astype(int))
        meshes = [(vertices, faces, "canonical (extracted once)", colours)]
        meshes += [(posed[k], faces, f"pose {k}", colours) for k in picks]
        save_mesh_grid_png(args.figure, meshes, views=("front",), size=256)

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
        "jax": f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind})",
        "load_start": load_start, "load_end": load_end,
        "resolution": r, "poses": num_poses, "chunk": args.chunk, "pose_batch": args.pose_batch,
        "vertex_chunk": args.vertex_chunk,
        "ins_source": ins_source, "snarf_source": snarf_source, "trained": ins_trained and snarf_trained,
        "ins_parameters": _parameter_count(ins), "snarf_parameters": _parameter_count(snarf),
        "reference_surface": reference, "data_root": str(data.root), "subject": str(data.subject),
        "bounds": [np.round(np.asarray(b, np.float64), 3).tolist() for b in bounds],
        "compile_s": {"ins_grid": ins_grid_compile, "ins_repose": ins_repose_compile, "snarf_grid": snarf_grid_compile,
                      "snarf_lbs": snarf_lbs_compile},
        "ins_grid_s": t1 - t0, "ins_marching_cubes_s": t2 - t1, "ins_repose_s": t4 - t3, "ins_total_s": ins_total,
        "ins_vertices": int(vertices.shape[0]), "ins_faces": int(faces.shape[0]),
        "snarf_poses_timed": timed, "snarf_extrapolated": timed < num_poses,
        "snarf_measured_s": t6 - t5,
        "snarf_grid_s": phases["grid"] * scale, "snarf_marching_cubes_s": phases["mc"] * scale,
        "snarf_lbs_s": phases["lbs"] * scale, "snarf_total_s": snarf_total,
        "snarf_mean_vertices": float(np.mean(snarf_vertices)), "snarf_min_vertices": int(np.min(snarf_vertices)),
        "snarf_max_vertices": int(np.max(snarf_vertices)),
        "speedup": snarf_total / ins_total,
    }


def to_markdown(result: dict, command: str) -> str:
    p, timed = result["poses"], result["snarf_poses_timed"]
    extrapolated = result["snarf_extrapolated"]
    mark = "*" if extrapolated else ""
    compile_s = result["compile_s"]
    weights = ("trained checkpoints" if result["trained"] else
               "**UNTRAINED weights** (random initialisation: the timing reflects the network sizes, not a trained model)")
    lines = [
        f"### Reposing: extract once (INS) vs. extract per pose (SNARF), {p} poses at {result['resolution']}³",
        "",
        f"- Command: `{command}`",
        f"- Date: {result['date']}; machine: {result['machine']}; {result['jax']}",
        f"- Load average (1/5/15 min) at start {result['load_start']}, at end {result['load_end']}",
        f"- Weights: {weights}.",
        f"- INS model: {result['ins_source']} ({result['ins_parameters']:,} parameters); "
        f"SNARF model: {result['snarf_source']} ({result['snarf_parameters']:,} parameters)",
    ]
    if result["reference_surface"]:
        lines.append(
            f"- Surface: both grid functions = network logits + {REFERENCE_SCALE:g}/m · ({REFERENCE_RADIUS} m − distance to the "
            "star-pose skeleton) (capsules around the bones; precomputed once on the grid, untimed, one add per point in "
            "each grid evaluation), so that the untrained models extract a body-sized mesh; the networks are evaluated "
            "in full at every grid point.")
    lines += [
        f"- Subject {result['subject']} (body from {result['data_root']}); poses: held-out motions kick / walkB / randomC.",
        f"- Grid {result['resolution']}³ over {result['bounds']} (star-pose body ± {PADDING_M} m), chunks of "
        f"{result['chunk']:,} points (one compiled `lax.map`, same for both); INS reposing: one compiled call for all "
        f"{p} poses (batches of ≤ {result['pose_batch']} poses × chunks of ≤ {result['vertex_chunk']} vertices), the "
        f"(P, V, 3) result copied to the host; SNARF LBS in compiled chunks of {VERTEX_BUCKET} vertices.",
        f"- Compilation excluded (ahead of time): INS grid {compile_s['ins_grid']:.1f} s, INS repose "
        f"{compile_s['ins_repose']:.1f} s, SNARF grid {compile_s['snarf_grid']:.1f} s, SNARF LBS {compile_s['snarf_lbs']:.1f} s.",
    ]
    if extrapolated:
        lines.append(
            f"- **SNARF extrapolated**: timed on the first {timed} of {p} poses ({result['snarf_measured_s']:.2f} s measured); "
            f"its totals below (marked *) are the {timed}-pose mean × {p} (every pose does the same work: one grid "
            "query, marching cubes, forward LBS).")
    lines += [
        "",
        f"| method | grid queries | marching cubes | reposing / LBS | total ({p} poses) | per pose |",
        "|---|---|---|---|---|---|",
        f"| INS, extract once ({result['ins_vertices']:,} vertices, {result['ins_faces']:,} faces) | "
        f"{result['ins_grid_s']:.2f} s (once) | {result['ins_marching_cubes_s']:.2f} s (once) | {result['ins_repose_s']:.2f} s | "
        f"**{result['ins_total_s']:.2f} s** | {result['ins_total_s'] / p * 1e3:.1f} ms |",
        f"| SNARF, extract per pose (mean {result['snarf_mean_vertices']:,.0f} vertices, {result['snarf_min_vertices']:,}–"
        f"{result['snarf_max_vertices']:,}){f' — extrapolated from {timed} of {p} poses' if extrapolated else ''} | "
        f"{result['snarf_grid_s']:.2f} s{mark} | {result['snarf_marching_cubes_s']:.2f} s{mark} | {result['snarf_lbs_s']:.2f} s{mark} | "
        f"**{result['snarf_total_s']:.2f} s{mark}** | {result['snarf_total_s'] / p * 1e3:.1f} ms{mark} |",
        "",
        f"Speed-up of extract-once (SNARF total / INS total): **{result['speedup']:.1f}×**"
        + (f" (SNARF extrapolated from {timed} of {p} poses)." if extrapolated else "."),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--ins_checkpoint", help="trained `ins` workdir")
    parser.add_argument("--snarf_checkpoint", help="trained `snarf` workdir")
    parser.add_argument("--ins_config", help=f"random INS weights at this config's sizes (default {DEFAULT_CONFIGS['ins']})")
    parser.add_argument("--snarf_config", help=f"random SNARF weights at this config's sizes (default {DEFAULT_CONFIGS['snarf']})")
    parser.add_argument("--untrained_surface", choices=("reference", "network"), default="reference",
                        help="untrained models: add the skeleton-capsule reference term to the logits (default) or not")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed of untrained models")
    parser.add_argument("--data_root", help="dataset root for the subject's body (default: the INS config's data.root; "
                        "generated with one frame per motion if missing)")
    parser.add_argument("--subject", help="subject of the dataset whose body and poses are used (default: the INS config's)")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--poses", type=int, default=125)
    parser.add_argument("--snarf_poses_timed", type=int, default=None, metavar="N",
                        help="time SNARF on the first N poses and extrapolate to all (default: all poses)")
    parser.add_argument("--chunk", type=int, default=65_536, help="grid points per step of both grid evaluations")
    parser.add_argument("--pose_batch", type=int, default=POSE_BATCH, help="poses vmapped together in INS reposing")
    parser.add_argument("--vertex_chunk", type=int, default=VERTEX_CHUNK, help="vertices per step of INS reposing")
    parser.add_argument("--figure", help="PNG of the canonical mesh and reposed copies (correspondence colours)")
    parser.add_argument("--out", help="append the Markdown report to this file")
    parser.add_argument("--json", help="write the measurements (and the command) to this JSON file")
    args = parser.parse_args(argv)
    if args.resolution < 2 or args.poses < 1 or (args.snarf_poses_timed is not None and args.snarf_poses_timed < 1):
        parser.error("--resolution must be >= 2, --poses and --snarf_poses_timed >= 1")
    result = run(args)
    command = "python -m benchmarks.reposing " + " ".join(argv if argv is not None else sys.argv[1:])
    text = to_markdown(result, command)
    print(text)
    from jaxpose.io.atomic import atomic_write_text

    if args.out:
        path = pathlib.Path(args.out)
        atomic_write_text(path, (path.read_text() if path.is_file() else "") + text + "\n")
    if args.json:
        atomic_write_text(pathlib.Path(args.json), json.dumps({**result, "command": command}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
