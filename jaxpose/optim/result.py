"""What a solver returns: final parameters, energies and convergence diagnostics, as a pytree."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Result(NamedTuple):
    """Output of one solve (a NamedTuple, hence a pytree: it passes through `jit`/`vmap`).

    Shapes are for one problem; under `vmap` every field gains the leading batch axis.

    params: the final parameters, same pytree as ``problem.params``; frozen leaves are the initial
      values, unchanged.
    energy: () the energy at ``params``.
    energy_history: (num_steps,) the energy after each iteration: entry ``k`` is the energy after
      update ``k + 1``. Entries from ``num_iterations`` on (the solver stopped early) are filled with
      the final energy, never NaN, so sums and plots of a batch stay finite.
    grad_norm: () global L2 norm of the gradient with respect to the free leaves at ``params``.
    num_iterations: () int32, updates taken (0 if the initial point already met the tolerance).
    converged: () bool, ``grad_norm < tol``. False if the iteration budget ran out first or the
      gradient became non-finite (the loop also stops then).
    """

    params: Any
    energy: jax.Array
    energy_history: jax.Array
    grad_norm: jax.Array
    num_iterations: jax.Array
    converged: jax.Array


def finalize_history(history: jax.Array, num_iterations: jax.Array, final_energy: jax.Array) -> jax.Array:
    """Fill the entries of an iteration's history past ``num_iterations`` with the final energy.

    history: (num_steps,); num_iterations: () int; final_energy: () → (num_steps,).
    """
    taken = jnp.arange(history.shape[0]) < num_iterations
    return jnp.where(taken, history, final_energy)
