"""`jaxpose repose` / `jaxpose.repose`: extract a trained INS model's canonical mesh ONCE, repose it to many poses.

    jaxpose repose --checkpoint RUN_DIR --poses POSES.npy --out OUT_DIR [--resolution 128] [--step N]

    import jaxpose
    canonical, posed = jaxpose.repose("runs/ins", "poses.npy", resolution=128)   # trimesh, [trimesh, ...]

1. The checkpoint (an `ins` training workdir or its checkpoints/ directory) is restored with the config
   saved beside it; the subject's minimal body (for the bone transforms) comes from that config's
   `data.root` / `data.subject`.
2. POSES: .npy holding (P, 24, 3) axis-angle radians (SMPL joint order), or .npz with that array under
   "poses" (or as its only array), or (Python) such an array. Non-finite values, other shapes, missing
   files and pickled files are errors.
3. The pose-independent canonical occupancy is meshed once by marching cubes on a resolution³ grid over
   the subject's star-pose bounding box (padded by `PADDING_M`), largest component kept. The grid is
   evaluated in chunks of `GRID_CHUNK` points, one compiled call each, under a progress bar.
4. Its vertices are moved to every pose by `INS.repose` (H_c⁻¹ → forward LBS → H_d⁻¹), so every output
   shares the canonical mesh's faces and vertex order (correspondences). `make_reposer` compiles one
   function for a whole block of poses: a `lax.map` over batches of ≤ `POSE_BATCH` poses, inside it a
   `lax.map` over chunks of ≤ `VERTEX_CHUNK` vertices, `INS.repose` vmapped over the batch's poses.
   The working set (batch × chunk points per layer, a few MB) stays in cache on a CPU, where one vmap
   over all vertices × 25 poses streamed ~200 MB per layer through memory (1.4–1.6× more CPU time for
   32,769 vertices × 25–50 poses on the 2-core benchmark VM); pose-free work (H_c⁻¹'s first coupling
   layer's spatial embedding, which sees only canonical coordinates) is shared by a batch's poses.
   The CLI dispatches blocks of `POSE_CHUNK` poses asynchronously (a progress bar over poses).

The CLI writes OUT_DIR/canonical.obj and OUT_DIR/pose_000.obj, pose_001.obj, ... (atomically); status
lines and bars go to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from jaxpose.bodies.canonical import rectified_bone_transforms, star_pose
from jaxpose.bodies.model import forward
from jaxpose.io.arrays import ArrayFileError, load_npy, open_npz
from jaxpose.io.mesh import save_mesh
from jaxpose.skinning.cape import CapeDataset
from jaxpose.skinning.extraction import grid_points, largest_component, marching_cubes_mesh
from jaxpose.training import evaluation
from jaxpose.training.checkpoint import CheckpointError
from jaxpose.training.sharding import make_mesh
from jaxpose.training.state import merge_model

PADDING_M = 0.15
NUM_JOINTS = 24
GRID_CHUNK = 65_536
"""Grid points per compiled occupancy call (as `extraction.extract_mesh`'s default chunk)."""
POSE_CHUNK = 25
"""Poses per compiled repose call of the CLI (the progress bar's step; the last call is padded)."""
POSE_BATCH = 25
"""At most this many poses vmapped together inside a compiled repose call (`make_reposer`)."""
VERTEX_CHUNK = 256
"""At most this many vertices per step of a compiled repose call (`make_reposer`)."""


def _validate_poses(poses, source: str) -> np.ndarray:
    """Poses (P, 24, 3) float32 from an array; ValueError naming `source` for shape, dtype or NaN/Inf."""
    poses = np.asarray(poses)
    if poses.ndim != 3 or poses.shape[1:] != (NUM_JOINTS, 3) or poses.shape[0] == 0:
        raise ValueError(f"{source}: poses must have shape (P, {NUM_JOINTS}, 3) axis-angle with P >= 1, got {poses.shape}")
    if not np.issubdtype(poses.dtype, np.number):
        raise ValueError(f"{source}: poses must be numeric, got dtype {poses.dtype}")
    bad = ~np.isfinite(poses)
    if bad.any():
        frames = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"{source}: poses hold non-finite values (pose indices {frames[:10].tolist()})")
    return poses.astype(np.float32)


