"""Input checks shared by the pose-transfer models."""

from __future__ import annotations

import jax
import numpy as np

OUTPUT_BOUND = 2.0
"""The decoders end in 2·tanh: coordinates are bounded to ±2 mesh units (metre-scale meshes)."""


def _is_concrete(value) -> bool:
    return not isinstance(value, jax.core.Tracer)


def check_pose_transfer_inputs(model_name: str, identity_xyz, pose_xyz, min_vertices: int = 1):
    """Validate (B, N_id, 3) / (B, N_pose, 3) inputs; value checks run only outside jit."""
    for name, xyz in (("identity_xyz", identity_xyz), ("pose_xyz", pose_xyz)):
        if xyz.ndim != 3 or xyz.shape[-1] != 3:
            raise ValueError(f"{model_name}: {name} must be (B, N, 3), got shape {xyz.shape}")
        if xyz.shape[1] < min_vertices:
            raise ValueError(
                f"{model_name}: {name} needs at least {min_vertices} vertices, got shape {xyz.shape}"
            )
    if identity_xyz.shape[0] != pose_xyz.shape[0]:
        raise ValueError(
            f"{model_name}: batch sizes differ: identity_xyz {identity_xyz.shape}, "
            f"pose_xyz {pose_xyz.shape}"
        )
    for name, xyz in (("identity_xyz", identity_xyz), ("pose_xyz", pose_xyz)):
        if not _is_concrete(xyz):
            continue
        values = np.asarray(xyz)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{model_name}: {name} contains NaN or Inf")
        largest = float(np.max(np.abs(values))) if values.size else 0.0
        if largest > OUTPUT_BOUND:
            raise ValueError(
                f"{model_name}: {name} has a coordinate of magnitude {largest:.3g} > {OUTPUT_BOUND}; "
                "the decoder output is bounded to ±2 by 2·tanh — centre each mesh on its bounding "
                "box and use metre-scale units"
            )
