"""Per-sample optimisation as problem -> solver -> result (pytrees with static hyper-parameters).

Public API:
  Problem(energy, params, data=(), *, free=None, weights=None)
      the energy, its fixed data, initial params and the mask of free params (`problem`)
  mask_from_keys(params, keys)     mask freeing the top-level keys of a dict params (`problem`)
  Adam(learning_rate=1e-2, num_steps=1000, tol=1e-6, schedule=Schedule.CONSTANT, ..., unroll=False)
  LBFGS(num_steps=100, tol=1e-6, memory_size=10, max_linesearch_steps=20)
      solvers; ``solver.run(problem) -> Result``, one lax loop, jit/vmap-able (`solvers`)
  Schedule                         Adam learning-rate schedules: CONSTANT, COSINE, EXPONENTIAL
  Result                           params, energy, energy_history, grad_norm, num_iterations,
                                   converged (`result`)
  ImplicitDiff(cg_tol=1e-6, cg_atol=0.0, cg_maxiter=None, ridge=0.0)
  solution_with_implicit_gradients(problem, solver, implicit_diff=ImplicitDiff())
      gradients of the solution by the implicit function theorem (`implicit`)
  solve(problem, solver, *, implicit_diff=None)
  solve_stages(problem, stages, *, implicit_diff=None) -> tuple[Result, ...]   (`solve`)
  Stage(solver, free=None, weights=None, name="")
  stages_from_config(config, params_template) -> tuple[Stage, ...]
  SolverKind                       solver names accepted in configs: "adam", "lbfgs" (`stages`)

Differentiating a solution: ``Adam(unroll=True)`` unrolls a fixed-trip loop (reverse-mode through
every iteration); ``implicit_diff=ImplicitDiff()`` (or `solution_with_implicit_gradients`) uses the
optimality condition and works for every solver. See docs/optim.md.
"""

from jaxpose.optim.implicit import ImplicitDiff, solution_with_implicit_gradients
from jaxpose.optim.problem import Problem, mask_from_keys
from jaxpose.optim.result import Result
from jaxpose.optim.solve import solve, solve_stages
from jaxpose.optim.solvers import LBFGS, Adam, Schedule, Solver
from jaxpose.optim.stages import SolverKind, Stage, stages_from_config

__all__ = [
    "LBFGS", "Adam", "ImplicitDiff", "Problem", "Result", "Schedule", "Solver", "SolverKind", "Stage",
    "mask_from_keys", "solution_with_implicit_gradients", "solve", "solve_stages", "stages_from_config",
]
