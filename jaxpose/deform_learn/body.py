"""The deform-and-learn body: the mean-shape template posed with per-segment scales.

Deform-and-learn replaces shape coefficients by one scale per skeleton segment (24 scales for SMPL's
tree): S^j = diag(s_j, s_j, s_j, 1) and the skinning transform of segment j is T^j = A^j S^j, blended
by linear blend skinning. Where the scale is centred is not stated by the paper; jaxpose's
**reconstruction**: each segment is scaled about its own joint, in the segment's (posed) frame,

    T^j = G_j · S^j · Tr(−J_j),
    G_0 = [R(a_0) | J_0],    G_j = G_parent · [R(a_j) | s_parent · (J_j − J_parent)],

with J the rest joints of the mean shape (betas = 0), so that a child's joint moves with its parent's
scaled segment and the skeleton stays connected. At s = 1 this is exactly `jaxpose.bodies.forward`
with betas = 0. Pose blend shapes are applied (as `jaxpose.bodies.model` does) when the body has them.

Everything works for any `BodyModel` (any number of joints J): pose (J, 3), scales (J,).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jaxpose.bodies.model import BodyModel, BodyOutput
from jaxpose.geometry.rotations import axis_angle_to_matrix


def segment_scale_forward(body: BodyModel, pose: jax.Array, scales: jax.Array) -> BodyOutput:
    """Pose the mean-shape template with per-segment scales (reconstruction, see the module docstring).

    Args:
      body: any `BodyModel` (its mean shape `v_template` / `j_template` is used; betas = 0).
      pose: (J, 3) axis-angle radians, joint 0 = root rotation about the root joint, joints 1.. relative
        to their parent (SMPL convention).
      scales: (J,) dimensionless segment scales s_j (1 = template size).

    Returns:
      `BodyOutput` with vertices (V, 3) and joints (J, 3) in metres (body frame, root joint at the
      template's root position) and transforms (J, 4, 4): the rigid world frame [W_j | P_j] of each
      joint (W_j the accumulated rotation, P_j the posed joint); the segment's scale is *not* folded
      into it (the skinning transform is [s_j W_j | P_j − s_j W_j J_j]).

    Pure; jit/vmap/grad-able (vmap over a batch of poses and scales).
    """
    num_joints = body.num_joints
    pose = jnp.asarray(pose)
    if pose.shape != (num_joints, 3):
        raise ValueError(f"pose must have shape ({num_joints}, 3) axis-angle radians (root first), got {pose.shape}")
    scales = jnp.asarray(scales)
    if scales.shape != (num_joints,):
        raise ValueError(f"scales must have shape ({num_joints},) (one per segment), got {scales.shape}")
    dtype = jnp.result_type(pose.dtype, scales.dtype, body.v_template.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    pose, scales = pose.astype(dtype), scales.astype(dtype)
    rest_vertices = jnp.asarray(body.v_template, dtype)
    rest_joints = jnp.asarray(body.j_template, dtype)
    rotations = axis_angle_to_matrix(pose)  # (J, 3, 3)
    eye = jnp.eye(3, dtype=dtype)

    if body.posedirs.shape[-1]:
        pose_feature = (rotations[1:] - eye[None]).reshape(-1)
        rest_vertices = rest_vertices + jnp.einsum("vcp,p->vc", jnp.asarray(body.posedirs, dtype), pose_feature)

    parents = body.parents
    world_rot = [rotations[0]]
    posed_joints = [rest_joints[0]]
    for j in range(1, num_joints):
        p = parents[j]
        offset = scales[p] * (rest_joints[j] - rest_joints[p])
        posed_joints.append(posed_joints[p] + world_rot[p] @ offset)
        world_rot.append(world_rot[p] @ rotations[j])
    world_rot = jnp.stack(world_rot)  # (J, 3, 3)
    posed_joints = jnp.stack(posed_joints)  # (J, 3)

    # Skinning transform of segment j: x -> s_j W_j (x - J_j) + P_j. Blend (s_j W_j - I) and its
    # translation so that the rest pose at unit scales returns the template exactly.
    linear = scales[:, None, None] * world_rot - eye[None]  # (J, 3, 3)
    translation = posed_joints - jnp.einsum("jab,jb->ja", scales[:, None, None] * world_rot, rest_joints)
    weights = jnp.asarray(body.weights, dtype)
    per_vertex_linear = jnp.einsum("vj,jab->vab", weights, linear)
    per_vertex_translation = weights @ translation
    vertices = rest_vertices + jnp.einsum("vab,vb->va", per_vertex_linear, rest_vertices) + per_vertex_translation

    bottom = jnp.broadcast_to(jnp.asarray([0.0, 0.0, 0.0, 1.0], dtype), (num_joints, 1, 4))
    transforms = jnp.concatenate([jnp.concatenate([world_rot, posed_joints[:, :, None]], axis=2), bottom], axis=1)
    return BodyOutput(vertices=vertices, joints=posed_joints, transforms=transforms)


def posed_body(body: BodyModel, params: Mapping[str, jax.Array]) -> BodyOutput:
    """The body of one deform-and-learn θ dict (see `jaxpose.deform_learn.params`), in the body frame.

    Uses θ["pose"] (J − 1, 3) with a zero root rotation (the global rotation R is applied by the camera,
    `jaxpose.deform_learn.camera.weak_perspective`) and θ["scales"] (J,). Returns a `BodyOutput` as
    `segment_scale_forward`. vmap it for a batch of θ.
    """
    pose23 = jnp.asarray(params["pose"])
    if pose23.ndim != 2 or pose23.shape[-1] != 3:
        raise ValueError(f"params['pose'] must have shape (J-1, 3), got {pose23.shape}")
    pose = jnp.concatenate([jnp.zeros((1, 3), pose23.dtype), pose23], axis=0)
    return segment_scale_forward(body, pose, params["scales"])


__all__ = ["posed_body", "segment_scale_forward"]
