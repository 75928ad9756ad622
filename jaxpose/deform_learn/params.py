"""Deform-and-learn parameters θ = [a, S, R, s, t]: a dict of arrays, its vector layout, files, predictions.

A θ dict (one person; a batch carries the same leading axis on every leaf) has the keys `PARAM_KEYS`:

  "pose"      (J−1, 3) = (23, 3)  axis-angle radians of joints 1..J−1 relative to their parent
                                  (no root rotation: the global rotation is "rotation")
  "scales"    (J,) = (24,)        segment scales s_j (dimensionless)
  "rotation"  (9,)                raw 3×3 matrix entries, row-major; `gram_schmidt` makes it R
  "cam_scale" ()                  weak-perspective scale s, normalised image units per metre
  "cam_trans" (2,)                weak-perspective translation t, normalised image units

Projection (see `jaxpose.deform_learn.camera`): body point X → Y = R·X, image x = s·Y[:2] + t,
depth = s·Y[2]. The regressor's output is the flat vector of `params_to_vector`: pose (69), scales
(24), rotation (9), cam_scale (1), cam_trans (2) — D = 105 for the 24-joint skeleton.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies.model import BodyModel
from jaxpose.deform_learn.body import posed_body
from jaxpose.deform_learn.camera import gram_schmidt, weak_perspective
from jaxpose.io.arrays import load_npz
from jaxpose.io.atomic import atomic_save_npz

PARAM_KEYS = ("pose", "scales", "rotation", "cam_scale", "cam_trans")

# The rotation of the initial θ: the body (y up, facing +z) faces the camera with image y down.
INITIAL_ROTATION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0)

Params = dict[str, jax.Array]


def param_shapes(num_joints: int = 24) -> dict[str, tuple[int, ...]]:
    """Per-person shapes of the θ leaves for a skeleton of `num_joints` joints."""
    if num_joints < 1:
        raise ValueError(f"num_joints must be >= 1, got {num_joints}")
    return {"pose": (num_joints - 1, 3), "scales": (num_joints,), "rotation": (9,), "cam_scale": (), "cam_trans": (2,)}


PARAM_SHAPES = param_shapes(24)
PARAM_SIZE = sum(int(np.prod(shape, dtype=int)) for shape in PARAM_SHAPES.values())  # 105


def _num_joints(params: Mapping[str, jax.Array]) -> int:
    return int(jnp.shape(params["scales"])[-1])


def check_params(params: Mapping[str, jax.Array], batch: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Raise a ValueError naming the problem unless `params` is a θ dict; returns its batch shape.

    The number of joints is read from "scales"; every leaf must carry the same leading batch shape
    (`batch`, if given).
    """
    if not isinstance(params, Mapping) or set(params) != set(PARAM_KEYS):
        keys = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"deform-and-learn params need exactly the keys {list(PARAM_KEYS)}, got {keys}")
    scales_shape = jnp.shape(params["scales"])
    if len(scales_shape) < 1:
        raise ValueError("params['scales'] must have shape (..., J), got a scalar")
    batch = tuple(scales_shape[:-1]) if batch is None else tuple(batch)
    for key, tail in param_shapes(scales_shape[-1]).items():
        shape = tuple(jnp.shape(params[key]))
        if shape != batch + tail:
            raise ValueError(f"params[{key!r}] must have shape {batch + tail}, got {shape}")
    return batch


def full_pose(params: Mapping[str, jax.Array]) -> jax.Array:
    """(..., J, 3) axis-angle pose with a zero root rotation followed by θ["pose"]."""
    pose = jnp.asarray(params["pose"])
    return jnp.concatenate([jnp.zeros(pose.shape[:-2] + (1, 3), pose.dtype), pose], axis=-2)


