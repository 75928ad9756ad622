"""Reposing benchmark (INS Fig. 5 set-up): extract once + repose vs. extract per pose, 125 poses at 128³.

* INS (extract once): marching cubes of the pose-independent canonical occupancy on a 128³ grid, then
  `INS.repose` of its vertices to all poses (H_c⁻¹ → forward LBS → H_d⁻¹), jit + vmap over poses in
  batches of `--pose_batch`.
* SNARF (extract per pose): for each pose, the pose-conditioned canonical occupancy on the 128³ grid,
  marching cubes, then forward LBS of that mesh's vertices with SNARF's skinning field (vertex count
  padded to a multiple of 4096 so one compilation serves every pose).

Both grids are evaluated by one jitted function in chunks (`jaxpose.skinning.extraction`), compiled
before timing (a warm-up pose), so the times are steady-state wall clock on this machine. Models come
from `--ins_checkpoint` / `--snarf_checkpoint` (training workdirs) or are freshly initialised with the
small configs' widths; the grid box is the subject's star-pose bounding box padded by 0.15 m.
Poses: the held-out motions kick / walkB / randomC of the synthetic clothed subject (42 frames each,
first 125). `--figure PNG` also renders the canonical mesh coloured by canonical position and a few
of its reposed copies (correspondences: the same vertex keeps its colour).

    python -m benchmarks.reposing --ins_checkpoint runs/ins_small --snarf_checkpoint runs/snarf_small \
        --out /work/notes/ins_benchmarks_run.md --figure /work/notes/ins_correspondence.png
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpose.bodies import rectified_bone_transforms, star_pose
from jaxpose.skinning import extraction
from jaxpose.skinning.field import lbs_points
from jaxpose.skinning.repose import PADDING_M, canonical_bounds

VERTEX_BUCKET = 4096


def _model(task_name: str, checkpoint: str | None, config_path: str):
    from jaxpose.training import evaluation
    from jaxpose.training.config import load_config
    from jaxpose.training.registry import build_task
    from jaxpose.training.sharding import make_mesh
    from jaxpose.training.state import merge_model

    if checkpoint:
        loaded = evaluation.load_checkpoint(checkpoint, make_mesh(jax.devices()[:1]))
        if loaded.task.name != task_name:
            raise ValueError(f"{checkpoint} is a {loaded.task.name!r} checkpoint, not {task_name!r}")
        return merge_model(loaded.graphdef, loaded.state.params, loaded.state.model_state), loaded.config, f"{checkpoint}@{loaded.step}"
    config = load_config(config_path)
    return build_task(config).make_model(nnx.Rngs(0)), config, f"fresh init ({config_path})"


def benchmark_poses(num_poses: int, subject: str = "synth01") -> np.ndarray:
    from jaxpose.skinning.clothed import TEST_MOTIONS, motion_poses

    per = -(-num_poses // len(TEST_MOTIONS))
    poses = np.concatenate([motion_poses(m, per, 0, subject)[0] for m in TEST_MOTIONS])
    return poses[:num_poses]


def _grid_fn(occupancy_fn, chunk):
    return jax.jit(lambda points, *args: extraction.evaluate_on_grid(lambda p: occupancy_fn(p, *args), points, chunk))


def run(args) -> dict:
    from jaxpose.skinning.repose import subject_body

    ins, ins_config, ins_source = _model("ins", args.ins_checkpoint, "configs/ins_small.py")
    snarf, _, snarf_source = _model("snarf", args.snarf_checkpoint, "configs/snarf_small.py")
    from jaxpose.skinning.data import ensure_dataset

    ensure_dataset(ins_config.data)
    body, star_vertices = subject_body(ins_config.data)
    bounds = canonical_bounds(star_vertices)
    r = args.resolution
    points = jnp.asarray(extraction.grid_points(bounds, r))
    poses = benchmark_poses(args.poses)
    transforms = rectified_bone_transforms(body, jnp.zeros((body.num_betas,), jnp.float32), jnp.asarray(poses),
                                           jnp.asarray(star_pose(body.num_joints)))
    transforms.block_until_ready()

    # --- INS: extract once, repose all -------------------------------------------------------------
    ins_grid = _grid_fn(lambda p: ins.canonical_occupancy(p), args.chunk)
    ins_grid(points).block_until_ready()  # compile
    t0 = time.perf_counter()
    values = np.asarray(ins_grid(points)).reshape(r, r, r)
    t1 = time.perf_counter()
    vertices, faces = extraction.marching_cubes_mesh(values, bounds)
    vertices, faces = extraction.largest_component(vertices, faces)
    t2 = time.perf_counter()
    batch = args.pose_batch
    padded = -(-len(poses) // batch) * batch
    stacked = jnp.concatenate([transforms, jnp.broadcast_to(transforms[:1], (padded - len(poses), *transforms.shape[1:]))])
    graphdef, state = nnx.split(ins)

    @jax.jit
    def repose_batches(state, verts, tr):
        module = nnx.merge(graphdef, state)
        return jax.lax.map(lambda t: jax.vmap(module.repose, in_axes=(None, 0))(verts, t), tr.reshape(-1, batch, *tr.shape[1:]))

    verts_j = jnp.asarray(vertices)
    repose_batches(state, verts_j, stacked).block_until_ready()  # compile
    t3 = time.perf_counter()
    posed = repose_batches(state, verts_j, stacked).reshape(padded, -1, 3)[: len(poses)]
    posed.block_until_ready()
    t4 = time.perf_counter()
    ins_total = (t1 - t0) + (t2 - t1) + (t4 - t3)

    # --- SNARF: extract per pose ---------------------------------------------------------------------
    snarf_grid = _grid_fn(lambda p, pose: snarf.canonical_logits(p, pose), args.chunk)
    skin_graph, skin_state = nnx.split(snarf.skinning)

    @jax.jit
    def forward_lbs(skin_state, verts, tr):
        field = nnx.merge(skin_graph, skin_state)
        return lbs_points(verts, field(verts), tr)

    def snarf_pose(k):
        grid = np.asarray(snarf_grid(points, jnp.asarray(poses[k]))).reshape(r, r, r)
        a = time.perf_counter()
        v, f = extraction.marching_cubes_mesh(grid, bounds)
        v, f = extraction.largest_component(v, f)
        mc = time.perf_counter() - a
        n = v.shape[0]
        pad = -(-n // VERTEX_BUCKET) * VERTEX_BUCKET
        vp = np.concatenate([v, np.repeat(v[:1], pad - n, axis=0)])
        out = np.asarray(forward_lbs(skin_state, jnp.asarray(vp), transforms[k]))[:n]
        return out, f, mc

    snarf_pose(0)  # compile (and a warm-up for each vertex bucket size met later is counted: realistic)
    snarf_mc, snarf_vertices = 0.0, []
    t5 = time.perf_counter()
    for k in range(len(poses)):
        out, f, mc = snarf_pose(k)
        snarf_mc += mc
        snarf_vertices.append(out.shape[0])
    t6 = time.perf_counter()
    snarf_total = t6 - t5

    if args.figure:
        from jaxpose.render.figures import save_mesh_grid_png

        colours = (vertices - vertices.min(0)) / np.maximum(vertices.max(0) - vertices.min(0), 1e-9)
        picks = np.linspace(0, len(poses) - 1, 4).astype(int)
        meshes = [(vertices, faces, "canonical (extracted once)", colours)]
        meshes += [(np.asarray(posed[k]), faces, f"pose {k}", colours) for k in picks]
        save_mesh_grid_png(args.figure, meshes, views=("front",), size=256)

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, jax {jax.__version__} "
                   f"on {jax.devices()[0].platform}",
        "resolution": r, "poses": len(poses), "chunk": args.chunk, "pose_batch": batch,
        "ins_source": ins_source, "snarf_source": snarf_source, "bounds": [np.round(b, 3).tolist() for b in bounds],
        "ins_grid_s": t1 - t0, "ins_marching_cubes_s": t2 - t1, "ins_repose_s": t4 - t3, "ins_total_s": ins_total,
        "ins_vertices": int(vertices.shape[0]), "ins_faces": int(faces.shape[0]),
        "snarf_total_s": snarf_total, "snarf_marching_cubes_s": snarf_mc,
        "snarf_mean_vertices": float(np.mean(snarf_vertices)), "speedup": snarf_total / ins_total,
    }


def to_markdown(result: dict, command: str) -> str:
    lines = [
        f"### Reposing: extract once (INS) vs. extract per pose (SNARF), {result['poses']} poses at {result['resolution']}³",
        "",
        f"- Command: `{command}`",
        f"- Date: {result['date']}; machine: {result['machine']}",
        f"- INS model: {result['ins_source']}; SNARF model: {result['snarf_source']}",
        f"- Grid box {result['bounds']} (star-pose body ± {PADDING_M} m), grid chunks of {result['chunk']} points, "
        f"INS reposing vmapped over batches of {result['pose_batch']} poses; compile time excluded (warm-up first).",
        "",
        "| method | grid queries | marching cubes | reposing / LBS | total | per pose |",
        "|---|---|---|---|---|---|",
        f"| INS (extract once, {result['ins_vertices']} vertices) | {result['ins_grid_s']:.2f} s | "
        f"{result['ins_marching_cubes_s']:.2f} s | {result['ins_repose_s']:.2f} s | {result['ins_total_s']:.2f} s | "
        f"{result['ins_total_s'] / result['poses'] * 1e3:.1f} ms |",
        f"| SNARF (extract per pose, mean {result['snarf_mean_vertices']:.0f} vertices) | (in total) | "
        f"{result['snarf_marching_cubes_s']:.2f} s | (in total) | {result['snarf_total_s']:.2f} s | "
        f"{result['snarf_total_s'] / result['poses'] * 1e3:.1f} ms |",
        "",
        f"Speed-up of extract-once: **{result['speedup']:.1f}×**.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--ins_checkpoint")
    parser.add_argument("--snarf_checkpoint")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--poses", type=int, default=125)
    parser.add_argument("--chunk", type=int, default=65_536)
    parser.add_argument("--pose_batch", type=int, default=25)
    parser.add_argument("--figure", help="PNG of the canonical mesh and reposed copies (correspondence colours)")
    parser.add_argument("--out", help="append the Markdown table to this file")
    args = parser.parse_args(argv)
    result = run(args)
    text = to_markdown(result, "python -m benchmarks.reposing " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(text)
    if args.out:
        from jaxpose.io.atomic import atomic_write_text

        path = pathlib.Path(args.out)
        atomic_write_text(path, (path.read_text() if path.is_file() else "") + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
