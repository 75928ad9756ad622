"""INS scored the way it is used: extract the canonical mesh once, repose it, run the baselines' inside test.

    scores = score_extracted_mesh(model, config, resolution=128)   # {"iou_bbox": (T,), "iou_surface": (T,)}

The task's evaluation asks INS's occupancy at every evaluation point (root finding through the inverse
networks, per point). Deployed, INS is used differently (Fig. 5 of the paper, `jaxpose repose`): the
pose-independent canonical occupancy is meshed ONCE (resolution³ marching cubes over the star-pose box,
largest component), the mesh's vertices are moved to each pose by `INS.repose`, and the posed mesh is
what a user gets. This module scores those posed meshes with exactly the inside test of the AVG-LBS /
FIRST-LBS baselines (`occupancy_points.label_points`, winding number > 0.5) on the same evaluation
points, split into the two IoU columns by the configured protocol (`data.eval_bbox_count`).

The two scores differ by the extraction (grid resolution, the largest component dropping spurious
blobs) and by reposing a mesh instead of querying points; a gap between them bounds what extraction
costs (or gains) at a given training budget.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxpose.skinning import data as skinning_data
from jaxpose.skinning.occupancy_points import label_points
from jaxpose.skinning.repose import canonical_bounds, extract_canonical, make_reposer, subject_body


def score_extracted_mesh(model, config: ml_collections.ConfigDict, *, resolution: int = 128,
                         frames: dict[str, np.ndarray] | None = None, bounds=None) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-frame IoU bbox / IoU surface (T,) float64 of INS's extracted-then-reposed canonical mesh.

    model: a trained `INS` module; config: its task config (data section: subject, eval split, protocol);
    frames: the scored frames' "points" (T, N, 3), "occupancy" (T, N) and "transforms" (T, J, 4, 4), as
    `data.eval_points(config)` (the default) or the task's evaluation dataset (`make_eval_data(...).arrays`);
    bounds: the (lo (3,), hi (3,)) grid box in canonical space, by default the subject's star-pose body
    padded as `jaxpose repose` does.
    Raises ValueError if the canonical occupancy has no surface on the grid or reposing gives non-finite
    vertices.
    """
    if isinstance(resolution, bool) or int(resolution) < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    items = frames if frames is not None else skinning_data.eval_points(config)
    if bounds is None:
        bounds = canonical_bounds(subject_body(config.data)[1])
    vertices, faces = extract_canonical(model, bounds, int(resolution))
    posed = np.asarray(make_reposer(model)(jnp.asarray(vertices), jnp.asarray(items["transforms"], jnp.float32)))
    if not np.all(np.isfinite(posed)):
        raise ValueError("reposing the extracted canonical mesh produced non-finite vertices")
    points, occupancy = items["points"], np.asarray(items["occupancy"], bool)
    inside = np.stack([label_points(points[t], posed[t], faces) for t in range(len(points))])
    is_bbox = np.broadcast_to(np.arange(points.shape[1]) < skinning_data.eval_bbox_count(config.data), occupancy.shape)
    scores = skinning_data.occupancy_ious(jnp.asarray(inside), jnp.asarray(occupancy), jnp.asarray(is_bbox))
    return {name: np.asarray(value, np.float64) for name, value in scores.items()}


__all__ = ["score_extracted_mesh"]
