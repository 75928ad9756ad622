"""SMPL-style body models: the `BodyModel` pytree and its pure linear-blend-skinning forward.

A body model is a set of arrays (V vertices, J joints, K shape components, P pose correctives):

  v_template   (V, 3)     rest mesh of the mean shape, metres
  shapedirs    (V, 3, K)  vertex offsets per unit of each shape coefficient (beta)
  posedirs     (V, 3, P)  pose-corrective offsets, P = 9 (J - 1) or 0 (no correctives)
  j_template   (J, 3)     rest joints of the mean shape (exact, not regressed)
  j_shapedirs  (J, 3, K)  joint offsets per beta, so joints are exactly linear in betas
  weights      (V, J)     skinning weights, rows sum to 1
  faces        (F, 3)     int32 triangles
  j_regressor  (J, V)     optional vertex -> joint regressor (for fitting code that expects one)
  parents      (J,)       static tuple, parents[0] == -1, parents[j] < j
  joint_names  (J,)       static tuple of names

Pose convention (as SMPL): one rotation per joint, relative to its parent, in the world-aligned rest
frame (identity rest orientations); joint 0's rotation is the global orientation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.geometry.rotations import as_rotation_matrices, axis_angle_to_matrix

_ARRAY_FIELDS = (
    "v_template",
    "shapedirs",
    "posedirs",
    "j_template",
    "j_shapedirs",
    "weights",
    "faces",
    "j_regressor",
    "extras",
)
_STATIC_FIELDS = ("parents", "joint_names", "meta")


@dataclasses.dataclass(frozen=True)
class BodyModel:
    """An SMPL-style skinned body. A JAX pytree: arrays are leaves, `parents`/`joint_names` static.

    Construct with `BodyModel.from_arrays` (validates everything) or a loader in `jaxpose.bodies`.
    Pass it to jitted functions as an argument (not a closure) so its arrays are not baked into
    the compiled program as constants.
    """

    v_template: jax.Array | np.ndarray
    shapedirs: jax.Array | np.ndarray
    posedirs: jax.Array | np.ndarray
    j_template: jax.Array | np.ndarray
    j_shapedirs: jax.Array | np.ndarray
    weights: jax.Array | np.ndarray
    faces: jax.Array | np.ndarray
    j_regressor: jax.Array | np.ndarray | None = None
    extras: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    parents: tuple[int, ...] = ()
    joint_names: tuple[str, ...] = ()
    meta: str = ""  # free-form provenance (JSON for the shipped ANNY body)

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]

    @property
    def num_pose_correctives(self) -> int:
        return self.posedirs.shape[-1]

    def astype(self, dtype) -> "BodyModel":
        """Cast the floating-point arrays (not faces or integer extras) to `dtype`."""

        def cast(x):
            if x is None or not np.issubdtype(np.asarray(x).dtype, np.floating):
                return x
            return np.asarray(x).astype(dtype) if isinstance(x, np.ndarray) else x.astype(dtype)

        return dataclasses.replace(
            self,
            **{name: cast(getattr(self, name)) for name in _ARRAY_FIELDS if name not in ("faces", "extras")},
            extras={k: cast(v) for k, v in self.extras.items()},
        )

    def with_num_betas(self, num_betas: int) -> "BodyModel":
        """Keep only the first `num_betas` shape components."""
        if not 0 <= num_betas <= self.num_betas:
            raise ValueError(f"num_betas must be in [0, {self.num_betas}], got {num_betas}")
        return dataclasses.replace(
            self, shapedirs=self.shapedirs[..., :num_betas], j_shapedirs=self.j_shapedirs[..., :num_betas]
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        v_template,
        shapedirs,
        weights,
        faces,
        parents,
        posedirs=None,
        j_template=None,
        j_shapedirs=None,
        j_regressor=None,
        joint_names=None,
        extras=None,
        meta: str = "",
        num_betas: int | None = None,
        weight_tolerance: float = 1e-3,
        source: str = "body model",
    ) -> "BodyModel":
        """Validate and normalise SMPL-style arrays into a `BodyModel` (host NumPy arrays).

        Exact joints: if `j_template`/`j_shapedirs` are not given they are derived from
        `j_regressor` (J_template = R v_template, J_shapedirs = R shapedirs), as SMPL does.
        `posedirs` may be (V, 3, P) or SMPL's flattened (V*3, P). Raises ValueError naming the
        offending array for wrong shapes, non-finite values, out-of-range faces, skinning weights
        whose rows do not sum to 1 (within `weight_tolerance`), a root parent other than -1 /
        4294967295, or a non-topological joint tree.
        """

        def err(msg: str) -> ValueError:
            return ValueError(f"{source}: {msg}")

        v_template = _float_array(v_template, "v_template", source)
        if v_template.ndim != 2 or v_template.shape[1] != 3 or v_template.shape[0] == 0:
            raise err(f"v_template must have shape (V, 3) with V > 0, got {v_template.shape}")
        num_verts = v_template.shape[0]

        parents = tuple(int(p) for p in np.asarray(parents).reshape(-1))
        num_joints = len(parents)
        if num_joints == 0:
            raise err("the joint tree is empty")
        if parents[0] not in (-1, 2**32 - 1):  # SMPL stores the root's parent as 4294967295.
            raise err(f"the root joint's parent must be -1 (or 4294967295), got {parents[0]}")
        parents = (-1,) + parents[1:]
        bad = [j for j in range(1, num_joints) if not 0 <= parents[j] < j]
        if bad:
            raise err(
                f"joint tree is not topologically ordered (parents[j] must be in [0, j)): joints {bad[:5]} "
                f"have parents {[parents[j] for j in bad[:5]]}"
            )

        shapedirs = _float_array(shapedirs, "shapedirs", source)
        if shapedirs.ndim == 2 and shapedirs.shape[0] == num_verts * 3:
            shapedirs = shapedirs.reshape(num_verts, 3, -1)
        if shapedirs.ndim != 3 or shapedirs.shape[:2] != (num_verts, 3):
            raise err(f"shapedirs must have shape ({num_verts}, 3, K), got {shapedirs.shape}")
        if num_betas is not None:
            if num_betas > shapedirs.shape[2]:
                raise err(f"num_betas={num_betas} but the model has only {shapedirs.shape[2]} shape components")
            shapedirs = shapedirs[..., :num_betas]

        if posedirs is None:
            posedirs = np.zeros((num_verts, 3, 0), v_template.dtype)
        posedirs = _float_array(posedirs, "posedirs", source)
        if posedirs.ndim == 2 and posedirs.shape[0] == num_verts * 3:
            posedirs = posedirs.reshape(num_verts, 3, -1)
        if posedirs.ndim != 3 or posedirs.shape[:2] != (num_verts, 3):
            raise err(f"posedirs must have shape ({num_verts}, 3, P), got {posedirs.shape}")
        if posedirs.shape[2] not in (0, 9 * (num_joints - 1)):
            raise err(f"posedirs must have P = 0 or 9*(J-1) = {9 * (num_joints - 1)} columns, got {posedirs.shape[2]}")

        weights = _float_array(weights, "weights", source)
        if weights.shape != (num_verts, num_joints):
            raise err(f"weights must have shape ({num_verts}, {num_joints}), got {weights.shape}")
        row_sums = weights.sum(axis=1)
        worst = int(np.argmax(np.abs(row_sums - 1.0)))
        if abs(row_sums[worst] - 1.0) > weight_tolerance:
            raise err(f"skinning weights must sum to 1 per vertex; vertex {worst} sums to {row_sums[worst]:.6f}")

        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise err(f"faces must have shape (F, 3), got {faces.shape}")
        if not np.issubdtype(faces.dtype, np.integer):
            if not np.all(np.equal(np.mod(faces, 1), 0)):
                raise err("faces must hold integer vertex indices")
        faces = faces.astype(np.int64)
        if faces.size and (faces.min() < 0 or faces.max() >= num_verts):
            raise err(f"face indices must be in [0, {num_verts}), found range [{faces.min()}, {faces.max()}]")
        faces = faces.astype(np.int32)

        if j_regressor is not None:
            if hasattr(j_regressor, "toarray"):  # scipy.sparse
                j_regressor = j_regressor.toarray()
            j_regressor = _float_array(j_regressor, "j_regressor", source)
            if j_regressor.shape != (num_joints, num_verts):
                raise err(f"j_regressor must have shape ({num_joints}, {num_verts}), got {j_regressor.shape}")
        if j_template is None:
            if j_regressor is None:
                raise err("needs either exact joints (j_template, j_shapedirs) or a j_regressor")
            j_template = j_regressor.astype(np.float64) @ v_template.astype(np.float64)
            j_shapedirs = np.einsum("jv,vck->jck", j_regressor.astype(np.float64), shapedirs.astype(np.float64))
        j_template = _float_array(j_template, "j_template", source).astype(v_template.dtype)
        if j_template.shape != (num_joints, 3):
            raise err(f"j_template must have shape ({num_joints}, 3), got {j_template.shape}")
        if j_shapedirs is None:
            raise err("j_template was given without j_shapedirs")
        j_shapedirs = _float_array(j_shapedirs, "j_shapedirs", source)[..., : shapedirs.shape[2]]
        if j_shapedirs.shape != (num_joints, 3, shapedirs.shape[2]):
            raise err(f"j_shapedirs must have shape ({num_joints}, 3, {shapedirs.shape[2]}), got {j_shapedirs.shape}")

        if joint_names is None:
            joint_names = tuple(f"joint_{j}" for j in range(num_joints))
        joint_names = tuple(str(n) for n in np.asarray(joint_names).reshape(-1))
        if len(joint_names) != num_joints:
            raise err(f"{len(joint_names)} joint names for {num_joints} joints")

        extras = {str(k): np.asarray(v) for k, v in (extras or {}).items()}
        for key, value in extras.items():
            if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
                raise err(f"extra array {key!r} must be numeric (it becomes a pytree leaf), got dtype {value.dtype}")

        return cls(
            v_template=v_template,
            shapedirs=shapedirs.astype(v_template.dtype),
            posedirs=posedirs.astype(v_template.dtype),
            j_template=j_template,
            j_shapedirs=j_shapedirs.astype(v_template.dtype),
            weights=weights.astype(v_template.dtype),
            faces=faces,
            j_regressor=None if j_regressor is None else j_regressor.astype(v_template.dtype),
            extras=extras,
            parents=parents,
            joint_names=joint_names,
            meta=str(meta),
        )


jax.tree_util.register_dataclass(BodyModel, data_fields=list(_ARRAY_FIELDS), meta_fields=list(_STATIC_FIELDS))


def _float_array(x, name: str, source: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # e.g. an object that cannot become an array
        raise ValueError(f"{source}: {name} cannot be converted to an array ({exc})") from exc
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{source}: {name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype != np.float64:
        arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{source}: {name} contains NaN or Inf values")
    return arr


class BodyOutput(NamedTuple):
    """Result of `forward`. Leading dimensions (...) are the batch dimensions of the inputs.

    vertices    (..., V, 3)     posed mesh, metres
    joints      (..., J, 3)     posed joint positions, metres
    transforms  (..., J, 4, 4)  world transform of each joint's frame (rest frames are identity-
                                oriented at the rest joint position), translation included
    """

    vertices: jax.Array
    joints: jax.Array
    transforms: jax.Array


def shaped_rest(body: BodyModel, betas: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Rest vertices (V, 3) and exact rest joints (J, 3) for one shape vector `betas` (K',), K' <= K."""
    betas = _pad_betas(body, betas)
    vertices = body.v_template + jnp.einsum("vck,k->vc", body.shapedirs, betas)
    joints = body.j_template + jnp.einsum("jck,k->jc", body.j_shapedirs, betas)
    return vertices, joints


