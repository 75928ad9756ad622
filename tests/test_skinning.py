"""Skinning weight field, hierarchical softmax, rectified bone transforms and forward LBS of points."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpose.bodies import SMPL_PARENTS, default_body, forward, star_pose
from jaxpose.skinning.field import (
    SkinningField,
    blend_transforms,
    hierarchical_num_logits,
    hierarchical_softmax,
    joint_one_hot_loss,
    joint_weight_targets,
    lbs_points,
    skinning_weight_loss,
)


@pytest.fixture(scope="module")
def body():
    return default_body("low")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _hierarchical_reference(logits, parents):
    """Recursive float64 reference: mass flows from the root; a joint keeps 1 − σ(gate) of what reaches it."""
    children = {j: [k for k in range(len(parents)) if parents[k] == j] for j in range(len(parents))}
    extra = iter(range(len(parents), logits.shape[-1]))
    gates = {}
    for j in range(len(parents)):  # assign extra gate logits to non-root branching joints in joint order
        if len(children[j]) >= 2:
            gates[j] = j if parents[j] < 0 else next(extra)
    out = np.zeros(len(parents))

    def visit(j, mass):
        kids = children[j]
        if not kids:
            out[j] = mass
            return
        gate = _sigmoid(logits[kids[0]] if len(kids) == 1 else logits[gates[j]])
        out[j] = mass * (1 - gate)
        if len(kids) == 1:
            visit(kids[0], mass * gate)
        else:
            e = np.exp(logits[kids] - logits[kids].max())
            for kid, share in zip(kids, e / e.sum()):
                visit(kid, mass * gate * share)

    visit(0, 1.0)
    return out


def test_hierarchical_softmax_matches_reference_and_smpl_layout():
    assert hierarchical_num_logits(SMPL_PARENTS) == 25  # SNARF's 25-logit layout
    logits = np.random.default_rng(0).normal(size=(5, 25)) * 2
    got = np.asarray(hierarchical_softmax(jnp.asarray(logits), SMPL_PARENTS))
    want = np.stack([_hierarchical_reference(row, SMPL_PARENTS) for row in logits])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(want[:, 0], 1 - _sigmoid(logits[:, 0]), rtol=1e-12)  # pelvis keeps 1 − σ(l0)
    np.testing.assert_allclose(want.sum(-1), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="needs 25 logits"):
        hierarchical_softmax(jnp.zeros((2, 24)), SMPL_PARENTS)


@pytest.mark.parametrize("hierarchical", [False, True])
def test_skinning_field_weights_are_a_partition_of_unity(hierarchical):
    field = SkinningField(24, width=16, depth=2, hierarchical=hierarchical, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 7, 3))
    w = field(x)
    assert w.shape == (4, 7, 24)
    assert field.out.kernel.shape == (16, 25 if hierarchical else 24)
    np.testing.assert_allclose(np.asarray(w.sum(-1)), 1.0, atol=1e-5)
    assert np.all(np.asarray(w) >= 0)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        field(jnp.zeros((4, 2)))


def test_logit_scale_multiplies_logits():
    field = SkinningField(24, width=8, depth=1, logit_scale=20.0, rngs=nnx.Rngs(3))
    x = jnp.ones((2, 3)) * 0.1
    h = jax.nn.softplus(100.0 * field.hidden[0](x)) / 100.0
    np.testing.assert_allclose(np.asarray(field.logits(x)), 20.0 * np.asarray(field.out(h)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(field(x)), np.asarray(jax.nn.softmax(field.logits(x))), rtol=1e-6)


def test_lbs_points_matches_float64_reference_and_identity_is_exact(rng):
    x = rng.normal(size=(6, 3)).astype(np.float32)
    w = rng.dirichlet(np.ones(4), size=6).astype(np.float32)
    rot = np.asarray(jax.vmap(lambda a: jax.scipy.linalg.expm(jnp.cross(jnp.eye(3), a)))(rng.normal(size=(4, 3))))
    transforms = np.zeros((4, 4, 4), np.float32)
    transforms[:, :3, :3], transforms[:, :3, 3], transforms[:, 3, 3] = rot, rng.normal(size=(4, 3)), 1.0
    want = np.einsum("vj,jab,vb->va", w.astype(np.float64), transforms[:, :3, :3].astype(np.float64), x.astype(np.float64))
    want += w.astype(np.float64) @ transforms[:, :3, 3].astype(np.float64)
    np.testing.assert_allclose(np.asarray(lbs_points(x, w, transforms)), want, atol=1e-5)
    blended = np.asarray(blend_transforms(w, transforms))
    np.testing.assert_allclose(blended, np.einsum("vj,jab->vab", w, transforms[:, :3, :]), atol=1e-5)
    eye = np.broadcast_to(np.eye(4, dtype=np.float32), (4, 4, 4))
    np.testing.assert_array_equal(np.asarray(lbs_points(x, w * 0.9, eye)), x)  # exact even if Σw ≠ 1
    with pytest.raises(ValueError, match="bones"):
        lbs_points(x, w[:, :3], transforms)


def test_distilling_body_weights_reduces_the_loss(body):
    points = jnp.asarray(forward(body, jnp.zeros(2), star_pose()).vertices)[::4]
    targets = jnp.asarray(body.weights)[::4]
    field = SkinningField(24, width=32, depth=2, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(field)
    opt = optax.adam(3e-3)
    opt_state = opt.init(params)

    def loss_fn(p):
        return skinning_weight_loss(nnx.merge(graphdef, p), points, targets)

    @jax.jit
    def step(p, s):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    initial = float(loss_fn(params))
    for _ in range(200):
        params, opt_state, _ = step(params, opt_state)
    assert float(loss_fn(params)) < 0.5 * initial
    with pytest.raises(ValueError, match="target_weights"):
        skinning_weight_loss(field, points, targets[:, :5])


def test_joint_targets_and_one_hot_loss(body):
    joints = jnp.asarray(body.j_template)
    points, targets = joint_weight_targets(joints, SMPL_PARENTS)
    assert points.shape == (47, 3) and targets.shape == (47, 24)
    np.testing.assert_array_equal(np.asarray(targets[:24]), np.eye(24))
    # The second block: each child joint position, labelled with its parent bone.
    np.testing.assert_array_equal(np.asarray(points[24:]), np.asarray(joints[1:]))
    np.testing.assert_array_equal(np.argmax(np.asarray(targets[24:]), -1), np.asarray(SMPL_PARENTS[1:]))
    field = SkinningField(24, width=8, depth=1, rngs=nnx.Rngs(1))
    want = np.mean((np.asarray(field(points)) - np.asarray(targets)) ** 2)
    np.testing.assert_allclose(float(joint_one_hot_loss(field, joints)), want, rtol=1e-5)
