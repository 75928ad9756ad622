"""Public entry points: 3D-CoreNet's OT warp of identity vertices onto pose points, and friends.

`ot_warp` validates its inputs (shapes always; finiteness and ε > 0 when the values are concrete,
i.e. outside `jit`) and dispatches on two independent choices (`jaxpose.matching.choices`):

- geometry: `Materialized()` holds the (N, M) log-kernel; `RowBlocked(block_size)` recomputes row
  blocks from the features on every pass (`jax.checkpoint` per block, or ott's `batch_size` online
  mode): O(block·M) memory forward and backward. Use it for large meshes and for training.
- solver: `CoreNetIteration(k)` is 3D-CoreNet's k-step log-domain iteration with its 1e-8 guards
  (`sinkhorn.py`; `lse_mode=False` runs it in the original's scaling domain, Materialized only);
  `OttFixedStep(k)` is ott-jax's k-step Sinkhorn, no 1e-8 guard (`ott_sinkhorn.py`);
  `OttConverged(threshold, max_iterations)` runs ott-jax to `threshold` with implicit
  differentiation: a true entropic OT plan, not 3D-CoreNet's 5-step approximation.

`matching_from_name` turns the names of configs and command lines ("dense", "online", "ott",
"ott_online", "converged") into these objects.

Inputs of lower than float32 precision are computed in float32 (K spans down to e^(−2/ε), which
float16 cannot hold).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.matching import sinkhorn
from jaxpose.matching.choices import (
    CoreNetIteration,
    Geometry,
    Materialized,
    OttConverged,
    OttFixedStep,
    RowBlocked,
    Solver,
    check_geometry,
    check_solver,
)
from jaxpose.matching.correlation import cosine_correlation, normalize_rows


def _ott_sinkhorn():
    # Lazy on purpose: ott-jax and its dependencies cost ~165 MB of RSS, paid only by the ott solvers.
    from jaxpose.matching import ott_sinkhorn

    return ott_sinkhorn


def _compute_dtype(*arrays) -> jnp.dtype:
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _is_concrete(value) -> bool:
    return not isinstance(value, jax.core.Tracer)


def _batch_size(geometry: Geometry) -> int | None:
    """ott's `batch_size` for a geometry: None (materialised) or the block size (online)."""
    return geometry.block_size if isinstance(geometry, RowBlocked) else None


def _validate(x_features, y_features, y_points, epsilon) -> None:
    if x_features.ndim != 2 or y_features.ndim != 2:
        raise ValueError(
            "x_features and y_features must be (num_vertices, feature_dim); got shapes "
            f"{x_features.shape} and {y_features.shape}"
        )
    if x_features.shape[1] != y_features.shape[1]:
        raise ValueError(
            f"feature widths differ: x_features has {x_features.shape[1]} channels, "
            f"y_features has {y_features.shape[1]}"
        )
    if x_features.shape[0] == 0 or y_features.shape[0] == 0 or x_features.shape[1] == 0:
        raise ValueError(
            f"features must be non-empty; got shapes {x_features.shape} and {y_features.shape}"
        )
    if y_points is not None and (y_points.ndim != 2 or y_points.shape[1] != 3):
        raise ValueError(f"y_points must be (M, 3); got shape {y_points.shape}")
    if y_points is not None and y_points.shape[0] != y_features.shape[0]:
        raise ValueError(
            f"y_points has {y_points.shape[0]} points but y_features has {y_features.shape[0]} rows"
        )
    if jnp.ndim(epsilon) != 0:
        raise ValueError(f"epsilon must be a scalar; got shape {jnp.shape(epsilon)}")
    named = {"x_features": x_features, "y_features": y_features, "y_points": y_points}
    for name, array in named.items():
        if array is not None and _is_concrete(array) and not np.all(np.isfinite(np.asarray(array))):
            raise ValueError(f"{name} contains NaN or Inf")
    if _is_concrete(epsilon):
        eps_value = float(np.asarray(epsilon))
        if not (np.isfinite(eps_value) and eps_value > 0):
            raise ValueError(f"epsilon must be a finite positive number; got {eps_value}")


def _check_scaling_domain(solver, geometry, epsilon, dtype) -> None:
    """The scaling-domain iteration's limits: Materialized geometry, and (when ε is concrete) a K
    whose least entry e^(−2/ε) is a normal float of the compute dtype."""
    if not isinstance(solver, CoreNetIteration) or solver.lse_mode:
        return
    if not isinstance(geometry, Materialized):
        raise ValueError(f"CoreNetIteration(lse_mode=False) forms the whole kernel: it needs geometry "
                         f"Materialized(), got {geometry!r} (use lse_mode=True for row blocks)")  # fmt: skip
    if _is_concrete(epsilon):
        floor = sinkhorn.min_scaling_epsilon(dtype)
        if float(np.asarray(epsilon)) < floor:
            raise ValueError(f"epsilon {float(np.asarray(epsilon))} is below {floor:.4f}, where the scaling domain's "
                             f"kernel exp(-2/epsilon) underflows {jnp.dtype(dtype).name}; use lse_mode=True")  # fmt: skip


