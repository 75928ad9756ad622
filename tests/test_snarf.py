"""SNARF / SNARF-NC: shapes, jit + implicit gradients, identity pose, pose (in)dependence, aggregation,
per-point initial bones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose.geometry.rotations import axis_angle_to_matrix
from jaxpose.skinning.snarf import SNARF, aggregate_root_logits, bone_points, positional_encoding

TINY = dict(width=16, depth=3, skip_layers=(2,), skinning_width=8, skinning_depth=2, skinning_hierarchical=False, max_steps=20)


@pytest.fixture(scope="module")
def query():
    x = jax.random.normal(jax.random.key(1), (12, 3)) * 0.3
    pose = jnp.zeros((24, 3)).at[1, 2].set(0.3).at[16, 1].set(-0.5)
    rot = axis_angle_to_matrix(jax.random.normal(jax.random.key(2), (24, 3)) * 0.2)
    transforms = jnp.zeros((24, 4, 4)).at[:, :3, :3].set(rot).at[:, 3, 3].set(1.0).at[:, :3, 3].set(0.03)
    return x, pose, transforms


def _bce(logits, labels):
    return jnp.mean(jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits))))


def test_jit_grad_through_the_whole_query_is_finite(query):
    x, pose, transforms = query
    model = SNARF(**TINY, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    labels = (jnp.linalg.norm(x, axis=-1) < 0.3).astype(jnp.float32)

    @jax.jit
    def loss_and_grad(state, x, pose, transforms):
        def loss(s):
            return _bce(nnx.merge(graphdef, s).occupancy_logits(x, pose, transforms, training=True), labels)

        return jax.value_and_grad(loss)(state)

    value, grads = loss_and_grad(state, x, pose, transforms)
    assert np.isfinite(float(value))
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    skin_grad = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["skinning"]))
    shape_grad = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["shape_network"]))
    assert skin_grad > 0 and shape_grad > 0  # the skinning field learns through the implicit gradient
    evaluate = jax.jit(lambda s, x, p, t: nnx.merge(graphdef, s).occupancy_logits(x, p, t, training=False))
    assert evaluate(state, x, pose, transforms).shape == (12,)


@pytest.mark.parametrize("pose_conditioned,hierarchical", [(True, True), (False, False)])
def test_identity_transforms_read_the_canonical_occupancy(query, pose_conditioned, hierarchical):
    x, pose, _ = query
    model = SNARF(**{**TINY, "skinning_hierarchical": hierarchical}, pose_conditioned=pose_conditioned, rngs=nnx.Rngs(1))
    eye = jnp.broadcast_to(jnp.eye(4), (24, 4, 4))
    canonical = np.asarray(model.canonical_logits(x, pose))
    assert canonical.shape == (12,)
    for training in (False, True):
        got = np.asarray(model.occupancy_logits(x, pose, eye, training=training, init_bones=(0, 5)))
        np.testing.assert_allclose(got, canonical, atol=2e-5)


def test_snarf_nc_ignores_pose_and_snarf_does_not(query):
    x, pose, transforms = query
    other = pose.at[4, 0].set(1.2).at[18, 1].set(-0.8)
    nc = SNARF(**TINY, pose_conditioned=False, rngs=nnx.Rngs(2))
    np.testing.assert_array_equal(np.asarray(nc.canonical_logits(x, pose)), np.asarray(nc.canonical_logits(x, other)))
    np.testing.assert_array_equal(
        np.asarray(nc.occupancy_logits(x, pose, transforms, training=False)),
        np.asarray(nc.occupancy_logits(x, other, transforms, training=False)),
    )
    for variant in (dict(), dict(num_frequencies=0, pose_layer=2, pose_embed_dim=8)):  # CAPE / D-FAUST style
        conditioned = SNARF(**TINY, geometric_init=False, rngs=nnx.Rngs(2), **variant)
        diff = np.abs(np.asarray(conditioned.canonical_logits(x, pose)) - np.asarray(conditioned.canonical_logits(x, other)))
        assert diff.max() > 1e-4
    # Geometric init: every pose starts as the same sphere, inside positive, outside negative.
    sphere = SNARF(**TINY, init_radius=0.5, rngs=nnx.Rngs(3))
    probe = jnp.asarray([[0.0, 0.0, 0.0], [0.0, 1.5, 0.0]])
    logits = np.asarray(sphere.canonical_logits(probe, pose))
    assert logits[0] > 0 > logits[1]
    np.testing.assert_array_equal(logits, np.asarray(sphere.canonical_logits(probe, other)))


def test_weight_norm_reparametrisation_starts_at_the_same_function(query):
    x, pose, _ = query
    plain = SNARF(**TINY, weight_norm=False, rngs=nnx.Rngs(4))
    normed = SNARF(**TINY, weight_norm=True, rngs=nnx.Rngs(4))
    assert "gain" in nnx.state(normed.shape_network.layers[0])
    np.testing.assert_allclose(np.asarray(normed.canonical_logits(x, pose)), np.asarray(plain.canonical_logits(x, pose)), atol=1e-5)


def test_chunked_query_matches_unchunked(query):
    x, pose, transforms = query
    model = SNARF(**TINY, rngs=nnx.Rngs(5))
    full = model.occupancy_logits(x, pose, transforms, training=False, init_bones=(0, 1, 2))
    chunked = model.occupancy_logits(x, pose, transforms, training=False, init_bones=(0, 1, 2), chunk_size=5)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(full), atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_per_point_bones_equal_to_the_shared_ones_give_the_same_logits(query, training):
    x, pose, transforms = query
    model = SNARF(**TINY, rngs=nnx.Rngs(7))
    shared = (0, 4, 16)
    per_point = jnp.broadcast_to(jnp.asarray(shared, jnp.int32), (x.shape[0], len(shared)))
    expected = np.asarray(model.occupancy_logits(x, pose, transforms, training=training, init_bones=shared))
    got = model.occupancy_logits(x, pose, transforms, training=training, init_bones=per_point)
    np.testing.assert_array_equal(np.asarray(got), expected)
    chunked = model.occupancy_logits(x, pose, transforms, training=training, init_bones=per_point, chunk_size=5)
    np.testing.assert_allclose(np.asarray(chunked), expected, atol=1e-5)
    # rows really use their own bones: a different first bone for one point changes only that point
    other = per_point.at[3, 0].set(20)
    changed = np.asarray(model.occupancy_logits(x, pose, transforms, training=training, init_bones=other))
    np.testing.assert_array_equal(np.delete(changed, 3), np.delete(expected, 3))
    with pytest.raises(ValueError, match="per-point init_bones"):
        model.occupancy_logits(x, pose, transforms, training=training, init_bones=per_point[:5])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_aggregation_follows_snarf_masked_softmax(rng):
    logits = rng.normal(size=(5, 4)) * 3
    valid = rng.uniform(size=(5, 4)) < 0.6
    valid[0] = False
    valid[1] = True
    got_eval = np.asarray(aggregate_root_logits(jnp.asarray(logits), jnp.asarray(valid), training=False))
    got_train = np.asarray(aggregate_root_logits(jnp.asarray(logits, jnp.float32), jnp.asarray(valid), training=True))
    eps = np.finfo(np.float32).eps
    for n in range(5):
        if not valid[n].any():
            assert got_eval[n] == -np.inf
            np.testing.assert_allclose(got_train[n], np.log(eps / (1 - eps)), rtol=1e-5)
            continue
        assert got_eval[n] == np.float32(logits[n][valid[n]].max())
        p = _sigmoid(logits[n][valid[n]])
        soft = np.exp(5 * p) / np.exp(5 * p).sum()
        prob = np.clip((soft * p).sum(), eps, 1 - eps)
        np.testing.assert_allclose(got_train[n], np.log(prob / (1 - prob)), rtol=1e-4, atol=1e-4)


def test_helpers_and_bad_inputs(query):
    x, pose, transforms = query
    assert positional_encoding(x, 4).shape == (12, 27)
    np.testing.assert_allclose(np.asarray(positional_encoding(x, 4)[:, 3:6]), np.sin(np.asarray(x)), rtol=1e-6)
    joints = jax.random.normal(jax.random.key(0), (24, 3))
    points = bone_points(joints, jax.random.key(1), num_per_bone=5)
    assert points.shape == (23 * 5, 3)
    model = SNARF(**TINY, rngs=nnx.Rngs(6))
    with pytest.raises(ValueError, match="pose must have shape"):
        model.canonical_logits(x, pose[:5])
    with pytest.raises(ValueError, match="transforms must have shape"):
        model.occupancy_logits(x, pose, transforms[:5], training=False)
    with pytest.raises(ValueError, match="x_deformed"):
        model.occupancy_logits(x[:, :2], pose, transforms, training=False)
