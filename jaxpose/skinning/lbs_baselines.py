"""AVG-LBS and FIRST-LBS: LBS-only reposing baselines of the INS comparison table.

The INS paper's exact definitions are unread (docs/skinning.md, "LBS baselines";
**[unverified]**); this module is jaxpose's design, following the names:

  1. Skinning weights of the clothed mesh (V vertices, one shared topology across frames, as in CAPE
     and the synthetic data) are transferred from the subject's minimal body, either from the nearest
     body vertex or barycentrically from the closest point on the closest body triangle
     (`transfer_skinning_weights`). The lookup is done where both meshes are in the same pose, e.g.
     the first training frame against the minimal body posed with that frame's pose.
  2. Every training frame is unposed to canonical space by inverse LBS of its vertices. A vertex's
     weights are known, so this is closed-form per vertex: x_c = A⁻¹ (x − a) with [A | a] = Σ_b w_b B_b
     (`unpose_vertices`), no root finding.
  3. FIRST-LBS: canonical mesh = the first training frame unposed (`fit_first_lbs`).
     AVG-LBS: canonical mesh = the per-vertex mean of all unposed training frames (`fit_avg_lbs`),
     which averages out pose-dependent (non-LBS) deformation.
  4. Reposing to a target pose: forward LBS of the canonical mesh with the same weights
     (`repose_lbs`); the reposed mesh (vertices + the frames' faces) is what the evaluation harness
     labels with a winding-number inside test for the IoU metrics (`reposed_mesh`).

Transforms everywhere are bone transforms canonical → posed (`rectified_bone_transforms`); any fixed
canonical pose works, since unposing and reposing use the same one.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.geometry.root_finding import inverse_3x3, map_in_chunks
from jaxpose.skinning.field import blend_transforms, lbs_points


def _check_points(x, name: str) -> None:
    if x.ndim != 2 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {x.shape}")


def _check_transforms(transforms, num_joints: int, name: str = "transforms") -> None:
    if transforms.shape[-3:] != (num_joints, 4, 4):
        raise ValueError(f"{name} must have shape (..., {num_joints}, 4, 4), got {transforms.shape}")


def closest_point_barycentric(points: jax.Array, triangles: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Barycentric coordinates of the closest point on each triangle, and the squared distance.

    points (P, 3); triangles (F, 3, 3) corners. Returns bary (P, F, 3) (non-negative, summing to 1)
    and sq_dist (P, F). Region tests after Ericson, "Real-Time Collision Detection" §5.1.5.
    """
    a, b, c = (triangles[None, :, k, :] for k in range(3))
    p = points[:, None, :]
    ab, ac = b - a, c - a

    def dot(u, v):
        return jnp.sum(u * v, axis=-1)

    ap, bp, cp = p - a, p - b, p - c
    d1, d2 = dot(ab, ap), dot(ac, ap)
    d3, d4 = dot(ab, bp), dot(ac, bp)
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2

    def safe_div(num, den):
        return num / jnp.where(den == 0, 1.0, den)

    def bary(u, v, w):
        return jnp.stack(jnp.broadcast_arrays(u, v, w), axis=-1)

    zero, one = jnp.zeros_like(d1), jnp.ones_like(d1)
    denom = va + vb + vc
    v_in, w_in = safe_div(vb, denom), safe_div(vc, denom)
    result = bary(1.0 - v_in - w_in, v_in, w_in)
    w_bc = safe_div(d4 - d3, (d4 - d3) + (d5 - d6))
    result = jnp.where(((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0))[..., None], bary(zero, 1.0 - w_bc, w_bc), result)
    w_ac = safe_div(d2, d2 - d6)
    result = jnp.where(((vb <= 0) & (d2 >= 0) & (d6 <= 0))[..., None], bary(1.0 - w_ac, zero, w_ac), result)
    result = jnp.where(((d6 >= 0) & (d5 <= d6))[..., None], bary(zero, zero, one), result)
    v_ab = safe_div(d1, d1 - d3)
    result = jnp.where(((vc <= 0) & (d1 >= 0) & (d3 <= 0))[..., None], bary(1.0 - v_ab, v_ab, zero), result)
    result = jnp.where(((d3 >= 0) & (d4 <= d3))[..., None], bary(zero, one, zero), result)
    result = jnp.where(((d1 <= 0) & (d2 <= 0))[..., None], bary(one, zero, zero), result)
    closest = jnp.einsum("pfk,fkc->pfc", result, triangles)
    return result, jnp.sum((closest - p) ** 2, axis=-1)