@functools.partial(jax.jit, static_argnames=("geometry", "solver"))
def _ot_warp(x_features, y_features, y_points, epsilon, *, geometry, solver):
    dtype = _compute_dtype(x_features, y_features, y_points)
    x_unit = normalize_rows(x_features.astype(dtype))
    y_unit = normalize_rows(y_features.astype(dtype))
    y_points = y_points.astype(dtype)
    epsilon = jnp.asarray(epsilon, dtype)
    batch_size = _batch_size(geometry)
    if isinstance(solver, CoreNetIteration):
        if not solver.lse_mode:
            return sinkhorn.warp_dense_scaling(x_unit, y_unit, y_points, epsilon, solver.num_iterations)
        if batch_size is None:
            return sinkhorn.warp_dense(x_unit, y_unit, y_points, epsilon, solver.num_iterations)
        return sinkhorn.warp_online(
            x_unit, y_unit, y_points, epsilon, solver.num_iterations, batch_size
        )
    ott_sinkhorn = _ott_sinkhorn()
    if isinstance(solver, OttFixedStep):
        return ott_sinkhorn.warp_fixed_step(
            x_unit, y_unit, y_points, epsilon, solver.num_iterations, batch_size=batch_size
        )
    return ott_sinkhorn.warp_converged(
        x_unit, y_unit, y_points, epsilon, threshold=solver.threshold,
        max_iterations=solver.max_iterations, batch_size=batch_size,
    )


def ot_warp(
    x_features: jax.Array,
    y_features: jax.Array,
    y_points: jax.Array,
    *,
    epsilon: float | jax.Array = 0.03,
    geometry: Geometry = Materialized(),
    solver: Solver = CoreNetIteration(),
) -> jax.Array:
    """3D-CoreNet's optimal-transport warp: each x vertex becomes a convex combination of y points.

    Features are normalised per row (+2.2e-16 on the norm), the cost is 1 − C with C the cosine
    correlation, marginals are uniform (1/N, 1/M). With the default `CoreNetIteration(5)`, exactly
    5 unrolled Sinkhorn iterations run in the original order (b then a) with the original 1e-8
    guards, reproduced in the log domain. The plan is row-normalised (T̂ = T / rowsum T) and applied
    to `y_points`. Differentiable w.r.t. all array inputs and ε (unrolled; implicit for
    `OttConverged`).
    Deviation from the original: rows of T are normalised as a softmax of log K + log b, so a row
    whose T underflows (NaN in the original) still gets a finite convex combination.

    Args:
      x_features: (N, D) features of the vertices to warp (3D-CoreNet: θ(identity features)).
      y_features: (M, D) features of the target points (3D-CoreNet: φ(pose features)). N ≠ M is fine.
      y_points: (M, 3) target coordinates (any unit; the output is in the same unit).
      epsilon: entropic regularisation in cost units (cost ∈ [0, 2]); may be a traced scalar.
      geometry: `Materialized()` or `RowBlocked(block_size)` (static; see module docstring).
      solver: `CoreNetIteration(num_iterations)`, `OttFixedStep(num_iterations)` or
        `OttConverged(threshold, max_iterations)` (static; see module docstring).

    Returns:
      (N, 3) warped points, in x's vertex order.

    Raises:
      ValueError: on wrong shapes, mismatched widths or counts, and (outside jit) NaN/Inf inputs or a
        non-positive ε.
      TypeError: if geometry or solver is not one of the objects above (e.g. a name: parse it with
        `matching_from_name`).
    """
    check_geometry(geometry)
    check_solver(solver)
    x_features = jnp.asarray(x_features)
    y_features = jnp.asarray(y_features)
    y_points = jnp.asarray(y_points)
    _validate(x_features, y_features, y_points, epsilon)
    _check_scaling_domain(solver, geometry, epsilon, _compute_dtype(x_features, y_features, y_points))
    return _ot_warp(x_features, y_features, y_points, epsilon, geometry=geometry, solver=solver)