def _pad_betas(body: BodyModel, betas: jax.Array) -> jax.Array:
    betas = jnp.asarray(betas)
    k = body.shapedirs.shape[-1]
    if betas.ndim != 1 or betas.shape[0] > k:
        raise ValueError(f"betas must have shape (K',) with K' <= {k}, got {betas.shape}")
    return jnp.pad(betas, (0, k - betas.shape[0]))


def forward_kinematics(
    rotations: jax.Array, rest_joints: jax.Array, parents: tuple[int, ...]
) -> tuple[jax.Array, jax.Array]:
    """World transforms of every joint frame and the skinning transforms.

    rotations (J, 3, 3) local rotations; rest_joints (J, 3). Returns (world (J, 4, 4), skinning
    (J, 4, 4)). skinning[j] = [R_j | t_j] maps a rest-pose point rigidly attached to joint j to its
    posed position; world[j] = [R_j | R_j rest_j + t_j] is the posed frame of joint j.

    The recursion is written in the translation-of-skinning form t_j = t_parent + (R_parent - R_j)
    rest_j, so that the rest pose (all R = I) gives t = 0 and identity transforms *exactly*, and
    small rotations lose no precision to cancellation.
    """
    eye = jnp.eye(3, dtype=rotations.dtype)
    world_rot = [rotations[0]]
    skin_t = [(eye - rotations[0]) @ rest_joints[0]]
    for j in range(1, len(parents)):
        p = parents[j]
        world_rot.append(world_rot[p] @ rotations[j])
        skin_t.append(skin_t[p] + (world_rot[p] - world_rot[j]) @ rest_joints[j])
    world_rot = jnp.stack(world_rot)
    skin_t = jnp.stack(skin_t)
    posed_joints = jnp.einsum("jab,jb->ja", world_rot, rest_joints) + skin_t
    bottom = jnp.broadcast_to(jnp.asarray([0.0, 0.0, 0.0, 1.0], rotations.dtype), (len(parents), 1, 4))

    def homogeneous(rot, trans):
        return jnp.concatenate([jnp.concatenate([rot, trans[:, :, None]], axis=2), bottom], axis=1)

    return homogeneous(world_rot, posed_joints), homogeneous(world_rot, skin_t)