def initial_params(keypoints_2d: jax.Array, body: BodyModel, valid: jax.Array | None = None) -> Params:
    """Iteration-0 θ ("T-pose"): pose 0, scales 1, R = diag(1, −1, −1), camera from the keypoints' box.

    Args:
      keypoints_2d: (..., J, 2) 2D joints in normalised image coordinates.
      body: the body (its rest joints give the template's projected box).
      valid: optional (..., J) bool; only valid keypoints define the box (all valid by default; at least
        two valid keypoints with distinct x or y are needed for a meaningful scale).

    Reconstruction (the paper does not say how the first camera is set): with the rest joints
    projected by R (x = X, y = −Y), cam_scale = max(box width ratio, box height ratio) of the keypoints
    to the projected rest joints (the max is right both for a standing person with arms down and for
    one with arms spread or lying), and cam_trans puts the two box centres on each other.
    Returns a θ dict with the keypoints' leading shape (...), float dtype of the keypoints.
    """
    keypoints_2d = jnp.asarray(keypoints_2d)
    num_joints = body.num_joints
    if keypoints_2d.ndim < 2 or keypoints_2d.shape[-2:] != (num_joints, 2):
        raise ValueError(f"keypoints_2d must have shape (..., {num_joints}, 2) normalised, got {keypoints_2d.shape}")
    dtype = keypoints_2d.dtype if jnp.issubdtype(keypoints_2d.dtype, jnp.floating) else jnp.result_type(float)
    keypoints_2d = keypoints_2d.astype(dtype)
    batch = keypoints_2d.shape[:-2]
    if valid is None:
        valid = jnp.ones(batch + (num_joints,), bool)
    valid = jnp.asarray(valid, bool)
    if valid.shape != batch + (num_joints,):
        raise ValueError(f"valid must have shape {batch + (num_joints,)}, got {valid.shape}")
    mask = valid[..., None]
    big = jnp.asarray(jnp.finfo(dtype).max, dtype)
    kp_min = jnp.min(jnp.where(mask, keypoints_2d, big), axis=-2)
    kp_max = jnp.max(jnp.where(mask, keypoints_2d, -big), axis=-2)
    rest = jnp.asarray(body.j_template, dtype)
    rest_2d = jnp.stack([rest[:, 0], -rest[:, 1]], axis=-1)  # projection by diag(1, -1, -1)
    rest_min, rest_max = rest_2d.min(axis=0), rest_2d.max(axis=0)
    ratio = (kp_max - kp_min) / (rest_max - rest_min).reshape((1,) * len(batch) + (2,))
    cam_scale = jnp.max(ratio, axis=-1)
    centre = 0.5 * (kp_max + kp_min)
    rest_centre = (0.5 * (rest_max + rest_min)).reshape((1,) * len(batch) + (2,))
    cam_trans = centre - cam_scale[..., None] * rest_centre
    return {
        "pose": jnp.zeros(batch + (num_joints - 1, 3), dtype),
        "scales": jnp.ones(batch + (num_joints,), dtype),
        "rotation": jnp.broadcast_to(jnp.asarray(INITIAL_ROTATION, dtype), batch + (9,)),
        "cam_scale": cam_scale,
        "cam_trans": cam_trans,
    }


def params_to_vector(params: Mapping[str, jax.Array]) -> jax.Array:
    """θ dict -> (..., D) vector [pose (3(J−1)), scales (J), rotation (9), cam_scale (1), cam_trans (2)]."""
    batch = check_params(params)
    parts = [jnp.reshape(jnp.asarray(params[key]), batch + (-1,)) for key in PARAM_KEYS]
    return jnp.concatenate(parts, axis=-1)


def vector_to_params(vector: jax.Array, num_joints: int = 24) -> Params:
    """Inverse of `params_to_vector`: (..., D) -> θ dict (D = 4 J + 9, 105 for 24 joints)."""
    vector = jnp.asarray(vector)
    shapes = param_shapes(num_joints)
    size = sum(int(np.prod(shape, dtype=int)) for shape in shapes.values())
    if vector.ndim < 1 or vector.shape[-1] != size:
        raise ValueError(f"a θ vector for {num_joints} joints must have shape (..., {size}), got {vector.shape}")
    batch = vector.shape[:-1]
    params, start = {}, 0
    for key in PARAM_KEYS:
        n = int(np.prod(shapes[key], dtype=int))
        params[key] = vector[..., start:start + n].reshape(batch + shapes[key])
        start += n
    return params


