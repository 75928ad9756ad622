"""Tests of jaxpose.optim: problems, Adam / L-BFGS solvers, staging, and gradients of solutions."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.optim import (
    LBFGS,
    Adam,
    ImplicitDiff,
    Problem,
    Result,
    Schedule,
    SolverKind,
    Stage,
    mask_from_keys,
    solution_with_implicit_gradients,
    solve,
    solve_stages,
    stages_from_config,
)

# ----------------------------------------------------------------------------------------------------
# Energies (module level: the energy function is part of the problem's treedef, so defining it once
# lets jit reuse compiled programs across tests).


def quadratic(params, data):
    """0.5 xᵀAx − bᵀx; minimiser A⁻¹b."""
    x = params["x"]
    return 0.5 * x @ data["A"] @ x - data["b"] @ x


def rosenbrock(params, data):
    x, y = params["xy"][0], params["xy"][1]
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def coupled(params, data, weights):
    """Strongly convex in (a, b) jointly; the a-b coupling makes the stages interact."""
    a, b = params["a"], params["b"]
    fit = jnp.sum((a - data["target_a"]) ** 2) + jnp.sum((b - data["target_b"]) ** 2)
    coupling = jnp.sum((a - b) ** 2)
    return 0.5 * fit + 0.5 * weights["coupling"] * coupling + 0.5 * weights["prior"] * jnp.sum(b * b)


def soft_fit(params, data, weights):
    """Non-quadratic, strongly convex in x: softplus terms plus a fit to b + shift (shift is frozen)."""
    x = params["x"]
    residual = x - data["b"] - params["shift"]
    soft = jnp.sum(jax.nn.softplus(data["a"] * x))
    return weights["soft"] * soft + 0.5 * weights["fit"] * jnp.sum(residual**2)


def vector_energy(params, data):
    return params["x"] ** 2


# Compiled once per (problem structure, solver) and shared by the tests.
run = jax.jit(lambda problem, solver: solver.run(problem))
run_batched = jax.jit(jax.vmap(lambda problem, solver: solver.run(problem), in_axes=(0, None)))
solve_stages_jit = jax.jit(solve_stages, static_argnames="stages")

A_MATRIX = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.5]])
B_VECTOR = np.array([1.0, -2.0, 0.5])
QUAD_LBFGS = LBFGS(num_steps=50, tol=1e-6)
QUAD_ADAM = Adam(0.1, num_steps=2000, tol=1e-6, schedule=Schedule.EXPONENTIAL, final_lr_fraction=1e-3)


def quadratic_problem(a=A_MATRIX, b=B_VECTOR, dtype=jnp.float32):
    data = {"A": jnp.asarray(a, dtype), "b": jnp.asarray(b, dtype)}
    return Problem(quadratic, {"x": jnp.zeros(a.shape[-1], dtype)}, data)


def coupled_problem():
    params = {"a": jnp.array([2.0, -1.0]), "b": jnp.array([0.5, 0.5])}
    data = {"target_a": jnp.array([1.0, 2.0]), "target_b": jnp.array([-1.0, 0.0])}
    return Problem(coupled, params, data, weights={"coupling": 1.0, "prior": 0.5})


def coupled_optimum_of(free_key, params, weights, data):
    """Closed-form minimiser of `coupled` over one key with the other fixed (per element)."""
    c, p = weights["coupling"], weights["prior"]
    if free_key == "a":
        return (data["target_a"] + c * params["b"]) / (1.0 + c)
    return (data["target_b"] + c * params["a"]) / (1.0 + c + p)


# ----------------------------------------------------------------------------------------------------
# Convergence


@pytest.mark.parametrize("solver", [QUAD_LBFGS, QUAD_ADAM], ids=["lbfgs", "adam"])
def test_quadratic_converges_to_known_minimiser(solver):
    result = run(quadratic_problem(), solver)
    expected = np.linalg.solve(A_MATRIX, B_VECTOR)
    assert isinstance(result, Result)
    np.testing.assert_allclose(result.params["x"], expected, atol=1e-5)
    assert bool(result.converged)
    assert float(result.grad_norm) < solver.tol
    steps = int(result.num_iterations)
    assert 0 < steps < solver.num_steps
    history = np.asarray(result.energy_history)
    assert history.shape == (solver.num_steps,)
    # Entries from num_iterations on hold the final energy; the last update's energy is the final one.
    np.testing.assert_array_equal(history[steps - 1 :], float(result.energy))
    expected_energy = -0.5 * B_VECTOR @ expected
    np.testing.assert_allclose(float(result.energy), expected_energy, atol=1e-5)
    if isinstance(solver, LBFGS):  # the Wolfe line search only accepts decreasing steps
        assert np.all(np.diff(history) <= 1e-6)


def test_rosenbrock():
    problem = Problem(rosenbrock, {"xy": jnp.array([-1.2, 1.0])})
    lbfgs = run(problem, LBFGS(num_steps=100, tol=1e-6))
    np.testing.assert_allclose(lbfgs.params["xy"], [1.0, 1.0], atol=1e-4)
    assert bool(lbfgs.converged)
    # Adam with a cosine-decayed learning rate: observed error 1.3e-5 and energy 4e-11 after its 3000
    # steps (gradient norm 1.3e-5, so not "converged"); assert 1e-3 and 1e-6.
    adam = run(problem, Adam(learning_rate=0.1, num_steps=3000, tol=1e-6, schedule=Schedule.COSINE))
    np.testing.assert_allclose(adam.params["xy"], [1.0, 1.0], atol=1e-3)
    assert float(adam.energy) < 1e-6


def test_no_steps_when_initial_point_converged():
    # x = (1, -1, 0.5) and b = A x are exact in float32, so the gradient at x is exactly zero.
    minimiser = np.array([1.0, -1.0, 0.5])
    problem = quadratic_problem(b=A_MATRIX @ minimiser).replace(params={"x": jnp.asarray(minimiser, jnp.float32)})
    result = run(problem, QUAD_LBFGS)
    assert int(result.num_iterations) == 0
    assert bool(result.converged) and float(result.grad_norm) == 0.0
    np.testing.assert_array_equal(result.params["x"], minimiser)
    np.testing.assert_array_equal(result.energy_history, np.full(QUAD_LBFGS.num_steps, float(result.energy)))


# ----------------------------------------------------------------------------------------------------
# Batching


@pytest.fixture(scope="module")
def sixteen_quadratics():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(16, 3, 3))
    a = np.einsum("bij,bkj->bik", m, m) + 2.0 * np.eye(3)
    b = rng.normal(size=(16, 3))
    x0 = rng.normal(size=(16, 3))
    batched = quadratic_problem(a, b).replace(params={"x": jnp.asarray(x0, jnp.float32)})
    return batched, a, b


@pytest.mark.parametrize("solver", [QUAD_LBFGS, QUAD_ADAM], ids=["lbfgs", "adam"])
def test_vmap_equals_loop_of_single_solves(sixteen_quadratics, solver):
    batched, a, b = sixteen_quadratics
    result = run_batched(batched, solver)
    assert result.params["x"].shape == (16, 3)
    assert result.energy_history.shape == (16, solver.num_steps)
    for i in range(16):
        one = run(jax.tree.map(lambda leaf, i=i: leaf[i], batched), solver)
        np.testing.assert_allclose(result.params["x"][i], one.params["x"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.energy[i], one.energy, rtol=1e-5, atol=1e-6)
        assert bool(result.converged[i]) == bool(one.converged)
        assert abs(int(result.num_iterations[i]) - int(one.num_iterations)) <= 1
    np.testing.assert_allclose(result.params["x"], np.linalg.solve(a, b[..., None])[..., 0], atol=1e-4)


def test_vmap_with_unbatched_weights():
    params = {"a": jnp.zeros((4, 2)), "b": jnp.zeros((4, 2))}
    data = {"target_a": jnp.arange(8.0).reshape(4, 2), "target_b": -jnp.arange(8.0).reshape(4, 2)}
    problem = Problem(coupled, params, data, weights={"coupling": 1.0, "prior": 0.5})
    solver = Adam(learning_rate=0.1, num_steps=1000, tol=1e-5, schedule=Schedule.COSINE)
    result = jax.jit(jax.vmap(solver.run, in_axes=(problem.batch_axes(),)))(problem)
    assert bool(jnp.all(result.converged))
    gradient = jax.vmap(jax.grad(lambda p, d: coupled(p, d, problem.weights)))(result.params, data)
    assert float(jnp.max(jnp.abs(gradient["a"]))) < 1e-4


# ----------------------------------------------------------------------------------------------------
# Masks and stages


@pytest.mark.parametrize("solver", [LBFGS(num_steps=50, tol=1e-5), Adam(0.05, 500, tol=1e-5)], ids=["lbfgs", "adam"])
def test_mask_keeps_frozen_params_unchanged(solver):
    problem = coupled_problem().replace(free={"a": False, "b": True})
    result = run(problem, solver)
    np.testing.assert_array_equal(result.params["a"], problem.params["a"])
    expected_b = coupled_optimum_of("b", problem.params, problem.weights, problem.data)
    np.testing.assert_allclose(result.params["b"], expected_b, atol=1e-4)
    # The frozen key has a non-zero gradient, which the converged flag ignores.
    full_gradient = jax.grad(coupled)(result.params, problem.data, problem.weights)
    assert float(jnp.max(jnp.abs(full_gradient["a"]))) > 0.1
    assert bool(result.converged)


# Stage 1 frees "a" with L-BFGS, stage 2 frees "b" with Adam and a stronger prior.
STAGES = (
    Stage(solver=LBFGS(num_steps=30, tol=1e-5), free={"a": True, "b": False}, name="global"),
    Stage(
        solver=Adam(learning_rate=0.05, num_steps=800, tol=1e-5, schedule=Schedule.COSINE),
        free={"a": False, "b": True},
        weights={"prior": 2.0},
        name="pose",
    ),
)
STAGES_CONFIG = [
    {"name": "global", "free": ["a"], "solver": "lbfgs", "num_steps": 30, "tol": 1e-5},
    {"name": "pose", "free": ["b"], "weights": {"prior": 2.0}, "solver": "adam", "num_steps": 800,
     "learning_rate": 0.05, "tol": 1e-5, "schedule": "cosine"},
]


def test_staged_solving():
    problem = coupled_problem()
    first, second = solve_stages_jit(problem, stages=STAGES)
    np.testing.assert_array_equal(first.params["b"], problem.params["b"])
    expected_a = coupled_optimum_of("a", problem.params, problem.weights, problem.data)
    np.testing.assert_allclose(first.params["a"], expected_a, atol=1e-4)
    np.testing.assert_array_equal(second.params["a"], first.params["a"])
    stage_two_weights = {"coupling": 1.0, "prior": 2.0}
    expected_b = coupled_optimum_of("b", first.params, stage_two_weights, problem.data)
    np.testing.assert_allclose(second.params["b"], expected_b, atol=1e-4)
    assert bool(first.converged) and bool(second.converged)
    # The stage's weights replace the problem's for that stage: the reported energy uses them.
    np.testing.assert_allclose(
        float(second.energy), float(coupled(second.params, problem.data, stage_two_weights)), rtol=1e-6
    )


def test_stages_from_config():
    problem = coupled_problem()
    stages = stages_from_config(STAGES_CONFIG, problem.params)
    assert stages == STAGES and hash(stages) == hash(STAGES)
    assert stages[0].solver == LBFGS(num_steps=30, tol=1e-5) and stages[0].weights is None
    assert stages[1].free == {"a": False, "b": True} and stages[1].solver.schedule is Schedule.COSINE
    assert [kind.value for kind in SolverKind] == ["adam", "lbfgs"]
    # Equal stages share the compiled staged solve, and give the same results.
    from_config = solve_stages_jit(problem, stages=stages)
    by_hand = solve_stages_jit(problem, stages=STAGES)
    for a, b in zip(from_config, by_hand):
        np.testing.assert_array_equal(a.params["a"], b.params["a"])
        np.testing.assert_array_equal(a.params["b"], b.params["b"])
    # Default names and an unjitted run from a config without weights.
    single = stages_from_config([{"solver": "adam", "free": ["b"], "num_steps": 5}], problem.params)
    assert single[0].name == "stage 0" and single[0].free == {"a": False, "b": True}
    (result,) = solve_stages(problem, single)
    np.testing.assert_array_equal(result.params["a"], problem.params["a"])
    assert result.energy_history.shape == (5,)


# ----------------------------------------------------------------------------------------------------
# Gradients of the solution (float64, against finite differences and A⁻¹)


def central_differences(fn, x, eps=1e-6):
    """Jacobian (out, in) of fn at a 1-D float64 x by central differences."""
    steps = eps * np.eye(x.shape[0])
    columns = [(np.asarray(fn(x + step)) - np.asarray(fn(x - step))) / (2 * eps) for step in steps]
    return np.stack(columns, axis=-1)


def test_quadratic_solution_gradient_implicit_and_unrolled():
    with jax.enable_x64(True):
        a = jnp.asarray(A_MATRIX)
        b = jnp.asarray(B_VECTOR)
        inverse = np.linalg.inv(A_MATRIX)

        def implicit_solution(b):
            problem = quadratic_problem(A_MATRIX, b, jnp.float64)
            result = solution_with_implicit_gradients(problem, LBFGS(50, tol=1e-10), ImplicitDiff(cg_tol=1e-12))
            return result.params["x"]

        unrolled_adam = dataclasses.replace(QUAD_ADAM, num_steps=1500, tol=1e-10, unroll=True, eps_root=1e-12)

        def unrolled_solution(b):
            return unrolled_adam.run(Problem(quadratic, {"x": jnp.zeros(3)}, {"A": a, "b": b})).params["x"]

        for solution in (implicit_solution, unrolled_solution):
            value_and_jacobian = jax.jit(lambda b, solution=solution: (solution(b), jax.jacrev(solution)(b)))
            jacobian = np.asarray(value_and_jacobian(b)[1])
            np.testing.assert_allclose(jacobian, inverse, atol=1e-6)
            finite = central_differences(lambda b: value_and_jacobian(b)[0], np.asarray(b))
            np.testing.assert_allclose(jacobian, finite, atol=1e-6)

        # The unrolled loop computes the same iterates as the while loop.
        rolled = dataclasses.replace(unrolled_adam, unroll=False)
        problem = Problem(quadratic, {"x": jnp.zeros(3)}, {"A": a, "b": b})
        rolled_x, unrolled_x = run(problem, rolled).params["x"], run(problem, unrolled_adam).params["x"]
        np.testing.assert_allclose(rolled_x, unrolled_x, atol=1e-12)


@pytest.mark.parametrize("mode", ["implicit_lbfgs", "implicit_adam", "unrolled_adam"])
def test_nonquadratic_solution_gradient_matches_finite_differences(mode):
    with jax.enable_x64(True):
        data = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([0.3, -1.0, 2.0])}
        weights = {"soft": 1.0, "fit": 2.0}
        shift = jnp.array([0.1, 0.2, -0.3])

        def loss(b, soft_weight, shift):
            problem = Problem(
                soft_fit,
                {"x": jnp.zeros(3), "shift": shift},
                {**data, "b": b},
                free={"x": True, "shift": False},
                weights={**weights, "soft": soft_weight},
            )
            if mode == "implicit_lbfgs":
                result = solve(problem, LBFGS(100, tol=1e-11), implicit_diff=ImplicitDiff(cg_tol=1e-12))
            elif mode == "implicit_adam":
                solver = Adam(0.05, 4000, tol=1e-9, schedule=Schedule.COSINE)
                result = solve(problem, solver, implicit_diff=ImplicitDiff(cg_tol=1e-12))
            else:  # all 3000 steps (tol=0), differentiated through the unrolled loop
                solver = Adam(0.05, 3000, tol=0.0, schedule=Schedule.COSINE, unroll=True, eps_root=1e-12)
                result = solve(problem, solver)
            x = result.params["x"]
            return jnp.sum(x**2) + jnp.sum(jnp.sin(x))

        # One compiled program gives the gradient and (first output) the values for finite differences.
        value_and_gradient = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
        soft = np.float64(1.0)  # one dtype and weak-type for every call: no recompilation
        gradients = value_and_gradient(data["b"], soft, shift)[1]

        def loss_jit(b, soft_weight, shift):
            return value_and_gradient(b, soft_weight, shift)[0]

        fd_b = central_differences(lambda b: loss_jit(b, soft, shift), np.asarray(data["b"]))
        fd_soft = central_differences(lambda s: loss_jit(data["b"], s[0], shift), np.array([soft]))
        fd_shift = central_differences(lambda s: loss_jit(data["b"], soft, s), np.asarray(shift))
        np.testing.assert_allclose(gradients[0], fd_b, atol=1e-6)
        np.testing.assert_allclose(gradients[1], fd_soft[0], atol=1e-6)
        np.testing.assert_allclose(gradients[2], fd_shift, atol=1e-6)


def test_implicit_energy_gradient_is_envelope():
    """d/db of the optimal energy of the quadratic is -x* (envelope theorem)."""
    with jax.enable_x64(True):
        def optimal_energy(b):
            problem = quadratic_problem(A_MATRIX, b, jnp.float64)
            return solve(problem, LBFGS(num_steps=50, tol=1e-10), implicit_diff=ImplicitDiff()).energy

        gradient = jax.jit(jax.grad(optimal_energy))(jnp.asarray(B_VECTOR))
        np.testing.assert_allclose(gradient, -np.linalg.solve(A_MATRIX, B_VECTOR), atol=1e-8)


# ----------------------------------------------------------------------------------------------------
# Errors


def test_bad_mask_structure():
    problem = coupled_problem()
    with pytest.raises(ValueError, match="same pytree structure"):
        problem.replace(free={"a": True})
    with pytest.raises(ValueError, match="Python bools"):
        problem.replace(free={"a": 1, "b": True})
    with pytest.raises(ValueError, match="no free parameters"):
        run(problem.replace(free={"a": False, "b": False}), QUAD_LBFGS)
    with pytest.raises(ValueError, match="not keys of params"):
        mask_from_keys(problem.params, ["pose"])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_iteration_count(bad):
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        Adam(num_steps=bad)
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        LBFGS(num_steps=bad)


def test_bad_config():
    params = coupled_problem().params
    with pytest.raises(ValueError, match="unknown solver"):
        stages_from_config([{"solver": "sgd", "num_steps": 10}], params)
    with pytest.raises(ValueError, match="unknown schedule"):
        stages_from_config([{"solver": "adam", "schedule": "linear"}], params)
    with pytest.raises(ValueError, match=r"unknown lbfgs options \['learning_rate'\]"):
        stages_from_config([{"solver": "lbfgs", "learning_rate": 0.1}], params)
    with pytest.raises(ValueError, match="missing 'solver'"):
        stages_from_config([{"num_steps": 10}], params)
    with pytest.raises(ValueError, match="stage 1.*num_steps"):
        stages_from_config([{"solver": "adam"}, {"solver": "adam", "num_steps": 0}], params)
    with pytest.raises(ValueError, match="not keys of params"):
        stages_from_config([{"solver": "adam", "free": ["pose"]}], params)


def test_non_scalar_energy():
    problem = Problem(vector_energy, {"x": jnp.ones(3)})
    with pytest.raises(ValueError, match="energy must return a scalar"):
        run(problem, QUAD_LBFGS)


def test_bad_weights():
    problem = coupled_problem()
    with pytest.raises(ValueError, match="unknown weight names"):
        problem.with_weights({"smooth": 1.0})
    with pytest.raises(ValueError, match="problem built without weights"):
        quadratic_problem().with_weights({"prior": 1.0})
    with pytest.raises(ValueError, match="schedule must be"):
        Adam(schedule="cosine")