def _is_zip(path: pathlib.Path) -> bool:
    """True if the file starts like a zip archive (an .npz, whatever its name)."""
    with open(path, "rb") as handle:
        return handle.read(2) == b"PK"


def load_poses(path: str | pathlib.Path) -> np.ndarray:
    """Poses (P, 24, 3) float32 from a .npy or .npz file (read without pickles); clear errors for anything else."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"poses file not found: {path}")
    try:
        if _is_zip(path):
            with open_npz(path, what="poses file") as archive:
                names = archive.files
                if "poses" not in names and len(names) != 1:
                    raise ValueError(f"{path}: .npz must hold an array named 'poses' (or exactly one array), found {names}")
                poses = archive["poses" if "poses" in names else names[0]]
        else:
            poses = load_npy(path, what="poses file")
    except ArrayFileError as error:
        raise ValueError(str(error)) from None
    return _validate_poses(poses, str(path))


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


def _bar(total: int, desc: str, unit: str, show: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not show, dynamic_ncols=True, mininterval=0.5)


def extract_canonical(model, bounds, resolution: int, *, show_bar: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Canonical mesh (vertices (V, 3) float32 m, faces (F, 3) int32) of `model.canonical_occupancy` > 0.

    The resolution³ grid over `bounds` is evaluated in `GRID_CHUNK`-point chunks (one compiled function,
    the last chunk padded; all chunks dispatched before the first result is read back), then marching
    cubes and the largest component, as `extraction.extract_mesh`.
    """
    points = grid_points(bounds, resolution)
    chunk = min(GRID_CHUNK, len(points))
    padded = np.concatenate([points, np.broadcast_to(points[:1], ((-len(points)) % chunk, 3))])
    occupancy = jax.jit(model.canonical_occupancy)
    pending = [occupancy(jnp.asarray(padded[start:start + chunk])) for start in range(0, len(padded), chunk)]
    values = []
    with _bar(len(pending), f"canonical occupancy {resolution}^3", "chunk", show_bar) as bar:
        for result in pending:
            values.append(np.asarray(result))
            bar.update()
    grid = np.concatenate(values)[: len(points)].reshape(resolution, resolution, resolution)
    return largest_component(*marching_cubes_mesh(grid, bounds))


