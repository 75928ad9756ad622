"""`jaxpose.transfer`: put an identity into the pose of another body with a trained model, from Python.

    import jaxpose
    mesh = jaxpose.transfer("A.obj", "B.ply")                       # the shipped 3D-CoreNet; trimesh.Trimesh
    mesh = jaxpose.transfer("A.obj", "B.ply", "runs/corenet")       # a model of your own
    array = jaxpose.transfer(vertices_a, points_b, "runs/corenet")  # (N, 3) float32 ndarray

`jaxpose transfer` (the CLI) and `transfer` both call `run_transfer`: one code path. Steps:

1. Inputs (`transfer_inputs`): the identity is a mesh (its faces make the output mesh) or an (N, 3)
   array; the pose is any point set (its faces are never used). Degenerate inputs are refused; inputs
   that look like another up axis or not human-sized are warned about (`InputWarning`).
2. Frame: both are rotated from `up_axis` to y-up, and must be metre-scale (`check_metre_scale`).
3. Matching (3D-CoreNet): `transfer_memory.plan_matching` estimates the peak memory from the
   checkpoint config (read without restoring arrays) and the vertex counts, picks dense or online for
   "auto", and refuses what cannot fit, all before the model is loaded.
4. The model runs on the bbox-centred, permuted pair (`transfer_model.predict`, the test protocol).
5. Placement: the output is re-centred on its own bbox (as the test protocol does before scoring),
   translated to the identity's bbox centre and rotated back to the identity's frame: vertex i of the
   output is vertex i of the identity, and its bounding box is centred where the identity's was.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from jaxpose.pose_transfer import pretrained
from jaxpose.pose_transfer.transfer_inputs import (
    Body,
    UpAxis,
    check_metre_scale,
    check_not_degenerate,
    identity_from,
    pose_from,
    warn_if_misoriented,
)
from jaxpose.pose_transfer.transfer_memory import AUTO, CoreNetWidths, available_memory_bytes, plan_matching
from jaxpose.pose_transfer.transfer_model import load_model, predict, read_checkpoint_config


@dataclasses.dataclass(frozen=True)
class TransferResult:
    """A transfer's output and how it was made.

    vertices (N, 3) float32 in the identity's frame and order; faces (F, 3) int32 (the identity's) or
    None for an array identity; task ("corenet" / "npt"), checkpoint step, matching (a
    `MATCHING_NAMES` name, None for NPT), seconds of the forward pass including compilation.
    """

    vertices: np.ndarray
    faces: np.ndarray | None
    task: str
    step: int
    matching: str | None
    seconds: float


def _reporter(progress: bool) -> Callable[[str], None]:
    """A function printing status lines to stderr when `progress`, else doing nothing."""
    if not progress:
        return lambda _: None
    return lambda line: print(line, file=sys.stderr, flush=True)


def bbox_centre(points: np.ndarray) -> np.ndarray:
    """(3,) float64 centre of the axis-aligned bounding box of points (N, 3)."""
    points = np.asarray(points, np.float64)
    return 0.5 * (points.max(axis=0) + points.min(axis=0))


def place_output(output: np.ndarray, identity: np.ndarray) -> np.ndarray:
    """The model output (N, 3) re-centred on its own bbox, then moved to identity's (N, 3) bbox centre; float64."""
    output = np.asarray(output, np.float64)
    return output - bbox_centre(output) + bbox_centre(identity)


def _matching_name(config, checkpoint, requested: str | None, block_size: int | None, counts: tuple[int, int],
                   available: Callable[[], int], say) -> str | None:  # fmt: skip
    """The `MATCHING_NAMES` override for `load_model` (None: NPT, nothing to choose); refuses up front."""
    if config.task != "corenet":
        if requested not in (None, AUTO) or block_size is not None:
            raise ValueError(f"--matching/--block_size apply to 3D-CoreNet checkpoints only; {checkpoint} is {config.task!r}")
        return None
    model = config.model
    block = int(block_size if block_size is not None else model.block_size)
    if block < 1:
        raise ValueError(f"--block_size must be positive, got {block}")
    plan = plan_matching(
        requested or AUTO, *counts, CoreNetWidths.from_config(model), configured=str(model.matching_mode),
        block_size=block, num_iterations=int(model.num_sinkhorn_iterations), available=available,
    )
    say(plan.describe(*counts, block))
    return plan.name


