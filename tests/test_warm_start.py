"""Warm starts of the skinning models (jaxpose.skinning.warm_start) and their use by the tasks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose.bodies import default_body
from jaxpose.skinning import warm_start
from jaxpose.skinning.field import SkinningField
from jaxpose.skinning.snarf import SNARF


@pytest.fixture(scope="module")
def targets():
    body = default_body("low")
    poses = np.zeros((2, 24, 3), np.float32)
    poses[1, 1, 0] = -0.5
    return warm_start.make_targets(np.asarray(body.v_template), np.asarray(body.faces), np.asarray(body.weights), poses,
                                   num_jittered=512, num_near=2048, num_uniform=1024)


def test_targets_are_consistent(targets):
    body = default_body("low")
    num_vertices = body.num_vertices
    np.testing.assert_allclose(targets.skin_weights.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(targets.skin_weights[:num_vertices], np.asarray(body.weights, np.float32))
    assert set(np.unique(targets.occupancy)) == {0.0, 1.0}
    # The body's centre line (pelvis to head) is inside; far corners of the padded box are outside.
    assert 0.1 < targets.occupancy.mean() < 0.6


def test_distil_skinning_fits_the_body_weights(targets):
    field = SkinningField(24, width=32, depth=2, rngs=nnx.Rngs(0))
    points, weights = jnp.asarray(targets.skin_points), jnp.asarray(targets.skin_weights)
    before = float(jnp.mean((field(points) - weights) ** 2))
    warm_start.distil_skinning(field, targets, steps=200, lr=3e-3)
    after = float(jnp.mean((field(points) - weights) ** 2))
    assert after < 0.2 * before
    dominant = np.mean(np.argmax(np.asarray(field(points)), 1) == np.argmax(targets.skin_weights, 1))
    assert dominant > 0.7


def test_fit_occupancy_learns_the_body_and_only_touches_what_it_uses(targets):
    model = SNARF(pose_conditioned=True, width=32, depth=3, skip_layers=(), skinning_width=16, skinning_depth=1, rngs=nnx.Rngs(0))
    skinning_before = jax.tree.map(np.asarray, nnx.state(model.skinning, nnx.Param))
    points, labels = jnp.asarray(targets.occupancy_points), targets.occupancy > 0.5

    def accuracy():
        return min(float(jnp.mean((model.canonical_logits(points, jnp.asarray(p)) > 0) == labels)) for p in targets.poses)

    before = accuracy()
    warm_start.fit_occupancy(model, lambda m, x, pose: m.canonical_logits(x, pose), targets, steps=300, lr=5e-3)
    assert accuracy() > max(0.8, before + 0.1)
    skinning_after = jax.tree.map(np.asarray, nnx.state(model.skinning, nnx.Param))
    jax.tree.map(np.testing.assert_array_equal, skinning_before, skinning_after)  # zero gradients, zero Adam steps


def test_warm_start_traces_inside_jit(targets):
    """The engine builds models inside jit: the warm start must be traceable (a fori_loop of Adam steps)."""

    def build():
        field = SkinningField(24, width=16, depth=1, rngs=nnx.Rngs(0))
        warm_start.distil_skinning(field, targets, steps=3)
        return nnx.state(field, nnx.Param)

    jitted = jax.jit(build)()
    eager = build()
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), jitted, eager)
