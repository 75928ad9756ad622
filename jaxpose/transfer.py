"""`jaxpose transfer`: put the identity mesh A into the pose of mesh B with a trained checkpoint.

    jaxpose transfer --identity A.obj --pose B.obj --checkpoint RUN_DIR --out C.obj \
        [--step N] [--matching dense|online --block_size N] [--permutation_seed S]

Works with any pose-transfer checkpoint (3D-CoreNet or NPT; the checkpoint's saved config names the
task) and meshes of any vertex counts (N_A ≠ N_B is fine). Steps:

1. Both meshes are loaded (`load_mesh`: bad files raise `MeshError`) and centred on their own
   bounding-box centres, as in training (corenet.md §1; no scale normalisation).
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

`--matching online --block_size N` (3D-CoreNet only) streams the N_A × N_B matching in row blocks, so
large meshes fit in memory; the result equals dense matching up to float rounding.
"""

from __future__ import annotations

import argparse
import sys
import time

MAX_HALF_EXTENT = 2.0
"""Mesh units: the 2·tanh output bound of both models; metre-scale bodies have half-extents ≈ 0.9."""


def check_metre_scale(vertices, name: str) -> None:
    """Raise ValueError if `vertices` (V, 3) reach MAX_HALF_EXTENT from their bbox centre."""
    import numpy as np

    half_extent = 0.5 * float(np.max(vertices.max(axis=0) - vertices.min(axis=0)))
    if half_extent >= MAX_HALF_EXTENT:
        raise ValueError(
            f"{name} extends {half_extent:.4g} units from its bounding-box centre; the models output coordinates "
            f"in (−{MAX_HALF_EXTENT:g}, {MAX_HALF_EXTENT:g}) (2·tanh) and expect metre-scale meshes (a body is "
            "≈1.7 units tall). Rescale it to metres (e.g. divide millimetres by 1000, centimetres by 100)"
        )


def load_model(checkpoint: str, step: int | None = None, matching: str | None = None, block_size: int | None = None):
    """(task name, model in eval mode) from a pose-transfer checkpoint, with optional matching overrides."""
    from jaxpose.tasks.pose_transfer import _checkpoint_task
    from jaxpose.training import evaluation
    from jaxpose.training.sharding import make_mesh
    from jaxpose.training.state import merge_model, model_graphdef

    task, config = _checkpoint_task(checkpoint, step)
    if (matching is not None or block_size is not None) and task.name != "corenet":
        raise ValueError(f"--matching/--block_size apply to 3D-CoreNet checkpoints only; {checkpoint} is {task.name!r}")
    import jax

    loaded = evaluation.load_checkpoint(task, checkpoint, make_mesh(jax.devices()[:1]), step)
    config = loaded.config
    if matching is not None:
        config.model.matching_mode = matching
    if block_size is not None:
        if block_size < 1:
            raise ValueError(f"--block_size must be positive, got {block_size}")
        config.model.block_size = int(block_size)
    model = merge_model(model_graphdef(task, config), loaded.state.params, loaded.state.model_state)
    model.eval()
    return task.name, model, loaded.step


def transfer(model, identity_vertices, pose_vertices, permutation_seed: int = 0):
    """Identity (N, 3) in the pose of (M, 3): (N, 3) float32 in the identity's order, bbox-centred.

    Inputs are centred here; permutations as in the test protocol (`permuted_forward`).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxpose.geometry.bbox import center_on_bbox
    from jaxpose.tasks.pose_transfer import permutation_keys, permuted_forward

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
    parser.add_argument("--matching", choices=("dense", "online"), help="3D-CoreNet matching mode override")
    parser.add_argument("--block_size", type=int, help="row block of online matching")
    parser.add_argument("--permutation_seed", type=int, default=0, help="seed of the input vertex shuffles")
    return parser


def main(argv: list[str] | None = None, prog: str = "jaxpose transfer") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        import numpy as np

        from jaxpose.io.mesh import MeshError, load_mesh, save_mesh
        from jaxpose.training.checkpoint import CheckpointError

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
