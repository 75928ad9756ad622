"""Body parameters of a fit: a dict pytree, its conversions, and files holding it.

A `BodyParams` dict has the keys of `PARAM_KEYS`:
  "global_orient" (..., 3)      root rotation, axis-angle radians (world frame, about the root joint)
  "body_pose"     (..., J-1, 3) local joint rotations of joints 1..J-1, axis-angle radians
  "betas"         (..., K)      shape coefficients
  "transl"        (..., 3)      translation in metres, added after posing
Batched parameters carry the same leading axes on every leaf. Splitting the root from the body pose
lets a solver stage free the global orientation and translation alone (SMPLify's first stage).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies.model import BodyModel, BodyOutput, forward
from jaxpose.io.arrays import load_npz
from jaxpose.io.atomic import atomic_save_npz

PARAM_KEYS = ("global_orient", "body_pose", "betas", "transl")

BodyParams = dict[str, jax.Array]


def params_from_pose(pose, betas, transl) -> BodyParams:
    """`BodyParams` from a full pose (..., J, 3) (joint 0 = root), betas (..., K) and transl (..., 3)."""
    pose = jnp.asarray(pose)
    if pose.ndim < 2 or pose.shape[-1] != 3:
        raise ValueError(f"pose must have shape (..., J, 3) axis-angle radians, got {pose.shape}")
    betas = jnp.asarray(betas, pose.dtype)
    transl = jnp.asarray(transl, pose.dtype)
    if transl.shape[-1:] != (3,):
        raise ValueError(f"transl must have shape (..., 3), got {transl.shape}")
    return {"global_orient": pose[..., 0, :], "body_pose": pose[..., 1:, :], "betas": betas, "transl": transl}


def check_params(params: Mapping[str, jax.Array], body: BodyModel | None = None) -> None:
    """Raise a ValueError naming the problem if `params` is not a `BodyParams` (for `body`, if given)."""
    if not isinstance(params, Mapping) or set(params) != set(PARAM_KEYS):
        keys = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"body parameters need exactly the keys {list(PARAM_KEYS)}, got {keys}")
    batch = jnp.shape(params["transl"])[:-1]
    expected = {"global_orient": (3,), "transl": (3,)}
    if body is not None:
        expected["body_pose"] = (body.num_joints - 1, 3)
    for key, tail in expected.items():
        shape = jnp.shape(params[key])
        if shape != batch + tail:
            raise ValueError(f"body parameter {key!r} must have shape {batch + tail}, got {shape}")
    betas = jnp.shape(params["betas"])
    if betas[:-1] != batch or (body is not None and betas[-1] > body.num_betas):
        limit = "" if body is None else f" with K <= {body.num_betas}"
        raise ValueError(f"body parameter 'betas' must have shape {batch + ('K',)}{limit}, got {betas}")


def full_pose(params: Mapping[str, jax.Array]) -> jax.Array:
    """(..., J, 3) axis-angle pose with the root first."""
    return jnp.concatenate([params["global_orient"][..., None, :], params["body_pose"]], axis=-2)


def pose_body(body: BodyModel, params: Mapping[str, jax.Array]) -> BodyOutput:
    """Posed vertices (..., V, 3) and joints (..., J, 3) in metres; pure, jit/vmap/grad-able."""
    return forward(body, params["betas"], full_pose(params), params["transl"])


def zero_params(body: BodyModel, num_betas: int | None = None, dtype=jnp.float32) -> BodyParams:
    """Rest pose, mean shape, no translation."""
    k = body.num_betas if num_betas is None else int(num_betas)
    return {
        "global_orient": jnp.zeros(3, dtype),
        "body_pose": jnp.zeros((body.num_joints - 1, 3), dtype),
        "betas": jnp.zeros(k, dtype),
        "transl": jnp.zeros(3, dtype),
    }


def take_params(params: Mapping[str, jax.Array], index) -> BodyParams:
    """Select people from batched params along the leading axis (an int or an index array)."""
    return {key: params[key][index] for key in PARAM_KEYS}


def save_params_npz(path: str | os.PathLike, params: Mapping[str, jax.Array], **extra_arrays) -> None:
    """Write params (and extra arrays) to an npz atomically; `load_params_npz` reads it back."""
    check_params(params)
    arrays = {key: np.asarray(params[key], np.float32) for key in PARAM_KEYS}
    atomic_save_npz(path, **arrays, **{k: np.asarray(v) for k, v in extra_arrays.items()})


def load_params_npz(path: str | os.PathLike, body: BodyModel | None = None) -> BodyParams:
    """Read `BodyParams` from an npz holding either the four keys, or "pose" (J, 3) + "betas" + "transl".

    Raises a ValueError naming the file and the problem (missing keys, wrong shapes, NaN/Inf).
    """
    arrays = load_npz(path, what="body parameters")
    try:
        if all(key in arrays for key in PARAM_KEYS):
            params = {key: jnp.asarray(arrays[key], jnp.float32) for key in PARAM_KEYS}
        elif {"pose", "betas"} <= set(arrays):
            transl = arrays.get("transl", np.zeros(3, np.float32))
            pose = np.asarray(arrays["pose"], np.float32)
            if pose.ndim == 1 and pose.size % 3 == 0:
                pose = pose.reshape(-1, 3)
            params = params_from_pose(jnp.asarray(pose), arrays["betas"].astype(np.float32), transl.astype(np.float32))
        else:
            raise ValueError(
                f"needs the keys {list(PARAM_KEYS)} or 'pose' (J, 3) + 'betas' (+ 'transl'), has {sorted(arrays)}"
            )
        check_params(params, body)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    for key, value in params.items():
        if not bool(jnp.all(jnp.isfinite(value))):
            raise ValueError(f"{path}: body parameter {key!r} contains NaN or infinite values")
    return params


__all__ = [
    "PARAM_KEYS", "BodyParams", "check_params", "full_pose", "load_params_npz", "params_from_pose",
    "pose_body", "save_params_npz", "take_params", "zero_params",
]
