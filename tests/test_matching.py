"""jaxpose.matching: cosine correlation and 3D-CoreNet's entropic-OT warp.

The reference is a float64 NumPy transcription of the official scaling-domain iteration with its
1e-8 guards. Tolerances: float64 runs agree with it to ~1e-10 (round-off of the log/scaling
rewrite); float32 runs to 2e-4 in point units (points ~N(0, 1); error ≈ ulp · 1/ε amplification).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpose.matching import (
    MATCHING_NAMES,
    SINKHORN_GUARD,
    CoreNetIteration,
    Materialized,
    OttConverged,
    OttFixedStep,
    RowBlocked,
    correlation_and_warp,
    cosine_correlation,
    matching_from_name,
    normalize_rows,
    ot_plan_converged,
    ot_warp,
    ott_sinkhorn,
    row_normalised_plan,
    sinkhorn,
)

F32_ATOL = 2e-4


# ------------------------------------------------------------------------------------------------
# float64 NumPy reference: 3D-CoreNet's scaling-domain Sinkhorn, verbatim.
# ------------------------------------------------------------------------------------------------


def numpy_unit_rows(f):
    f = np.asarray(f, np.float64)
    return f / (np.linalg.norm(f, axis=1, keepdims=True) + 2.2e-16)


def numpy_reference_plan(x, y, epsilon, num_iterations, guard=SINKHORN_GUARD):
    correlation = numpy_unit_rows(x) @ numpy_unit_rows(y).T
    kernel = np.exp(-(1.0 - correlation) / epsilon)
    n, m = kernel.shape
    a = np.full(n, 1.0 / n)
    for _ in range(num_iterations):
        b = (1.0 / m) / (kernel.T @ a + guard)
        a = (1.0 / n) / (kernel @ b + guard)
    plan = a[:, None] * kernel * b[None, :]
    return plan / plan.sum(axis=1, keepdims=True)


def numpy_reference_warp(x, y, points, epsilon, num_iterations, guard=SINKHORN_GUARD):
    return numpy_reference_plan(x, y, epsilon, num_iterations, guard) @ np.asarray(points, np.float64)


def random_problem(seed, n, m, d=16, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, d)).astype(dtype),
        rng.normal(size=(m, d)).astype(dtype),
        rng.normal(size=(m, 3)).astype(dtype),
    )


def clustered_problem(seed, n, m, d=16, clusters=4, noise=0.15):
    """Features in a few tight clusters: every vertex has many near-aligned partners (cos ≳ 0.9),
    so no column or row of K is anywhere near the 1e-8 guard (well-conditioned)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(clusters, size=n)] + noise * rng.normal(size=(n, d))
    y = centres[rng.integers(clusters, size=m)] + noise * rng.normal(size=(m, d))
    points = rng.normal(size=(m, 3))
    return x.astype(np.float32), y.astype(np.float32), points.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Correlation
# ------------------------------------------------------------------------------------------------


def test_cosine_correlation_matches_numpy():
    x, y, _ = random_problem(0, 9, 13, d=5)
    expected = numpy_unit_rows(x) @ numpy_unit_rows(y).T
    np.testing.assert_allclose(cosine_correlation(x, y), expected, atol=1e-6)


def test_normalize_rows_zero_row_has_zero_value_and_finite_gradient():
    features = jnp.zeros((3, 4)).at[1].set(jnp.array([3.0, 0.0, 4.0, 0.0]))
    unit = normalize_rows(features)
    np.testing.assert_allclose(unit[1], [0.6, 0.0, 0.8, 0.0], atol=1e-7)
    np.testing.assert_array_equal(unit[0], 0.0)
    gradient = jax.grad(lambda f: jnp.sum(normalize_rows(f) ** 2))(features)
    assert np.all(np.isfinite(gradient))


