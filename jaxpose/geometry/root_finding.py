"""Batched 3-D root finding and inverse linear blend skinning with implicit gradients (SNARF).

Inverse LBS: given a deformed (posed) point x_d, find canonical points x with
    f(x) = Σ_b w_b(x) B_b x − x_d = 0,
where w(x) is a canonical skinning-weight field and B_b the bone transforms (canonical → posed).
Several roots can exist (e.g. near touching limbs), so the search starts from several initial guesses
x_i = B_{b_i}⁻¹ x_d, one per "initial bone" b_i (SNARF: 9 bones in training, all 24 at test time).

Every solver here is a fixed-shape loop (`lax.while_loop` bounded by `max_steps`, stopping once no
point is active) over all points at once with per-point masks: converged points (best residual norm
< `tol`) and diverged points (current residual norm > `diverge`, or non-finite) are frozen, and the
best iterate seen so far is returned. The loops are not differentiated: `invert_lbs` runs them on
stop-gradient inputs and attaches the implicit-function-theorem gradient afterwards,
    x = x* − J⁻¹ (f(x*) − stop_gradient(f(x*))),   J = ∂f/∂x at x* (stop-gradient),
whose value is x* and whose derivative w.r.t. any input θ of f is −J⁻¹ ∂f/∂θ.
3×3 Jacobians come from `jax.jacfwd`, and 3×3 inverses are closed-form (adjugate / determinant).

Memory: a query holds O(N · I · J) floats (points × initial bones × bones); `chunk_size` bounds N per
pass (SNARF chunks its queries at 60k points), and per-point initial bones (`nearest_vertex_bones`)
let a caller try only the k most plausible bones instead of all 24.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.geometry.lbs import lbs_points

SNARF_TRAIN_BONES = (0, 1, 2, 4, 5, 16, 17, 18, 19)
"""SNARF's training initial bones: pelvis, hips, knees, shoulders, elbows (SMPL joint ids)."""
SNARF_TEST_BONES = tuple(range(24))
"""SNARF's evaluation initial bones: all 24 SMPL bones."""

_BROYDEN_DENOMINATOR_EPS = 1e-6  # SNARF keeps the rank-1 update's denominator |b| >= 1e-6.


class RootResult(NamedTuple):
    """Result of a batched root search.

    x              (N, 3) best iterate per point (the one with the smallest residual norm seen)
    residual_norm  (N,)   Euclidean norm of the residual at x
    converged      (N,)   bool, residual_norm < tol
    """

    x: jax.Array
    residual_norm: jax.Array
    converged: jax.Array


def inverse_3x3(matrices: jax.Array) -> jax.Array:
    """Closed-form inverse of (…, 3, 3) matrices (adjugate / determinant).

    A (near-)singular matrix gets its determinant clamped away from zero (keeping its sign) so the
    result stays finite; such points are then flagged by the solvers' convergence test.
    """
    if matrices.shape[-2:] != (3, 3):
        raise ValueError(f"inverse_3x3 expects (..., 3, 3) matrices, got {matrices.shape}")
    m = matrices
    cof0 = jnp.cross(m[..., 1, :], m[..., 2, :])
    cof1 = jnp.cross(m[..., 2, :], m[..., 0, :])
    cof2 = jnp.cross(m[..., 0, :], m[..., 1, :])
    det = jnp.sum(m[..., 0, :] * cof0, axis=-1)
    tiny = jnp.sqrt(jnp.finfo(m.dtype).tiny)
    safe_det = jnp.where(jnp.abs(det) < tiny, jnp.where(det < 0, -tiny, tiny), det)
    adjugate = jnp.stack([cof0, cof1, cof2], axis=-1)  # columns are the cofactor rows
    return adjugate / safe_det[..., None, None]


def _check_batch(x: jax.Array, name: str) -> None:
    if x.ndim != 2 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {x.shape}")


def _norm(v: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(v * v, axis=-1))