def _forward_single(body: BodyModel, betas, rotations, transl) -> BodyOutput:
    v_shaped, j_rest = shaped_rest(body, betas)
    if body.posedirs.shape[-1]:
        eye = jnp.eye(3, dtype=rotations.dtype)
        pose_feature = (rotations[1:] - eye[None]).reshape(-1)
        v_shaped = v_shaped + jnp.einsum("vcp,p->vc", body.posedirs, pose_feature)
    world, skinning = forward_kinematics(rotations, j_rest, body.parents)
    # Blend (T_j - I) rather than T_j: the rest pose then returns v_shaped bit-exactly, whatever the
    # float rounding of the weight sums.
    delta = skinning[:, :3, :].at[:, :, :3].add(-jnp.eye(3, dtype=rotations.dtype)[None])
    per_vertex = jnp.einsum("vj,jab->vab", body.weights, delta)
    vertices = v_shaped + jnp.einsum("vab,vb->va", per_vertex[:, :, :3], v_shaped) + per_vertex[:, :, 3]
    vertices = vertices + transl[None, :]
    world = world.at[:, :3, 3].add(transl[None, :])
    return BodyOutput(vertices=vertices, joints=world[:, :3, 3], transforms=world)


def forward(body: BodyModel, betas: jax.Array, pose: jax.Array, transl: jax.Array | None = None) -> BodyOutput:
    """Pose and shape the body: linear blend skinning with exact joints.

    Args:
      body: the model.
      betas: (..., K') shape coefficients, K' <= K (missing ones are zero).
      pose: (..., J, 3) axis-angle in radians, or (..., J, 3, 3) rotation matrices; joint 0 is
        the global orientation about the root joint.
      transl: optional (..., 3) translation in metres, added after posing.
    Leading dimensions of `betas`, `pose` and `transl` broadcast against each other.

    Returns a `BodyOutput` with vertices (..., V, 3), joints (..., J, 3), transforms (..., J, 4, 4).
    Pure and differentiable in every input; usable under jit, vmap and grad.
    """
    num_joints = body.num_joints
    pose = jnp.asarray(pose)
    if pose.ndim >= 2 and pose.shape[-2:] == (num_joints, 3):
        rotations = axis_angle_to_matrix(pose)
    elif pose.ndim >= 3 and pose.shape[-3:] == (num_joints, 3, 3):
        rotations = as_rotation_matrices(pose)
    else:
        raise ValueError(f"pose must have shape (..., {num_joints}, 3) or (..., {num_joints}, 3, 3), got {pose.shape}")
    betas = jnp.asarray(betas, rotations.dtype)
    if betas.ndim == 0:
        raise ValueError("betas must have shape (..., K'), got a scalar")
    transl = jnp.zeros(3, rotations.dtype) if transl is None else jnp.asarray(transl, rotations.dtype)
    if transl.ndim == 0 or transl.shape[-1] != 3:
        raise ValueError(f"transl must have shape (..., 3), got {transl.shape}")
    batch = jnp.broadcast_shapes(betas.shape[:-1], rotations.shape[:-3], transl.shape[:-1])
    betas = jnp.broadcast_to(betas, batch + betas.shape[-1:]).reshape((-1,) + betas.shape[-1:])
    rotations = jnp.broadcast_to(rotations, batch + rotations.shape[-3:]).reshape((-1, num_joints, 3, 3))
    transl = jnp.broadcast_to(transl, batch + (3,)).reshape(-1, 3)
    out = jax.vmap(_forward_single, in_axes=(None, 0, 0, 0))(body, betas, rotations, transl)
    return BodyOutput(*(x.reshape(batch + x.shape[1:]) for x in out))


def zero_pose(body: BodyModel, batch: tuple[int, ...] = (), dtype=jnp.float32) -> jax.Array:
    """An all-zero axis-angle pose (..., J, 3): the rest pose."""
    return jnp.zeros(batch + (body.num_joints, 3), dtype)


def joint_rotation(axis: str, degrees: float) -> np.ndarray:
    """Axis-angle (3,) for a rotation of `degrees` about the world 'x', 'y' or 'z' axis (helper for tests/demos)."""
    vec = np.zeros(3, np.float32)
    vec["xyz".index(axis)] = np.deg2rad(degrees)
    return vec


__all__ = [
    "BodyModel",
    "BodyOutput",
    "forward",
    "forward_kinematics",
    "shaped_rest",
    "zero_pose",
    "joint_rotation",
]