def test_correlation_and_warp_and_plan_are_consistent():
    x, y, points = random_problem(1, 11, 8)
    correlation, warped = correlation_and_warp(x, y, points, epsilon=0.05)
    np.testing.assert_allclose(correlation, numpy_unit_rows(x) @ numpy_unit_rows(y).T, atol=1e-6)
    plan = row_normalised_plan(x, y, epsilon=0.05)
    assert plan.shape == (11, 8)
    assert np.all(np.asarray(plan) >= 0)
    np.testing.assert_allclose(plan.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(plan, numpy_reference_plan(x, y, 0.05, 5), atol=1e-5)
    np.testing.assert_allclose(plan @ points, warped, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Parity with the official iteration
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,m,epsilon", [(40, 57, 0.03), (57, 40, 0.1), (33, 33, 0.03)])
def test_dense_and_online_match_official_float64(n, m, epsilon):
    with jax.enable_x64(True):
        x, y, points = random_problem(n * m, n, m, dtype=np.float64)
        expected = numpy_reference_warp(x, y, points, epsilon, 5)
        dense = ot_warp(x, y, points, epsilon=epsilon, geometry=Materialized())
        online = ot_warp(x, y, points, epsilon=epsilon, geometry=RowBlocked(16))
        assert dense.dtype == jnp.float64
        np.testing.assert_allclose(dense, expected, atol=1e-10)
        np.testing.assert_allclose(online, expected, atol=1e-10)


SCALING = CoreNetIteration(5, lse_mode=False)


@pytest.mark.parametrize("n,m,epsilon", [(40, 57, 0.03), (57, 40, 0.1)])
def test_scaling_domain_matches_official_and_log_domain_float64(n, m, epsilon):
    with jax.enable_x64(True):
        x, y, points = random_problem(n + m, n, m, dtype=np.float64)
        expected = numpy_reference_warp(x, y, points, epsilon, 5)
        got = ot_warp(x, y, points, epsilon=epsilon, solver=SCALING)
        np.testing.assert_allclose(got, expected, atol=1e-10)
        plan = row_normalised_plan(x, y, epsilon=epsilon, solver=SCALING)
        np.testing.assert_allclose(plan, numpy_reference_plan(x, y, epsilon, 5), atol=1e-12)
        np.testing.assert_allclose(plan.sum(axis=1), 1.0, atol=1e-12)

        def loss(solver):
            return lambda x, y, p: jnp.sum(jnp.sin(3 * ot_warp(x, y, p, epsilon=epsilon, solver=solver)))

        log_grads = jax.grad(loss(CoreNetIteration(5)), argnums=(0, 1, 2))(x, y, points)
        scaling_grads = jax.grad(loss(SCALING), argnums=(0, 1, 2))(x, y, points)
        for a, b in zip(log_grads, scaling_grads):
            np.testing.assert_allclose(b, a, atol=1e-11, rtol=1e-9)
        check_grads(loss(SCALING), (x, y, points), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


def test_scaling_domain_float32_agrees_with_the_reference_and_batches():
    x, y, points = clustered_problem(4, 90, 70)
    expected = numpy_reference_warp(x, y, points, 0.03, 5)
    got = ot_warp(x, y, points, solver=SCALING)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, atol=F32_ATOL)
    batched = jax.vmap(lambda a, b, c: ot_warp(a, b, c, solver=SCALING))(*(np.stack([t, t]) for t in (x, y, points)))
    np.testing.assert_allclose(batched[1], got, atol=1e-6)


def test_scaling_domain_refuses_row_blocks_and_an_underflowing_epsilon():
    x, y, points = random_problem(5, 20, 30)
    with pytest.raises(ValueError, match="needs geometry Materialized"):
        ot_warp(x, y, points, geometry=RowBlocked(8), solver=SCALING)
    floor = sinkhorn.min_scaling_epsilon(np.float32)
    assert 0.022 < floor < 0.0235  # 2 / -log(float32 tiny)
    with pytest.raises(ValueError, match="below 0.0229.*underflows float32; use lse_mode=True"):
        ot_warp(x, y, points, epsilon=0.02, solver=SCALING)
    with pytest.raises(ValueError, match="below"):
        row_normalised_plan(x, y, epsilon=0.02, solver=SCALING)
    assert np.all(np.isfinite(ot_warp(x, y, points, epsilon=0.025, solver=SCALING)))


@pytest.mark.parametrize("num_iterations", [1, 5])
def test_dense_and_online_match_official_float32(num_iterations):
    x, y, points = random_problem(3, 70, 45)
    expected = numpy_reference_warp(x, y, points, 0.03, num_iterations)
    for geometry in (Materialized(), RowBlocked(32)):
        got = ot_warp(x, y, points, geometry=geometry, solver=CoreNetIteration(num_iterations))
        assert got.shape == (70, 3) and got.dtype == jnp.float32
        np.testing.assert_allclose(got, expected, atol=F32_ATOL, err_msg=repr(geometry))


def test_guard_is_reproduced_where_it_matters():
    """On 64-d random features (best cosine per vertex < 0.5) the 1e-8 guard changes the warp;
    our log-domain kernels follow the guarded original, not the guard-free iteration."""
    with jax.enable_x64(True):
        x, y, points = random_problem(4, 30, 50, d=64, dtype=np.float64)
        guarded = numpy_reference_warp(x, y, points, 0.03, 5)
        unguarded = numpy_reference_warp(x, y, points, 0.03, 5, guard=0.0)
        assert np.max(np.abs(guarded - unguarded)) > 1e-2
        for geometry in (Materialized(), RowBlocked(7)):
            got = ot_warp(x, y, points, geometry=geometry, solver=CoreNetIteration())
            np.testing.assert_allclose(got, guarded, atol=1e-10, err_msg=repr(geometry))


@pytest.mark.ott
@pytest.mark.parametrize("n,m", [(48, 64), (64, 48)])
def test_ott_modes_match_official_on_well_conditioned_features(n, m):
    """ott has no 1e-8 guard: equal to the original only where the guard is inactive."""
    x, y, points = clustered_problem(5, n, m)
    expected = numpy_reference_warp(x, y, points, 0.03, 5)
    unguarded = numpy_reference_warp(x, y, points, 0.03, 5, guard=0.0)
    np.testing.assert_allclose(unguarded, expected, atol=1e-6)  # premise: guard ~inactive
    for geometry in (Materialized(), RowBlocked(20)):
        got = ot_warp(x, y, points, geometry=geometry, solver=OttFixedStep())
        np.testing.assert_allclose(got, expected, atol=F32_ATOL, err_msg=repr(geometry))


@pytest.mark.ott
def test_ott_apply_axis_convention_and_row_sums():
    """`out.apply(vec.T, axis=1).T` is T @ vec, and after the final f-update rows sum to 1/N, so
    N · T @ P is the row-normalised warp."""
    x, y, points = clustered_problem(6, 20, 30)
    x_unit, y_unit = normalize_rows(jnp.asarray(x)), normalize_rows(jnp.asarray(y))
    out = ott_sinkhorn.fixed_step_output(x_unit, y_unit, jnp.float32(0.03), 5)
    plan = np.asarray(out.matrix, np.float64)
    np.testing.assert_allclose(out.apply(points.T, axis=1).T, plan @ points, atol=1e-5)
    np.testing.assert_allclose(plan.sum(axis=1), 1.0 / 20, rtol=1e-4)
    np.testing.assert_allclose(
        20 * plan @ points, numpy_reference_warp(x, y, points, 0.03, 5), atol=F32_ATOL
    )


@pytest.mark.ott
def test_converged_mode_is_the_converged_entropic_plan():
    x, y, points = clustered_problem(7, 24, 18)
    with jax.enable_x64(True):
        xd, yd, pd = (np.asarray(a, np.float64) for a in (x, y, points))
        converged = ot_warp(xd, yd, pd, epsilon=0.1, solver=OttConverged(threshold=1e-10))
        # ott has no 1e-8 guard (it moves this converged warp by ~7e-7), so compare guard-free.
        many_steps = numpy_reference_warp(xd, yd, pd, 0.1, 1000, guard=0.0)
        np.testing.assert_allclose(converged, many_steps, atol=1e-8)
        out = ot_plan_converged(xd, yd, epsilon=0.1, solver=OttConverged(threshold=1e-10))
        assert bool(out.converged)
        np.testing.assert_allclose(out.matrix.sum(axis=1), 1.0 / 24, rtol=1e-8)
        np.testing.assert_allclose(out.matrix.sum(axis=0), 1.0 / 18, rtol=1e-8)


# ------------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("geometry", [Materialized(), RowBlocked(3)], ids=repr)
def test_gradients_match_finite_differences(geometry):
    with jax.enable_x64(True):
        x, y, points = random_problem(8, 7, 9, d=4, dtype=np.float64)

        def warp(x_features, y_features, y_points):
            return ot_warp(x_features, y_features, y_points, epsilon=0.1, geometry=geometry)

        check_grads(warp, (x, y, points), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_online_gradients_equal_dense_gradients():
    x, y, points = random_problem(9, 50, 37)
    weights = jnp.asarray(np.random.default_rng(9).normal(size=(50, 3)), jnp.float32)

    def loss(geometry, x_features, y_features, y_points, epsilon):
        warped = ot_warp(x_features, y_features, y_points, epsilon=epsilon, geometry=geometry)
        return jnp.sum(warped * weights)

    grad_dense = jax.grad(lambda *a: loss(Materialized(), *a), argnums=(0, 1, 2, 3))(x, y, points, 0.03)
    grad_online = jax.grad(lambda *a: loss(RowBlocked(16), *a), argnums=(0, 1, 2, 3))(x, y, points, 0.03)
    for name, g_dense, g_online in zip(("x", "y", "points", "epsilon"), grad_dense, grad_online):
        scale = float(np.max(np.abs(g_dense)))
        np.testing.assert_allclose(g_online, g_dense, atol=1e-4 * scale, err_msg=name)


def test_traced_epsilon_gives_same_values_as_python_float():
    x, y, points = random_problem(10, 12, 10)
    jitted = jax.jit(lambda eps: ot_warp(x, y, points, epsilon=eps, geometry=RowBlocked(5)))
    for epsilon in (0.03, 0.2):
        np.testing.assert_allclose(
            jitted(jnp.float32(epsilon)), ot_warp(x, y, points, epsilon=epsilon), atol=1e-5
        )


@pytest.mark.parametrize("geometry", [Materialized(), RowBlocked(4)], ids=repr)
@pytest.mark.parametrize("epsilon", [1e-3, 0.03])
def test_no_nan_on_adversarial_inputs(geometry, epsilon):
    rng = np.random.default_rng(11)
    y = rng.normal(size=(20, 8)).astype(np.float32)
    x = -y[:15].copy()  # anti-aligned with their counterparts
    x[3] = -y.mean(axis=0) * 10.0  # dissimilar to every pose vertex
    x[4] = 0.0  # degenerate zero feature
    x[5] = x[6]  # duplicate identity vertex
    y[7] = y[8]  # duplicate pose features ...
    points = rng.normal(size=(20, 3)).astype(np.float32)
    points[7] = points[8]  # ... and duplicate points

    def loss(x_features, y_features, y_points):
        warped = ot_warp(x_features, y_features, y_points, epsilon=epsilon, geometry=geometry)
        return jnp.sum(warped**2), warped

    (_, warped), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(x, y, points)
    warped = np.asarray(warped)
    assert np.all(np.isfinite(warped))
    for grad in grads:
        assert np.all(np.isfinite(grad))
    # Convex combinations stay in the bounding box of the targets.
    assert np.all(warped >= points.min(axis=0) - 1e-5) and np.all(warped <= points.max(axis=0) + 1e-5)


# ------------------------------------------------------------------------------------------------
# Invariances and limits
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("geometry", [Materialized(), RowBlocked(8)], ids=repr)
def test_permutation_equivariance(geometry):
    x, y, points = random_problem(12, 30, 25)
    rng = np.random.default_rng(12)
    perm_x, perm_y = rng.permutation(30), rng.permutation(25)

    def warp(a, b, p):
        return np.asarray(ot_warp(a, b, p, geometry=geometry))

    base = warp(x, y, points)
    np.testing.assert_allclose(warp(x[perm_x], y, points), base[perm_x], atol=1e-5)
    np.testing.assert_allclose(warp(x, y[perm_y], points[perm_y]), base, atol=1e-5)


def test_identical_features_with_small_epsilon_recover_the_points():
    rng = np.random.default_rng(13)
    features = rng.normal(size=(40, 32)).astype(np.float32)
    points = rng.normal(size=(40, 3)).astype(np.float32)
    for geometry in (Materialized(), RowBlocked(16)):
        warped = ot_warp(features, features, points, epsilon=0.01, geometry=geometry)
        np.testing.assert_allclose(warped, points, atol=1e-4, err_msg=repr(geometry))
    # ... while a large ε blurs towards the centroid.
    blurred = ot_warp(features, features, points, epsilon=10.0)
    assert np.max(np.abs(np.asarray(blurred) - points.mean(axis=0))) < 0.1


def test_vmap_over_a_batch_of_pairs_equals_per_pair_calls():
    x, y, points = random_problem(15, 3 * 12, 3 * 10)
    xb, yb, pb = x.reshape(3, 12, 16), y.reshape(3, 10, 16), points.reshape(3, 10, 3)
    for geometry in (Materialized(), RowBlocked(5)):
        batched = jax.vmap(lambda a, b, p: ot_warp(a, b, p, geometry=geometry))(xb, yb, pb)
        for i in range(3):
            np.testing.assert_allclose(batched[i], ot_warp(xb[i], yb[i], pb[i]), atol=1e-5)


def test_half_precision_inputs_are_solved_in_float32():
    x, y, points = random_problem(16, 10, 9)
    warped = ot_warp(x.astype(np.float16), y.astype(np.float16), points.astype(np.float16))
    assert warped.dtype == jnp.float32
    expected = numpy_reference_warp(
        x.astype(np.float16), y.astype(np.float16), points.astype(np.float16), 0.03, 5
    )
    np.testing.assert_allclose(warped, expected, atol=F32_ATOL)


# ------------------------------------------------------------------------------------------------
# Memory (compilation only)
# ------------------------------------------------------------------------------------------------


def _grad_temp_bytes(geometry, n, m, d=32):
    def loss(x_features, y_features, y_points):
        return jnp.sum(ot_warp(x_features, y_features, y_points, geometry=geometry))

    shapes = (
        jax.ShapeDtypeStruct((n, d), jnp.float32),
        jax.ShapeDtypeStruct((m, d), jnp.float32),
        jax.ShapeDtypeStruct((m, 3), jnp.float32),
    )
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*shapes).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_online_forward_backward_memory_is_linear_and_far_below_dense():
    one_matrix = 4096 * 4096 * 4
    dense = _grad_temp_bytes(Materialized(), 4096, 4096)
    online = _grad_temp_bytes(RowBlocked(128), 4096, 4096)
    online_double = _grad_temp_bytes(RowBlocked(128), 8192, 8192)
    assert dense >= one_matrix  # dense keeps (several) N×M buffers for the backward pass
    assert online < dense / 20  # measured: ~34x below
    assert online < one_matrix / 2  # a few (block, M) slabs, no N×M buffer
    # Doubling N and M: the (block, M) slabs and O(N + M) vectors double; an N×M buffer would quadruple.
    assert online_double < 2.6 * online


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    x, y, points = random_problem(14, 6, 5)
    with pytest.raises(ValueError, match="feature widths differ"):
        ot_warp(x, y[:, :3], points)
    with pytest.raises(ValueError, match="y_points must be"):
        ot_warp(x, y, points[:, :2])
    with pytest.raises(ValueError, match="y_points has 4 points"):
        ot_warp(x, y, points[:4])
    with pytest.raises(ValueError, match="2-D|num_vertices"):
        ot_warp(x[0], y, points)
    with pytest.raises(ValueError, match="x_features contains NaN"):
        ot_warp(np.where(x > 1, np.nan, x), y, points)
    with pytest.raises(ValueError, match="epsilon must be a finite positive"):
        ot_warp(x, y, points, epsilon=0.0)
    with pytest.raises(TypeError, match="geometry must be .*matching_from_name"):
        ot_warp(x, y, points, geometry="online")
    with pytest.raises(TypeError, match="solver must be .*matching_from_name"):
        ot_warp(x, y, points, solver="dense")
    with pytest.raises(ValueError, match="block_size"):
        ot_warp(x, y, points, geometry=RowBlocked(0))
    with pytest.raises(ValueError, match="num_iterations"):
        ot_warp(x, y, points, solver=CoreNetIteration(0))
    with pytest.raises(ValueError, match="feature widths differ"):
        cosine_correlation(x, y[:, :2])
    with pytest.raises(TypeError, match="CoreNetIteration solver"):
        row_normalised_plan(x, y, solver=OttFixedStep())
    with pytest.raises(TypeError, match="OttConverged solver"):
        ot_plan_converged(x, y, solver=CoreNetIteration())


# ------------------------------------------------------------------------------------------------
# Geometry and solver choices, and the names of configs and command lines
# ------------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("name", "block_size", "num_iterations", "threshold"))
def warp_as_before(x, y, points, epsilon, *, name, block_size, num_iterations, threshold=1e-3):
    """What `ot_warp` ran for the old mode string `name` (with block_size, num_iterations, threshold)
    before it was replaced by geometry and solver objects: the same kernel calls, verbatim."""
    dtype = jnp.promote_types(jnp.result_type(x, y, points), jnp.float32)
    x_unit = normalize_rows(x.astype(dtype))
    y_unit = normalize_rows(y.astype(dtype))
    points = points.astype(dtype)
    epsilon = jnp.asarray(epsilon, dtype)
    if name == "dense":
        return sinkhorn.warp_dense(x_unit, y_unit, points, epsilon, num_iterations)
    if name == "online":
        return sinkhorn.warp_online(x_unit, y_unit, points, epsilon, num_iterations, block_size)
    if name == "ott":
        return ott_sinkhorn.warp_fixed_step(x_unit, y_unit, points, epsilon, num_iterations)
    if name == "ott_online":
        return ott_sinkhorn.warp_fixed_step(
            x_unit, y_unit, points, epsilon, num_iterations, batch_size=block_size
        )
    assert name == "converged"  # ignored block_size and num_iterations
    return ott_sinkhorn.warp_converged(
        x_unit, y_unit, points, epsilon, threshold=threshold, max_iterations=2000
    )


def _value_and_x_grad(warp, x):
    weights = jnp.asarray(np.random.default_rng(18).normal(size=(x.shape[0], 3)), jnp.float32)
    return jax.value_and_grad(lambda a: jnp.sum(warp(a) * weights))(jnp.asarray(x))


# (geometry, solver) -> the old mode it replaces (block 7 rows, 3 iterations, converged to 1e-6).
OLD_MODES = [
    pytest.param(Materialized(), CoreNetIteration(3), "dense", id="Materialized-CoreNetIteration"),
    pytest.param(RowBlocked(7), CoreNetIteration(3), "online", id="RowBlocked-CoreNetIteration"),
    pytest.param(Materialized(), OttFixedStep(3), "ott", id="Materialized-OttFixedStep",
                 marks=pytest.mark.ott),
    pytest.param(RowBlocked(7), OttFixedStep(3), "ott_online", id="RowBlocked-OttFixedStep",
                 marks=pytest.mark.ott),
    pytest.param(Materialized(), OttConverged(threshold=1e-6), "converged",
                 id="Materialized-OttConverged", marks=pytest.mark.ott),
]


@pytest.mark.parametrize("geometry,solver,mode", OLD_MODES)
def test_each_choice_equals_the_old_mode_it_replaces(geometry, solver, mode):
    x, y, points = clustered_problem(17, 20, 15)
    old = dict(name=mode, block_size=7, num_iterations=3, threshold=1e-6)
    warped, grad = _value_and_x_grad(
        lambda a: ot_warp(a, y, points, epsilon=0.05, geometry=geometry, solver=solver), x
    )
    old_warped, old_grad = _value_and_x_grad(lambda a: warp_as_before(a, y, points, 0.05, **old), x)
    np.testing.assert_array_equal(warped, old_warped)
    np.testing.assert_array_equal(grad, old_grad)
    # ... and the name of that old mode parses to exactly these objects.
    assert matching_from_name(mode, block_size=7, num_iterations=3) == (
        (geometry, solver) if mode != "converged" else (geometry, OttConverged())
    )


@pytest.mark.ott
def test_row_blocked_converged_uses_ott_online_mode_and_equals_materialised():
    """No old mode: "converged" ignored block_size. RowBlocked runs ott's online (batch_size) mode."""
    x, y, points = clustered_problem(17, 20, 15)
    solver = OttConverged(threshold=1e-6)
    online = ot_warp(x, y, points, epsilon=0.05, geometry=RowBlocked(7), solver=solver)
    x_unit, y_unit = normalize_rows(jnp.asarray(x)), normalize_rows(jnp.asarray(y))
    direct = jax.jit(ott_sinkhorn.warp_converged, static_argnames=("threshold", "batch_size"))(
        x_unit, y_unit, jnp.asarray(points), jnp.float32(0.05), threshold=1e-6, batch_size=7
    )
    np.testing.assert_allclose(online, direct, atol=1e-6)
    materialised = ot_warp(x, y, points, epsilon=0.05, solver=solver)
    np.testing.assert_allclose(online, materialised, atol=1e-5)
    plan_online = ot_plan_converged(x, y, epsilon=0.05, geometry=RowBlocked(7), solver=solver)
    plan = ot_plan_converged(x, y, epsilon=0.05, solver=solver)
    assert bool(plan_online.converged) and bool(plan.converged)
    np.testing.assert_allclose(plan_online.matrix, plan.matrix, atol=1e-6)


def test_defaults_are_the_old_defaults():
    x, y, points = random_problem(19, 13, 11)
    assert matching_from_name("dense") == (Materialized(), CoreNetIteration(5))
    assert RowBlocked() == RowBlocked(1024) and OttConverged() == OttConverged(1e-3, 2000)
    old = warp_as_before(jnp.asarray(x), jnp.asarray(y), jnp.asarray(points), 0.03, name="dense",
                         block_size=1024, num_iterations=5)
    np.testing.assert_array_equal(ot_warp(x, y, points), old)
    _, warped = correlation_and_warp(x, y, points)
    np.testing.assert_array_equal(warped, old)
    np.testing.assert_allclose(row_normalised_plan(x, y) @ points, old, atol=1e-5)


@pytest.mark.parametrize("name,expected", [
    ("dense", (Materialized(), CoreNetIteration(4))),
    ("dense_scaling", (Materialized(), CoreNetIteration(4, lse_mode=False))),
    ("online", (RowBlocked(64), CoreNetIteration(4))),
    ("ott", (Materialized(), OttFixedStep(4))),
    ("ott_online", (RowBlocked(64), OttFixedStep(4))),
    ("converged", (Materialized(), OttConverged())),
])
def test_matching_from_name_maps_every_name(name, expected):
    assert matching_from_name(name, block_size=64, num_iterations=4) == expected


def test_matching_from_name_round_trip():
    assert MATCHING_NAMES == ("dense", "dense_scaling", "online", "ott", "ott_online", "converged")
    pairs = {name: matching_from_name(name, block_size=9, num_iterations=2) for name in MATCHING_NAMES}
    # Every name gives its own pair; parsing again gives equal (and equally hashed) objects, so a name
    # read twice from a config reuses one jit compilation.
    assert len(set(pairs.values())) == len(MATCHING_NAMES)
    for name, pair in pairs.items():
        again = matching_from_name(name, block_size=9, num_iterations=2)
        assert again == pair and hash(again) == hash(pair)
        geometry, solver = pair
        assert isinstance(geometry, (Materialized, RowBlocked))
        assert isinstance(solver, (CoreNetIteration, OttFixedStep, OttConverged))
        assert (name in ("online", "ott_online")) == isinstance(geometry, RowBlocked)
        if isinstance(geometry, RowBlocked):
            assert geometry.block_size == 9
        if not isinstance(solver, OttConverged):
            assert solver.num_iterations == 2


def test_matching_from_name_errors():
    with pytest.raises(ValueError, match="unknown matching 'sparse'; expected one of "
                                         "dense, dense_scaling, online, ott, ott_online, converged"):
        matching_from_name("sparse")
    with pytest.raises(ValueError, match="unknown matching 'Dense'"):
        matching_from_name("Dense")
    for name in MATCHING_NAMES:  # bad values fail whichever name they come with, as before
        with pytest.raises(ValueError, match="block_size must be an integer >= 1; got 0"):
            matching_from_name(name, block_size=0)
        with pytest.raises(ValueError, match="num_iterations must be an integer >= 1; got 0"):
            matching_from_name(name, num_iterations=0)


@pytest.mark.parametrize("make,message", [
    (lambda: RowBlocked(0), "RowBlocked: block_size must be an integer >= 1; got 0"),
    (lambda: RowBlocked(-2), "RowBlocked: block_size must be an integer >= 1; got -2"),
    (lambda: RowBlocked(2.5), "RowBlocked: block_size must be an integer >= 1; got 2.5"),
    (lambda: RowBlocked(True), "RowBlocked: block_size must be an integer >= 1; got True"),
    (lambda: RowBlocked("8"), "RowBlocked: block_size must be an integer >= 1; got '8'"),
    (lambda: CoreNetIteration(0), "CoreNetIteration: num_iterations must be an integer >= 1; got 0"),
    (lambda: CoreNetIteration(5.0), "CoreNetIteration: num_iterations must be an integer >= 1; got 5.0"),
    (lambda: CoreNetIteration(5, lse_mode=0), "CoreNetIteration: lse_mode must be True or False; got 0"),
    (lambda: OttFixedStep(-1), "OttFixedStep: num_iterations must be an integer >= 1; got -1"),
    (lambda: OttConverged(threshold=0.0), "OttConverged: threshold must be a finite positive number; got 0.0"),
    (lambda: OttConverged(threshold=-1e-3), "OttConverged: threshold must be a finite positive number"),
    (lambda: OttConverged(threshold=float("nan")), "OttConverged: threshold must be a finite positive"),
    (lambda: OttConverged(threshold=float("inf")), "OttConverged: threshold must be a finite positive"),
    (lambda: OttConverged(threshold="1e-3"), "OttConverged: threshold must be a finite positive"),
    (lambda: OttConverged(max_iterations=0), "OttConverged: max_iterations must be an integer >= 1; got 0"),
])
def test_choices_validate_on_construction(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert message in str(error.value)


def test_choices_are_frozen_hashable_and_normalised():
    assert RowBlocked(np.int64(16)) == RowBlocked(16)
    assert type(RowBlocked(np.int64(16)).block_size) is int
    assert OttConverged(threshold=1) == OttConverged(threshold=1.0)
    assert type(OttConverged(threshold=1).threshold) is float
    assert CoreNetIteration(5) != OttFixedStep(5)
    choices = {Materialized(), Materialized(), RowBlocked(4), RowBlocked(4), CoreNetIteration(), OttFixedStep()}
    assert len(choices) == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        RowBlocked().block_size = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        OttConverged().threshold = 1.0