def _solver_state_init(residual_fn, x_init, tol):
    residual = residual_fn(x_init)
    if residual.shape != x_init.shape:
        raise ValueError(f"residual_fn must map (N, 3) to (N, 3), got {residual.shape} for input {x_init.shape}")
    norm = _norm(residual)
    active = (norm > tol) & jnp.isfinite(norm)
    best_norm = jnp.where(jnp.isfinite(norm), norm, jnp.inf)
    return residual, norm, active, best_norm


def broyden(
    residual_fn: Callable[[jax.Array], jax.Array],
    x_init: jax.Array,
    jacobian_inv_init: jax.Array,
    *,
    max_steps: int = 50,
    tol: float = 1e-5,
    diverge: float = 1.0,
) -> RootResult:
    """Batched Broyden ("good" update on the inverse Jacobian) for independent 3-D systems.

    residual_fn maps (N, 3) → (N, 3) row-wise (row n of the output depends only on row n of the
    input). x_init (N, 3); jacobian_inv_init (N, 3, 3) initial inverse Jacobians. Each step
    x ← x − H g(x), then the rank-1 update H ← H + (Δx − H Δg) Δxᵀ H / (Δxᵀ H Δg). A point stops when
    its best residual norm is below `tol` (converged) or its current norm exceeds `diverge` (metres
    for inverse LBS) or is not finite. Not differentiable: call it on stop-gradient inputs
    (`invert_lbs` attaches implicit gradients).
    """
    _check_batch(x_init, "x_init")
    if jacobian_inv_init.shape != x_init.shape[:1] + (3, 3):
        raise ValueError(f"jacobian_inv_init must have shape ({x_init.shape[0]}, 3, 3), got {jacobian_inv_init.shape}")
    residual, _, active, best_norm = _solver_state_init(residual_fn, x_init, tol)
    jac_inv = jacobian_inv_init.astype(x_init.dtype)
    update = -jnp.einsum("nab,nb->na", jac_inv, residual)

    def cond(state):
        step, *_, active, _ = state
        return (step < max_steps) & jnp.any(active)

    def body(state):
        step, x, residual, jac_inv, update, x_best, best_norm, active, _ = state
        delta_x = jnp.where(active[:, None], update, 0.0)
        x_new = x + delta_x
        residual_new = residual_fn(x_new)
        delta_residual = residual_new - residual
        norm = _norm(residual_new)
        finite = jnp.isfinite(norm)
        better = active & finite & (norm < best_norm)
        x_best = jnp.where(better[:, None], x_new, x_best)
        best_norm = jnp.where(better, norm, best_norm)
        x = jnp.where(active[:, None], x_new, x)
        residual = jnp.where(active[:, None], residual_new, residual)
        active = active & finite & (best_norm > tol) & (norm < diverge)

        v_t = jnp.einsum("na,nab->nb", delta_x, jac_inv)
        a = delta_x - jnp.einsum("nab,nb->na", jac_inv, delta_residual)
        b = jnp.sum(v_t * delta_residual, axis=-1)
        b = jnp.where(b >= 0, b + _BROYDEN_DENOMINATOR_EPS, b - _BROYDEN_DENOMINATOR_EPS)
        rank_one = (a / b[:, None])[:, :, None] * v_t[:, None, :]
        jac_inv = jnp.where(active[:, None, None], jac_inv + rank_one, jac_inv)
        update = -jnp.einsum("nab,nb->na", jac_inv, residual)
        return step + 1, x, residual, jac_inv, update, x_best, best_norm, active, norm

    state = (0, x_init, residual, jac_inv, update, x_init, best_norm, active, best_norm)
    _, _, _, _, _, x_best, best_norm, _, _ = jax.lax.while_loop(cond, body, state)
    return RootResult(x=x_best, residual_norm=best_norm, converged=best_norm < tol)


