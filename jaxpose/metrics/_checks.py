"""Input validation shared by the metric modules.

Shape checks run at trace time, so they also fire under ``jax.jit``. Finiteness needs concrete
values: it is checked only in host-side code (``emd_exact``,
``jaxpose.pose_transfer.units.pose_transfer_metrics``); the jittable metrics propagate NaN/Inf (a NaN
coordinate gives a NaN metric) rather than branching on data.
"""

from __future__ import annotations

import numpy as np


def check_point_sets(
    name_a: str, a, name_b: str, b, *, same_num_points: bool, dim: int | None = 3
) -> None:
    """Raise ValueError unless a and b are (..., N, D) point sets with equal batch dims and D.

    With ``same_num_points`` the full shapes must agree (vertex-wise correspondence).
    """
    shape_a, shape_b = tuple(np.shape(a)), tuple(np.shape(b))
    for name, shape in ((name_a, shape_a), (name_b, shape_b)):
        if len(shape) < 2:
            raise ValueError(f"{name} must have shape (..., N, D), got {shape}")
        if dim is not None and shape[-1] != dim:
            raise ValueError(f"{name} must have {dim} coordinates in its last axis, got shape {shape}")
        if shape[-2] == 0:
            raise ValueError(f"{name} has no points: shape {shape}")
    if same_num_points:
        if shape_a != shape_b:
            raise ValueError(
                f"{name_a} and {name_b} must have the same shape (vertex-wise correspondence), "
                f"got {name_a} {shape_a} and {name_b} {shape_b}"
            )
    elif shape_a[:-2] != shape_b[:-2] or shape_a[-1] != shape_b[-1]:
        raise ValueError(
            f"{name_a} and {name_b} must agree in batch dims and coordinate count, "
            f"got {name_a} {shape_a} and {name_b} {shape_b}"
        )


def check_finite(name: str, array) -> np.ndarray:
    """Host-side guard: return ``array`` as a NumPy array, raising ValueError if it holds NaN or Inf.

    The message gives the number of non-finite entries and the index of the first one.
    """
    values = np.asarray(array)
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {values.dtype}")
    finite = np.isfinite(values)
    if not finite.all():
        bad = np.argwhere(~finite)
        raise ValueError(
            f"{name} contains {len(bad)} non-finite value(s) (NaN or Inf); "
            f"first at index {tuple(int(i) for i in bad[0])}"
        )
    return values
