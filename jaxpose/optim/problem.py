"""The optimisation problem: an energy, its fixed data, initial parameters and a mask of free parameters.

A `Problem` is a registered pytree in the style of ott-jax problems:

  children (arrays, traced under `jit`, mapped under `vmap`):
    params   the initial parameters, any pytree of floating arrays (e.g. a dict of arrays)
    data     the fixed data the energy depends on, any pytree of arrays
    weights  optional dict ``name -> float`` of per-term weights, or None
  aux data (static, part of the treedef; changing it recompiles):
    energy   the Python function ``energy(params, data) -> scalar`` or, when weights are given,
             ``energy(params, data, weights) -> scalar``
    free     one bool per leaf of ``params``: True = optimised, False = frozen (never moves)

Because `energy` is compared by identity in the treedef, define it once (a module-level function) rather
than as a fresh lambda per call, or every call recompiles.

The solvers optimise only the *free leaves*: `split` turns params into ``(free_leaves, frozen_leaves)``
(two lists aligned with ``jax.tree.leaves(params)``) and `merge` puts them back, so frozen leaves are
closed-over constants of the objective and are returned bit-for-bit unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

PyTree = Any


def _validate_weights(weights: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if weights is None:
        return None
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a dict of per-term weights (name -> float) or None, got {type(weights)}")
    for name in weights:
        if not isinstance(name, str):
            raise ValueError(f"weight names must be strings, got {name!r}")
    return dict(weights)


def _free_leaves_from_mask(params: PyTree, free: PyTree | None) -> tuple[bool, ...]:
    params_def = jax.tree.structure(params)
    if free is None:
        return (True,) * params_def.num_leaves
    free_def = jax.tree.structure(free)
    if free_def != params_def:
        raise ValueError(
            "the free-parameter mask must have the same pytree structure as params, got mask "
            f"{free_def} for params {params_def}"
        )
    leaves = jax.tree.leaves(free)
    for leaf in leaves:
        if not isinstance(leaf, (bool, np.bool_)):
            raise ValueError(f"the free-parameter mask must hold Python bools (one per params leaf), got {leaf!r}")
    return tuple(bool(leaf) for leaf in leaves)


def mask_from_keys(params: Mapping[str, PyTree], keys: Sequence[str]) -> dict[str, PyTree]:
    """Free-parameter mask for a dict-of-arrays ``params``: leaves under the top-level ``keys`` are free.

    Args:
      params: a dict whose values are arrays (or pytrees of arrays); only its structure is used.
      keys: the top-level keys to free; every one must be a key of ``params``.

    Returns:
      A dict with the structure of ``params`` holding True under ``keys`` and False elsewhere.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"free keys need params that are a dict of arrays, got {type(params)}")
    if isinstance(keys, str):
        raise ValueError(f"free keys must be a list of key names, got the string {keys!r}")
    unknown = [key for key in keys if key not in params]
    if unknown:
        raise ValueError(f"free keys {unknown} are not keys of params {sorted(params)}")
    chosen = set(keys)
    return {key: jax.tree.map(lambda _, free=key in chosen: free, value) for key, value in params.items()}


