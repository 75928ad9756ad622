"""Gradients of a solution with respect to the data by implicit differentiation.

At a strict local minimum x*(θ) of E(x, θ) over the free parameters x (θ = data, weights and the
frozen parameters), the optimality condition ``∇_x E(x*(θ), θ) = 0`` holds for every θ, so by the
implicit function theorem

    dx*/dθ = -H⁻¹ ∂²E/∂x∂θ,     H = ∇²_x E(x*, θ)  (symmetric).

A vector-Jacobian product with cotangent c therefore needs one linear solve ``H u = c`` and one VJP:
``c · dx*/dθ = -(∂/∂θ) [u · ∇_x E(x*, θ)]``. The solve uses `jax.scipy.sparse.linalg.cg` on
Hessian-vector products (forward-over-reverse, ``jvp`` of ``grad``), so H is never formed.

`solution_with_implicit_gradients` runs the solver on stop-gradient inputs (the loop is never
differentiated, so any solver works, including the while loops of L-BFGS and `Adam(unroll=False)`)
and attaches this VJP to the free leaves of the returned params with `jax.custom_vjp`.

Caveats: the gradient is exact only at a converged solution (check ``Result.converged``); H must be
positive definite there (a strict minimum), otherwise CG may not converge; add ``ridge`` for
ill-conditioned problems (it solves ``(H + ridge I) u = c``, a biased gradient). The initial values
of the free parameters get a zero gradient. Only reverse mode is defined (no `jvp`/`jacfwd` of the
solution).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.scipy.sparse.linalg import cg

from jaxpose.optim.problem import Problem
from jaxpose.optim.result import Result
from jaxpose.optim.solvers import Solver, _check_positive_int, _check_real


@dataclasses.dataclass(frozen=True)
class ImplicitDiff:
    """Settings of the linear solve ``(H + ridge I) u = c`` in the backward pass.

    Args:
      cg_tol: relative tolerance of conjugate gradients (on the residual norm, relative to ‖c‖).
      cg_atol: absolute tolerance of conjugate gradients.
      cg_maxiter: maximum CG iterations; None lets JAX use 10 × the number of free elements.
      ridge: Tikhonov term added to the Hessian (>= 0).
    """

    cg_tol: float = 1e-6
    cg_atol: float = 0.0
    cg_maxiter: int | None = None
    ridge: float = 0.0

    def __post_init__(self):
        _check_real("cg_tol", self.cg_tol)
        _check_real("cg_atol", self.cg_atol)
        _check_real("ridge", self.ridge)
        if self.cg_maxiter is not None:
            _check_positive_int("cg_maxiter", self.cg_maxiter)


jax.tree_util.register_static(ImplicitDiff)


def _attach_implicit_vjp(problem: Problem, options: ImplicitDiff):
    """``f(x_star, frozen, data, weights) -> x_star`` whose VJP is the implicit-function one."""

    def free_gradient(x, frozen, data, weights):
        return jax.grad(problem.objective(frozen, data, weights))(x)

    @jax.custom_vjp
    def attach(x_star, frozen, data, weights):
        return x_star

    def forward(x_star, frozen, data, weights):
        return x_star, (x_star, frozen, data, weights)

    def backward(residuals, cotangent):
        x_star, frozen, data, weights = residuals

        def hessian_vector_product(v):
            _, hv = jax.jvp(lambda x: free_gradient(x, frozen, data, weights), (x_star,), (v,))
            if options.ridge:
                hv = jax.tree.map(lambda a, b: a + options.ridge * b, hv, v)
            return hv

        u, _ = cg(
            hessian_vector_product,
            cotangent,
            tol=options.cg_tol,
            atol=options.cg_atol,
            maxiter=options.cg_maxiter,
        )
        # c · dx*/dθ = -(∂/∂θ)[u · ∇_x E(x*, θ)]: a VJP of the negated gradient map with cotangent u.
        _, vjp = jax.vjp(
            lambda fr, d, w: jax.tree.map(jnp.negative, free_gradient(x_star, fr, d, w)), frozen, data, weights
        )
        g_frozen, g_data, g_weights = vjp(u)
        return jax.tree.map(jnp.zeros_like, x_star), g_frozen, g_data, g_weights

    attach.defvjp(forward, backward)
    return attach


def solution_with_implicit_gradients(
    problem: Problem, solver: Solver, implicit_diff: ImplicitDiff = ImplicitDiff()
) -> Result:
    """``solver.run(problem)`` whose params and energy are differentiable w.r.t. the problem's inputs.

    Gradients flow to ``problem.data``, ``problem.weights`` and the frozen leaves of
    ``problem.params`` by the implicit function theorem (module docstring); the initial free leaves
    get zero. ``Result.energy`` is recomputed at the attached params, so its gradient is the envelope
    theorem's ``∂E/∂θ``; the energy history, gradient norm, iteration count and flag carry no gradient.
    Works under `jit` and `vmap`, for every solver.

    Args:
      problem: the problem; its children may be traced (being differentiated).
      solver: an `Adam` or `LBFGS` instance (``unroll`` is irrelevant here).
      implicit_diff: settings of the backward linear solve.
    """
    if not isinstance(implicit_diff, ImplicitDiff):
        raise ValueError(f"implicit_diff must be an ImplicitDiff, got {type(implicit_diff)}")
    result = solver.run(jax.lax.stop_gradient(problem))
    x_star, _ = problem.split(result.params)
    _, frozen = problem.split(problem.params)
    attach = _attach_implicit_vjp(problem, implicit_diff)
    free = attach(x_star, frozen, problem.data, problem.weights)
    params = problem.merge(free, frozen)
    energy = problem.value(params)
    return result._replace(params=params, energy=energy)
