"""Entry points: solve one problem, or a sequence of stages, optionally with implicit gradients."""

from __future__ import annotations

from collections.abc import Sequence

from jaxpose.optim.implicit import ImplicitDiff, solution_with_implicit_gradients
from jaxpose.optim.problem import Problem
from jaxpose.optim.result import Result
from jaxpose.optim.solvers import Solver
from jaxpose.optim.stages import Stage


def solve(problem: Problem, solver: Solver, *, implicit_diff: ImplicitDiff | None = None) -> Result:
    """Minimise ``problem`` with ``solver``.

    With ``implicit_diff=None`` this is ``solver.run(problem)``: reverse-mode gradients of the result
    exist only for ``Adam(unroll=True)`` (through the unrolled loop); other solvers raise JAX's error
    about differentiating a while loop. With an `ImplicitDiff`, gradients of the result with respect to
    the data, weights and frozen parameters come from the implicit function theorem (any solver).
    """
    if implicit_diff is None:
        return solver.run(problem)
    return solution_with_implicit_gradients(problem, solver, implicit_diff)


def solve_stages(
    problem: Problem, stages: Sequence[Stage], *, implicit_diff: ImplicitDiff | None = None
) -> tuple[Result, ...]:
    """Run ``stages`` in order, each starting from the previous stage's final params.

    Stage k solves ``stages[k].apply(problem, params_k)``: the problem's energy and data, the params
    reached so far, the stage's mask (or the problem's) and the problem's weights updated with the
    stage's. Returns one `Result` per stage; the final params are ``results[-1].params``. Parameters
    that a stage freezes keep the value they had when it started. ``implicit_diff`` applies to every
    stage (see `solve`).
    """
    if isinstance(stages, Stage) or not isinstance(stages, Sequence) or not stages:
        raise ValueError(f"stages must be a non-empty sequence of Stage, got {stages!r}")
    for stage in stages:
        if not isinstance(stage, Stage):
            raise ValueError(f"stages must hold Stage objects, got {type(stage)}")
    results = []
    params = problem.params
    for stage in stages:
        result = solve(stage.apply(problem, params), stage.solver, implicit_diff=implicit_diff)
        results.append(result)
        params = result.params
    return tuple(results)