def run_transfer(identity: Body, pose: Body, checkpoint: str | os.PathLike | None = None, *, step: int | None = None,
                 matching: str | None = AUTO, block_size: int | None = None, up_axis: UpAxis | str = UpAxis.Y,
                 permutation_seed: int = 0, progress: bool = True,
                 available_memory: Callable[[], int] | None = None) -> TransferResult:  # fmt: skip
    """Transfer `pose`'s pose onto `identity` (see the module docstring for the steps).

    Args:
      identity, pose: `Body` objects (`identity_from`, `pose_from`), metres, frame `up_axis`.
      checkpoint: a corenet or npt training workdir (or its checkpoints/ directory) or a model bundle;
        None (default): the shipped 3D-CoreNet (`pretrained.DEFAULT_MODEL`). step: default latest.
      matching: "auto" (default), or a `MATCHING_NAMES` name (3D-CoreNet only); block_size: the
        online row block (default: the checkpoint's).
      permutation_seed: seed of the test protocol's vertex shuffles.
      progress: status lines and the online-matching bar on stderr.
      available_memory: () -> bytes free for the model (default `available_memory_bytes`; injectable
        so tests can fake a small machine).

    Raises: DegenerateInputError, ValueError (scale, options, task), MatchingMemoryError,
    FileNotFoundError / CheckpointError (checkpoint). Warns `InputWarning` for suspicious frames.
    """
    up = UpAxis.parse(up_axis)
    say = _reporter(progress)
    for body in (identity, pose):
        check_not_degenerate(body)
        warn_if_misoriented(body, up)
    identity_y, pose_y = up.to_y_up(identity.vertices), up.to_y_up(pose.vertices)
    check_metre_scale(identity_y, identity.source)
    check_metre_scale(pose_y, pose.source)
    checkpoint = pretrained.path() if checkpoint is None else checkpoint
    config = read_checkpoint_config(checkpoint, step)
    counts = (len(identity_y), len(pose_y))
    available = available_memory or available_memory_bytes
    override = _matching_name(config, checkpoint, matching, block_size, counts, available, say)
    say(f"loading checkpoint {checkpoint}…")
    task, model, loaded_step = load_model(str(checkpoint), step, override, block_size)
    start = time.perf_counter()
    output = predict(model, identity_y, pose_y, permutation_seed, say=say, show_bar=progress)
    seconds = time.perf_counter() - start
    vertices = up.from_y_up(place_output(output, identity_y)).astype(np.float32)
    return TransferResult(vertices, identity.faces, task, loaded_step, override, seconds)


def transfer(identity, pose, checkpoint: str | os.PathLike | None = None, *, step: int | None = None, matching: str = AUTO,
             block_size: int | None = None, up_axis: str = "y", permutation_seed: int = 0, triangulate: bool = False,
             progress: bool = True):  # fmt: skip
    """Put `identity` into the pose of `pose` with a trained 3D-CoreNet or NPT checkpoint.

    Args:
      identity: a mesh path (.obj/.ply), a trimesh.Trimesh (or any object with `vertices` and `faces`),
        or an (N, 3) array; metres.
      pose: a path (.obj/.ply mesh or point cloud, .npy, .npz), a trimesh object or an (M, 3) array;
        metres; any vertex count; faces unused.
      checkpoint: a corenet or npt training workdir or a model bundle; None (default): the shipped
        3D-CoreNet. step: checkpoint step (default latest).
      matching: "auto" (dense if it fits comfortably in memory, else online), or a
        `jaxpose.matching.MATCHING_NAMES` name; block_size: online row block.
      up_axis: "y" (default), "z" or "x": the inputs' up axis (the models work in y-up).
      permutation_seed: seed of the vertex shuffles; triangulate: split polygon faces of a mesh file.
      progress: print status lines and a progress bar to stderr.

    Returns:
      The identity in the pose, in the identity's frame and vertex order, placed as `jaxpose transfer`
      places it (bbox centred where the identity's was): an (N, 3) float32 ndarray when `identity` is
      an array, else a trimesh.Trimesh with the identity's faces.
    """
    body = identity_from(identity, triangulate=triangulate)
    result = run_transfer(body, pose_from(pose), checkpoint, step=step, matching=matching, block_size=block_size,
                          up_axis=up_axis, permutation_seed=permutation_seed, progress=progress)  # fmt: skip
    if body.faces is None:
        return result.vertices
    import trimesh  # local: ~0.6 s to import, needed only for mesh results

    return trimesh.Trimesh(result.vertices, result.faces, process=False)


__all__ = ["TransferResult", "place_output", "run_transfer", "transfer"]
