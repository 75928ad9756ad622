"""`jaxpose transfer`: put the identity mesh A into the pose of mesh B with a trained checkpoint.

    jaxpose transfer --identity A.obj --pose B.obj --checkpoint RUN_DIR --out C.obj \
        [--step N] [--matching NAME --block_size N] [--permutation_seed S]

Works with any pose-transfer checkpoint (3D-CoreNet or NPT; the checkpoint's saved config names the
task) and meshes of any vertex counts (N_A ≠ N_B is fine). Steps:

1. Both meshes are loaded (`load_mesh`: bad files raise `MeshError`) and centred on their own
   bounding-box centres, as in training (docs/pose_transfer.md, "Task and conventions"; no scale normalisation).
2. Scale check: the models output absolute coordinates bounded by 2·tanh, i.e. inside (−2, 2) mesh
   units around the bbox centre, and were trained on metre-scale bodies. A mesh reaching
   `MAX_HALF_EXTENT` = 2 units from its bbox centre cannot be reproduced (e.g. a body in
   centimetres or millimetres) and is rejected with a message saying so.
3. Both meshes are shuffled with fixed permutations (from `--permutation_seed`), as in training and
   in the test protocol, since the official 3D-CoreNet `fc` layer (kernel 3 along the vertex axis)
   saw only randomly ordered vertices; the output is un-shuffled afterwards.
4. Output C: A's vertex count, A's vertex order and A's faces; its vertices are the model output
   re-centred on its own bbox (as the test protocol does before scoring) and then translated by A's
   bbox centre, so C's bounding box is centred where A's was.

`--matching NAME` (3D-CoreNet only) overrides the checkpoint's matching, NAME one of
`jaxpose.matching.MATCHING_NAMES` (parsed by `jaxpose.matching.matching_from_name`). `--matching online
--block_size N` streams the N_A × N_B matching in row blocks, so large meshes fit in memory; the result
equals dense matching up to float rounding.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.geometry.bbox import center_on_bbox
from jaxpose.io.mesh import MeshError, load_mesh, save_mesh
from jaxpose.matching import MATCHING_NAMES, matching_from_name
from jaxpose.pose_transfer.evaluation import POSE_TRANSFER_TASKS
from jaxpose.pose_transfer.protocol import permutation_keys, permuted_forward
from jaxpose.training import evaluation
from jaxpose.training.registry import build_task
from jaxpose.training.checkpoint import CheckpointError
from jaxpose.training.sharding import make_mesh
from jaxpose.training.state import merge_model, model_graphdef

MAX_HALF_EXTENT = 2.0
"""Mesh units: the 2·tanh output bound of both models; metre-scale bodies have half-extents ≈ 0.9."""


def check_metre_scale(vertices, name: str) -> None:
    """Raise ValueError if `vertices` (V, 3) reach MAX_HALF_EXTENT from their bbox centre."""
    half_extent = 0.5 * float(np.max(vertices.max(axis=0) - vertices.min(axis=0)))
    if half_extent >= MAX_HALF_EXTENT:
        raise ValueError(
            f"{name} extends {half_extent:.4g} units from its bounding-box centre; the models output coordinates "
            f"in (−{MAX_HALF_EXTENT:g}, {MAX_HALF_EXTENT:g}) (2·tanh) and expect metre-scale meshes (a body is "
            "≈1.7 units tall). Rescale it to metres (e.g. divide millimetres by 1000, centimetres by 100)"
        )


def load_model(checkpoint: str, step: int | None = None, matching: str | None = None, block_size: int | None = None):
    """(task name, model in eval mode) from a pose-transfer checkpoint, with optional matching overrides.

    `matching` is one of `MATCHING_NAMES`; it and `block_size` override the checkpoint config's
    `model.matching_mode` / `model.block_size`, which `matching_from_name` turns into the model's
    matching objects.
    """
    loaded = evaluation.load_checkpoint(checkpoint, make_mesh(jax.devices()[:1]), step)
    task, config = loaded.task, loaded.config
    if task.name not in POSE_TRANSFER_TASKS:
        raise ValueError(f"checkpoint {checkpoint} is for task {task.name!r}, not a pose-transfer task {POSE_TRANSFER_TASKS}")
    if (matching is not None or block_size is not None) and task.name != "corenet":
        raise ValueError(f"--matching/--block_size apply to 3D-CoreNet checkpoints only; {checkpoint} is {task.name!r}")
    if matching is not None:
        config.model.matching_mode = matching
    if block_size is not None:
        if block_size < 1:
            raise ValueError(f"--block_size must be positive, got {block_size}")
        config.model.block_size = int(block_size)
    if matching is not None or block_size is not None:
        # Fail here, with the names listed, rather than inside the model build.
        matching_from_name(str(config.model.matching_mode), block_size=int(config.model.block_size),
                           num_iterations=int(config.model.num_sinkhorn_iterations))
    graphdef = model_graphdef(build_task(config)) if (matching is not None or block_size is not None) else loaded.graphdef
    model = merge_model(graphdef, loaded.state.params, loaded.state.model_state)
    model.eval()
    return task.name, model, loaded.step


def transfer(model, identity_vertices, pose_vertices, permutation_seed: int = 0):
    """Identity (N, 3) in the pose of (M, 3): (N, 3) float32 in the identity's order, bbox-centred.

    Inputs are centred here; permutations as in the test protocol (`permuted_forward`).
    """
    batch = {
        "identity": center_on_bbox(jnp.asarray(identity_vertices, jnp.float32))[None],
        "pose": center_on_bbox(jnp.asarray(pose_vertices, jnp.float32))[None],
        "permutation_key": jnp.asarray(permutation_keys(permutation_seed, 1)),
    }
    output = jax.jit(lambda b: permuted_forward(model, b).output)(batch)
    return np.asarray(output[0])


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n", 1)[0].split(": ", 1)[-1])
    parser.add_argument("--identity", required=True, metavar="A", help="identity mesh (.obj/.ply), metres")
    parser.add_argument("--pose", required=True, metavar="B", help="pose mesh (.obj/.ply), metres; any vertex count")
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="corenet or npt training workdir")
    parser.add_argument("--out", required=True, metavar="C", help="output mesh (.obj/.ply): A's vertices order and faces")
    parser.add_argument("--step", type=int, help="checkpoint step (default: latest)")
    parser.add_argument("--matching", choices=MATCHING_NAMES,
                        help="3D-CoreNet matching override (see jaxpose.matching.matching_from_name)")
    parser.add_argument("--block_size", type=int, help="row block of online matching")
    parser.add_argument("--permutation_seed", type=int, default=0, help="seed of the input vertex shuffles")
    return parser


def main(argv: list[str] | None = None, prog: str = "jaxpose transfer") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        identity = load_mesh(args.identity)
        pose = load_mesh(args.pose)
        check_metre_scale(identity.vertices, f"identity mesh {args.identity}")
        check_metre_scale(pose.vertices, f"pose mesh {args.pose}")
        task_name, model, step = load_model(args.checkpoint, args.step, args.matching, args.block_size)
        start = time.perf_counter()
        output = transfer(model, identity.vertices, pose.vertices, args.permutation_seed)
        seconds = time.perf_counter() - start
        output = output.astype(np.float64)
        output -= 0.5 * (output.max(axis=0) + output.min(axis=0))  # re-centre on its own bbox (test protocol)
        centre = 0.5 * (identity.vertices.max(axis=0) + identity.vertices.min(axis=0)).astype(np.float64)
        save_mesh(args.out, output + centre[None], identity.faces)
    except (MeshError, ValueError, KeyError, FileNotFoundError, CheckpointError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    print(
        f"{task_name}@{step}: identity {len(identity.vertices)} vertices, pose {len(pose.vertices)} vertices -> "
        f"{args.out} ({len(identity.vertices)} vertices, {len(identity.faces)} faces; {seconds:.2f} s incl. compile)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
