"""3D-CoreNet's row-blocked warp run as a host loop of compiled steps over row blocks, for progress reports.

`ot_warp(..., geometry=RowBlocked(b), solver=CoreNetIteration(k))` is one jitted program: nothing can
be reported until it returns, which for a 200k × 200k problem on a CPU is about an hour.
`StepwiseWarp` computes the same thing (the same per-block functions of `sinkhorn`, in the same
order: a first b-update pass, k − 1 fused (a, b) passes, the warp pass) as (k + 1) passes of calls of
three compiled step functions, each call taking `blocks_per_step` row blocks (a `lax.map` over them;
about `STEPS_PER_PASS` calls per pass), so a caller can advance a progress bar after every call and
estimate the remaining time from the first one. Results equal `ot_warp`'s up to float rounding.

Inference only: the loop runs on the host, so it is neither jittable nor differentiable (use `ot_warp`
for training). Memory is that of online matching: a few (b, M) slabs plus the (⌈N / b⌉, M) column
sums of one pass.

    warp = StepwiseWarp(x_features, y_features, y_points, epsilon=0.03, block_size=1024)
    warp.compile()                          # optional: compile the three steps now (else on first use)
    warped = warp.run(on_step=bar.update)   # (N, 3); on_step() after each of warp.num_steps calls
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxpose.matching import sinkhorn
from jaxpose.matching.choices import CoreNetIteration, RowBlocked
from jaxpose.matching.correlation import normalize_rows
from jaxpose.matching.warp import _compute_dtype, _validate


STEPS_PER_PASS = 16
"""Default number of calls per pass: blocks are grouped so that a pass takes about this many calls.