def stack_params(params_list: Sequence[Mapping[str, jax.Array]]) -> Params:
    """Stack θ dicts (same shapes) along a new leading axis."""
    if not params_list:
        raise ValueError("stack_params needs at least one θ dict")
    for params in params_list:
        check_params(params)
    return {key: jnp.stack([jnp.asarray(p[key]) for p in params_list]) for key in PARAM_KEYS}


def index_params(params: Mapping[str, jax.Array], index) -> Params:
    """Select along the leading batch axis (an int, slice or index array) of every θ leaf."""
    check_params(params)
    return {key: jnp.asarray(params[key])[index] for key in PARAM_KEYS}


def concat_params(params_list: Sequence[Mapping[str, jax.Array]]) -> Params:
    """Concatenate batched θ dicts along their leading axis."""
    if not params_list:
        raise ValueError("concat_params needs at least one θ dict")
    return {key: jnp.concatenate([jnp.asarray(p[key]) for p in params_list], axis=0) for key in PARAM_KEYS}


def save_params_npz(path: str | os.PathLike, params: Mapping[str, jax.Array], **extra_arrays) -> None:
    """Write a (batched) θ dict, float32, and any extra arrays to an npz atomically."""
    check_params(params)
    clash = set(extra_arrays) & set(PARAM_KEYS)
    if clash:
        raise ValueError(f"extra arrays may not reuse θ key names {sorted(clash)}")
    arrays = {key: np.asarray(params[key], np.float32) for key in PARAM_KEYS}
    atomic_save_npz(path, **arrays, **{k: np.asarray(v) for k, v in extra_arrays.items()})


def load_params_npz(path: str | os.PathLike, num_joints: int | None = 24) -> Params:
    """Read a θ dict written by `save_params_npz` (float32 NumPy arrays; extra arrays are ignored).

    Raises a ValueError naming the file and the problem (missing keys, inconsistent shapes, a joint
    count other than `num_joints` (unless None), NaN/Inf).
    """
    arrays = load_npz(path, what="deform-and-learn params")
    missing = [key for key in PARAM_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"{path}: deform-and-learn params lack arrays {missing} (has {sorted(arrays)})")
    params = {key: np.asarray(arrays[key], np.float32) for key in PARAM_KEYS}
    try:
        check_params(params)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    found = params["scales"].shape[-1]
    if num_joints is not None and found != num_joints:
        raise ValueError(f"{path}: params are for {found} joints, expected {num_joints}")
    for key, value in params.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: params[{key!r}] contains NaN or infinite values")
    return params


def predict_points(body: BodyModel, params: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Image-plane predictions of one θ (vmap for a batch).

    Returns a dict:
      vertices_xy (V, 2), vertices_depth (V,), joints_xy (J, 2), joints_depth (J,)  normalised image units
      joints_cam (J, 3), vertices_cam (V, 3)  R·X in metres (camera-axes body frame, root at the
                                              template root, no translation): for MPJPE after
                                              root alignment.
    """
    check_params(params, batch=())
    out = posed_body(body, params)
    rotation = gram_schmidt(params["rotation"])
    vertices_xy, vertices_depth = weak_perspective(out.vertices, rotation, params["cam_scale"], params["cam_trans"])
    joints_xy, joints_depth = weak_perspective(out.joints, rotation, params["cam_scale"], params["cam_trans"])
    return {
        "vertices_xy": vertices_xy,
        "vertices_depth": vertices_depth,
        "joints_xy": joints_xy,
        "joints_depth": joints_depth,
        "joints_cam": out.joints @ rotation.T,
        "vertices_cam": out.vertices @ rotation.T,
    }


__all__ = [
    "INITIAL_ROTATION", "PARAM_KEYS", "PARAM_SHAPES", "PARAM_SIZE", "Params", "check_params", "concat_params",
    "full_pose", "index_params", "initial_params", "load_params_npz", "param_shapes", "params_to_vector",
    "predict_points", "save_params_npz", "stack_params", "vector_to_params",
]
