"""NPT baseline (small widths): float64 NumPy reference, variants, permutation properties, jit+grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose.pose_transfer.npt import NPT

WIDTHS = (8, 16, 29)  # bottleneck 32 -> decoder widths 32, 16, 8


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.uniform(-0.8, 0.8, (2, 40, 3)), jnp.float32),
            jnp.asarray(rng.uniform(-0.8, 0.8, (2, 55, 3)), jnp.float32))


def _np(v):
    return np.asarray(v[...], np.float64)


def _lin(x, m):
    return x @ _np(m.kernel) + _np(m.bias)


def _inorm(x):
    mean = x.mean(-2, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-2, keepdims=True) + 1e-5)


def _npt_ref(model, identity, pose, maxpool=True):
    x = pose
    for layer in model.encoder_layers:
        x = np.maximum(_inorm(_lin(x, layer)), 0)
    if maxpool:
        x = np.repeat(x.max(axis=1, keepdims=True), identity.shape[1], axis=1)
    x = np.concatenate([x, identity], axis=-1)

    def spadain(h, m, use_norm):
        return (_inorm(h) if use_norm else h) * _lin(identity, m.conv_weight) + _lin(identity, m.conv_bias)

    def block(h, b, use_norm):
        out = _lin(np.maximum(spadain(h, b.spadain1, use_norm), 0), b.conv1)
        out = _lin(np.maximum(spadain(out, b.spadain2, use_norm), 0), b.conv2)
        return out + _lin(np.maximum(spadain(h, b.spadain_res, use_norm), 0), b.conv_res)

    x = block(_lin(x, model.conv1), model.blocks[0], not maxpool)
    x = block(_lin(x, model.conv2), model.blocks[1], True)
    x = block(_lin(x, model.conv3), model.blocks[2], True)
    return 2 * np.tanh(_lin(x, model.conv4))


def test_maxpool_matches_numpy_reference_with_different_vertex_counts(inputs):
    identity, pose = inputs
    model = NPT(pose_widths=WIDTHS, init_stddev=0.3, rngs=nnx.Rngs(0))
    assert model.decoder_widths == (32, 16, 8)
    out = model(identity, pose)
    assert out.warped is None and out.output.shape == (2, 40, 3)
    ref = _npt_ref(model, np.asarray(identity, np.float64), np.asarray(pose, np.float64))
    np.testing.assert_allclose(np.asarray(out.output), ref, rtol=2e-4, atol=2e-5)
    assert np.all(np.abs(np.asarray(out.output)) < 2)


def test_original_variant_matches_reference_and_rejects_unequal_counts(inputs):
    identity, pose = inputs
    model = NPT(variant="original", pose_widths=WIDTHS, init_stddev=0.3, rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match="N_id == N_pose"):
        model(identity, pose)
    out = model(identity, pose[:, :40])
    ref = _npt_ref(model, np.asarray(identity, np.float64), np.asarray(pose[:, :40], np.float64),
                   maxpool=False)
    np.testing.assert_allclose(np.asarray(out.output), ref, rtol=2e-4, atol=2e-5)


def test_maxpool_permutation_properties(inputs):
    identity, pose = inputs
    model = NPT(pose_widths=WIDTHS, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(3)
    perm_id, perm_pose = rng.permutation(40), rng.permutation(55)
    base = np.asarray(model(identity, pose).output)
    permuted = np.asarray(model(identity[:, perm_id], pose[:, perm_pose]).output)
    np.testing.assert_allclose(permuted, base[:, perm_id], atol=1e-5)


def test_jit_grad_runs(inputs):
    identity, pose = inputs
    model = NPT(pose_widths=WIDTHS, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def grad_fn(params):
        return jax.grad(lambda p: jnp.mean(nnx.merge(graphdef, p)(identity, pose).output ** 2))(params)

    grads = grad_fn(params)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert float(jnp.max(jnp.abs(grads["encoder_layers"][0]["kernel"][...]))) > 0


def test_bad_configuration_and_inputs(inputs):
    identity, pose = inputs
    with pytest.raises(ValueError, match="unknown NPT variant"):
        NPT(variant="dense", rngs=nnx.Rngs(0))
    model = NPT(pose_widths=WIDTHS, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(identity[:1], pose)
