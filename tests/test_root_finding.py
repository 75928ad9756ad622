"""Batched Broyden / Newton, inverse LBS on a posed body, implicit gradients, chunking and bone pre-filter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpose.bodies import default_body, forward, rectified_bone_transforms, sample_pose, star_pose
from jaxpose.geometry.root_finding import (
    SNARF_TEST_BONES,
    SNARF_TRAIN_BONES,
    broyden,
    inverse_3x3,
    invert_lbs,
    map_in_chunks,
    nearest_vertex_bones,
    newton,
)
from jaxpose.skinning.field import lbs_points

_M = np.array([[2.0, 0.3, -0.1], [0.2, 1.5, 0.4], [-0.3, 0.1, 1.8]])


def _system(x, b):
    """A smooth nonlinear 3-D system with a unique root per row: M x + 0.2 sin(x) + 0.05 x³ − b."""
    m = jnp.asarray(_M, x.dtype)
    return x @ m.T + 0.2 * jnp.sin(x) + 0.05 * x**3 - b


def test_inverse_3x3_matches_numpy(rng):
    m = rng.normal(size=(10, 3, 3))
    np.testing.assert_allclose(np.asarray(inverse_3x3(jnp.asarray(m, jnp.float32))), np.linalg.inv(m), rtol=2e-3, atol=2e-4)
    singular = np.asarray(inverse_3x3(jnp.zeros((1, 3, 3))))
    assert np.all(np.isfinite(singular))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        inverse_3x3(jnp.zeros((2, 3)))


@pytest.mark.parametrize("solver", ["broyden", "newton"])
def test_solvers_find_known_roots_and_flag_rootless_points(rng, solver):
    root = rng.uniform(-1, 1, size=(64, 3)).astype(np.float32)
    b = root @ _M.T + 0.2 * np.sin(root) + 0.05 * root**3
    # The last 4 rows have no root at all: x² + 1 = 0 componentwise.
    targets = jnp.asarray(b, jnp.float32)
    rootless = jnp.arange(64) >= 60

    def residual(x):
        return jnp.where(rootless[:, None], x**2 + 1.0, _system(x, targets))

    x0 = jnp.asarray(root + rng.normal(scale=0.3, size=root.shape), jnp.float32)
    if solver == "broyden":
        h0 = jnp.broadcast_to(jnp.asarray(np.linalg.inv(_M), jnp.float32), (64, 3, 3))
        result = jax.jit(lambda x, h: broyden(residual, x, h, max_steps=50, tol=1e-5, diverge=10.0))(x0, h0)
    else:
        jac = jax.vmap(jax.jacfwd(lambda p, t, r: jnp.where(r, p**2 + 1.0, _system(p[None], t[None])[0])))
        result = jax.jit(lambda x: newton(residual, lambda y: jac(y, targets, rootless), x, diverge=10.0))(x0)
    converged = np.asarray(result.converged)
    assert converged[:60].all() and not converged[60:].any()
    np.testing.assert_allclose(np.asarray(result.x)[:60], root[:60], atol=5e-5)
    recomputed = np.linalg.norm(np.asarray(residual(result.x)), axis=-1)
    np.testing.assert_allclose(np.asarray(result.residual_norm), recomputed, rtol=1e-4, atol=1e-6)
    assert np.all(np.asarray(result.residual_norm)[60:] >= 1.0)  # best iterate of x²+1 has norm ≥ √3


@pytest.fixture(scope="module")
def posed_body():
    """Low-res body in the star pose, posed by pure LBS to a random wide pose, with its own weights."""
    body = default_body("low")
    star = star_pose()
    canonical = jnp.asarray(forward(body, jnp.zeros(4), star).vertices)
    pose = jnp.asarray(sample_pose(7, "wide"), jnp.float32)
    transforms = rectified_bone_transforms(body, jnp.zeros(4), pose, star)
    weights = jnp.asarray(body.weights)
    posed = lbs_points(canonical, weights, transforms)
    return canonical, weights, transforms, posed


def _nearest_vertex_weight_fn(canonical, weights):
    sq_norms = jnp.sum(canonical**2, axis=-1)

    def weight_fn(x):  # test-only: the body's weights at the nearest canonical vertex
        sq = jnp.sum(x**2, axis=-1, keepdims=True) - 2.0 * x @ canonical.T + sq_norms[None, :]
        return weights[jnp.argmin(sq, axis=1)]

    return weight_fn


@pytest.mark.parametrize("method,jacobian_init", [("broyden", "blend"), ("newton", "blend")])
def test_invert_lbs_recovers_canonical_vertices(posed_body, method, jacobian_init):
    canonical, weights, transforms, posed = posed_body
    subset = np.arange(0, canonical.shape[0], 5)
    weight_fn = _nearest_vertex_weight_fn(canonical, weights)
    solve = jax.jit(lambda xd, t: invert_lbs(xd, weight_fn, t, init_bones=SNARF_TRAIN_BONES, method=method, jacobian_init=jacobian_init))
    roots, valid = solve(posed[subset], transforms)
    assert roots.shape == (subset.size, 9, 3) and valid.shape == (subset.size, 9)
    error = np.linalg.norm(np.asarray(roots) - np.asarray(canonical)[subset, None], axis=-1)
    found = np.any((error < 1e-4) & np.asarray(valid), axis=1)
    assert found.mean() >= 0.95, found.mean()
    # Every valid root really is a root of the skinning equation.
    flat = np.asarray(roots)[np.asarray(valid)]
    resid = np.asarray(lbs_points(jnp.asarray(flat), weight_fn(jnp.asarray(flat)), transforms))
    targets = np.repeat(np.asarray(posed)[subset][:, None], 9, 1)[np.asarray(valid)]
    assert np.max(np.linalg.norm(resid - targets, axis=-1)) < 1e-5


def test_autodiff_initial_jacobian_and_per_point_bones(posed_body):
    canonical, weights, transforms, posed = posed_body
    subset = np.arange(0, canonical.shape[0], 23)
    weight_fn = _nearest_vertex_weight_fn(canonical, weights)
    xd = posed[subset]
    shared, shared_valid = jax.jit(lambda x, t: invert_lbs(x, weight_fn, t, init_bones=(0, 4, 16), jacobian_init="autodiff"))(xd, transforms)
    per_point = jnp.broadcast_to(jnp.asarray([0, 4, 16], jnp.int32), (subset.size, 3))
    own, own_valid = jax.jit(lambda x, t, b: invert_lbs(x, weight_fn, t, init_bones=b, jacobian_init="autodiff"))(xd, transforms, per_point)
    np.testing.assert_array_equal(np.asarray(own), np.asarray(shared))
    np.testing.assert_array_equal(np.asarray(own_valid), np.asarray(shared_valid))
    # Pre-filter: the top-3 bones of the nearest posed vertex find the true canonical point.
    bones = nearest_vertex_bones(xd, posed, weights, 3)
    np.testing.assert_array_equal(np.asarray(bones[:, 0]), np.argmax(np.asarray(weights)[subset], axis=1))
    roots, valid = jax.jit(lambda x, t, b: invert_lbs(x, weight_fn, t, init_bones=b))(xd, transforms, bones)
    error = np.linalg.norm(np.asarray(roots) - np.asarray(canonical)[subset, None], axis=-1)
    assert np.mean(np.any((error < 1e-4) & np.asarray(valid), axis=1)) >= 0.95


def _two_bone_problem(dtype):
    angle = 0.4
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    transforms = np.stack([np.eye(4), np.eye(4)])
    transforms[1, :3, :3] = rot
    transforms[1, :3, 3] = [0.1, -0.05, 0.02]
    transforms[0, :3, 3] = [0.0, 0.03, 0.0]
    a = np.array([[3.0, 1.0, 0.0], [-3.0, 0.5, 0.2]])  # weight logits = a @ x + c
    c = np.array([0.1, -0.1])
    x_deformed = np.array([[0.3, 0.2, 0.1], [-0.2, 0.4, 0.0], [0.1, -0.3, 0.2]])
    return tuple(jnp.asarray(v, dtype) for v in (x_deformed, a, c, transforms))


def test_implicit_gradients_match_finite_differences():
    with jax.enable_x64(True):
        x_deformed, a, c, transforms = _two_bone_problem(jnp.float64)
        probe = jnp.asarray(np.random.default_rng(0).normal(size=(3, 2, 3)))

        def loss(x_d, a_, c_, t):
            weight_fn = lambda x: jax.nn.softmax(x @ a_.T + c_[None, :], axis=-1)  # noqa: E731 (closes over a_, c_)
            roots, valid = invert_lbs(x_d, weight_fn, t, init_bones=(0, 1), tol=1e-12, max_steps=100)
            return jnp.sum(jnp.where(valid[..., None], roots, 0.0) * probe)

        _, valid = jax.jit(lambda x_d: invert_lbs(x_d, lambda x: jax.nn.softmax(x @ a.T + c[None, :], axis=-1),
                                                   transforms, init_bones=(0, 1), tol=1e-12, max_steps=100))(x_deformed)
        assert bool(jnp.all(valid))
        check_grads(jax.jit(loss), (x_deformed, a, c, transforms), order=1, modes=("rev",), eps=1e-5, atol=1e-6, rtol=1e-5)
        # d x / d x_d = J⁻¹ exactly (implicit function theorem), checked against jacfwd of skinning.
        roots_fn = lambda x_d: invert_lbs(x_d, lambda x: jax.nn.softmax(x @ a.T + c[None, :], axis=-1), transforms,  # noqa: E731
                                          init_bones=(0,), tol=1e-12, max_steps=100)[0][0, 0]
        d_root = jax.jit(jax.jacrev(roots_fn))(x_deformed)[:, 0, :]
        root = jax.jit(roots_fn)(x_deformed)
        skin = lambda x: lbs_points(x, jax.nn.softmax(x @ a.T + c, axis=-1), transforms)  # noqa: E731
        np.testing.assert_allclose(np.asarray(d_root), np.linalg.inv(np.asarray(jax.jacfwd(skin)(root))), atol=1e-9)


def test_chunking_gives_identical_values_and_gradients():
    x_deformed, a, c, transforms = _two_bone_problem(jnp.float32)
    x_deformed = jnp.concatenate([x_deformed, x_deformed * 0.5], axis=0)  # 6 points, chunks of 4

    def loss(a_, chunk_size):
        weight_fn = lambda x: jax.nn.softmax(x @ a_.T + c[None, :], axis=-1)  # noqa: E731
        roots, valid = invert_lbs(x_deformed, weight_fn, transforms, init_bones=(0, 1), chunk_size=chunk_size)
        return jnp.sum(jnp.where(valid[..., None], roots, 0.0) ** 2), (roots, valid)

    (v_full, (r_full, ok_full)), g_full = jax.jit(jax.value_and_grad(lambda a_: loss(a_, None), has_aux=True))(a)
    (v_chunk, (r_chunk, ok_chunk)), g_chunk = jax.jit(jax.value_and_grad(lambda a_: loss(a_, 4), has_aux=True))(a)
    np.testing.assert_allclose(np.asarray(r_chunk), np.asarray(r_full), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(ok_chunk), np.asarray(ok_full))
    np.testing.assert_allclose(np.asarray(g_chunk), np.asarray(g_full), rtol=1e-4, atol=1e-6)
    assert np.abs(np.asarray(g_full)).max() > 0


def test_map_in_chunks_and_bad_inputs():
    x = jnp.arange(21.0).reshape(7, 3)
    np.testing.assert_array_equal(np.asarray(map_in_chunks(lambda v: v * 2, 3, x)), np.asarray(x) * 2)
    with pytest.raises(ValueError, match="chunk_size"):
        map_in_chunks(lambda v: v, 0, x)
    eye = jnp.broadcast_to(jnp.eye(4), (24, 4, 4))
    uniform = lambda p: jnp.full(p.shape[:1] + (24,), 1 / 24)  # noqa: E731
    with pytest.raises(ValueError, match=r"x_deformed must have shape \(N, 3\)"):
        invert_lbs(jnp.zeros((4, 2)), uniform, eye)
    with pytest.raises(ValueError, match="init_bones must be in"):
        invert_lbs(jnp.zeros((4, 3)), uniform, eye, init_bones=(0, 30))
    with pytest.raises(ValueError, match="method"):
        invert_lbs(jnp.zeros((4, 3)), uniform, eye, method="bisection")
    with pytest.raises(ValueError, match="weight_fn must return"):
        invert_lbs(jnp.zeros((4, 3)), lambda p: jnp.ones(p.shape[:1] + (5,)), eye)
    roots, valid = invert_lbs(jnp.ones((4, 3)), uniform, eye, init_bones=SNARF_TEST_BONES)
    assert roots.shape == (4, 24, 3) and bool(jnp.all(valid))
    np.testing.assert_array_equal(np.asarray(roots), np.ones((4, 24, 3)))  # identity bones: the root is x_d