def transfer_skinning_weights(
    points: jax.Array,
    body_vertices: jax.Array,
    body_weights: jax.Array,
    body_faces: jax.Array | None = None,
    *,
    method: str = "barycentric",
    chunk_size: int = 256,
) -> jax.Array:
    """Skinning weights (P, J) for points (P, 3) from a body mesh in the same pose.

    body_vertices (V, 3), body_weights (V, J), body_faces (F, 3) int (needed for "barycentric").
    method "nearest": the weights of the nearest body vertex; "barycentric": the weights interpolated
    at the closest point on the closest body triangle. Brute force over vertices / faces, `chunk_size`
    points per pass (memory O(chunk_size · F)).
    """
    _check_points(points, "points")
    _check_points(body_vertices, "body_vertices")
    if body_weights.ndim != 2 or body_weights.shape[0] != body_vertices.shape[0]:
        raise ValueError(f"body_weights must have shape ({body_vertices.shape[0]}, J), got {body_weights.shape}")
    if method == "nearest":

        def nearest(chunk):
            sq = jnp.sum((chunk[:, None, :] - body_vertices[None, :, :]) ** 2, axis=-1)
            return body_weights[jnp.argmin(sq, axis=1)]

        return map_in_chunks(nearest, chunk_size, points)
    if method != "barycentric":
        raise ValueError(f"method must be 'nearest' or 'barycentric', got {method!r}")
    if body_faces is None:
        raise ValueError("method='barycentric' needs body_faces (F, 3)")
    faces = jnp.asarray(body_faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"body_faces must have shape (F, 3), got {faces.shape}")
    triangles = body_vertices[faces]

    def barycentric(chunk):
        bary, sq = closest_point_barycentric(chunk, triangles)
        best = jnp.argmin(sq, axis=1)
        coords = jnp.take_along_axis(bary, best[:, None, None], axis=1)[:, 0]
        return jnp.einsum("pk,pkj->pj", coords, body_weights[faces[best]])

    return map_in_chunks(barycentric, chunk_size, points)


def unpose_vertices(vertices: jax.Array, weights: jax.Array, transforms: jax.Array) -> jax.Array:
    """Closed-form inverse LBS of vertices with known weights: (V, 3), (V, J), (J, 4, 4) → (V, 3).

    x_c = A⁻¹ (x − a) with [A | a] = Σ_b w_b B_b, the exact inverse of `lbs_points` for these weights.
    """
    _check_points(vertices, "vertices")
    if weights.shape != (vertices.shape[0], transforms.shape[0]):
        raise ValueError(f"weights must have shape ({vertices.shape[0]}, {transforms.shape[0]}), got {weights.shape}")
    blended = blend_transforms(weights, transforms)
    return jnp.einsum("vab,vb->va", inverse_3x3(blended[:, :, :3]), vertices - blended[:, :, 3])


def _check_frames(frames_vertices, frames_transforms, weights) -> None:
    if frames_vertices.ndim != 3 or frames_vertices.shape[-1] != 3 or frames_vertices.shape[0] == 0:
        raise ValueError(f"frames_vertices must have shape (T, V, 3) with T >= 1, got {frames_vertices.shape}")
    num_frames, num_vertices, _ = frames_vertices.shape
    if weights.ndim != 2 or weights.shape[0] != num_vertices:
        raise ValueError(f"weights must have shape ({num_vertices}, J), got {weights.shape}")
    num_joints = weights.shape[1]
    if frames_transforms.shape != (num_frames, num_joints, 4, 4):
        raise ValueError(f"frames_transforms must have shape ({num_frames}, {num_joints}, 4, 4), got {frames_transforms.shape}")


def fit_first_lbs(frames_vertices: jax.Array, frames_transforms: jax.Array, weights: jax.Array) -> jax.Array:
    """FIRST-LBS canonical mesh (V, 3): the first frame (T, V, 3)[0] unposed with its transforms
    (T, J, 4, 4)[0] and the vertex weights (V, J)."""
    _check_frames(frames_vertices, frames_transforms, weights)
    return unpose_vertices(frames_vertices[0], weights, frames_transforms[0])


def fit_avg_lbs(frames_vertices: jax.Array, frames_transforms: jax.Array, weights: jax.Array) -> jax.Array:
    """AVG-LBS canonical mesh (V, 3): per-vertex mean over all frames (T, V, 3) unposed with their
    transforms (T, J, 4, 4) and the shared vertex weights (V, J)."""
    _check_frames(frames_vertices, frames_transforms, weights)
    unposed = jax.vmap(unpose_vertices, in_axes=(0, None, 0))(frames_vertices, weights, frames_transforms)
    return jnp.mean(unposed, axis=0)


def repose_lbs(canonical: jax.Array, weights: jax.Array, transforms: jax.Array) -> jax.Array:
    """Forward LBS of a canonical mesh (V, 3) with weights (V, J) to one pose (J, 4, 4) → (V, 3), or to
    a batch of poses (P, J, 4, 4) → (P, V, 3)."""
    _check_points(canonical, "canonical")
    _check_transforms(transforms, weights.shape[-1])
    if transforms.ndim == 3:
        return lbs_points(canonical, weights, transforms)
    if transforms.ndim != 4:
        raise ValueError(f"transforms must have shape (J, 4, 4) or (P, J, 4, 4), got {transforms.shape}")
    return jax.vmap(lbs_points, in_axes=(None, None, 0))(canonical, weights, transforms)