def newton(
    residual_fn: Callable[[jax.Array], jax.Array],
    jacobian_fn: Callable[[jax.Array], jax.Array],
    x_init: jax.Array,
    *,
    max_steps: int = 50,
    tol: float = 1e-5,
    diverge: float = 1.0,
) -> RootResult:
    """Batched Newton iterations x ← x − J(x)⁻¹ g(x) with closed-form 3×3 inverses.

    residual_fn (N, 3) → (N, 3) and jacobian_fn (N, 3) → (N, 3, 3), both row-wise. Same freezing,
    best-iterate and convergence rules as `broyden`. Not differentiable (see `broyden`).
    """
    _check_batch(x_init, "x_init")
    residual, _, active, best_norm = _solver_state_init(residual_fn, x_init, tol)

    def cond(state):
        step, *_, active = state
        return (step < max_steps) & jnp.any(active)

    def body(state):
        step, x, residual, x_best, best_norm, active = state
        delta_x = -jnp.einsum("nab,nb->na", inverse_3x3(jacobian_fn(x)), residual)
        x_new = x + jnp.where(active[:, None], delta_x, 0.0)
        residual_new = residual_fn(x_new)
        norm = _norm(residual_new)
        finite = jnp.isfinite(norm)
        better = active & finite & (norm < best_norm)
        x_best = jnp.where(better[:, None], x_new, x_best)
        best_norm = jnp.where(better, norm, best_norm)
        x = jnp.where(active[:, None], x_new, x)
        residual = jnp.where(active[:, None], residual_new, residual)
        active = active & finite & (best_norm > tol) & (norm < diverge)
        return step + 1, x, residual, x_best, best_norm, active

    state = (0, x_init, residual, x_init, best_norm, active)
    _, _, _, x_best, best_norm, _ = jax.lax.while_loop(cond, body, state)
    return RootResult(x=x_best, residual_norm=best_norm, converged=best_norm < tol)


def map_in_chunks(fn: Callable, chunk_size: int | None, *arrays: jax.Array):
    """Apply `fn(*arrays)` to consecutive chunks of `chunk_size` rows (leading axis) with `lax.map`.

    The last chunk is padded by repeating the final row and the padding is dropped from the output,
    so `fn` must be row-wise. `chunk_size=None` (or ≥ N) calls `fn` once. Returns what `fn` returns
    (a pytree of arrays with the leading axis N). Peak memory scales with `chunk_size`, not N.
    """
    num = arrays[0].shape[0]
    if any(a.shape[0] != num for a in arrays):
        raise ValueError(f"map_in_chunks: arrays disagree on the leading axis: {[a.shape for a in arrays]}")
    if chunk_size is None or chunk_size >= num:
        return fn(*arrays)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
    num_chunks = -(-num // chunk_size)
    pad = num_chunks * chunk_size - num

    def split(a):
        a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0) if pad else a
        return a.reshape((num_chunks, chunk_size) + a.shape[1:])

    out = jax.lax.map(lambda chunk: fn(*chunk), tuple(split(a) for a in arrays))
    return jax.tree.map(lambda o: o.reshape((num_chunks * chunk_size,) + o.shape[2:])[:num], out)


def nearest_vertex_bones(
    x_deformed: jax.Array, posed_vertices: jax.Array, vertex_weights: jax.Array, k: int
) -> jax.Array:
    """Bone pre-filter: the k bones with the largest skinning weight at each point's nearest vertex.

    x_deformed (N, 3); posed_vertices (V, 3) of a reference mesh in the same pose (e.g. the fitted
    minimal body); vertex_weights (V, J). Returns int32 (N, k) bone ids, usable as per-point
    `init_bones` in `invert_lbs` (k instead of 24 starts per point). O(N·V) distances: chunk N.
    """
    _check_batch(x_deformed, "x_deformed")
    _check_batch(posed_vertices, "posed_vertices")
    if vertex_weights.shape[0] != posed_vertices.shape[0]:
        raise ValueError(f"vertex_weights {vertex_weights.shape} do not match posed_vertices {posed_vertices.shape}")
    if not 1 <= k <= vertex_weights.shape[1]:
        raise ValueError(f"k must be in [1, {vertex_weights.shape[1]}], got {k}")
    sq = jnp.sum((x_deformed[:, None, :] - posed_vertices[None, :, :]) ** 2, axis=-1)
    nearest = jnp.argmin(sq, axis=1)
    return jax.lax.top_k(vertex_weights[nearest], k)[1].astype(jnp.int32)


