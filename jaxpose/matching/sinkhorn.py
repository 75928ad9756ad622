"""3D-CoreNet's fixed-step entropic OT, rewritten in the log domain (dense and row-blocked kernels).

The original (3D-CoreNet, adapted from FLOT) runs, in the scaling domain with K = exp(-(1 - C)/ε),
a₀ = 1/N and exactly k unrolled iterations

    b ← (1/M) / (Kᵀa + 1e-8),    a ← (1/N) / (K b + 1e-8),

then row-normalises the plan T = diag(a) K diag(b). Row normalisation cancels `a`, so

    T̂[i, :] = softmax_j(log K_ij + log b_j),

and only `b` after the k-th b-update matters (the k-th a-update is dead work and is skipped). In the
log domain each half-step is

    log b_j = -log M - logaddexp(LSE_i(log K_ij + log a_i), log 1e-8)
    log a_i = -log N - logaddexp(LSE_j(log K_ij + log b_j), log 1e-8),

which reproduces the 1e-8 guards exactly (log(s + δ) = logaddexp(log s, log δ)) while never forming
K, so nothing under- or overflows for small ε. One deliberate deviation: the original's row
normalisation has no epsilon, so a row of T that underflows to zero gives NaN there; the softmax form
is always finite.

All functions here take *already normalised* features (see `correlation.normalize_rows`); the public
entry point is `jaxpose.matching.warp.ot_warp`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from jaxpose.matching.correlation import MATMUL_PRECISION

# The 1e-8 added to the Sinkhorn denominators in the original scaling-domain code.
SINKHORN_GUARD = 1e-8
LOG_SINKHORN_GUARD = math.log(SINKHORN_GUARD)


def log_kernel(x_unit: jax.Array, y_unit: jax.Array, epsilon: jax.Array) -> jax.Array:
    """log K = -(1 - C)/ε for unit features.

    Args:
      x_unit: (N, D) unit-norm rows.
      y_unit: (M, D) unit-norm rows.
      epsilon: scalar entropic regularisation (cost units; the cost 1 - C lies in [0, 2]).

    Returns:
      (N, M) log-kernel, in [-2/ε, 0].
    """
    correlation = jnp.matmul(x_unit, y_unit.T, precision=MATMUL_PRECISION)
    return (correlation - 1.0) / epsilon


def _guarded_log_reciprocal(log_marginal: float, log_sums: jax.Array) -> jax.Array:
    """log(marginal / (exp(log_sums) + 1e-8)), elementwise."""
    return log_marginal - jnp.logaddexp(log_sums, LOG_SINKHORN_GUARD)


# --------------------------------------------------------------------------------------------------
# Dense kernel: one materialised (N, M) log-kernel.
# --------------------------------------------------------------------------------------------------


def column_log_potential_dense(log_k: jax.Array, num_iterations: int) -> jax.Array:
    """log b after `num_iterations` guarded Sinkhorn iterations (b then a), from a₀ = 1/N.

    Args:
      log_k: (N, M) log-kernel.
      num_iterations: number of b-updates (static, >= 1).

    Returns:
      (M,) log b.
    """
    n, m = log_k.shape
    log_inv_n, log_inv_m = -math.log(n), -math.log(m)

    def b_update(log_a):
        return _guarded_log_reciprocal(
            log_inv_m, jax.nn.logsumexp(log_k + log_a[:, None], axis=0)
        )

    def a_update(log_b):
        return _guarded_log_reciprocal(
            log_inv_n, jax.nn.logsumexp(log_k + log_b[None, :], axis=1)
        )

    def full_iteration(log_a, _):
        return a_update(b_update(log_a)), None

    log_a = jnp.full((n,), log_inv_n, log_k.dtype)
    log_a, _ = jax.lax.scan(full_iteration, log_a, None, length=num_iterations - 1)
    return b_update(log_a)


def plan_rows_dense(log_k: jax.Array, log_b: jax.Array) -> jax.Array:
    """Row-normalised plan T̂ = softmax_j(log K_ij + log b_j), shape (N, M)."""
    return jax.nn.softmax(log_k + log_b[None, :], axis=1)


def warp_dense(
    x_unit: jax.Array,
    y_unit: jax.Array,
    y_points: jax.Array,
    epsilon: jax.Array,
    num_iterations: int,
) -> jax.Array:
    """Dense log-domain 3D-CoreNet warp T̂ · y_points, shape (N, 3)."""
    log_k = log_kernel(x_unit, y_unit, epsilon)
    log_b = column_log_potential_dense(log_k, num_iterations)
    return jnp.matmul(plan_rows_dense(log_k, log_b), y_points, precision=MATMUL_PRECISION)


# --------------------------------------------------------------------------------------------------
# Dense kernel in the original scaling domain: K formed once, every half-step a matrix-vector product.
# --------------------------------------------------------------------------------------------------


def min_scaling_epsilon(dtype) -> float:
    """Smallest ε for which K's least entry e^(−2/ε) is a normal number of `dtype` (float32: ≈ 0.0229)."""
    return 2.0 / -math.log(float(jnp.finfo(dtype).tiny))