class Reposer:
    """One compiled `model.repose` over many poses: `reposer(vertices (V, 3), transforms (P, J, 4, 4))` -> (P, V, 3).

    Inside one jitted call: `lax.map` over batches of at most `pose_batch` poses, within each a `lax.map`
    over chunks of at most `vertex_chunk` vertices, `INS.repose` vmapped over the batch's poses. Batches
    and chunks are balanced (P poses in ⌈P / pose_batch⌉ equal batches, likewise the vertices), the
    remainder padded (vertices by repeating the first, poses by repeating the last) and trimmed from the
    result. The same computation as `INS.repose` per pose (equal up to float rounding of differently
    sized matrix products, ~1e-7 m; tests/test_reposing_benchmark.py checks 1e-6 m). Returns a device array; one compilation per (V, P). The model's parameters are arguments of the
    compiled function (not baked in as constants). `compile(vertices, transforms)` compiles ahead of
    time for those shapes and returns the compiled callable (same signature).
    """

    def __init__(self, model, *, pose_batch: int = POSE_BATCH, vertex_chunk: int = VERTEX_CHUNK):
        if pose_batch < 1 or vertex_chunk < 1:
            raise ValueError(f"pose_batch and vertex_chunk must be positive, got {pose_batch} and {vertex_chunk}")
        self.pose_batch, self.vertex_chunk = int(pose_batch), int(vertex_chunk)
        graphdef, self._state = nnx.split(model)

        def run(state, vertices, transforms):
            module = nnx.merge(graphdef, state)
            count, num_poses = vertices.shape[0], transforms.shape[0]
            chunk = -(-count // -(-count // self.vertex_chunk))  # balanced: the least padding
            batch = -(-num_poses // -(-num_poses // self.pose_batch))
            vertices = jnp.concatenate([vertices, jnp.broadcast_to(vertices[:1], ((-count) % chunk, 3))])
            transforms = jnp.concatenate(
                [transforms, jnp.broadcast_to(transforms[-1:], ((-num_poses) % batch, *transforms.shape[1:]))])
            chunks = vertices.reshape(-1, chunk, 3)

            def pose_block(block):  # (batch, J, 4, 4) -> (batch, V_padded, 3)
                per_chunk = jax.lax.map(lambda v: jax.vmap(module.repose, in_axes=(None, 0))(v, block), chunks)
                return jnp.swapaxes(per_chunk, 0, 1).reshape(batch, -1, 3)

            posed = jax.lax.map(pose_block, transforms.reshape(-1, batch, *transforms.shape[1:]))
            return posed.reshape(-1, vertices.shape[0], 3)[:num_poses, :count]

        self._run = jax.jit(run)

    @staticmethod
    def _inputs(vertices, transforms) -> tuple[jax.Array, jax.Array]:
        vertices, transforms = jnp.asarray(vertices, jnp.float32), jnp.asarray(transforms, jnp.float32)
        if vertices.ndim != 2 or vertices.shape[-1] != 3 or vertices.shape[0] == 0:
            raise ValueError(f"vertices must have shape (V, 3) with V >= 1, got {vertices.shape}")
        if transforms.ndim != 4 or transforms.shape[-2:] != (4, 4) or transforms.shape[0] == 0:
            raise ValueError(f"bone transforms must have shape (P, J, 4, 4) with P >= 1, got {transforms.shape}")
        return vertices, transforms

    def __call__(self, vertices, transforms) -> jax.Array:
        return self._run(self._state, *self._inputs(vertices, transforms))

    def compile(self, vertices, transforms) -> Callable[[jax.Array, jax.Array], jax.Array]:
        compiled = self._run.lower(self._state, *self._inputs(vertices, transforms)).compile()
        return lambda v, t: compiled(self._state, *self._inputs(v, t))


def make_reposer(model, *, pose_batch: int = POSE_BATCH, vertex_chunk: int = VERTEX_CHUNK) -> Reposer:
    """`Reposer(model, ...)`: one compiled `INS.repose` over many poses (see `Reposer`)."""
    return Reposer(model, pose_batch=pose_batch, vertex_chunk=vertex_chunk)


def repose_all(model, canonical_vertices, bone_transforms, *, chunk: int = POSE_CHUNK,
               on_chunk: Callable[[int], None] | None = None) -> np.ndarray:  # fmt: skip
    """`model.repose` of canonical vertices (V, 3) to every pose of bone_transforms (P, 24, 4, 4): (P, V, 3).

    `make_reposer` calls of `chunk` poses each (one compilation; the last call padded), all dispatched
    before the first result is read back; `on_chunk(count)` is called as each call's result arrives,
    with the number of real poses in it.
    """
    reposer = make_reposer(model)
    transforms = np.asarray(bone_transforms, np.float32)
    count = len(transforms)
    size = min(chunk, count)
    padded = np.concatenate([transforms, np.repeat(transforms[-1:], (-count) % size, axis=0)])
    vertices = jnp.asarray(canonical_vertices, jnp.float32)
    pending = [reposer(vertices, jnp.asarray(padded[start:start + size])) for start in range(0, len(padded), size)]
    posed = []
    for start, result in zip(range(0, len(padded), size), pending):
        posed.append(np.asarray(result))
        if on_chunk is not None:
            on_chunk(min(size, count - start))
    return np.concatenate(posed)[:count]


@dataclasses.dataclass(frozen=True)
class Reposed:
    """Canonical mesh (vertices (V, 3) float32 m, faces (F, 3) int32), the posed vertices (P, V, 3) float32
    sharing its faces, and the seconds spent extracting and reposing (compilation included)."""

    canonical_vertices: np.ndarray
    faces: np.ndarray
    posed_vertices: np.ndarray
    extraction_seconds: float
    repose_seconds: float


def run_repose(checkpoint, poses, *, resolution: int = 128, step: int | None = None, progress: bool = True) -> Reposed:
    """Extract the canonical mesh of an INS checkpoint once and repose it to `poses` (a path or (P, 24, 3)).

    Raises FileNotFoundError / ValueError for bad poses or resolution, CheckpointError for a bad checkpoint,
    ValueError if reposing gives non-finite vertices. `progress`: status lines and bars on stderr.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    poses = load_poses(poses) if isinstance(poses, (str, os.PathLike)) else _validate_poses(poses, "poses array")
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if progress else (lambda _: None)
    model, config = load_ins(checkpoint, step)
    body, star_vertices = subject_body(config.data)
    say(f"compiling the occupancy network (canonical mesh at {resolution}^3)…")
    start = time.perf_counter()
    vertices, faces = extract_canonical(model, canonical_bounds(star_vertices), int(resolution), show_bar=progress)
    extracted = time.perf_counter()
    transforms = rectified_bone_transforms(body, jnp.zeros((body.num_betas,), jnp.float32), jnp.asarray(poses),
                                           jnp.asarray(star_pose(body.num_joints)))  # fmt: skip
    say(f"compiling the reposing function ({min(POSE_CHUNK, len(poses))} poses per call)…")
    with _bar(len(poses), "reposing", "pose", progress) as bar:
        posed = repose_all(model, vertices, transforms, on_chunk=bar.update)
    if not np.all(np.isfinite(posed)):
        raise ValueError("reposing produced non-finite vertices (is the checkpoint diverged?)")
    return Reposed(vertices, faces, posed.astype(np.float32), extracted - start, time.perf_counter() - extracted)


def repose(checkpoint, poses, *, resolution: int = 128, step: int | None = None, progress: bool = True):
    """(canonical trimesh.Trimesh, [trimesh.Trimesh per pose]) of an INS checkpoint; see `run_repose`.

    poses: a .npy/.npz path or a (P, 24, 3) axis-angle array (radians, SMPL joint order). All meshes share
    the canonical mesh's faces and vertex order; metres.
    """
    import trimesh  # local: ~0.6 s to import, needed only for the mesh results

    result = run_repose(checkpoint, poses, resolution=resolution, step=step, progress=progress)
    mesh = lambda vertices: trimesh.Trimesh(vertices, result.faces, process=False)  # noqa: E731
    return mesh(result.canonical_vertices), [mesh(frame) for frame in result.posed_vertices]


def main(argv: list[str], prog: str = "jaxpose repose") -> int:
    """Run the command; 0 on success, 2 on an expected error (one line on stderr)."""
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
        result = run_repose(args.checkpoint, args.poses, resolution=args.resolution, step=args.step)
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_mesh(out / "canonical.obj", result.canonical_vertices, result.faces)
        for index, frame in enumerate(result.posed_vertices):
            save_mesh(out / f"pose_{index:03d}.obj", frame, result.faces)
    except CheckpointError as error:
        message = str(error) if str(error).startswith("checkpoint ") else f"checkpoint {args.checkpoint}: {error}"
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    print(f"canonical mesh: {len(result.canonical_vertices)} vertices, {len(result.faces)} faces at {args.resolution}^3 "
          f"({result.extraction_seconds:.2f} s); reposed to {len(result.posed_vertices)} poses in "
          f"{result.repose_seconds:.2f} s; wrote {out}")  # fmt: skip
    return 0


__all__ = [
    "GRID_CHUNK", "POSE_BATCH", "POSE_CHUNK", "VERTEX_CHUNK", "Reposed", "Reposer", "canonical_bounds", "extract_canonical",
    "load_ins", "load_poses", "main", "make_reposer", "repose", "repose_all", "run_repose", "subject_body",
]
