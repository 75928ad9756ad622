"""The pose-transfer training loss (3D-CoreNet and NPT), see docs/pose_transfer.md, "Losses".

loss = reconstruction_weight · mean((ŷ − y)²) + edge_weight · edge, the edge term being NPT's mean over
faces of Σ_edges |‖e_ŷ‖/‖e_identity‖ − 1| with the *input identity mesh* as the reference, averaged
over the batch. 3D-CoreNet: 1000 and 0.5; NPT: 1 and 0.0005 (the same ratio). Before the forward
pass the vertices are shuffled on device from the step's key: identity and GT share one permutation
per sample, the pose mesh gets its own, and the identity faces are remapped through the inverse
permutation (`random_permutation_batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from jaxpose.geometry.mesh import edge_length_ratio_loss
from jaxpose.pose_transfer.sampling import random_permutation_batch


def pose_transfer_loss(
    output: jax.Array,
    gt: jax.Array,
    identity: jax.Array,
    identity_faces: jax.Array,
    reconstruction_weight: float | jax.Array,
    edge_weight: float | jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(loss, {"reconstruction_mse", "edge"}) in float32.

    output, gt, identity: (B, N, 3) in one (shuffled) vertex order, metres; identity_faces: (B, F, 3)
    int in that order. loss = reconstruction_weight · mean((output − gt)²) over B·N·3 (m²) +
    edge_weight · mean_b edge_length_ratio_loss(output_b, identity_b, faces_b) (unitless).
    """
    output = output.astype(jnp.float32)
    diff = output - gt.astype(jnp.float32)
    reconstruction = jnp.mean(diff * diff)
    edge = jnp.mean(jax.vmap(edge_length_ratio_loss)(output, identity.astype(jnp.float32), identity_faces))
    loss = jnp.asarray(reconstruction_weight, jnp.float32) * reconstruction + jnp.asarray(edge_weight, jnp.float32) * edge
    return loss, {"reconstruction_mse": reconstruction, "edge": edge}


def make_loss_fn(reconstruction_weight: float, edge_weight: float) -> Callable:
    """The engine's `loss_fn(model, batch, rng)`: shuffle vertices on device from `rng`, run
    `model(identity, pose)`, and return the weighted `pose_transfer_loss` (weights closed over)."""

    def loss_fn(model, batch: Mapping[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        shuffled = random_permutation_batch(rng, batch["identity"], batch["gt"], batch["identity_faces"], batch["pose"])
        output = model(shuffled.identity, shuffled.pose).output
        # The weights enter the program as run-time scalars, not constants XLA may fold into the backward
        # pass: folding them changes its float rounding (measured 4.5e-8 on NPT's gradients), which a few
        # hundred training steps amplify, so runs would stop matching those of earlier versions.
        weights = jax.lax.optimization_barrier(jnp.asarray([reconstruction_weight, edge_weight], jnp.float32))
        return pose_transfer_loss(output, shuffled.gt, shuffled.identity, shuffled.identity_faces,
                                  weights[0], weights[1])  # fmt: skip

    return loss_fn