def column_potential_scaling(kernel: jax.Array, num_iterations: int) -> jax.Array:
    """b after `num_iterations` guarded scaling-domain iterations (b then a) from a₀ = 1/N.

    Args:
      kernel: (N, M) K = exp(log K), entries in [e^(−2/ε), 1].
      num_iterations: number of b-updates (static, >= 1).

    Returns:
      (M,) b, the original's `b ← (1/M) / (Kᵀa + 1e-8)` after the last b-update.
    """
    n, m = kernel.shape
    a = jnp.full((n,), 1.0 / n, kernel.dtype)
    b = None
    # Python loop: 5 steps unrolled, so XLA sees one program of matrix-vector products.
    for iteration in range(num_iterations):
        b = (1.0 / m) / (jnp.matmul(a, kernel, precision=MATMUL_PRECISION) + SINKHORN_GUARD)
        if iteration < num_iterations - 1:
            a = (1.0 / n) / (jnp.matmul(kernel, b, precision=MATMUL_PRECISION) + SINKHORN_GUARD)
    return b


def warp_dense_scaling(
    x_unit: jax.Array,
    y_unit: jax.Array,
    y_points: jax.Array,
    epsilon: jax.Array,
    num_iterations: int,
) -> jax.Array:
    """`warp_dense` in the original scaling domain: T̂ · y = K (b ⊙ y) / (K b), shape (N, 3).

    The same function as `warp_dense` up to rounding, while K's entries are normal floats (see
    `min_scaling_epsilon`). The row-normalised plan is never formed: the warp and its row sums are
    one (N, M) × (M, 4) product, and the backward pass is matrix products plus one elementwise pass
    over K, where the log domain needs a log-sum-exp pass per half-step.
    """
    kernel = jnp.exp(log_kernel(x_unit, y_unit, epsilon))
    b = column_potential_scaling(kernel, num_iterations)
    weighted = jnp.concatenate([b[:, None] * y_points, b[:, None]], axis=1)
    sums = jnp.matmul(kernel, weighted, precision=MATMUL_PRECISION)
    return sums[:, :3] / sums[:, 3:]


# --------------------------------------------------------------------------------------------------
# Online kernel: row blocks of the log-kernel recomputed from the unit features on every pass.
# --------------------------------------------------------------------------------------------------


def _row_blocks(x_unit: jax.Array, block_size: int) -> tuple[jax.Array, jax.Array, int]:
    """Pad the rows of `x_unit` to a multiple of the block and split them.

    Returns (blocks (B, block, D), valid (B, block) bool, block). The block shrinks to N when
    N < block_size, so a small problem is one unpadded block.
    """
    padded, valid, block = pad_rows(x_unit, block_size)
    num_blocks = padded.shape[0] // block
    return padded.reshape(num_blocks, block, x_unit.shape[1]), valid.reshape(num_blocks, block), block


