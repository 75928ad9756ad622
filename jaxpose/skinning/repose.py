"""`jaxpose repose`: extract a trained INS model's canonical mesh ONCE and repose it to many poses.

    jaxpose repose --checkpoint RUN_DIR --poses POSES.npy --out OUT_DIR [--resolution 128] [--step N]

1. The checkpoint (an `ins` training workdir or its checkpoints/ directory) is restored with the config
   saved beside it; the subject's minimal body (for the bone transforms) comes from that config's
   `data.root` / `data.subject`.
2. POSES: .npy holding (P, 24, 3) axis-angle radians (SMPL joint order), or .npz with that array under
   "poses" (or as its only array). Non-finite values, other shapes and missing files are errors.
3. The pose-independent canonical occupancy is meshed once by marching cubes on a resolution³ grid over
   the subject's star-pose bounding box (padded by `PADDING_M`), largest component kept.
4. Its vertices are moved to every pose by `INS.repose` (H_c⁻¹ → forward LBS → H_d⁻¹; jit + vmap over
   poses), so every output shares the canonical mesh's faces and vertex order (correspondences).

Writes OUT_DIR/canonical.obj and OUT_DIR/pose_000.obj, pose_001.obj, ... (atomically).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpose.bodies.canonical import rectified_bone_transforms, star_pose
from jaxpose.bodies.model import forward
from jaxpose.io.mesh import save_mesh
from jaxpose.skinning.cape import CapeDataset
from jaxpose.skinning.extraction import extract_mesh
from jaxpose.training import evaluation
from jaxpose.training.checkpoint import CheckpointError
from jaxpose.training.sharding import make_mesh
from jaxpose.training.state import merge_model

PADDING_M = 0.15
NUM_JOINTS = 24


def load_poses(path: str | pathlib.Path) -> np.ndarray:
    """Poses (P, 24, 3) float32 from a .npy or .npz file; clear errors for anything else."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"poses file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npy/.npz file ({error})") from error
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = loaded.files
            if "poses" in names:
                poses = loaded["poses"]
            elif len(names) == 1:
                poses = loaded[names[0]]
            else:
                raise ValueError(f"{path}: .npz must hold an array named 'poses' (or exactly one array), found {names}")
    else:
        poses = loaded
    poses = np.asarray(poses)
    if poses.ndim != 3 or poses.shape[1:] != (NUM_JOINTS, 3) or poses.shape[0] == 0:
        raise ValueError(f"{path}: poses must have shape (P, {NUM_JOINTS}, 3) axis-angle with P >= 1, got {poses.shape}")
    if not np.issubdtype(poses.dtype, np.number):
        raise ValueError(f"{path}: poses must be numeric, got dtype {poses.dtype}")
    bad = ~np.isfinite(poses)
    if bad.any():
        frames = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"{path}: poses hold non-finite values (pose indices {frames[:10].tolist()})")
    return poses.astype(np.float32)


def load_ins(checkpoint: str | pathlib.Path, step: int | None = None):
    """(INS module, its config) restored from an `ins` checkpoint."""
    loaded = evaluation.load_checkpoint(checkpoint, make_mesh(jax.devices()[:1]), step)
    if loaded.task.name != "ins":
        raise ValueError(f"{checkpoint} was trained for task {loaded.task.name!r}; jaxpose repose needs an 'ins' checkpoint")
    return merge_model(loaded.graphdef, loaded.state.params, loaded.state.model_state), loaded.config


def canonical_bounds(canonical_vertices: np.ndarray, padding: float = PADDING_M) -> tuple[np.ndarray, np.ndarray]:
    """Grid box around the star-pose body (V, 3), padded by `padding` metres (loose clothing)."""
    return canonical_vertices.min(0) - padding, canonical_vertices.max(0) + padding


def subject_body(data):
    """The subject's minimal body (`BodyModel`) and its star-pose vertices (V, 3), from a `data` config."""
    body = CapeDataset(data.root).subject(str(data.subject)).body_model()
    star = forward(body, jnp.zeros((body.num_betas,), jnp.float32), jnp.asarray(star_pose(body.num_joints)))
    return body, np.asarray(star.vertices, np.float32)


def repose_all(model, canonical_vertices, bone_transforms):
    """`model.repose` of canonical vertices (V, 3) to every pose of bone_transforms (P, 24, 4, 4): (P, V, 3)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, vertices, transforms):
        module = nnx.merge(graphdef, state)
        return jax.vmap(module.repose, in_axes=(None, 0))(vertices, transforms)

    return run(state, canonical_vertices, bone_transforms)


def main(argv: list[str], prog: str = "jaxpose repose") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="an `ins` training workdir")
    parser.add_argument("--poses", required=True, metavar="FILE", help=".npy/.npz of (P, 24, 3) axis-angle poses")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory for pose_XXX.obj")
    parser.add_argument("--resolution", type=int, default=128, help="marching-cubes grid resolution (default 128)")
    parser.add_argument("--step", type=int, help="checkpoint step (default: latest)")
    args = parser.parse_args(argv)
    if args.resolution < 2:
        parser.error(f"--resolution must be >= 2, got {args.resolution}")
    try:
        poses = load_poses(args.poses)
        model, config = load_ins(args.checkpoint, args.step)
        body, star_vertices = subject_body(config.data)
        start = time.perf_counter()
        vertices, faces = extract_mesh(model.canonical_occupancy, canonical_bounds(star_vertices), args.resolution)
        extracted = time.perf_counter()
        transforms = rectified_bone_transforms(body, jnp.zeros((body.num_betas,), jnp.float32), jnp.asarray(poses),
                                               jnp.asarray(star_pose(body.num_joints)))
        posed = np.asarray(repose_all(model, jnp.asarray(vertices), transforms))
        reposed = time.perf_counter()
        if not np.all(np.isfinite(posed)):
            raise ValueError("reposing produced non-finite vertices (is the checkpoint diverged?)")
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_mesh(out / "canonical.obj", vertices, faces)
        for index, frame in enumerate(posed):
            save_mesh(out / f"pose_{index:03d}.obj", frame, faces)
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    print(f"canonical mesh: {vertices.shape[0]} vertices, {faces.shape[0]} faces at {args.resolution}^3 "
          f"({extracted - start:.2f} s); reposed to {len(poses)} poses in {reposed - extracted:.2f} s; wrote {out}")
    return 0


__all__ = ["canonical_bounds", "load_ins", "load_poses", "main", "repose_all", "subject_body"]
