"""One differentiable chain: body shape -> body model -> 3D-CoreNet pose transfer -> renderer -> image loss.

    betas --forward(body)--> identity mesh --model(identity, pose mesh)--> transferred mesh
          --camera, rasteriser--> depth image, soft silhouette --> image-space loss

`shape_gradient_through_transfer` returns the loss and its `jax.grad` with respect to the identity's
body-shape coefficients (plus the intermediate images); `chain_loss` the loss alone; `render_transfer`
the images (e.g. to make a target at other betas). Every stage is plain JAX, so the gradient is exact up
to floating point; `tests/test_differentiable_chain.py` checks it against central finite differences
in float64.

Loss (each term a mean over the H x W pixels; a zero weight drops a term):

    depth_weight      * mean over pixels covered by the rendering AND the target of (depth - target_depth)^2
  + silhouette_weight * mean of (soft_silhouette(sigma) - target_silhouette)^2

The depth term uses the hard rasteriser with visibility held fixed: `face_id` (which face covers which
pixel) is found by rasterising the current mesh (no gradient) unless given, and the depth is then
recomputed differentiably from that face map (`jaxpose.render.barycentrics_from_face_ids`). Pass the
returned `face_id` back to compare losses at several betas under one visibility (as a finite-difference
check must). The silhouette term (`jaxpose.render.soft_silhouette`) has gradients through the outline.

Transfer conventions (as `jaxpose.pose_transfer.api`): both meshes are centred on their bounding boxes
before the model sees them; its output is re-centred on its own bounding box and moved to the identity's
bounding-box centre. The model runs in evaluation mode on a copy (the caller's module is unchanged) with
its floating-point parameters cast to the dtype of `betas`. All three functions share one compiled
program per (model structure, image size, static options).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpose.bodies.model import BodyModel, forward
from jaxpose.render import Camera, barycentrics_from_face_ids, rasterize, screen_vertices, soft_silhouette


class RenderedTransfer(NamedTuple):
    """The transferred mesh and its (H, W) images.

    vertices: (V, 3) transferred mesh (identity topology, at the identity's bounding-box centre), metres.
    face_id: (H, W) int32 visible face (-1 background): the visibility the depth term used.
    depth: (H, W) camera depth, metres (0 on background), rendered with `face_id`.
    silhouette: (H, W) soft coverage in [0, 1] (blur `sigma` px).
    """

    vertices: jax.Array
    face_id: jax.Array
    depth: jax.Array
    silhouette: jax.Array


@dataclasses.dataclass(frozen=True)
class ChainResult:
    """Output of `shape_gradient_through_transfer`: loss (), grad_betas (K',) = d loss / d betas, and
    `rendered` (`RenderedTransfer` at the given betas)."""

    loss: jax.Array
    grad_betas: jax.Array
    rendered: RenderedTransfer


def _bbox_centre(points: jax.Array) -> jax.Array:
    """(1, 3) centre of the bounding box of points (N, 3)."""
    return 0.5 * (points.max(axis=0, keepdims=True) + points.min(axis=0, keepdims=True))


def _cast_floats(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _chain(betas, graphdef, model_state, body, identity_pose, pose_vertices, camera, face_id, find_faces,
           target_depth, target_silhouette, depth_weight, silhouette_weight, sigma, *, cutoff):  # fmt: skip
    """(loss (), RenderedTransfer); `find_faces` () bool: rasterise for `face_id` instead of using it."""
    dtype = betas.dtype
    model = nnx.merge(graphdef, _cast_floats(model_state, dtype))
    model.eval()
    identity = forward(body, betas, identity_pose.astype(dtype)).vertices
    pose_vertices = pose_vertices.astype(dtype)
    identity_centre = _bbox_centre(identity)
    output = model((identity - identity_centre)[None], (pose_vertices - _bbox_centre(pose_vertices))[None]).output[0]
    vertices = output - _bbox_centre(output) + identity_centre

    screen = screen_vertices(vertices, camera)
    faces = jnp.asarray(body.faces, jnp.int32)
    found = rasterize(jax.lax.stop_gradient(screen), faces, camera.height, camera.width).face_id
    face_id = jnp.where(find_faces, found, face_id)
    depth = barycentrics_from_face_ids(screen, faces, face_id).depth
    silhouette = soft_silhouette(screen, faces, camera.height, camera.width, sigma=sigma, cutoff=cutoff)

    both = (face_id >= 0) & (target_depth > 0)
    depth_term = jnp.mean(jnp.where(both, depth - target_depth, 0.0) ** 2)
    silhouette_term = jnp.mean((silhouette - target_silhouette) ** 2)
    loss = depth_weight * depth_term + silhouette_weight * silhouette_term
    return loss, RenderedTransfer(vertices, face_id, depth, silhouette)


_chain_value_and_grad = jax.jit(jax.value_and_grad(_chain, has_aux=True), static_argnames=("graphdef", "cutoff"))


def _run(model, body, betas, identity_pose, pose_vertices, camera, face_id, target_depth, target_silhouette,
         depth_weight, silhouette_weight, sigma, cutoff):  # fmt: skip
    """Validate, then run the compiled chain: ((loss, RenderedTransfer), grad_betas)."""
    betas = jnp.asarray(betas)
    if betas.ndim != 1 or not jnp.issubdtype(betas.dtype, jnp.floating):
        raise ValueError(f"betas must be a float vector (K',), got shape {betas.shape} dtype {betas.dtype}")
    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a jaxpose.render.Camera, got {type(camera).__name__}")
    size = (camera.height, camera.width)
    dtype = betas.dtype
    checks = (("target_depth", target_depth, depth_weight), ("target_silhouette", target_silhouette, silhouette_weight),
              ("face_id", face_id, 1.0))  # fmt: skip
    for name, value, weight in checks:
        if value is not None and jnp.shape(value) != size:
            raise ValueError(f"{name} must have the image shape (H, W) = {size}, got {jnp.shape(value)}")
        if value is None and float(weight) != 0.0 and name != "face_id":
            raise ValueError(f"{name} is needed when its weight is non-zero (it is {weight})")
    identity_pose, pose_vertices = jnp.asarray(identity_pose), jnp.asarray(pose_vertices)
    if identity_pose.shape != (body.num_joints, 3):
        raise ValueError(f"identity_pose must have shape ({body.num_joints}, 3), got {identity_pose.shape}")
    if pose_vertices.ndim != 2 or pose_vertices.shape[1] != 3:
        raise ValueError(f"pose_vertices must have shape (N, 3), got {pose_vertices.shape}")
    graphdef, state = nnx.split(model)
    zeros = jnp.zeros(size, dtype)
    return _chain_value_and_grad(
        betas, graphdef, state, body, identity_pose, pose_vertices, camera,
        jnp.full(size, -1, jnp.int32) if face_id is None else jnp.asarray(face_id, jnp.int32),
        jnp.asarray(face_id is None),
        zeros if target_depth is None else jnp.asarray(target_depth, dtype),
        zeros if target_silhouette is None else jnp.asarray(target_silhouette, dtype),
        jnp.asarray(depth_weight, dtype), jnp.asarray(silhouette_weight, dtype), jnp.asarray(sigma, dtype),
        cutoff=float(cutoff),
    )  # fmt: skip


def shape_gradient_through_transfer(
    model: nnx.Module,
    body: BodyModel,
    betas,
    identity_pose,
    pose_vertices,
    camera: Camera,
    *,
    target_depth=None,
    target_silhouette=None,
    face_id=None,
    depth_weight: float = 1.0,
    silhouette_weight: float = 1.0,
    sigma: float = 1.0,
    cutoff: float = 16.0,
) -> ChainResult:
    """Image loss of the transferred, rendered identity and its gradient with respect to `betas`.

    Args:
      model: a pose-transfer `nnx.Module` called as `model(identity (1, V, 3), pose (1, N, 3))` and
        returning an object with `.output` (1, V, 3) (e.g. `jaxpose.pose_transfer.CoreNet`).
      body: the identity's body model (e.g. `default_body("low")`; `.astype(np.float64)` for float64).
      betas: (K',) shape coefficients, K' <= body.num_betas; their float dtype is the chain's dtype.
      identity_pose: (J, 3) axis-angle radians of the identity mesh (zeros: the rest / T pose).
      pose_vertices: (N, 3) metres, the mesh whose pose is transferred (e.g. the body at betas = 0
        in another pose, `forward(body, zeros, pose).vertices`).
      camera: `jaxpose.render.Camera` of the (H, W) image, in world coordinates of the identity.
      target_depth: (H, W) metres, 0 on background; required when `depth_weight` != 0.
      target_silhouette: (H, W) in [0, 1]; required when `silhouette_weight` != 0.
      face_id: (H, W) visibility for the depth term; None: the hard rendering at `betas`.
      depth_weight, silhouette_weight: weights of the two loss terms.
      sigma: soft-silhouette blur in pixels; cutoff: its face-skipping distance in units of sigma
        (with cutoff * sigma beyond the image size nothing is skipped and the term is smooth).

    Returns `ChainResult(loss (), grad_betas (K',), rendered: RenderedTransfer)`.
    """
    (loss, rendered), grad = _run(model, body, betas, identity_pose, pose_vertices, camera, face_id, target_depth,
                                  target_silhouette, depth_weight, silhouette_weight, sigma, cutoff)
    return ChainResult(loss, grad, rendered)


def chain_loss(model: nnx.Module, body: BodyModel, betas, identity_pose, pose_vertices, camera: Camera, *,
               face_id, target_depth=None, target_silhouette=None, depth_weight: float = 1.0,
               silhouette_weight: float = 1.0, sigma: float = 1.0, cutoff: float = 16.0) -> jax.Array:  # fmt: skip
    """The loss () of `shape_gradient_through_transfer` (same arguments) with a required `face_id`, so
    that losses at different betas share one visibility."""
    if face_id is None:
        raise ValueError("chain_loss needs a face_id (e.g. shape_gradient_through_transfer(...).rendered.face_id)")
    (loss, _), _ = _run(model, body, betas, identity_pose, pose_vertices, camera, face_id, target_depth,
                        target_silhouette, depth_weight, silhouette_weight, sigma, cutoff)
    return loss


def render_transfer(model: nnx.Module, body: BodyModel, betas, identity_pose, pose_vertices, camera: Camera, *,
                    sigma: float = 1.0, cutoff: float = 16.0) -> RenderedTransfer:  # fmt: skip
    """The transferred mesh at `betas` and its images (`RenderedTransfer`): e.g. a target for the loss.
    Arguments as `shape_gradient_through_transfer`."""
    (_, rendered), _ = _run(model, body, betas, identity_pose, pose_vertices, camera, None, None, None, 0.0, 0.0,
                            sigma, cutoff)
    return rendered
