"""jaxpose.matching: cosine correlation and 3D-CoreNet's entropic-OT warp.

The reference is a float64 NumPy transcription of the official scaling-domain iteration with its
1e-8 guards. Tolerances: float64 runs agree with it to ~1e-10 (round-off of the log/scaling
rewrite); float32 runs to 2e-4 in point units (points ~N(0, 1); error ≈ ulp · 1/ε amplification).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpose.matching import (
    SINKHORN_GUARD,
    correlation_and_warp,
    cosine_correlation,
    normalize_rows,
    ot_plan_converged,
    ot_warp,
    row_normalised_plan,
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
        dense = ot_warp(x, y, points, epsilon=epsilon, mode="dense")
        online = ot_warp(x, y, points, epsilon=epsilon, mode="online", block_size=16)
        assert dense.dtype == jnp.float64
        np.testing.assert_allclose(dense, expected, atol=1e-10)
        np.testing.assert_allclose(online, expected, atol=1e-10)


@pytest.mark.parametrize("num_iterations", [1, 5])
def test_dense_and_online_match_official_float32(num_iterations):
    x, y, points = random_problem(3, 70, 45)
    expected = numpy_reference_warp(x, y, points, 0.03, num_iterations)
    for mode in ("dense", "online"):
        got = ot_warp(x, y, points, num_iterations=num_iterations, mode=mode, block_size=32)
        assert got.shape == (70, 3) and got.dtype == jnp.float32
        np.testing.assert_allclose(got, expected, atol=F32_ATOL, err_msg=mode)


def test_guard_is_reproduced_where_it_matters():
    """On 64-d random features (best cosine per vertex < 0.5) the 1e-8 guard changes the warp;
    our log-domain kernels follow the guarded original, not the guard-free iteration."""
    with jax.enable_x64(True):
        x, y, points = random_problem(4, 30, 50, d=64, dtype=np.float64)
        guarded = numpy_reference_warp(x, y, points, 0.03, 5)
        unguarded = numpy_reference_warp(x, y, points, 0.03, 5, guard=0.0)
        assert np.max(np.abs(guarded - unguarded)) > 1e-2
        for mode in ("dense", "online"):
            got = ot_warp(x, y, points, mode=mode, block_size=7)
            np.testing.assert_allclose(got, guarded, atol=1e-10, err_msg=mode)


@pytest.mark.ott
@pytest.mark.parametrize("n,m", [(48, 64), (64, 48)])
def test_ott_modes_match_official_on_well_conditioned_features(n, m):
    """ott has no 1e-8 guard: equal to the original only where the guard is inactive."""
    x, y, points = clustered_problem(5, n, m)
    expected = numpy_reference_warp(x, y, points, 0.03, 5)
    unguarded = numpy_reference_warp(x, y, points, 0.03, 5, guard=0.0)
    np.testing.assert_allclose(unguarded, expected, atol=1e-6)  # premise: guard ~inactive
    for mode in ("ott", "ott_online"):
        got = ot_warp(x, y, points, mode=mode, block_size=20)
        np.testing.assert_allclose(got, expected, atol=F32_ATOL, err_msg=mode)


@pytest.mark.ott
def test_ott_apply_axis_convention_and_row_sums():
    """`out.apply(vec.T, axis=1).T` is T @ vec, and after the final f-update rows sum to 1/N, so
    N · T @ P is the row-normalised warp."""
    from jaxpose.matching import ott_sinkhorn

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
        converged = ot_warp(xd, yd, pd, epsilon=0.1, mode="converged", threshold=1e-10)
        # ott has no 1e-8 guard (it moves this converged warp by ~7e-7), so compare guard-free.
        many_steps = numpy_reference_warp(xd, yd, pd, 0.1, 1000, guard=0.0)
        np.testing.assert_allclose(converged, many_steps, atol=1e-8)
        out = ot_plan_converged(xd, yd, epsilon=0.1, threshold=1e-10)
        assert bool(out.converged)
        np.testing.assert_allclose(out.matrix.sum(axis=1), 1.0 / 24, rtol=1e-8)
        np.testing.assert_allclose(out.matrix.sum(axis=0), 1.0 / 18, rtol=1e-8)


# ------------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["dense", "online"])
def test_gradients_match_finite_differences(mode):
    with jax.enable_x64(True):
        x, y, points = random_problem(8, 7, 9, d=4, dtype=np.float64)

        def warp(x_features, y_features, y_points):
            return ot_warp(x_features, y_features, y_points, epsilon=0.1, mode=mode, block_size=3)

        check_grads(warp, (x, y, points), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_online_gradients_equal_dense_gradients():
    x, y, points = random_problem(9, 50, 37)
    weights = jnp.asarray(np.random.default_rng(9).normal(size=(50, 3)), jnp.float32)

    def loss(mode, x_features, y_features, y_points, epsilon):
        warped = ot_warp(x_features, y_features, y_points, epsilon=epsilon, mode=mode, block_size=16)
        return jnp.sum(warped * weights)

    grad_dense = jax.grad(lambda *a: loss("dense", *a), argnums=(0, 1, 2, 3))(x, y, points, 0.03)
    grad_online = jax.grad(lambda *a: loss("online", *a), argnums=(0, 1, 2, 3))(x, y, points, 0.03)
    for name, g_dense, g_online in zip(("x", "y", "points", "epsilon"), grad_dense, grad_online):
        scale = float(np.max(np.abs(g_dense)))
        np.testing.assert_allclose(g_online, g_dense, atol=1e-4 * scale, err_msg=name)


def test_traced_epsilon_gives_same_values_as_python_float():
    x, y, points = random_problem(10, 12, 10)
    jitted = jax.jit(lambda eps: ot_warp(x, y, points, epsilon=eps, mode="online", block_size=5))
    for epsilon in (0.03, 0.2):
        np.testing.assert_allclose(
            jitted(jnp.float32(epsilon)), ot_warp(x, y, points, epsilon=epsilon), atol=1e-5
        )


@pytest.mark.parametrize("mode", ["dense", "online"])
@pytest.mark.parametrize("epsilon", [1e-3, 0.03])
def test_no_nan_on_adversarial_inputs(mode, epsilon):
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
        warped = ot_warp(x_features, y_features, y_points, epsilon=epsilon, mode=mode, block_size=4)
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


@pytest.mark.parametrize("mode", ["dense", "online"])
def test_permutation_equivariance(mode):
    x, y, points = random_problem(12, 30, 25)
    rng = np.random.default_rng(12)
    perm_x, perm_y = rng.permutation(30), rng.permutation(25)

    def warp(a, b, p):
        return np.asarray(ot_warp(a, b, p, mode=mode, block_size=8))

    base = warp(x, y, points)
    np.testing.assert_allclose(warp(x[perm_x], y, points), base[perm_x], atol=1e-5)
    np.testing.assert_allclose(warp(x, y[perm_y], points[perm_y]), base, atol=1e-5)


def test_identical_features_with_small_epsilon_recover_the_points():
    rng = np.random.default_rng(13)
    features = rng.normal(size=(40, 32)).astype(np.float32)
    points = rng.normal(size=(40, 3)).astype(np.float32)
    for mode in ("dense", "online"):
        warped = ot_warp(features, features, points, epsilon=0.01, mode=mode, block_size=16)
        np.testing.assert_allclose(warped, points, atol=1e-4, err_msg=mode)
    # ... while a large ε blurs towards the centroid.
    blurred = ot_warp(features, features, points, epsilon=10.0)
    assert np.max(np.abs(np.asarray(blurred) - points.mean(axis=0))) < 0.1


def test_vmap_over_a_batch_of_pairs_equals_per_pair_calls():
    x, y, points = random_problem(15, 3 * 12, 3 * 10)
    xb, yb, pb = x.reshape(3, 12, 16), y.reshape(3, 10, 16), points.reshape(3, 10, 3)
    for mode in ("dense", "online"):
        batched = jax.vmap(lambda a, b, p: ot_warp(a, b, p, mode=mode, block_size=5))(xb, yb, pb)
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


def _grad_temp_bytes(mode, n, m, d=32, block_size=128):
    def loss(x_features, y_features, y_points):
        return jnp.sum(ot_warp(x_features, y_features, y_points, mode=mode, block_size=block_size))

    shapes = (
        jax.ShapeDtypeStruct((n, d), jnp.float32),
        jax.ShapeDtypeStruct((m, d), jnp.float32),
        jax.ShapeDtypeStruct((m, 3), jnp.float32),
    )
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*shapes).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_online_forward_backward_memory_is_linear_and_far_below_dense():
    one_matrix = 4096 * 4096 * 4
    dense = _grad_temp_bytes("dense", 4096, 4096)
    online = _grad_temp_bytes("online", 4096, 4096)
    online_double = _grad_temp_bytes("online", 8192, 8192)
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
    with pytest.raises(ValueError, match="unknown mode"):
        ot_warp(x, y, points, mode="sparse")
    with pytest.raises(ValueError, match="block_size"):
        ot_warp(x, y, points, mode="online", block_size=0)
    with pytest.raises(ValueError, match="num_iterations"):
        ot_warp(x, y, points, num_iterations=0)
    with pytest.raises(ValueError, match="feature widths differ"):
        cosine_correlation(x, y[:, :2])