def pad_rows(x_unit: jax.Array, block_size: int) -> tuple[jax.Array, jax.Array, int]:
    """Zero-pad the rows of `x_unit` (N, D) to a multiple of the block.

    Returns (padded (B·block, D), valid (B·block,) bool, block) with block = min(block_size, N).
    """
    n = x_unit.shape[0]
    block = min(block_size, n)
    num_blocks = -(-n // block)
    padded = jnp.pad(x_unit, ((0, num_blocks * block - n), (0, 0)))
    return padded, jnp.arange(num_blocks * block) < n, block


def _unblock(blocked: jax.Array, n: int) -> jax.Array:
    return blocked.reshape((-1,) + blocked.shape[2:])[:n]


# The three kinds of row-block step of the online kernel, shared by `warp_online` (one jitted
# program, lax.map over blocks) and `jaxpose.matching.stepwise` (a host loop, one call per block).


def block_column_lse(x_block, log_a_block, valid_block, y_unit, epsilon):
    """Column log-sum-exp of one (block, M) slab of log K + log a: (M,).

    x_block (block, D) unit rows, log_a_block (block,), valid_block (block,) bool (padded rows get
    log a = −inf, so they add nothing to the column sums and get no gradient), y_unit (M, D).
    """
    masked_log_a = jnp.where(valid_block, log_a_block, -jnp.inf)
    scores = log_kernel(x_block, y_unit, epsilon) + masked_log_a[:, None]
    return jax.nn.logsumexp(scores, axis=0)


def block_a_update_then_column_lse(x_block, valid_block, log_b, y_unit, epsilon, log_inv_n: float):
    """A block's a-update from the full log b (M,), then its column log-sum-exp for the next b-update: (M,).

    One slab of log K serves both half-steps (the a-update of a block needs only log b, and the
    next b-update's column sums need only this block's new log a).
    """
    block_log_k = log_kernel(x_block, y_unit, epsilon)
    log_a_block = _guarded_log_reciprocal(log_inv_n, jax.nn.logsumexp(block_log_k + log_b[None, :], axis=1))
    masked_log_a = jnp.where(valid_block, log_a_block, -jnp.inf)
    return jax.nn.logsumexp(block_log_k + masked_log_a[:, None], axis=0)


def block_warp(x_block, log_b, y_unit, y_points, epsilon):
    """Row-normalised plan rows of a block applied to y_points (M, 3): (block, 3)."""
    plan_rows = jax.nn.softmax(log_kernel(x_block, y_unit, epsilon) + log_b[None, :], axis=1)
    return jnp.matmul(plan_rows, y_points, precision=MATMUL_PRECISION)


def log_b_from_column_lse(per_block_lse, log_inv_m: float):
    """The guarded b-update from per-block column sums: (num_blocks, M) -> log b (M,)."""
    return _guarded_log_reciprocal(log_inv_m, jax.nn.logsumexp(per_block_lse, axis=0))


def warp_online(
    x_unit: jax.Array,
    y_unit: jax.Array,
    y_points: jax.Array,
    epsilon: jax.Array,
    num_iterations: int,
    block_size: int,
) -> jax.Array:
    """Row-blocked log-domain 3D-CoreNet warp; same maths as `warp_dense`, no (N, M) buffer.

    Every pass over the kernel recomputes the (block, M) slab of log K from the unit features; an
    a-update and the following b-update share one pass, so there are k + 1 passes in all (the
    first b-update, k − 1 fused iterations, the warp). Each block's work is wrapped in
    `jax.checkpoint`, so the backward pass recomputes the slab too: memory is O(block·M + (N + M)·D)
    forward and backward, at the price of k + 1 feature matmuls (N·M·D each).

    Args:
      x_unit: (N, D) unit rows; y_unit: (M, D) unit rows; y_points: (M, 3).
      epsilon: scalar; num_iterations: static >= 1; block_size: static rows per block (need not
        divide N: rows are zero-padded and masked out of the column sums).

    Returns:
      (N, 3) warped points.
    """
    n = x_unit.shape[0]
    m = y_unit.shape[0]
    log_inv_n, log_inv_m = -math.log(n), -math.log(m)
    x_blocks, valid, block = _row_blocks(x_unit, block_size)
    num_blocks = x_blocks.shape[0]

    checkpoint = functools.partial(jax.checkpoint, prevent_cse=False)

    @checkpoint
    def column_lse(x_block, log_a_block, valid_block):
        return block_column_lse(x_block, log_a_block, valid_block, y_unit, epsilon)

    @checkpoint
    def a_update_then_column_lse(x_block, valid_block, log_b):
        return block_a_update_then_column_lse(x_block, valid_block, log_b, y_unit, epsilon, log_inv_n)

    @checkpoint
    def warp_rows(x_block, log_b):
        return block_warp(x_block, log_b, y_unit, y_points, epsilon)

    # First b-update from the uniform a₀, then k − 1 fused (a, b) passes: k + 1 passes over log K
    # (warp included) instead of 2k. A Python loop, not lax.scan: under a scan over iterations, JAX's
    # partial evaluation treats the loop-invariant log-kernel slabs as residuals and stores all of
    # them, an N×M buffer.
    log_a0 = jnp.full((num_blocks, block), log_inv_n, x_unit.dtype)
    log_b = log_b_from_column_lse(jax.lax.map(lambda args: column_lse(*args), (x_blocks, log_a0, valid)), log_inv_m)
    for _ in range(num_iterations - 1):
        log_b = log_b_from_column_lse(
            jax.lax.map(lambda args, log_b=log_b: a_update_then_column_lse(*args, log_b), (x_blocks, valid)),
            log_inv_m,
        )
    warped = jax.lax.map(lambda x_block: warp_rows(x_block, log_b), x_blocks)
    return _unblock(warped, n)