def _init_bone_ids(init_bones, num_points: int, num_joints: int) -> jax.Array:
    if isinstance(init_bones, (tuple, list)):
        ids = np.asarray(init_bones, np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError(f"init_bones must be a non-empty sequence of bone ids, got {init_bones!r}")
        if ids.min() < 0 or ids.max() >= num_joints:
            raise ValueError(f"init_bones must be in [0, {num_joints}), got {tuple(ids.tolist())}")
        return jnp.broadcast_to(jnp.asarray(ids, jnp.int32), (num_points, ids.size))
    ids = jnp.asarray(init_bones)
    if ids.ndim != 2 or ids.shape[0] != num_points or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(
            f"per-point init_bones must be an integer array of shape ({num_points}, I), got {ids.shape} {ids.dtype}"
        )
    return ids.astype(jnp.int32)


def invert_lbs(
    x_deformed: jax.Array,
    weight_fn: Callable[[jax.Array], jax.Array],
    transforms: jax.Array,
    *,
    init_bones: Sequence[int] | jax.Array = SNARF_TRAIN_BONES,
    max_steps: int = 50,
    tol: float = 1e-5,
    diverge: float = 1.0,
    method: str = "broyden",
    jacobian_init: str = "blend",
    chunk_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Canonical correspondences of deformed points under forward LBS, with implicit gradients.

    Args:
      x_deformed: (N, 3) deformed points, metres.
      weight_fn: canonical points (M, 3) → skinning weights (M, J), row-wise (e.g. a `SkinningField`,
        or a lambda closing over one; whatever it closes over receives gradients).
      transforms: (J, 4, 4) bone transforms canonical → deformed (`rectified_bone_transforms`).
      init_bones: the initial bones, a sequence of ids shared by all points (`SNARF_TRAIN_BONES`,
        `SNARF_TEST_BONES`) or an int array (N, I) per point (`nearest_vertex_bones`).
      max_steps, tol, diverge: solver budget, convergence threshold on |f| (m), divergence threshold.
      method: "broyden" (SNARF) or "newton" (a `jax.jacfwd` Jacobian per step).
      jacobian_init: Broyden's initial inverse Jacobian: "blend" — inverse of the blended 3×3 bone
        rotation Σ_b w_b(x₀) R_b at the initial point (SNARF at evaluation) — or "autodiff" — inverse of
        the `jacfwd` Jacobian of forward skinning at x₀ (SNARF in training).
      chunk_size: solve at most this many deformed points per pass (`map_in_chunks`); None = all.

    Returns:
      x_canonical (N, I, 3): one root per initial bone (the best iterate where not converged);
      valid (N, I) bool: the root converged (|f| < tol).
    Differentiable w.r.t. x_deformed, transforms and whatever weight_fn closes over, through the
    implicit function theorem (module docstring); the iterations themselves are not differentiated.
    """
    _check_batch(x_deformed, "x_deformed")
    if transforms.ndim != 3 or transforms.shape[1:] != (4, 4):
        raise ValueError(f"transforms must have shape (J, 4, 4), got {transforms.shape}")
    if method not in ("broyden", "newton"):
        raise ValueError(f"method must be 'broyden' or 'newton', got {method!r}")
    if jacobian_init not in ("blend", "autodiff"):
        raise ValueError(f"jacobian_init must be 'blend' or 'autodiff', got {jacobian_init!r}")
    num_points, num_joints = x_deformed.shape[0], transforms.shape[0]
    bone_ids = _init_bone_ids(init_bones, num_points, num_joints)
    dtype = jnp.result_type(x_deformed.dtype, transforms.dtype)
    x_deformed = x_deformed.astype(dtype)
    transforms = transforms.astype(dtype)

    def point_weights(p):
        return weight_fn(p[None])[0]

    # Hoist traced values weight_fn closes over (network parameters) into explicit arguments, so the
    # solver loop can run on stop-gradient copies while the correction step sees the live ones.
    weights_of, consts = jax.closure_convert(point_weights, jnp.zeros((3,), dtype))
    probe = weights_of(jnp.zeros((3,), dtype), *consts)
    if probe.shape != (num_joints,):
        raise ValueError(f"weight_fn must return (M, {num_joints}) weights for (M, 3) points, got {probe.shape} per point")

    def solve_chunk(x_d, ids):
        return _invert_chunk(x_d, ids, weights_of, consts, transforms, max_steps, tol, diverge, method, jacobian_init)

    return map_in_chunks(solve_chunk, chunk_size, x_deformed, bone_ids)


def _invert_chunk(x_d, bone_ids, weights_of, consts, transforms, max_steps, tol, diverge, method, jacobian_init):
    num_points, num_init = bone_ids.shape
    sg = jax.lax.stop_gradient

    def skin(p, consts_, transforms_):
        return lbs_points(p, weights_of(p, *consts_), transforms_)

    def skin_jacobian(p, consts_, transforms_):
        return jax.jacfwd(skin)(p, consts_, transforms_)

    flat_targets = jnp.repeat(x_d, num_init, axis=0)  # (N·I, 3), point-major
    flat_ids = bone_ids.reshape(-1)

    def solve(targets, consts_, transforms_):
        rot_inv = inverse_3x3(transforms_[:, :3, :3])
        init_rot_inv = rot_inv[flat_ids]
        x_init = jnp.einsum("nab,nb->na", init_rot_inv, targets - transforms_[flat_ids, :3, 3])

        def residual_fn(x):
            return jax.vmap(skin, in_axes=(0, None, None))(x, consts_, transforms_) - targets

        def jacobian_fn(x):
            return jax.vmap(skin_jacobian, in_axes=(0, None, None))(x, consts_, transforms_)

        if method == "newton":
            return newton(residual_fn, jacobian_fn, x_init, max_steps=max_steps, tol=tol, diverge=diverge)
        if jacobian_init == "blend":
            weights = jax.vmap(weights_of, in_axes=(0,) + (None,) * len(consts_))(x_init, *consts_)
            blended = jnp.einsum("nj,jab->nab", weights, transforms_[:, :3, :3])
            jac_inv = inverse_3x3(blended)
        else:
            jac_inv = inverse_3x3(jacobian_fn(x_init))
        return broyden(residual_fn, x_init, jac_inv, max_steps=max_steps, tol=tol, diverge=diverge)

    result = solve(sg(flat_targets), sg(consts), sg(transforms))
    root = sg(result.x)
    valid = result.converged & jnp.all(jnp.isfinite(root), axis=-1)
    root = jnp.where(jnp.isfinite(root), root, 0.0)

    # Implicit gradient: x = x* − J⁻¹ (f(x*) − sg(f(x*))); value x*, derivative −J⁻¹ ∂f/∂θ.
    residual = jax.vmap(skin, in_axes=(0, None, None))(root, consts, transforms) - flat_targets
    jac_inv = sg(inverse_3x3(jax.vmap(skin_jacobian, in_axes=(0, None, None))(root, sg(consts), sg(transforms))))
    x_canonical = root - jnp.einsum("nab,nb->na", jac_inv, residual - sg(residual))
    return x_canonical.reshape(num_points, num_init, 3), valid.reshape(num_points, num_init)


__all__ = [
    "SNARF_TEST_BONES",
    "SNARF_TRAIN_BONES",
    "RootResult",
    "broyden",
    "inverse_3x3",
    "invert_lbs",
    "map_in_chunks",
    "nearest_vertex_bones",
    "newton",
]