@jax.tree_util.register_pytree_node_class
class Problem:
    """Minimise ``energy(params, data[, weights])`` over the free leaves of ``params``.

    Args:
      energy: ``energy(params, data) -> scalar`` or ``energy(params, data, weights) -> scalar`` (when
        ``weights`` is not None). Must return a 0-d floating array for a single (unbatched) problem;
        the solvers check this when they trace it.
      params: initial parameters, a pytree of floating arrays.
      data: fixed data, a pytree of arrays (may be empty, e.g. ``()``).
      free: a pytree with the structure of ``params`` holding one Python bool per leaf (True = free),
        or None for all free.
      weights: None, or a dict ``name -> float`` passed as the third argument of ``energy``. The
        weights are pytree children, so changing their values (e.g. per stage) does not recompile.

    A batch of problems is one `Problem` whose ``params``/``data`` leaves carry a leading batch axis;
    map a solver over it with ``jax.vmap(solver.run)(problem)`` (all children batched) or
    ``jax.vmap(solver.run, in_axes=(problem.batch_axes(weights=None),))(problem)``.
    """

    def __init__(
        self,
        energy: Callable[..., jax.Array],
        params: PyTree,
        data: PyTree = (),
        *,
        free: PyTree | None = None,
        weights: Mapping[str, Any] | None = None,
    ):
        if not callable(energy):
            raise ValueError(f"energy must be callable, got {type(energy)}")
        if jax.tree.structure(params).num_leaves == 0:
            raise ValueError("params must contain at least one array")
        self.energy = energy
        self.params = params
        self.data = data
        self.weights = _validate_weights(weights)
        self.free_leaves = _free_leaves_from_mask(params, free)

    # --- pytree protocol ------------------------------------------------------------------------------
    def tree_flatten(self):
        children = (self.params, self.data, self.weights)
        aux = (self.energy, self.free_leaves)
        return children, aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        # No validation: JAX rebuilds problems with tracers, sentinels or axis specs as leaves.
        problem = object.__new__(cls)
        problem.energy, problem.free_leaves = aux
        problem.params, problem.data, problem.weights = children
        return problem

    def __repr__(self) -> str:
        name = getattr(self.energy, "__name__", repr(self.energy))
        return (
            f"Problem(energy={name}, params={jax.tree.structure(self.params)}, free={self.free_leaves}, "
            f"weights={None if self.weights is None else sorted(self.weights)})"
        )

    # --- derived views --------------------------------------------------------------------------------
    @property
    def free(self) -> PyTree:
        """The mask as a pytree with the structure of ``params`` (one bool per leaf)."""
        return jax.tree.unflatten(jax.tree.structure(self.params), list(self.free_leaves))

    @property
    def num_free(self) -> int:
        """Number of free leaves (not elements)."""
        return sum(self.free_leaves)

    def split(self, params: PyTree) -> tuple[list[jax.Array], list[jax.Array]]:
        """``(free_leaves, frozen_leaves)`` of a params pytree with this problem's structure."""
        leaves = jax.tree.leaves(params)
        if len(leaves) != len(self.free_leaves):
            raise ValueError(f"params have {len(leaves)} leaves, the mask has {len(self.free_leaves)}")
        free = [leaf for leaf, is_free in zip(leaves, self.free_leaves) if is_free]
        frozen = [leaf for leaf, is_free in zip(leaves, self.free_leaves) if not is_free]
        return free, frozen

    def merge(self, free: Sequence[jax.Array], frozen: Sequence[jax.Array]) -> PyTree:
        """Inverse of `split`: the params pytree from its free and frozen leaves."""
        free_iter, frozen_iter = iter(free), iter(frozen)
        leaves = [next(free_iter) if is_free else next(frozen_iter) for is_free in self.free_leaves]
        return jax.tree.unflatten(jax.tree.structure(self.params), leaves)

    def value(self, params: PyTree, data: PyTree | None = None, weights: Mapping[str, Any] | None = None):
        """The energy at ``params`` (with this problem's data and weights unless others are given)."""
        data = self.data if data is None else data
        weights = self.weights if weights is None else weights
        if self.weights is None:
            return self.energy(params, data)
        return self.energy(params, data, weights)

    def objective(self, frozen: Sequence[jax.Array], data: PyTree, weights: PyTree) -> Callable:
        """``f(free_leaves) -> scalar``: the energy as a function of the free leaves only."""

        def f(free_leaves):
            return self.value(self.merge(free_leaves, frozen), data, weights)

        return f

    # --- functional updates ---------------------------------------------------------------------------
    def replace(self, **changes) -> Problem:
        """A new problem with some of ``energy, params, data, free, weights`` replaced (validated)."""
        unknown = set(changes) - {"energy", "params", "data", "free", "weights"}
        if unknown:
            raise ValueError(f"Problem.replace got unknown fields {sorted(unknown)}")
        fields = dict(energy=self.energy, params=self.params, data=self.data, free=self.free, weights=self.weights)
        fields.update(changes)
        energy, params, data = fields.pop("energy"), fields.pop("params"), fields.pop("data")
        return Problem(energy, params, data, **fields)

    def with_weights(self, overrides: Mapping[str, Any] | None) -> Problem:
        """A new problem whose weights are this problem's, updated with ``overrides`` (same names only)."""
        if overrides is None:
            return self
        overrides = _validate_weights(overrides)
        if self.weights is None:
            raise ValueError(
                f"weights {sorted(overrides)} were given for a problem built without weights; pass "
                "weights=... to Problem (and write energy(params, data, weights)) to use per-term weights"
            )
        unknown = sorted(set(overrides) - set(self.weights))
        if unknown:
            raise ValueError(f"unknown weight names {unknown}; the problem has {sorted(self.weights)}")
        return self.replace(weights={**self.weights, **overrides})

    def batch_axes(self, params: int | None = 0, data: int | None = 0, weights: int | None = None) -> Problem:
        """A `Problem`-shaped ``in_axes`` prefix for `jax.vmap` (default: params and data batched)."""
        return Problem.tree_unflatten((self.energy, self.free_leaves), (params, data, weights))
