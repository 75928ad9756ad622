"""Public entry points: 3D-CoreNet's OT warp of identity vertices onto pose points, and friends.

`ot_warp` validates its inputs (shapes always; finiteness and ε > 0 when the values are concrete,
i.e. outside `jit`) and dispatches to one of the solvers:

- "dense":  log-domain 3D-CoreNet iteration on a materialised (N, M) log-kernel (`sinkhorn.py`).
- "online": the same maths in row blocks recomputed from the features, `jax.checkpoint` per block:
            O(block·M) memory forward and backward. Use it for large meshes and for training.
- "ott", "ott_online": ott-jax's fixed-step Sinkhorn (materialised / `batch_size=block_size`);
            no 1e-8 guard (see `ott_sinkhorn.py`).
- "converged": ott-jax run to `threshold` with implicit differentiation: a true entropic OT plan,
            not 3D-CoreNet's 5-step approximation (`num_iterations` is ignored).

Inputs of lower than float32 precision are computed in float32 (K spans down to e^(−2/ε), which
float16 cannot hold).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.matching import sinkhorn
from jaxpose.matching.correlation import cosine_correlation, normalize_rows

MODES = ("dense", "online", "ott", "ott_online", "converged")


def _compute_dtype(*arrays) -> jnp.dtype:
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _is_concrete(value) -> bool:
    return not isinstance(value, jax.core.Tracer)


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


def _validate_options(mode, num_iterations, block_size) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if not isinstance(num_iterations, (int, np.integer)) or num_iterations < 1:
        raise ValueError(f"num_iterations must be an integer >= 1; got {num_iterations!r}")
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1; got {block_size!r}")


@functools.partial(
    jax.jit, static_argnames=("num_iterations", "mode", "block_size", "threshold", "max_iterations")
)
def _ot_warp(
    x_features, y_features, y_points, epsilon, *, num_iterations, mode, block_size, threshold,
    max_iterations,
):
    dtype = _compute_dtype(x_features, y_features, y_points)
    x_unit = normalize_rows(x_features.astype(dtype))
    y_unit = normalize_rows(y_features.astype(dtype))
    y_points = y_points.astype(dtype)
    epsilon = jnp.asarray(epsilon, dtype)
    if mode == "dense":
        return sinkhorn.warp_dense(x_unit, y_unit, y_points, epsilon, num_iterations)
    if mode == "online":
        return sinkhorn.warp_online(x_unit, y_unit, y_points, epsilon, num_iterations, block_size)
    # ott-jax (and its dependencies) are imported only when an ott mode is used: ~165 MB of RSS.
    from jaxpose.matching import ott_sinkhorn

    if mode == "ott":
        return ott_sinkhorn.warp_fixed_step(x_unit, y_unit, y_points, epsilon, num_iterations)
    if mode == "ott_online":
        return ott_sinkhorn.warp_fixed_step(
            x_unit, y_unit, y_points, epsilon, num_iterations, batch_size=block_size
        )
    return ott_sinkhorn.warp_converged(
        x_unit, y_unit, y_points, epsilon, threshold=threshold, max_iterations=max_iterations
    )


def ot_warp(
    x_features: jax.Array,
    y_features: jax.Array,
    y_points: jax.Array,
    *,
    epsilon: float | jax.Array = 0.03,
    num_iterations: int = 5,
    mode: str = "dense",
    block_size: int = 1024,
    threshold: float = 1e-3,
    max_iterations: int = 2000,
) -> jax.Array:
    """3D-CoreNet's optimal-transport warp: each x vertex becomes a convex combination of y points.

    Features are normalised per row (+2.2e-16 on the norm), the cost is 1 − C with C the cosine
    correlation, marginals are uniform (1/N, 1/M), and exactly `num_iterations` unrolled Sinkhorn
    iterations run in the original order (b then a) with the original 1e-8 guards, reproduced in the
    log domain. The plan is row-normalised (T̂ = T / rowsum T) and applied to `y_points`.
    Differentiable w.r.t. all array inputs and ε (unrolled; implicit for mode="converged").
    Deviation from the original: rows of T are normalised as a softmax of log K + log b, so a row
    whose T underflows (NaN in the original) still gets a finite convex combination.

    Args:
      x_features: (N, D) features of the vertices to warp (3D-CoreNet: θ(identity features)).
      y_features: (M, D) features of the target points (3D-CoreNet: φ(pose features)). N ≠ M is fine.
      y_points: (M, 3) target coordinates (any unit; the output is in the same unit).
      epsilon: entropic regularisation in cost units (cost ∈ [0, 2]); may be a traced scalar.
      num_iterations: Sinkhorn iterations (static).
      mode: "dense" | "online" | "ott" | "ott_online" | "converged" (static; see module docstring).
      block_size: rows per block for "online" / "ott_online" (static; need not divide N).
      threshold, max_iterations: stopping rule for mode="converged" only (static).

    Returns:
      (N, 3) warped points, in x's vertex order.

    Raises:
      ValueError: on wrong shapes, mismatched widths or counts, unknown options, and (outside jit)
        NaN/Inf inputs or a non-positive ε.
    """
    x_features = jnp.asarray(x_features)
    y_features = jnp.asarray(y_features)
    y_points = jnp.asarray(y_points)
    _validate_options(mode, num_iterations, block_size)
    _validate(x_features, y_features, y_points, epsilon)
    return _ot_warp(
        x_features, y_features, y_points, epsilon,
        num_iterations=int(num_iterations), mode=mode, block_size=int(block_size),
        threshold=float(threshold), max_iterations=int(max_iterations),
    )


@functools.partial(jax.jit, static_argnames=("num_iterations",))
def _row_normalised_plan(x_features, y_features, epsilon, *, num_iterations):
    dtype = _compute_dtype(x_features, y_features)
    x_unit = normalize_rows(x_features.astype(dtype))
    y_unit = normalize_rows(y_features.astype(dtype))
    log_k = sinkhorn.log_kernel(x_unit, y_unit, jnp.asarray(epsilon, dtype))
    log_b = sinkhorn.column_log_potential_dense(log_k, num_iterations)
    return sinkhorn.plan_rows_dense(log_k, log_b)


def row_normalised_plan(
    x_features: jax.Array,
    y_features: jax.Array,
    *,
    epsilon: float | jax.Array = 0.03,
    num_iterations: int = 5,
) -> jax.Array:
    """3D-CoreNet's row-normalised transport plan T̂, materialised — for small inputs and plots.

    Args:
      x_features: (N, D); y_features: (M, D); epsilon, num_iterations: as in `ot_warp`.

    Returns:
      (N, M) non-negative matrix whose rows sum to 1; `row_normalised_plan(...) @ y_points`
      equals `ot_warp(..., mode="dense")`.
    """
    x_features = jnp.asarray(x_features)
    y_features = jnp.asarray(y_features)
    _validate_options("dense", num_iterations, 1)
    _validate(x_features, y_features, None, epsilon)
    return _row_normalised_plan(x_features, y_features, epsilon, num_iterations=int(num_iterations))


def correlation_and_warp(
    x_features: jax.Array,
    y_features: jax.Array,
    y_points: jax.Array,
    *,
    epsilon: float | jax.Array = 0.03,
    num_iterations: int = 5,
) -> tuple[jax.Array, jax.Array]:
    """The cosine correlation matrix (for visualisation) together with the dense OT warp.

    Args: as `ot_warp` (dense mode).

    Returns:
      correlation (N, M) in [-1, 1] and warp (N, 3).
    """
    warped = ot_warp(
        x_features, y_features, y_points, epsilon=epsilon, num_iterations=num_iterations,
        mode="dense",
    )
    return cosine_correlation(x_features, y_features), warped


def ot_plan_converged(
    x_features: jax.Array,
    y_features: jax.Array,
    *,
    epsilon: float | jax.Array = 0.03,
    threshold: float = 1e-3,
    max_iterations: int = 2000,
    batch_size: int | None = None,
):
    """A converged entropic OT plan between row-normalised features (cosine cost), via ott-jax.

    Unlike `ot_warp`'s default 5-step solve, this runs Sinkhorn to `threshold` and differentiates
    implicitly. Jitted; threshold, max_iterations and batch_size are static.

    Args:
      x_features: (N, D); y_features: (M, D); epsilon: scalar; threshold: marginal-error stopping
      tolerance; max_iterations: iteration cap; batch_size: ott online mode rows (None: materialised).

    Returns:
      ott-jax `SinkhornOutput`: `.matrix` (N, M) plan with marginals ≈ (1/N, 1/M), `.apply`,
      `.f`/`.g` potentials, `.converged`, `.n_iters`.
    """
    x_features = jnp.asarray(x_features)
    y_features = jnp.asarray(y_features)
    _validate(x_features, y_features, None, epsilon)
    if not isinstance(max_iterations, (int, np.integer)) or max_iterations < 1:
        raise ValueError(f"max_iterations must be an integer >= 1; got {max_iterations!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be None or an integer >= 1; got {batch_size!r}")
    return _ot_plan_converged(
        x_features, y_features, epsilon, threshold=float(threshold),
        max_iterations=int(max_iterations), batch_size=batch_size,
    )


@functools.partial(jax.jit, static_argnames=("threshold", "max_iterations", "batch_size"))
def _ot_plan_converged(x_features, y_features, epsilon, *, threshold, max_iterations, batch_size):
    from jaxpose.matching import ott_sinkhorn

    dtype = _compute_dtype(x_features, y_features)
    return ott_sinkhorn.converged_output(
        normalize_rows(x_features.astype(dtype)),
        normalize_rows(y_features.astype(dtype)),
        jnp.asarray(epsilon, dtype),
        threshold=threshold,
        max_iterations=max_iterations,
        batch_size=batch_size,
    )
