"""θ from ground truth: the segment-scale parameters that best reproduce a known body seen by a camera.

Used by the "fully supervised" upper bound (the regressor trained on these θ instead of registrations).
Reconstruction (jaxpose's): for a GT body (betas, world pose) and camera (R_c, t_c, intrinsics),
  pose      = the GT pose of joints 1..J−1 (same skeleton, same relative rotations);
  rotation  = R_c · R(root): the body frame rotated into the camera frame;
  scales    closed-form least squares on bone lengths: bone j (parent p) has length s_p·l_j in the
            model (l_j the template's length) and L_j in the GT rest skeleton, so
            s_p = Σ_children L_c l_c / Σ_children l_c²; a leaf segment (no child bone) takes its
            parent's scale;
  cam_scale, cam_trans  least squares of the model's weak-perspective 2D joints to the GT joints
            projected by the camera (normalised image units).
With betas = 0 and an orthographic camera the result reproduces the GT 2D joints exactly.
Pure JAX: `ground_truth_params` is jit/vmap-able (the image size and projection kind are static).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies.model import BodyModel, forward
from jaxpose.deform_learn.body import posed_body
from jaxpose.deform_learn.camera import pixels_to_normalised
from jaxpose.geometry.rotations import axis_angle_to_matrix
from jaxpose.render.camera import Camera, make_camera, project


def bone_length_scales(body: BodyModel, betas: jax.Array) -> jax.Array:
    """(..., K') betas -> (..., J) segment scales by least squares on rest bone lengths (module docstring)."""
    betas = jnp.asarray(betas)
    if betas.ndim < 1 or betas.shape[-1] > body.num_betas:
        raise ValueError(f"betas must have shape (..., K') with K' <= {body.num_betas}, got {betas.shape}")
    dtype = jnp.result_type(betas.dtype, body.j_template.dtype, float)
    template = jnp.asarray(body.j_template, dtype)
    j_shapedirs = jnp.asarray(body.j_shapedirs, dtype)[..., : betas.shape[-1]]
    offsets = jnp.einsum("jck,...k->...jc", j_shapedirs, betas.astype(dtype))
    gt_rest = jnp.broadcast_to(template, offsets.shape) + offsets  # exact rest joints, as shaped_rest
    parents = body.parents
    num_joints = len(parents)
    numerator = [jnp.zeros(betas.shape[:-1], dtype) for _ in range(num_joints)]
    denominator = [0.0] * num_joints
    for j in range(1, num_joints):
        p = parents[j]
        length = jnp.linalg.norm(template[j] - template[p])
        numerator[p] = numerator[p] + jnp.linalg.norm(gt_rest[..., j, :] - gt_rest[..., p, :], axis=-1) * length
        denominator[p] = denominator[p] + length**2
    scales = []
    for j in range(num_joints):  # parents come first: a leaf inherits its parent's final scale
        if isinstance(denominator[j], float):  # no child bone
            scales.append(scales[parents[j]] if j > 0 else jnp.ones(betas.shape[:-1], dtype))
        else:
            scales.append(numerator[j] / denominator[j])
    return jnp.stack(scales, axis=-1)


def ground_truth_params(body: BodyModel, betas, pose, camera: Camera, *, transl=None) -> dict[str, jax.Array]:
    """The segment-scale θ that best reproduces the GT body seen by `camera` (reconstruction, module docstring).

    Args:
      body: the body; betas (K',) its shape; pose (J, 3) world axis-angle (root first); camera: world →
        camera `Camera` (perspective or orthographic); transl: optional (3,) body translation, metres.
    Returns a θ dict of one person (JAX arrays, float dtype of the inputs). jit/vmap-able.
    """
    pose = jnp.asarray(pose)
    num_joints = body.num_joints
    if pose.shape != (num_joints, 3):
        raise ValueError(f"pose must have shape ({num_joints}, 3) world axis-angle (root first), got {pose.shape}")
    betas = jnp.asarray(betas)
    if betas.ndim != 1:
        raise ValueError(f"betas must have shape (K',), got {betas.shape}")
    dtype = jnp.result_type(pose.dtype, betas.dtype, camera.rotation.dtype, float)
    pose, betas = pose.astype(dtype), betas.astype(dtype)
    transl = jnp.zeros(3, dtype) if transl is None else jnp.asarray(transl, dtype)
    gt_joints = forward(body, betas, pose, transl).joints
    pixels, _ = project(gt_joints, camera)
    keypoints = pixels_to_normalised(pixels, camera.height, camera.width).astype(dtype)

    scales = bone_length_scales(body, betas).astype(dtype)
    rotation = jnp.asarray(camera.rotation, dtype) @ axis_angle_to_matrix(pose[0])
    model_joints = posed_body(body, {"pose": pose[1:], "scales": scales}).joints.astype(dtype)
    projected = (model_joints @ rotation.T)[:, :2]
    a = projected - jnp.mean(projected, axis=0, keepdims=True)
    b = keypoints - jnp.mean(keypoints, axis=0, keepdims=True)
    cam_scale = jnp.sum(a * b) / jnp.sum(a * a)
    cam_trans = jnp.mean(keypoints, axis=0) - cam_scale * jnp.mean(projected, axis=0)
    return {"pose": pose[1:], "scales": scales, "rotation": rotation.reshape(9), "cam_scale": cam_scale,
            "cam_trans": cam_trans}


def ground_truth_params_batch(body: BodyModel, betas, pose, camera_rotation, camera_translation, camera_intrinsics,
                              height: int, width: int, *, transl=None, orthographic: bool = False
                              ) -> dict[str, np.ndarray]:
    """`ground_truth_params` of N people (e.g. a synthetic dataset's arrays), as float32 NumPy arrays.

    betas (N, K'); pose (N, J, 3) world axis-angle; camera_rotation (N, 3, 3), camera_translation (N, 3)
    world → camera; camera_intrinsics (N, 4) fx, fy, cx, cy in pixels (pixels per metre when
    `orthographic`); height, width in pixels; transl optional (N, 3) metres. One compiled call.
    """
    pose = np.asarray(pose, np.float32)
    n = pose.shape[0]
    transl = np.zeros((n, 3), np.float32) if transl is None else np.asarray(transl, np.float32)
    arrays = [np.asarray(a, np.float32) for a in (betas, pose, camera_rotation, camera_translation, camera_intrinsics, transl)]
    for name, value, shape in zip(("betas", "pose", "camera_rotation", "camera_translation", "camera_intrinsics", "transl"),
                                  arrays, ((n, None), (n, body.num_joints, 3), (n, 3, 3), (n, 3), (n, 4), (n, 3))):
        if value.ndim != len(shape) or any(want is not None and got != want for got, want in zip(value.shape, shape)):
            raise ValueError(f"{name} must have shape {tuple('K' if w is None else w for w in shape)}, got {value.shape}")
    out = _batch(body, *arrays, height=int(height), width=int(width), orthographic=bool(orthographic))
    return {key: np.asarray(value, np.float32) for key, value in out.items()}


@functools.partial(jax.jit, static_argnames=("height", "width", "orthographic"))
def _batch(body, betas, pose, rotation, translation, intrinsics, transl, *, height, width, orthographic):
    def one(b, p, r, t, k, tr):
        camera = make_camera(r, t, fx=k[0], fy=k[1], cx=k[2], cy=k[3], height=height, width=width,
                             orthographic=orthographic)
        return ground_truth_params(body, b, p, camera, transl=tr)

    return jax.vmap(one)(betas, pose, rotation, translation, intrinsics, transl)


def dataset_ground_truth_params(body: BodyModel, dataset) -> dict[str, np.ndarray]:
    """`ground_truth_params_batch` from a synthetic dataset dict (keys "betas", "pose", "image",
    "camera_rotation", "camera_translation", "camera_intrinsics", optional "transl"; perspective cameras)."""
    missing = [k for k in ("betas", "pose", "image", "camera_rotation", "camera_translation", "camera_intrinsics")
               if k not in dataset]
    if missing:
        raise ValueError(f"the dataset lacks {missing} needed for ground-truth params")
    height, width = np.shape(dataset["image"])[1:3]
    return ground_truth_params_batch(body, dataset["betas"], dataset["pose"], dataset["camera_rotation"],
                                     dataset["camera_translation"], dataset["camera_intrinsics"], int(height),
                                     int(width), transl=dataset.get("transl"))


__all__ = ["bone_length_scales", "dataset_ground_truth_params", "ground_truth_params", "ground_truth_params_batch"]
