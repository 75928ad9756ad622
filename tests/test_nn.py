"""jaxpose.nn: normalisation layers vs float64 NumPy transcriptions, convolutions, spectral norm."""

import jax
import jax.test_util
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose import nn as jnn
from jaxpose.nn.spectral import SpectralState


def _np(v):
    return np.asarray(v[...], dtype=np.float64)


def _lin(x, module):
    y = x @ _np(module.kernel)
    if module.bias is not None:
        y = y + _np(module.bias)
    return y


def _instance_norm_ref(x, eps=1e-5):
    mean = x.mean(axis=-2, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-2, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def _elain_ref(x, f, m, elastic=True):
    """docs/pose_transfer.md, "ElaIN", line by line, float64."""
    f_aligned = _lin(f, m.mlp_same)
    gamma_id = _lin(f_aligned, m.mlp_gamma)
    beta_id = _lin(f_aligned, m.mlp_beta)
    mu = x.mean(axis=-2, keepdims=True)
    sigma = np.sqrt(x.var(axis=-2, ddof=1, keepdims=True) + 1e-5)
    if elastic:
        w = _lin(np.concatenate([f_aligned.mean(axis=-2, keepdims=True), mu], axis=-1), m.mlp_weight)
    else:
        w = np.ones_like(mu)
    gamma = w * gamma_id + (1 - w) * sigma
    beta = w * beta_id + (1 - w) * mu
    return (x - mu) / sigma * (1 + gamma) + beta


def test_instance_norm_matches_numpy_biased_variance(rng):
    x = rng.normal(size=(2, 17, 5)) * 3 + 1
    out = np.asarray(jnn.instance_norm(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(out, _instance_norm_ref(x), atol=2e-5)
    unbatched = np.asarray(jnn.instance_norm(jnp.asarray(x[1], jnp.float32)))
    np.testing.assert_allclose(unbatched, out[1], atol=1e-6)
    with pytest.raises(ValueError, match="N, C"):
        jnn.instance_norm(jnp.ones(4))


@pytest.mark.parametrize("elastic", [True, False])
def test_elain_matches_spec_formula(rng, elastic):
    model = jnn.ElaIN(6, 4, elastic=elastic, kernel_init=jnn.normal(0.5), rngs=nnx.Rngs(1))
    # non-zero biases so every term of the formula is exercised
    for lin in (model.mlp_same, model.mlp_gamma, model.mlp_beta, model.mlp_weight):
        if lin is not None:
            lin.bias[...] = jnp.asarray(rng.normal(size=lin.bias[...].shape), jnp.float32)
    x = rng.normal(size=(3, 11, 6)) * 2 + 0.5
    f = rng.normal(size=(3, 11, 4))
    out = np.asarray(model(jnp.asarray(x, jnp.float32), jnp.asarray(f, jnp.float32)))
    ref = _elain_ref(x, f, model, elastic)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert (model.mlp_weight is None) == (not elastic)


def test_elain_uses_unbiased_variance(rng):
    """With w driven to 0 (zero mlp_weight), out = x̂·(1+σ) + μ: σ must be the unbiased std."""
    model = jnn.ElaIN(3, 2, rngs=nnx.Rngs(0))
    model.mlp_weight.kernel[...] = jnp.zeros_like(model.mlp_weight.kernel[...])
    x = rng.normal(size=(5, 3))
    out = np.asarray(model(jnp.asarray(x, jnp.float32), jnp.ones((5, 2), jnp.float32)))
    mu = x.mean(0)
    sigma_unbiased = np.sqrt(x.var(0, ddof=1) + 1e-5)
    sigma_biased = np.sqrt(x.var(0) + 1e-5)
    expected = (x - mu) / sigma_unbiased * (1 + sigma_unbiased) + mu
    wrong = (x - mu) / sigma_biased * (1 + sigma_biased) + mu
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert np.max(np.abs(out - wrong)) > 1e-2


def test_elain_rejects_bad_inputs():
    model = jnn.ElaIN(3, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="at least 2 vertices"):
        model(jnp.ones((1, 3)), jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="condition must match"):
        model(jnp.ones((4, 3)), jnp.ones((5, 2)))


@pytest.mark.parametrize("use_norm", [True, False])
def test_spadain_matches_spec_formula(rng, use_norm):
    model = jnn.SPAdaIN(5, 3, use_norm=use_norm, kernel_init=jnn.normal(0.7), rngs=nnx.Rngs(2))
    x = rng.normal(size=(2, 9, 5)) * 2 - 1
    xyz = rng.normal(size=(2, 9, 3))
    out = np.asarray(model(jnp.asarray(x, jnp.float32), jnp.asarray(xyz, jnp.float32)))
    normalized = _instance_norm_ref(x) if use_norm else x
    ref = normalized * _lin(xyz, model.conv_weight) + _lin(xyz, model.conv_bias)  # no "1 +"
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_vertex_conv_matches_torch_style_cross_correlation(rng):
    conv = jnn.VertexConv(3, 4, 3, kernel_init=jnn.normal(1.0), bias_init=jnn.normal(1.0),
                          rngs=nnx.Rngs(0))
    x = rng.normal(size=(2, 7, 3))
    out = np.asarray(conv(jnp.asarray(x, jnp.float32)))
    w_torch = np.transpose(_np(conv.kernel), (2, 1, 0))  # (out, in, k)
    xc = np.pad(np.transpose(x, (0, 2, 1)), ((0, 0), (0, 0), (1, 1)))  # (B, C, N + 2)
    ref = np.zeros((2, 4, 7))
    for n in range(7):
        ref[:, :, n] = np.einsum("oct,bct->bo", w_torch, xc[:, :, n:n + 3])
    ref = np.transpose(ref, (0, 2, 1)) + _np(conv.bias)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # kernel 1 is the pointwise linear map
    conv1 = jnn.VertexConv(3, 4, 1, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(
        np.asarray(conv1(jnp.asarray(x, jnp.float32))),
        x @ _np(conv1.kernel)[0] + _np(conv1.bias), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="input channels"):
        conv(jnp.ones((5, 2)))


def test_xavier_normal_std_and_zero_bias():
    kernel = jnn.xavier_normal(0.02)(jax.random.key(0), (3, 200, 300))
    expected = 0.02 * np.sqrt(2.0 / (3 * 200 + 3 * 300))
    assert abs(float(jnp.std(kernel)) / expected - 1) < 0.02
    lin = jnn.PointwiseLinear(4, 5, rngs=nnx.Rngs(0))
    assert np.all(_np(lin.bias) == 0)


def _spectral_layer(kernel_size=1):
    # init_power_iterations=0: start from random u, v like PyTorch, so one step visibly moves them
    return jnn.SpectralNormConv(6, 4, kernel_size, kernel_init=jnn.normal(1.0),
                                init_power_iterations=0, rngs=nnx.Rngs(3))


def test_spectral_norm_one_iteration_matches_torch_formula(rng):
    layer = _spectral_layer()
    w = _np(layer.kernel).T  # (out, in)
    u0 = _np(layer.u)
    x = rng.normal(size=(5, 6))
    out = np.asarray(layer(jnp.asarray(x, jnp.float32)))
    v = w.T @ u0
    v /= np.linalg.norm(v)
    u = w @ v
    u /= np.linalg.norm(u)
    sigma = u @ w @ v
    np.testing.assert_allclose(out, x @ (w.T / sigma) + _np(layer.bias), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(layer.u), u, atol=1e-6)
    np.testing.assert_allclose(_np(layer.v), v, atol=1e-6)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_spectral_norm_converges_to_unit_top_singular_value(kernel_size):
    layer = _spectral_layer(kernel_size)
    x = jnp.ones((5, 6))
    for _ in range(60):
        layer(x)
    matrix = np.asarray(jnn.kernel_as_matrix(layer.normalized_kernel(deterministic=True)))
    assert abs(np.linalg.svd(matrix, compute_uv=False)[0] - 1.0) < 1e-4
    raw = np.linalg.svd(np.asarray(jnn.kernel_as_matrix(layer.kernel[...])), compute_uv=False)[0]
    assert raw > 1.5  # the normalisation really divided something


def test_spectral_init_warm_up_gives_sane_sigma():
    layer = jnn.SpectralNormConv(6, 4, kernel_init=jnn.normal(1.0), rngs=nnx.Rngs(3))
    matrix = np.asarray(jnn.kernel_as_matrix(layer.normalized_kernel(deterministic=True)))
    assert abs(np.linalg.svd(matrix, compute_uv=False)[0] - 1.0) < 0.05


def test_spectral_state_updates_in_train_mode_only():
    layer = _spectral_layer()
    x = jnp.ones((5, 6))
    u_before = _np(layer.u)
    layer.eval()
    assert layer.deterministic
    out_eval = layer(x)
    np.testing.assert_array_equal(_np(layer.u), u_before)
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(out_eval))
    layer.train()
    layer(x)
    assert np.max(np.abs(_np(layer.u) - u_before)) > 1e-3


def test_spectral_state_round_trips_split_merge_and_gets_no_gradient():
    layer = _spectral_layer()
    x = jnp.ones((5, 6))
    graphdef, params, spectral = nnx.split(layer, nnx.Param, SpectralState)
    assert set(jax.tree.leaves(jax.tree.map(jnp.shape, spectral))) <= {4, 6}
    assert len(jax.tree.leaves(spectral)) == 2

    def loss(params, spectral):
        # copy=True: the SpectralState variables passed in belong to the outer (jit) trace, and the
        # forward pass mutates them inside the grad trace
        model = nnx.merge(graphdef, params, spectral, copy=True)
        value = jnp.sum(model(x) ** 2)
        return value, nnx.state(model, SpectralState)

    grads, new_spectral = jax.jit(jax.grad(loss, has_aux=True))(params, spectral)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert len(jax.tree.leaves(grads)) == 2  # kernel and bias only
    changed = [np.max(np.abs(np.asarray(a) - np.asarray(b)))
               for a, b in zip(jax.tree.leaves(new_spectral), jax.tree.leaves(spectral))]
    assert max(changed) > 1e-4
    restored = nnx.merge(graphdef, params, new_spectral)
    np.testing.assert_array_equal(_np(restored.u), np.asarray(new_spectral["u"][...]))


def test_elain_gradients_match_finite_differences():
    with jax.enable_x64(True):
        model = jnn.ElaIN(3, 2, kernel_init=jnn.normal(0.5), rngs=nnx.Rngs(0))
        graphdef, state = nnx.split(model)
        state = jax.tree.map(lambda a: a.astype(jnp.float64), state)
        key = jax.random.key(1)
        x = jax.random.normal(key, (6, 3), jnp.float64)
        f = jax.random.normal(jax.random.key(2), (6, 2), jnp.float64)

        def fn(x, f):
            return nnx.merge(graphdef, state)(x, f)

        jax.test_util.check_grads(fn, (x, f), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)