One compiled call per row block would be simplest, but every call allocates its (block, M) slabs
afresh (page faults), and a `lax.map` over several blocks inside one call reuses them: on the shared
2-core development CPU at N = M = 20k, block 1024, a whole run took 39 s with one block per call,
34 s with 3 and 29 s with all 20 (one call per pass). 16 calls per pass keep a bar moving (96
updates for 5 Sinkhorn iterations) while grouping ≥ 14 blocks per call at 219k vertices."""


def _group_rows(x_padded, valid, index, block: int, group: int):
    """Blocks [index·group, (index + 1)·group) of x_padded (B·block, D) and valid (B·block,):
    (group, block, D) and (group, block)."""
    rows = block * group
    x_rows = jax.lax.dynamic_slice_in_dim(x_padded, index * rows, rows)
    valid_rows = jax.lax.dynamic_slice_in_dim(valid, index * rows, rows)
    return x_rows.reshape(group, block, x_padded.shape[1]), valid_rows.reshape(group, block)


@functools.partial(jax.jit, static_argnames=("block", "group"))
def _first_pass_step(x_padded, valid, index, y_unit, epsilon, log_inv_n, *, block: int, group: int):
    """Column LSEs (group, M) of the blocks of step `index` with the uniform a₀ = 1/N (first b-update)."""
    x_blocks, valid_blocks = _group_rows(x_padded, valid, index, block, group)
    log_a0 = jnp.full((block,), log_inv_n, x_padded.dtype)
    return jax.lax.map(lambda b: sinkhorn.block_column_lse(b[0], log_a0, b[1], y_unit, epsilon), (x_blocks, valid_blocks))


@functools.partial(jax.jit, static_argnames=("block", "group"))
def _fused_pass_step(x_padded, valid, index, log_b, y_unit, epsilon, log_inv_n, *, block: int, group: int):
    """The a-updates of the blocks of step `index` from log b (M,), then their column LSEs (group, M)."""
    x_blocks, valid_blocks = _group_rows(x_padded, valid, index, block, group)
    return jax.lax.map(
        lambda b: sinkhorn.block_a_update_then_column_lse(b[0], b[1], log_b, y_unit, epsilon, log_inv_n),
        (x_blocks, valid_blocks),
    )


@functools.partial(jax.jit, static_argnames=("block", "group"))
def _warp_step(x_padded, valid, index, log_b, y_unit, y_points, epsilon, *, block: int, group: int):
    """Warped points (group·block, 3) of the blocks of step `index`."""
    x_blocks, _ = _group_rows(x_padded, valid, index, block, group)
    warped = jax.lax.map(lambda x_block: sinkhorn.block_warp(x_block, log_b, y_unit, y_points, epsilon), x_blocks)
    return warped.reshape(group * block, 3)


@jax.jit
def _log_b(per_block_lse, log_inv_m):
    """The b-update from the stacked column sums (num_blocks, M): log b (M,)."""
    return sinkhorn.log_b_from_column_lse(per_block_lse, log_inv_m)


@jax.jit
def _unit_rows(x_features, y_features, y_points):
    """Row-normalised features and points in the compute dtype (as `warp._ot_warp`)."""
    dtype = _compute_dtype(x_features, y_features, y_points)
    return normalize_rows(x_features.astype(dtype)), normalize_rows(y_features.astype(dtype)), y_points.astype(dtype)


class StepwiseWarp:
    """The row-blocked CoreNet warp of x onto y_points as a host loop of compiled steps.

    Args:
      x_features: (N, D); y_features: (M, D); y_points: (M, 3) (any unit); as `ot_warp`.
      epsilon: entropic regularisation (finite, > 0).
      block_size: rows per block (`RowBlocked(block_size)`; need not divide N).
      solver: a `CoreNetIteration(num_iterations)` (the only solver with a stepwise form).
      blocks_per_step: row blocks per compiled call (default: enough for about `STEPS_PER_PASS`
        calls per pass). Rows are zero-padded to whole steps; padded rows are masked out.

    Attributes: `block` = min(block_size, N) rows, `num_blocks` = ⌈N / block⌉, `blocks_per_step`,
    `steps_per_pass`, `num_passes` = k + 1,
    `num_steps` = steps_per_pass · num_passes (the number of `on_step` calls of `run`).
    Raises ValueError for the inputs `ot_warp` rejects and TypeError for another solver.
    """

    def __init__(self, x_features, y_features, y_points, *, epsilon: float = 0.03, block_size: int = 1024,
                 solver: CoreNetIteration = CoreNetIteration(), blocks_per_step: int | None = None):  # fmt: skip
        if not isinstance(solver, CoreNetIteration):
            raise TypeError(f"StepwiseWarp needs a CoreNetIteration solver; got {solver!r}")
        block_size = RowBlocked(block_size).block_size  # validated like the geometry
        x_features, y_features, y_points = (jnp.asarray(a) for a in (x_features, y_features, y_points))
        _validate(x_features, y_features, y_points, epsilon)
        self._n, self._m = x_features.shape[0], y_features.shape[0]
        self.block = min(block_size, self._n)
        self.num_blocks = -(-self._n // self.block)
        if blocks_per_step is None:
            blocks_per_step = -(-self.num_blocks // STEPS_PER_PASS)
        self.blocks_per_step = min(RowBlocked(blocks_per_step).block_size, self.num_blocks)
        self.steps_per_pass = -(-self.num_blocks // self.blocks_per_step)
        self.num_iterations = solver.num_iterations
        self.num_passes = self.num_iterations + 1
        self.num_steps = self.steps_per_pass * self.num_passes
        x_unit, self._y_unit, self._y_points = _unit_rows(x_features, y_features, y_points)
        rows = self.steps_per_pass * self.blocks_per_step * self.block
        self._x_padded = jnp.pad(x_unit, ((0, rows - self._n), (0, 0)))
        self._valid = jnp.arange(rows) < self._n
        dtype = x_unit.dtype
        self._epsilon = jnp.asarray(epsilon, dtype)
        self._log_inv_n = jnp.asarray(-math.log(self._n), dtype)
        self._log_inv_m = jnp.asarray(-math.log(self._m), dtype)
        self._steps = None

    def _step_functions(self, compile_now: bool):
        """(first, fused, warp) step callables taking (index, ...) only; AOT-compiled when asked."""
        x, valid, y_unit = self._x_padded, self._valid, self._y_unit
        shape = dict(block=self.block, group=self.blocks_per_step)
        if not compile_now:
            steps = (_first_pass_step, _fused_pass_step, _warp_step)
            return tuple(functools.partial(step, x, valid, **shape) for step in steps)
        index = jnp.asarray(0, jnp.int32)
        log_b = jnp.zeros((self._m,), x.dtype)
        eps, log_inv_n = self._epsilon, self._log_inv_n
        compiled = (
            _first_pass_step.lower(x, valid, index, y_unit, eps, log_inv_n, **shape).compile(),
            _fused_pass_step.lower(x, valid, index, log_b, y_unit, eps, log_inv_n, **shape).compile(),
            _warp_step.lower(x, valid, index, log_b, y_unit, self._y_points, eps, **shape).compile(),
        )
        return tuple(functools.partial(step, x, valid) for step in compiled)

    def compile(self) -> None:
        """Compile the three step functions now (so that the first `run` steps time only the work)."""
        self._steps = self._step_functions(compile_now=True)

    def _pass(self, step: Callable, on_step: Callable[[], None], *args) -> jax.Array:
        """`step(index, *args)` for every step of a pass, waiting for each result before `on_step()`;
        the results concatenated along the first axis."""
        outputs = []
        for index in range(self.steps_per_pass):
            outputs.append(step(jnp.asarray(index, jnp.int32), *args).block_until_ready())
            on_step()
        return jnp.concatenate(outputs)

    def run(self, on_step: Callable[[], None] | None = None) -> jax.Array:
        """The warped points (N, 3), in x's order; calls `on_step()` after each of `num_steps` steps."""
        on_step = on_step or (lambda: None)
        first, fused, warp = self._steps or self._step_functions(compile_now=False)
        y_unit, epsilon = self._y_unit, self._epsilon
        log_b = _log_b(self._pass(first, on_step, y_unit, epsilon, self._log_inv_n), self._log_inv_m)
        for _ in range(self.num_iterations - 1):
            log_b = _log_b(self._pass(fused, on_step, log_b, y_unit, epsilon, self._log_inv_n), self._log_inv_m)
        return self._pass(warp, on_step, log_b, y_unit, self._y_points, epsilon)[: self._n]


__all__ = ["STEPS_PER_PASS", "StepwiseWarp"]
