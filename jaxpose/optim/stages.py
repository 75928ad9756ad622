"""Staged solving as data: which parameters are free, the term weights and the solver of each stage.

A fit often runs in stages, e.g. first the global orientation and translation with a strong prior,
then the pose with a weaker one. A `Stage` says what changes for one stage; `solve_stages`
(`jaxpose.optim.solve`) runs them in sequence. `stages_from_config` builds stages from plain lists of
dicts (e.g. from an ml_collections config or JSON); it is the only place where solver and schedule
names are parsed, into `SolverKind` and `Schedule` members.

Config entry keys:
  solver   "adam" | "lbfgs" (required)
  free     list of top-level keys of the dict params that are optimised (default: all free)
  weights  dict name -> float overriding the problem's weights for this stage (default: unchanged)
  name     label of the stage (default: "stage <index>")
  schedule (Adam only) "constant" | "cosine" | "exponential"
  every other key is passed to the solver class as a keyword argument (num_steps, learning_rate,
  tol, memory_size, ...); unknown keys are an error.
"""

from __future__ import annotations

import dataclasses
import enum
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxpose.optim.problem import Problem, PyTree, mask_from_keys
from jaxpose.optim.solvers import LBFGS, Adam, Schedule, Solver


class SolverKind(enum.Enum):
    """Solver names accepted in configs."""

    ADAM = "adam"
    LBFGS = "lbfgs"


SOLVER_CLASSES: dict[SolverKind, type] = {SolverKind.ADAM: Adam, SolverKind.LBFGS: LBFGS}


@dataclasses.dataclass(frozen=True, eq=False)
class Stage:
    """One stage of a staged solve.

    Args:
      solver: an `Adam` or `LBFGS` instance; it holds the stage's iteration budget.
      free: mask pytree with the structure of the params (one bool per leaf), or None to keep the
        problem's mask.
      weights: dict name -> float overriding some of the problem's weights, or None to keep them.
      name: a label for logs.

    Stages are static configuration: they compare and hash by value (solver, mask, weights, name),
    so a tuple of stages can be a static argument, e.g.
    ``jax.jit(solve_stages, static_argnames="stages")(problem, stages=tuple(stages))``; equal stages
    reuse the compiled program. Do not mutate ``free`` or ``weights`` after construction.
    """

    solver: Solver
    free: PyTree | None = None
    weights: Mapping[str, float] | None = None
    name: str = ""

    def __post_init__(self):
        if not isinstance(self.solver, (Adam, LBFGS)):
            raise ValueError(f"Stage.solver must be an Adam or LBFGS instance, got {type(self.solver)}")
        if self.weights is not None:
            if not isinstance(self.weights, Mapping):
                raise ValueError(f"Stage.weights must be a dict name -> float, got {type(self.weights)}")
            for key, value in self.weights.items():
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise ValueError(f"stage weight {key!r} must be a number, got {value!r}")
            object.__setattr__(self, "weights", {key: float(value) for key, value in self.weights.items()})
        if self.free is not None:
            leaves, treedef = jax.tree.flatten(self.free)
            if not all(isinstance(leaf, (bool, np.bool_)) for leaf in leaves):
                raise ValueError(f"Stage.free must be a mask pytree of Python bools, got {self.free!r}")
            object.__setattr__(self, "free", jax.tree.unflatten(treedef, [bool(leaf) for leaf in leaves]))

    def _key(self):
        free = None if self.free is None else (jax.tree.structure(self.free), tuple(jax.tree.leaves(self.free)))
        weights = None if self.weights is None else tuple(sorted(self.weights.items()))
        return (self.solver, free, weights, self.name)

    def __eq__(self, other):
        return isinstance(other, Stage) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def apply(self, problem: Problem, params: PyTree) -> Problem:
        """The problem this stage solves: ``problem`` started at ``params`` with this stage's mask and weights."""
        free = problem.free if self.free is None else self.free
        return problem.replace(params=params, free=free).with_weights(self.weights)


def _parse_enum(enum_type: type[enum.Enum], value: Any, what: str):
    options = [member.value for member in enum_type]
    if isinstance(value, str):
        try:
            return enum_type(value.lower())
        except ValueError:
            pass
    raise ValueError(f"unknown {what} {value!r}; expected one of {options}")


def _stage_from_dict(index: int, entry: Mapping[str, Any], params_template: Mapping[str, PyTree]) -> Stage:
    if hasattr(entry, "to_dict"):  # an ml_collections.ConfigDict
        entry = entry.to_dict()
    if not isinstance(entry, Mapping):
        raise ValueError(f"stage {index}: each stage config must be a dict, got {type(entry)}")
    options = dict(entry)
    if "solver" not in options:
        raise ValueError(f"stage {index}: missing 'solver' (one of {[kind.value for kind in SolverKind]})")
    kind = _parse_enum(SolverKind, options.pop("solver"), f"solver in stage {index}")
    name = str(options.pop("name", f"stage {index}"))
    free_keys = options.pop("free", None)
    weights = options.pop("weights", None)
    solver_class = SOLVER_CLASSES[kind]
    if "schedule" in options:
        if solver_class is not Adam:
            raise ValueError(f"stage {index}: 'schedule' is an Adam option, not one of {kind.value}")
        options["schedule"] = _parse_enum(Schedule, options["schedule"], f"schedule in stage {index}")
    valid = sorted(field.name for field in dataclasses.fields(solver_class))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"stage {index}: unknown {kind.value} options {unknown}; valid: {valid}")
    try:
        solver = solver_class(**options)
        free = None if free_keys is None else mask_from_keys(params_template, free_keys)
        return Stage(solver=solver, free=free, weights=None if weights is None else dict(weights), name=name)
    except ValueError as error:
        raise ValueError(f"stage {index} ({name}): {error}") from error


def stages_from_config(
    config: Sequence[Mapping[str, Any]], params_template: Mapping[str, PyTree]
) -> tuple[Stage, ...]:
    """Build `Stage` objects from a list of plain dicts (keys in the module docstring).

    Args:
      config: one dict per stage, in order.
      params_template: the dict-of-arrays params (only its keys and structure are used) that the
        ``free`` key names refer to.

    Example::

        stages_from_config([
            {"solver": "adam", "free": ["orientation", "translation"], "weights": {"prior": 1.0},
             "num_steps": 100, "learning_rate": 0.01},
            {"solver": "lbfgs", "free": ["pose"], "weights": {"prior": 0.1}, "num_steps": 50},
        ], params)
    """
    if isinstance(config, (str, bytes, Mapping)) or not isinstance(config, Sequence):
        raise ValueError(f"stages config must be a list of dicts, got {type(config)}")
    if not config:
        raise ValueError("stages config is empty")
    return tuple(_stage_from_dict(index, entry, params_template) for index, entry in enumerate(config))
