"""Bone pose codes of the INS PINs: per-bone pose features, the bone pose encoder, root-relative poses.

Pose input: rectified bone transforms ``B_b = T_b(θ) T_b(θ_c)⁻¹`` (J, 4, 4) of ONE pose — rigid,
the identity at the canonical pose θ_c; translations in metres. Each bone's transform becomes a
feature ``(enc(R_b) − enc(I), t_b)`` that is exactly zero for the identity, and a bias-free MLP
(GELU, gelu(0) = 0) maps it to a code ``e_b ∈ R^k`` — exactly zero at the canonical pose, which is
what makes a PIN the exact identity there (``jaxpose.skinning.pin``).

``root_relative_transforms`` drops the root (bone 0, the SMPL pelvis) rotation and translation:
``B_0⁻¹ B_b`` is unchanged when every ``B_b`` is left-multiplied by one rigid map M (a global
rotation / translation of the whole body), so codes computed from it are invariant to it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpose.geometry.rotations import matrix_to_axis_angle, matrix_to_quaternion, matrix_to_rotation_6d
from jaxpose.nn.mlp import lecun_uniform

ROTATION_ENCODINGS = {"6d": 6, "matrix": 9, "quaternion": 4, "axis_angle": 3}
"""Bone rotation encodings and their widths; each is shifted so the identity encodes to zero."""

ROOT_BONE = 0
"""The root bone (SMPL pelvis) whose transform ``root_relative_transforms`` factors out."""


def check_bone_transforms(bone_transforms: jax.Array, num_joints: int, where: str) -> None:
    """Raise ValueError unless ``bone_transforms`` is (num_joints, 4, 4) (and finite when concrete)."""
    if bone_transforms.shape != (num_joints, 4, 4):
        raise ValueError(
            f"{where}: bone_transforms must be the {num_joints} rectified bone transforms of one pose, "
            f"shape ({num_joints}, 4, 4); got {bone_transforms.shape}"
        )
    if not isinstance(bone_transforms, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(bone_transforms))):
        raise ValueError(f"{where}: bone_transforms contains NaN or Inf")


def root_relative_transforms(bone_transforms: jax.Array, root: int = ROOT_BONE) -> jax.Array:
    """Root-relative transforms ``B_root⁻¹ B_b``: (..., J, 4, 4) -> (..., J, 4, 4).

    The rigid inverse ``[R_rootᵀ, −R_rootᵀ t_root]`` is used (rectified bone transforms are rigid),
    so the identity stays exactly the identity (the canonical pose still gives zero codes); the
    root's own relative transform is set to exactly the identity (its code is always zero).
    Translations in the units of the input.
    """
    if bone_transforms.ndim < 3 or bone_transforms.shape[-2:] != (4, 4):
        raise ValueError(f"bone_transforms must be (..., J, 4, 4), got {bone_transforms.shape}")
    rot_t = jnp.swapaxes(bone_transforms[..., root, :3, :3], -1, -2)  # (..., 3, 3)
    shift = bone_transforms[..., root, :3, 3]  # (..., 3)
    rotation = jnp.matmul(rot_t[..., None, :, :], bone_transforms[..., :3, :3])
    translation = jnp.einsum("...ab,...jb->...ja", rot_t, bone_transforms[..., :3, 3] - shift[..., None, :])
    top = jnp.concatenate([rotation, translation[..., None]], axis=-1)
    relative = jnp.concatenate([top, bone_transforms[..., 3:, :]], axis=-2)
    # R_rootᵀ R_root is the identity only up to rounding; the root's relative transform is I by definition.
    return relative.at[..., root, :, :].set(jnp.eye(4, dtype=relative.dtype))


def bone_pose_features(bone_transforms: jax.Array, rot_encoding: str = "6d", *, use_rotation: bool = True,
                       use_translation: bool = True) -> jax.Array:
    """Per-bone pose input that is exactly zero for the identity transform.

    Args:
      bone_transforms: (..., J, 4, 4) rectified bone transforms B_b = T_b(θ) T_b(θ_c)⁻¹.
      rot_encoding: "6d" (first two columns of R − I), "matrix" (R − I, 9), "quaternion"
        (q − (1, 0, 0, 0) with w ≥ 0) or "axis_angle" (3, radians).
      use_rotation / use_translation: include the rotation / the translation t_b (metres).
    Returns:
      (..., J, D) with D = width(rot_encoding)·use_rotation + 3·use_translation.
    """
    if rot_encoding not in ROTATION_ENCODINGS:
        raise ValueError(f"bone_rot_encoding must be one of {sorted(ROTATION_ENCODINGS)}, got {rot_encoding!r}")
    if not (use_rotation or use_translation):
        raise ValueError("the bone pose encoder needs use_rotation or use_translation (both are False)")
    if bone_transforms.shape[-2:] != (4, 4):
        raise ValueError(f"bone_transforms must be (..., J, 4, 4), got {bone_transforms.shape}")
    rotation = bone_transforms[..., :3, :3]
    lead = (1,) * (bone_transforms.ndim - 2)  # explicit broadcasting of the identity's encoding
    parts = []
    if use_rotation:
        if rot_encoding == "6d":
            identity = jnp.asarray([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], rotation.dtype)
            encoded = matrix_to_rotation_6d(rotation) - identity.reshape(lead + (6,))
        elif rot_encoding == "matrix":
            encoded = (rotation - jnp.eye(3, dtype=rotation.dtype).reshape(lead + (3, 3))).reshape(rotation.shape[:-2] + (9,))
        elif rot_encoding == "quaternion":
            encoded = matrix_to_quaternion(rotation) - jnp.asarray([1.0, 0.0, 0.0, 0.0], rotation.dtype).reshape(lead + (4,))
        else:
            encoded = matrix_to_axis_angle(rotation)
        parts.append(encoded)
    if use_translation:
        parts.append(bone_transforms[..., :3, 3])
    return jnp.concatenate(parts, axis=-1)


class BonePoseEncoder(nnx.Module):
    """Bone pose encoder: rectified transforms (J, 4, 4) -> bone codes e (J, code_dim).

    Each bone's (rotation, translation) input goes through its own bias-free MLP
    (``per_bone=True``; one shared MLP otherwise): D -> ``width`` (GELU) -> ``code_dim``. Bias-free
    with gelu(0) = 0, so the canonical pose (zero input) gives exactly zero codes.
    """

    def __init__(self, num_joints: int = 24, code_dim: int = 32, *, rot_encoding: str = "6d",
                 use_rotation: bool = True, use_translation: bool = True, width: int = 64,
                 per_bone: bool = True, rngs: nnx.Rngs, dtype=jnp.float32):
        self.num_joints = num_joints
        self.rot_encoding = rot_encoding
        self.use_rotation = use_rotation
        self.use_translation = use_translation
        in_dim = bone_pose_features(jnp.eye(4, dtype=dtype)[None], rot_encoding, use_rotation=use_rotation,
                                    use_translation=use_translation).shape[-1]
        self.in_dim = in_dim
        lead = (num_joints,) if per_bone else ()
        self.per_bone = per_bone
        self.kernel_in = nnx.Param(lecun_uniform(rngs.params(), lead + (in_dim, width), in_dim, dtype))
        self.kernel_out = nnx.Param(lecun_uniform(rngs.params(), lead + (width, code_dim), width, dtype))

    def __call__(self, bone_transforms: jax.Array) -> jax.Array:
        """(J, 4, 4) -> (J, code_dim)."""
        check_bone_transforms(bone_transforms, self.num_joints, "BonePoseEncoder")
        features = bone_pose_features(bone_transforms, self.rot_encoding, use_rotation=self.use_rotation,
                                      use_translation=self.use_translation)
        if self.per_bone:
            hidden = jax.nn.gelu(jnp.einsum("jd,jdh->jh", features, self.kernel_in[...]))
            return jnp.einsum("jh,jhk->jk", hidden, self.kernel_out[...])
        return jnp.matmul(jax.nn.gelu(jnp.matmul(features, self.kernel_in[...])), self.kernel_out[...])


__all__ = [
    "ROOT_BONE", "ROTATION_ENCODINGS", "BonePoseEncoder", "bone_pose_features", "check_bone_transforms",
    "root_relative_transforms",
]