@dataclasses.dataclass(frozen=True)
class LBSBaseline:
    """A fitted AVG-LBS / FIRST-LBS model (a JAX pytree; `kind` is static).

    canonical_vertices (V, 3), weights (V, J), faces (F, 3) int32 (the frames' shared topology).
    """

    canonical_vertices: jax.Array
    weights: jax.Array
    faces: jax.Array
    kind: str = "avg"


jax.tree_util.register_dataclass(LBSBaseline, data_fields=["canonical_vertices", "weights", "faces"], meta_fields=["kind"])


def fit_lbs_baseline(
    kind: str, frames_vertices: jax.Array, frames_transforms: jax.Array, weights: jax.Array, faces
) -> LBSBaseline:
    """Fit "avg" (AVG-LBS) or "first" (FIRST-LBS) from training frames (T, V, 3), their transforms
    (T, J, 4, 4), the vertex weights (V, J) and the shared faces (F, 3)."""
    fits = {"avg": fit_avg_lbs, "first": fit_first_lbs}
    if kind not in fits:
        raise ValueError(f"kind must be 'avg' or 'first', got {kind!r}")
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must be an integer array of shape (F, 3), got {faces.shape} {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= frames_vertices.shape[1]):
        raise ValueError(f"face indices must be in [0, {frames_vertices.shape[1]}), got [{faces.min()}, {faces.max()}]")
    canonical = fits[kind](frames_vertices, frames_transforms, weights)
    return LBSBaseline(canonical_vertices=canonical, weights=weights, faces=jnp.asarray(faces, jnp.int32), kind=kind)


def reposed_mesh(baseline: LBSBaseline, transforms: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The baseline's mesh in a target pose: vertices (V, 3) (or (P, V, 3) for (P, J, 4, 4)) and faces
    (F, 3), for an inside test (winding number) at IoU evaluation points."""
    return repose_lbs(baseline.canonical_vertices, baseline.weights, transforms), baseline.faces


def fit_free_lbs(frames_vertices, frames_transforms, weights, *, bones_per_vertex: int = 4, ridge: float = 1e-8) -> np.ndarray:
    """The best LBS of a vertex track with free weights AND free rest positions (a diagnostic, float64).

    Per vertex, over its `bones_per_vertex` bones of largest `weights` (V, J), fit q_b ∈ R⁴ in
    v_t = Σ_b [B_b,t]₃ₓ₄ q_b by linear least squares over the frames (T, V, 3) with transforms
    (T, J, 4, 4). LBS is the special case q_b = w_b [r; 1], so this relaxation fits at least as well
    as any LBS with those bones; a residual it leaves on held-out poses (`free_lbs_predict`) cannot be
    removed by any choice of skinning weights or rest shape. Returns q (V, bones_per_vertex, 4) and the
    bone ids (V, bones_per_vertex) packed as a tuple.
    """
    vertices = np.asarray(frames_vertices, np.float64)
    transforms = np.asarray(frames_transforms, np.float64)
    weights = np.asarray(weights)
    _check_frames(vertices, transforms, weights)
    if not 1 <= bones_per_vertex <= weights.shape[1]:
        raise ValueError(f"bones_per_vertex must be in [1, {weights.shape[1]}], got {bones_per_vertex}")
    bones = np.argsort(-weights, axis=1)[:, :bones_per_vertex]  # (V, K)
    blocks = transforms[:, bones, :3, :]  # (T, V, K, 3, 4)
    design = np.transpose(blocks, (1, 0, 3, 2, 4)).reshape(vertices.shape[1], -1, bones_per_vertex * 4)  # (V, 3T, 4K)
    target = np.transpose(vertices, (1, 0, 2)).reshape(vertices.shape[1], -1)  # (V, 3T)
    normal = np.einsum("vek,vel->vkl", design, design) + ridge * np.eye(bones_per_vertex * 4)
    solution = np.linalg.solve(normal, np.einsum("vek,ve->vk", design, target)[..., None])[..., 0]
    return solution.reshape(-1, bones_per_vertex, 4), bones


def free_lbs_predict(fit, frames_transforms) -> np.ndarray:
    """Vertices (T, V, 3) of a `fit_free_lbs` fit in the poses (T, J, 4, 4)."""
    q, bones = fit
    blocks = np.asarray(frames_transforms, np.float64)[:, bones, :3, :]  # (T, V, K, 3, 4)
    return np.einsum("tvkab,vkb->tva", blocks, q)


__all__ = [
    "LBSBaseline",
    "fit_free_lbs",
    "free_lbs_predict",
    "closest_point_barycentric",
    "fit_avg_lbs",
    "fit_first_lbs",
    "fit_lbs_baseline",
    "repose_lbs",
    "reposed_mesh",
    "transfer_skinning_weights",
    "unpose_vertices",
]
