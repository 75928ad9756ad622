"""The output container shared by the pose-transfer models."""

from __future__ import annotations

from typing import NamedTuple

import jax


class PoseTransferOutput(NamedTuple):
    """Result of a pose-transfer forward pass (a pytree; ``warped`` may be None).

    output: (B, N_id, 3) identity mesh in the pose mesh's pose, identity vertex order, same units as
      the inputs (bbox-centred metres for the official models).
    warped: (B, N_id, 3) the raw correspondence warp (3D-CoreNet: each identity vertex as a convex
      combination of pose vertices), or None for models without a warp (NPT).
    """

    output: jax.Array
    warped: jax.Array | None = None