@functools.partial(jax.jit, static_argnames=("num_iterations", "lse_mode"))
def _row_normalised_plan(x_features, y_features, epsilon, *, num_iterations, lse_mode=True):
    dtype = _compute_dtype(x_features, y_features)
    x_unit = normalize_rows(x_features.astype(dtype))
    y_unit = normalize_rows(y_features.astype(dtype))
    log_k = sinkhorn.log_kernel(x_unit, y_unit, jnp.asarray(epsilon, dtype))
    if not lse_mode:
        kernel = jnp.exp(log_k)
        weighted = kernel * sinkhorn.column_potential_scaling(kernel, num_iterations)[None, :]
        return weighted / jnp.sum(weighted, axis=1, keepdims=True)
    log_b = sinkhorn.column_log_potential_dense(log_k, num_iterations)
    return sinkhorn.plan_rows_dense(log_k, log_b)


def row_normalised_plan(
    x_features: jax.Array,
    y_features: jax.Array,
    *,
    epsilon: float | jax.Array = 0.03,
    solver: CoreNetIteration = CoreNetIteration(),
) -> jax.Array:
    """3D-CoreNet's row-normalised transport plan T̂, materialised — for small inputs and plots.

    Args:
      x_features: (N, D); y_features: (M, D); epsilon: as in `ot_warp`;
      solver: a `CoreNetIteration` (the only solver whose plan this function forms).

    Returns:
      (N, M) non-negative matrix whose rows sum to 1; `row_normalised_plan(..., solver=s) @ y_points`
      equals `ot_warp(..., geometry=Materialized(), solver=s)`.
    """
    if not isinstance(solver, CoreNetIteration):
        raise TypeError(f"row_normalised_plan needs a CoreNetIteration solver; got {solver!r}")
    x_features = jnp.asarray(x_features)
    y_features = jnp.asarray(y_features)
    _validate(x_features, y_features, None, epsilon)
    _check_scaling_domain(solver, Materialized(), epsilon, _compute_dtype(x_features, y_features))
    return _row_normalised_plan(x_features, y_features, epsilon, num_iterations=solver.num_iterations,
                                lse_mode=solver.lse_mode)


def correlation_and_warp(
    x_features: jax.Array,
    y_features: jax.Array,
    y_points: jax.Array,
    *,
    epsilon: float | jax.Array = 0.03,
    geometry: Geometry = Materialized(),
    solver: Solver = CoreNetIteration(),
) -> tuple[jax.Array, jax.Array]:
    """The cosine correlation matrix (for visualisation) together with the OT warp.

    Args: as `ot_warp` (the correlation itself is always materialised).

    Returns:
      correlation (N, M) in [-1, 1] and warp (N, 3).
    """
    warped = ot_warp(
        x_features, y_features, y_points, epsilon=epsilon, geometry=geometry, solver=solver
    )
    return cosine_correlation(x_features, y_features), warped


def ot_plan_converged(
    x_features: jax.Array,
    y_features: jax.Array,
    *,
    epsilon: float | jax.Array = 0.03,
    geometry: Geometry = Materialized(),
    solver: OttConverged = OttConverged(),
):
    """A converged entropic OT plan between row-normalised features (cosine cost), via ott-jax.

    Unlike `ot_warp`'s default 5-step solve, this runs Sinkhorn to `solver.threshold` and
    differentiates implicitly. Jitted; geometry and solver are static.

    Args:
      x_features: (N, D); y_features: (M, D); epsilon: scalar;
      geometry: `Materialized()` or `RowBlocked(block_size)` (ott's online mode, `batch_size` rows);
      solver: an `OttConverged(threshold, max_iterations)`.

    Returns:
      ott-jax `SinkhornOutput`: `.matrix` (N, M) plan with marginals ≈ (1/N, 1/M), `.apply`,
      `.f`/`.g` potentials, `.converged`, `.n_iters`.
    """
    check_geometry(geometry)
    if not isinstance(solver, OttConverged):
        raise TypeError(f"ot_plan_converged needs an OttConverged solver; got {solver!r}")
    x_features = jnp.asarray(x_features)
    y_features = jnp.asarray(y_features)
    _validate(x_features, y_features, None, epsilon)
    return _ot_plan_converged(x_features, y_features, epsilon, geometry=geometry, solver=solver)


@functools.partial(jax.jit, static_argnames=("geometry", "solver"))
def _ot_plan_converged(x_features, y_features, epsilon, *, geometry, solver):
    dtype = _compute_dtype(x_features, y_features)
    return _ott_sinkhorn().converged_output(
        normalize_rows(x_features.astype(dtype)),
        normalize_rows(y_features.astype(dtype)),
        jnp.asarray(epsilon, dtype),
        threshold=solver.threshold,
        max_iterations=solver.max_iterations,
        batch_size=_batch_size(geometry),
    )
