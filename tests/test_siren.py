"""SIREN: Sitzmann initialisation, the sine-layer formula, and its edge over ReLU on a high-frequency signal."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpose.nn.mlp import MLP
from jaxpose.nn.siren import SineLayer, Siren


@pytest.fixture(scope="module")
def wide_siren():
    return Siren(2, 256, 4, 3, omega0=30.0, rngs=nnx.Rngs(0))


def _check_uniform(values: np.ndarray, bound: float):
    values = np.asarray(values).ravel()
    assert np.all(np.abs(values) <= bound)
    # U(-b, b): mean 0, variance b²/3 (each within 4 standard errors), and it fills the range.
    n = values.size
    assert abs(values.mean()) < 4 * bound / math.sqrt(3 * n)
    np.testing.assert_allclose(values.var(), bound**2 / 3.0, rtol=4 * math.sqrt(0.8 / n))
    assert np.abs(values).max() > 0.95 * bound


def test_sitzmann_initialisation_bounds_and_variance(wide_siren):
    first, *hidden = wide_siren.layers
    assert first.is_first and first.omega0 == 30.0
    _check_uniform(first.kernel[...], 1.0 / 2)
    for layer in hidden:
        _check_uniform(layer.kernel[...], math.sqrt(6.0 / 256) / 30.0)
        _check_uniform(layer.bias[...], 1.0 / math.sqrt(256))
    _check_uniform(wide_siren.out_kernel[...], math.sqrt(6.0 / 256) / 30.0)


def test_hidden_preactivations_are_unit_variance(wide_siren):
    """The point of the init: ω0·(h W) ~ unit variance in every hidden layer, for inputs in [-1, 1]."""
    x = jax.random.uniform(jax.random.PRNGKey(1), (4000, 2), minval=-1.0, maxval=1.0)
    h = wide_siren.layers[0](x)
    for layer in wide_siren.layers[1:]:
        kernel_part = layer.omega0 * (h @ layer.kernel[...])
        assert 0.85 < float(jnp.std(kernel_part)) < 1.15
        h = layer(h)
    # Sine outputs of unit-variance-ish pre-activations are spread over [-1, 1] (arcsine-like).
    assert 0.5 < float(jnp.std(h)) < 0.8


def test_sine_layer_and_siren_match_numpy_reference():
    model = Siren(3, 8, 2, 2, omega0=12.0, rngs=nnx.Rngs(3))
    x = np.random.default_rng(0).uniform(-1, 1, (5, 3))
    h = x
    for layer in model.layers:
        h = np.sin(12.0 * (h @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)))
    expected = h @ np.asarray(model.out_kernel[...], np.float64) + np.asarray(model.out_bias[...], np.float64)
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x, jnp.float32))), expected, atol=2e-5)
    # Leading axes are arbitrary.
    assert model(jnp.zeros((2, 4, 3))).shape == (2, 4, 2)


def test_output_bias_off_gives_bias_free_last_layer():
    model = Siren(1, 4, 1, 2, output_bias=False, rngs=nnx.Rngs(0))
    assert model.out_bias is None
    features = model.features(jnp.ones((3, 1)))
    np.testing.assert_allclose(model(jnp.ones((3, 1))), features @ model.out_kernel[...], rtol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="input features"):
        Siren(3, 8, 2, 1, rngs=nnx.Rngs(0))(jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="depth"):
        Siren(3, 8, 0, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="omega0"):
        SineLayer(3, 8, omega0=0.0, rngs=nnx.Rngs(0))


def _fit_mse(model, x, y, steps: int) -> float:
    graphdef, state = nnx.split(model)
    optimiser = optax.adam(1e-3)
    opt_state = optimiser.init(state)

    def loss(state):
        return jnp.mean((nnx.merge(graphdef, state)(x) - y) ** 2)

    @jax.jit
    def step(state, opt_state):
        grads = jax.grad(loss)(state)
        updates, opt_state = optimiser.update(grads, opt_state)
        return optax.apply_updates(state, updates), opt_state

    for _ in range(steps):
        state, opt_state = step(state, opt_state)
    return float(loss(state))


def test_siren_fits_high_frequency_signal_better_than_relu():
    x = jnp.linspace(-1.0, 1.0, 256)[:, None]
    y = jnp.sin(12 * jnp.pi * x) * jnp.cos(3 * jnp.pi * x)  # ~7 periods over the interval
    siren_mse = _fit_mse(Siren(1, 32, 2, 1, rngs=nnx.Rngs(0)), x, y, steps=250)
    relu_mse = _fit_mse(MLP(1, 32, 2, 1, activation="relu", rngs=nnx.Rngs(0)), x, y, steps=250)
    assert siren_mse < 1e-3
    assert siren_mse < 1e-2 * relu_mse
