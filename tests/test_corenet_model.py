"""3D-CoreNet model (small widths): shapes with N_id ≠ N_pose, bounds, permutation properties, jit+grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose.matching import CoreNetIteration, Materialized, OttFixedStep, RowBlocked, ot_warp
from jaxpose.nn.spectral import SpectralState
from jaxpose.pose_transfer.corenet import CoreNet
from jaxpose.pose_transfer.outputs import PoseTransferOutput

SMALL = dict(feature_widths=(8, 16, 32), num_residual_blocks=2, correlation_width=16,
             decoder_widths=(32, 16, 8), init_gain=1.0)


def _model(**overrides):
    return CoreNet(**{**SMALL, **overrides}, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    identity = jnp.asarray(rng.uniform(-0.8, 0.8, size=(2, 40, 3)), jnp.float32)
    pose = jnp.asarray(rng.uniform(-0.8, 0.8, size=(2, 55, 3)), jnp.float32)
    return identity, pose


def test_forward_shapes_bounds_and_convex_warp(inputs):
    identity, pose = inputs
    model = _model()
    model.eval()
    out = model(identity, pose)
    assert isinstance(out, PoseTransferOutput)
    assert out.output.shape == (2, 40, 3) and out.warped.shape == (2, 40, 3)
    assert np.all(np.isfinite(out.output)) and np.all(np.isfinite(out.warped))
    assert np.all(np.abs(np.asarray(out.output)) < 2.0)
    # each warped vertex is a convex combination of the pose vertices: inside their bounding box
    lo, hi = np.asarray(pose).min(axis=1), np.asarray(pose).max(axis=1)
    assert np.all(np.asarray(out.warped) >= lo[:, None] - 1e-5)
    assert np.all(np.asarray(out.warped) <= hi[:, None] + 1e-5)
    warped, _ = model.warp(identity, pose)
    np.testing.assert_allclose(np.asarray(warped), np.asarray(out.warped), atol=1e-6)


def test_fc_kernel_1_is_permutation_equivariant(inputs):
    identity, pose = inputs
    model = _model(fc_kernel=1)
    model.eval()
    rng = np.random.default_rng(1)
    perm_id, perm_pose = rng.permutation(40), rng.permutation(55)
    base = model(identity, pose)
    permuted = model(identity[:, perm_id], pose[:, perm_pose])
    np.testing.assert_allclose(np.asarray(permuted.output), np.asarray(base.output)[:, perm_id],
                               atol=2e-4)
    np.testing.assert_allclose(np.asarray(permuted.warped), np.asarray(base.warped)[:, perm_id],
                               atol=2e-4)


def test_fc_kernel_3_depends_on_vertex_order(inputs):
    identity, pose = inputs
    model = _model(fc_kernel=3)
    model.eval()
    perm = np.random.default_rng(2).permutation(40)
    base = np.asarray(model(identity, pose).output)[:, perm]
    permuted = np.asarray(model(identity[:, perm], pose).output)
    assert np.max(np.abs(base - permuted)) > 1e-4


def test_eval_and_train_modes_reach_every_spectral_layer(inputs):
    model = _model()
    model.eval()
    flags = [m.deterministic for _, m in nnx.iter_graph(model) if hasattr(m, "deterministic")]
    assert len(flags) == 9 and all(flags)
    model.train()
    assert not any(m.deterministic for _, m in nnx.iter_graph(model) if hasattr(m, "deterministic"))


def test_jit_grad_step_updates_spectral_state(inputs):
    identity, pose = inputs
    model = _model()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    target = identity * 0.5

    @jax.jit
    def loss_and_grad(params, rest):
        def loss(params):
            m = nnx.merge(graphdef, params, rest, copy=True)
            out = m(identity, pose)
            return jnp.mean((out.output - target) ** 2), nnx.state(m, SpectralState)

        return jax.value_and_grad(loss, has_aux=True)(params)

    (value, new_spectral), grads = loss_and_grad(params, rest)
    assert np.isfinite(value)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    # gradients reach both stages: θ (through the OT warp) and the decoder
    assert float(jnp.max(jnp.abs(grads["theta"]["kernel"][...]))) > 0
    assert float(jnp.max(jnp.abs(grads["generator"]["conv4"]["kernel"][...]))) > 0
    old = nnx.state(model, SpectralState)
    diffs = [float(jnp.max(jnp.abs(a - b)))
             for a, b in zip(jax.tree.leaves(new_spectral), jax.tree.leaves(old))]
    assert len(diffs) == 2 * 9 and max(diffs) > 1e-4


def test_without_elain_ablation_runs_and_drops_blend_weights(inputs):
    identity, pose = inputs
    model = _model(use_elain=False)
    model.eval()
    out = model(identity, pose)
    assert out.output.shape == (2, 40, 3) and np.all(np.isfinite(out.output))
    paths = ["/".join(map(str, p)) for p, _ in nnx.iter_graph(model)]
    assert not any("mlp_weight" in p for p in paths)


def test_bad_inputs_raise_clear_errors(inputs):
    identity, pose = inputs
    model = _model()
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(identity, pose[:1])
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        model(identity[..., :2], pose)
    with pytest.raises(ValueError, match="metre-scale"):
        model(identity * 10, pose)
    with pytest.raises(ValueError, match="NaN"):
        model(identity.at[0, 0, 0].set(jnp.nan), pose)
    with pytest.raises(ValueError, match="fc_kernel"):
        _model(fc_kernel=5)


def test_residual_output_adds_the_decoder_offset_to_the_warp(inputs):
    identity, pose = inputs
    absolute, residual = _model(), _model(residual_output=True)  # same seed: identical weights
    absolute.eval()
    residual.eval()
    out_abs, out_res = absolute(identity, pose), residual(identity, pose)
    np.testing.assert_allclose(np.asarray(out_res.warped), np.asarray(out_abs.warped), atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(out_res.output), np.asarray(out_abs.warped + out_abs.output), atol=1e-5
    )
    assert np.all(np.abs(np.asarray(out_res.output - out_res.warped)) < 2.0)  # the 2·tanh bound


def test_matching_objects_reach_the_warp(inputs):
    identity, pose = inputs
    default = _model()
    assert (default.matching_geometry, default.matching_solver) == (Materialized(), CoreNetIteration(5))
    blocked = _model(matching_geometry=RowBlocked(16), matching_solver=CoreNetIteration(5))
    one_step = _model(matching_solver=CoreNetIteration(1))
    warped, _ = default.warp(identity, pose)
    # the warp is ot_warp on the model's θ/φ features with the model's objects
    theta = default.theta(default.features(identity))
    phi = default.phi(default.features(pose))
    expected = ot_warp(theta[0], phi[0], pose[0], epsilon=0.03, geometry=Materialized(),
                       solver=CoreNetIteration(5))
    np.testing.assert_allclose(np.asarray(warped[0]), np.asarray(expected), atol=1e-6)
    np.testing.assert_allclose(np.asarray(blocked.warp(identity, pose)[0]), np.asarray(warped), atol=1e-5)
    assert np.max(np.abs(np.asarray(one_step.warp(identity, pose)[0]) - np.asarray(warped))) > 1e-4


def test_matching_arguments_must_be_objects():
    with pytest.raises(TypeError, match="geometry must be"):
        _model(matching_geometry="online")
    with pytest.raises(TypeError, match="solver must be"):
        _model(matching_solver="dense")
    with pytest.raises(TypeError, match="geometry must be"):
        _model(matching_geometry=OttFixedStep())
