"""INS model: reposing is the exact inverse of the query path, the canonical pose reduces INS to
(inverse) LBS, jit + grad of the BCE loss, root aggregation (SNARF's and the logit softmax), per-point
initial bones (nearest-bones pre-filter), and every ablation switch."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose.bodies import default_body, forward, rectified_bone_transforms, sample_pose, star_pose
from jaxpose.geometry.mesh import vertex_normals
from jaxpose.geometry.root_finding import SNARF_TEST_BONES, SNARF_TRAIN_BONES, nearest_vertex_bones
from jaxpose.skinning.ins import INS, INVALID_LOGIT, INSConfig, aggregate_root_logits, occupancy_bce
from jaxpose.skinning.pin import PINConfig
from jaxpose.skinning.field import lbs_points

TINY_PIN = PINConfig(n_layers=2, pose_code_dim=8, encoder_width=8, embed_width=16, head_width=16,
                     zero_init_heads=False)
# A random, untrained skinning field with SNARF's logit scale 20 has needle-sharp weight transitions,
# which make inverse LBS ill-conditioned (|J⁻¹| ~ 30, so tol 1e-5 on the residual allows 3e-4 in x);
# a trained field is smooth inside the limbs. Scale 5 keeps this random field realistic.
TINY = dict(pin=TINY_PIN, occupancy_width=16, occupancy_depth=2, skinning_width=16, skinning_depth=2,
            skinning_logit_scale=5.0)


def _rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(axis_angle, axis=-1, keepdims=True)
    axis = axis_angle / np.maximum(angle, 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], -2)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def _skinning_transforms(pose: np.ndarray, rest_joints: np.ndarray, parents) -> np.ndarray:
    """NumPy float64 forward kinematics: (J, 4, 4) rigid maps from the rest (zero) pose to `pose`.

    World rotations G_j = G_parent R_j; posed joints p_j = p_parent + G_parent (r_j − r_parent);
    the skinning transform of bone j is x ↦ G_j x + (p_j − G_j r_j).
    """
    rot = _rodrigues(pose)
    out = np.tile(np.eye(4), (len(parents), 1, 1))
    world, posed = [], []
    for j, p in enumerate(parents):
        world.append(rot[j] if p < 0 else world[p] @ rot[j])
        posed.append(rest_joints[j] if p < 0 else posed[p] + world[p] @ (rest_joints[j] - rest_joints[p]))
        out[j, :3, :3] = world[j]
        out[j, :3, 3] = posed[j] - world[j] @ rest_joints[j]
    return out


@pytest.fixture(scope="module")
def scene():
    """Canonical (star-pose) body points and the rectified transforms of a random pose, float32."""
    body = default_body()
    rest_joints = np.asarray(body.j_template, np.float64)
    parents = body.parents
    canonical_pose = star_pose(dtype=np.float64)
    rng = np.random.default_rng(0)
    pose = canonical_pose + 0.3 * rng.standard_normal((24, 3))
    to_canonical = _skinning_transforms(canonical_pose, rest_joints, parents)
    to_posed = _skinning_transforms(pose, rest_joints, parents)
    rectified = to_posed @ np.linalg.inv(to_canonical)
    # Canonical vertices by forward LBS of the rest template into the star pose.
    weights = np.asarray(body.weights, np.float64)
    template = np.asarray(body.v_template, np.float64)
    blended = np.einsum("vj,jab->vab", weights, to_canonical)
    canonical_vertices = np.einsum("vab,vb->va", blended[:, :3, :3], template) + blended[:, :3, 3]
    points = canonical_vertices[rng.choice(len(canonical_vertices), 48, replace=False)]
    return dict(
        points=jnp.asarray(points, jnp.float32),
        transforms=jnp.asarray(rectified, jnp.float32),
        identity=jnp.broadcast_to(jnp.eye(4, dtype=jnp.float32), (24, 4, 4)),
    )


def _amplify_pins(model: INS, factor: float) -> None:
    for pin in (model.h_d, model.h_c):
        if pin is None:
            continue
        for layer in pin.layers:
            for head in (layer.shift_head, layer.log_scale_head):
                if head is not None:
                    head.kernels[-1][...] = head.kernels[-1][...] * factor


def _build(seed: int = 0, amplify: float = 4.0, **overrides) -> INS:
    model = INS(rngs=nnx.Rngs(seed), **{**TINY, **overrides})
    _amplify_pins(model, amplify)
    return model


def _compiled(model: INS):
    """Reposing, then the query path on the result, in one jitted function (one compilation)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, canonical_points, transforms):
        m = nnx.merge(graphdef, state)
        deformed = m.repose(canonical_points, transforms)
        roots, valid = m.canonicalize(deformed, transforms)
        return dict(deformed=deformed, roots=roots, valid=valid)

    return lambda points, transforms: run(state, points, transforms)


def _logits(model: INS, training: bool):
    graphdef, state = nnx.split(model)
    run = jax.jit(lambda state, x, transforms: nnx.merge(graphdef, state)(x, transforms, training=training))
    return lambda x, transforms: run(state, x, transforms)


def _nearest_valid_root_error(roots, valid, targets):
    distance = jnp.linalg.norm(roots - targets[:, None, :], axis=-1)
    return np.asarray(jnp.min(jnp.where(valid, distance, jnp.inf), axis=1))


@pytest.fixture(scope="module")
def model():
    return _build()


@pytest.fixture(scope="module")
def compiled(model):
    return _compiled(model)


@pytest.fixture(scope="module")
def eval_logits_fn(model):
    return _logits(model, training=False)


@pytest.fixture(scope="module")
def outputs(compiled, scene):
    return compiled(scene["points"], scene["transforms"])


def test_repose_is_exact_inverse_of_query_path(model, scene, outputs):
    points, transforms = scene["points"], scene["transforms"]
    # The PINs really deform (otherwise the round trip would only test LBS).
    pose_canonical = model.h_c.inverse(points, transforms)
    assert float(jnp.max(jnp.linalg.norm(pose_canonical - points, axis=-1))) > 5e-3
    lbs_side = lbs_points(pose_canonical, model.skinning(pose_canonical), transforms)
    assert float(jnp.max(jnp.linalg.norm(model.h_d.inverse(lbs_side, transforms) - lbs_side, axis=-1))) > 5e-3
    np.testing.assert_allclose(outputs["deformed"], model.h_d.inverse(lbs_side, transforms), atol=1e-5)
    # Deformed points are far from the canonical ones (a real pose), yet the query path returns home.
    assert float(jnp.max(jnp.linalg.norm(outputs["deformed"] - points, axis=-1))) > 0.1
    found = np.asarray(jnp.any(outputs["valid"], axis=1))
    assert found.mean() >= 0.9
    errors = _nearest_valid_root_error(outputs["roots"], outputs["valid"], points)
    assert np.all(errors[found] < 1e-4), errors[found].max()


def test_query_logits_read_the_occupancy_at_the_recovered_roots(model, scene, outputs, eval_logits_fn):
    occupancy = model.canonical_occupancy(outputs["roots"])
    eval_logits = eval_logits_fn(outputs["deformed"], scene["transforms"])
    np.testing.assert_allclose(eval_logits, jnp.max(jnp.where(outputs["valid"], occupancy, INVALID_LOGIT), axis=1),
                               atol=1e-5)
    found = np.asarray(jnp.any(outputs["valid"], axis=1))
    # One of the roots is x_c itself, so the max is at least the canonical occupancy of x_c.
    direct = np.asarray(model.canonical_occupancy(scene["points"]))
    assert np.all(np.asarray(eval_logits)[found] >= direct[found] - 1e-3)


def test_canonical_pose_reduces_to_inverse_lbs(model, scene, compiled, eval_logits_fn):
    points, identity = scene["points"], scene["identity"]
    np.testing.assert_array_equal(np.asarray(model.h_c.forward(points, identity)), np.asarray(points))
    np.testing.assert_array_equal(np.asarray(model.h_d.forward(points, identity)), np.asarray(points))
    run = compiled(points, identity)
    np.testing.assert_array_equal(np.asarray(run["deformed"]), np.asarray(points))
    assert bool(jnp.all(run["valid"]))
    np.testing.assert_array_equal(np.asarray(run["roots"]),
                                  np.broadcast_to(np.asarray(points)[:, None], run["roots"].shape))
    # (jit-fused vs eager evaluation of the same network: equal up to float rounding)
    np.testing.assert_allclose(eval_logits_fn(points, identity), model.canonical_occupancy(points), rtol=1e-6,
                               atol=1e-6)


def test_identity_pins_make_repose_plain_lbs(scene):
    """Untrained PINs (zero-initialised heads, the default) are identities for every pose."""
    model = INS(rngs=nnx.Rngs(1), **{**TINY, "pin": dataclasses.replace(TINY_PIN, zero_init_heads=True)})
    points, transforms = scene["points"], scene["transforms"]
    np.testing.assert_array_equal(np.asarray(model.h_c.inverse(points, transforms)), np.asarray(points))
    np.testing.assert_array_equal(np.asarray(model.h_d.forward(points, transforms)), np.asarray(points))
    np.testing.assert_allclose(model.repose(points, transforms),
                               lbs_points(points, model.skinning(points), transforms), atol=1e-6)


def test_jit_grad_of_bce_over_query_path(model, scene, outputs):
    graphdef, state = nnx.split(model)
    deformed = outputs["deformed"]
    queries = jnp.concatenate([deformed, deformed + 0.05], axis=0)
    labels = jnp.concatenate([jnp.ones(deformed.shape[0]), jnp.zeros(deformed.shape[0])])

    @jax.jit
    def loss_and_grad(state, x, y, transforms):
        def loss(state):
            return occupancy_bce(nnx.merge(graphdef, state)(x, transforms, training=True), y)
        return jax.value_and_grad(loss)(state)

    value, grads = loss_and_grad(state, queries, labels, scene["transforms"])
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    for part in ("occupancy", "skinning", "h_c", "h_d"):
        largest = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads[part]))
        assert largest > 0, f"no gradient reaches {part}"


PIN_SWITCHES = [dict(use_pose_multiplication=False), dict(use_siren=False), dict(use_rotation=False)]


@pytest.mark.parametrize("switch", PIN_SWITCHES, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_component_ablations_change_the_architecture_and_run(switch, scene):
    """Switches that act inside the PINs / occupancy network: built as documented, parts run and invert."""
    model = _build(seed=3, **switch)
    points, transforms = scene["points"][:16], scene["transforms"]
    pin_config = model.config.resolved_pin_config()
    if "use_pose_multiplication" in switch:
        assert pin_config.pose_combine == "concat"
        # Documented: without the product the PINs deform even at the canonical pose.
        assert float(jnp.max(jnp.abs(model.h_c.forward(points, scene["identity"]) - points))) > 1e-4
    if "use_siren" in switch:
        assert pin_config.spatial_embedding == "mlp" and not hasattr(model.occupancy, "layers")
    if "use_rotation" in switch:
        assert model.h_c.encoder.in_dim == 3 and model.h_d.encoder.in_dim == 3
        rotated_only = transforms.at[:, :3, 3].set(0.0)
        np.testing.assert_array_equal(np.asarray(model.h_c.forward(points, rotated_only)), np.asarray(points))
    for pin in (model.h_c, model.h_d):
        moved = pin.forward(points, transforms)
        np.testing.assert_allclose(pin.inverse(moved, transforms), points, atol=1e-5)
    assert bool(jnp.all(jnp.isfinite(model.canonical_occupancy(points))))


# Full pipeline (root finding) per structural switch; the three component switches run together.
PIPELINE_SWITCHES = [
    dict(use_pose_multiplication=False, use_siren=False, use_rotation=False, use_h_d=False),
    dict(use_h_c=False),
    dict(use_lbs=False),
    dict(lbs_inversion="backward_weights"),
]


@pytest.mark.parametrize("switch", PIPELINE_SWITCHES, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_ablation_pipeline_runs_and_round_trips(switch, scene):
    model = _build(seed=2, eval_init_bones=SNARF_TRAIN_BONES, **switch)
    points, transforms = scene["points"][:16], scene["transforms"]
    run = _compiled(model)(points, transforms)
    for key in ("deformed", "roots"):
        assert bool(jnp.all(jnp.isfinite(run[key]))), key
    num_roots = 1 if (switch.get("use_lbs") is False or "lbs_inversion" in switch) else len(SNARF_TRAIN_BONES)
    assert run["roots"].shape == (16, num_roots, 3)
    found = np.asarray(jnp.any(run["valid"], axis=1))
    assert found.mean() >= 0.75
    errors = _nearest_valid_root_error(run["roots"], run["valid"], points)
    assert np.all(errors[found] < 1e-4), errors[found].max()
    if switch.get("use_h_d") is False:
        assert model.h_d is None
    if switch.get("use_h_c") is False:
        assert model.h_c is None
    if switch.get("use_lbs") is False:
        assert model.skinning is None and model.backward_skinning is None and bool(jnp.all(run["valid"]))
        assert float(jnp.max(jnp.abs(run["deformed"] - points))) > 1e-3  # the PINs alone deform
    if "lbs_inversion" in switch:
        assert model.skinning is None and model.backward_skinning is not None


def test_aggregate_root_logits_reference():
    logits = np.array([[0.3, -1.0, 2.0], [0.5, 0.4, -0.2], [1.0, 2.0, 3.0]], np.float32)
    valid = np.array([[True, True, False], [True, False, True], [False, False, False]])
    evaluation = np.asarray(aggregate_root_logits(jnp.asarray(logits), jnp.asarray(valid), training=False))
    np.testing.assert_allclose(evaluation, [0.3, 0.5, INVALID_LOGIT])
    training = np.asarray(aggregate_root_logits(jnp.asarray(logits), jnp.asarray(valid), training=True,
                                                aggregation="logit_softmax"))
    for row in range(2):
        values = logits[row][valid[row]].astype(np.float64)
        weights = np.exp(5 * values) / np.exp(5 * values).sum()
        np.testing.assert_allclose(training[row], (weights * values).sum(), rtol=1e-6)
    assert training[2] == pytest.approx(INVALID_LOGIT)
    with pytest.raises(ValueError, match=r"\(N, I\)"):
        aggregate_root_logits(jnp.zeros((3,)), jnp.zeros((3,), bool), training=True)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_root_logits(jnp.zeros((3, 2)), jnp.ones((3, 2), bool), training=True, aggregation="mean")


def _snarf_aggregation_float64(logits: np.ndarray, valid: np.ndarray, eps: float, blend: float = 5.0) -> np.ndarray:
    """SNARF's masked_softmax (training), written out independently in NumPy float64."""
    out = np.empty(logits.shape[0])
    for row in range(logits.shape[0]):
        probs = 1.0 / (1.0 + np.exp(-logits[row].astype(np.float64)))
        exps = np.exp(blend * probs) * valid[row]
        total = exps.sum()
        prob = (exps / total * probs).sum() if total > 0 else 0.0
        prob = min(max(prob, eps), 1.0 - eps)
        out[row] = np.log(prob) - np.log1p(-prob)
    return out


def test_snarf_aggregation_matches_a_numpy_float64_reference():
    rng = np.random.default_rng(31)
    logits = rng.normal(size=(64, 9)) * 4.0
    valid = rng.uniform(size=(64, 9)) < 0.5
    valid[:4] = False  # rows with no valid root
    valid[4:8] = True
    valid[8, :] = False
    valid[8, 3] = True  # a single valid root: its own logit
    with jax.enable_x64(True):
        got64 = np.asarray(aggregate_root_logits(jnp.asarray(logits), jnp.asarray(valid), training=True))
        evaluation = np.asarray(aggregate_root_logits(jnp.asarray(logits), jnp.asarray(valid), training=False))
    expected64 = _snarf_aggregation_float64(logits, valid, float(np.finfo(np.float64).eps))
    np.testing.assert_allclose(got64, expected64, rtol=1e-10, atol=1e-10)
    assert got64[8] == pytest.approx(logits[8, 3], abs=1e-10)
    np.testing.assert_allclose(got64[:4], np.log(np.finfo(np.float64).eps), rtol=1e-6)  # logit(eps)
    expected_eval = np.where(valid.any(axis=1), np.max(np.where(valid, logits, -np.inf), axis=1), INVALID_LOGIT)
    np.testing.assert_array_equal(evaluation, expected_eval)
    # float32 (training precision): within the float32 rounding of σ and logit
    got32 = np.asarray(aggregate_root_logits(jnp.asarray(logits, jnp.float32), jnp.asarray(valid), training=True))
    expected32 = _snarf_aggregation_float64(logits.astype(np.float32), valid, float(np.finfo(np.float32).eps))
    np.testing.assert_allclose(got32, expected32, rtol=1e-3, atol=1e-3)
    # It blends probabilities, not logits: unlike the logit softmax.
    other = np.asarray(aggregate_root_logits(jnp.asarray(logits), jnp.asarray(valid), training=True,
                                             aggregation="logit_softmax"))
    assert np.abs(other[4:] - got32[4:]).max() > 0.1
    assert INSConfig().aggregation == "snarf"


def test_occupancy_bce_reference():
    logits = np.array([-2.0, 0.0, 3.0, 0.7])
    labels = np.array([0.0, 1.0, 1.0, 0.0])
    p = 1 / (1 + np.exp(-logits))
    expected = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert float(occupancy_bce(jnp.asarray(logits, jnp.float32), jnp.asarray(labels))) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        occupancy_bce(jnp.zeros(3), jnp.zeros(4))


def test_bad_inputs_raise(model, scene):
    with pytest.raises(ValueError, match=r"\(24, 4, 4\)"):
        model(scene["points"], scene["transforms"][None])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        model.repose(scene["points"][None], scene["transforms"])
    with pytest.raises(ValueError, match="NaN"):
        model.canonicalize(scene["points"], scene["transforms"].at[3, 0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="could not deform"):
        INSConfig(use_lbs=False, use_h_d=False, use_h_c=False)
    with pytest.raises(ValueError, match="lbs_inversion"):
        INSConfig(lbs_inversion="dual_quaternion")
    with pytest.raises(ValueError, match="init_bones"):
        INSConfig(train_init_bones=(0, 30))
    with pytest.raises(ValueError, match="aggregation"):
        INSConfig(aggregation="max")
    points = scene["points"]
    with pytest.raises(ValueError, match="init_bones"):
        model.canonicalize(points, scene["transforms"], init_bones=jnp.zeros((points.shape[0] + 1, 3), jnp.int32))
    with pytest.raises(ValueError, match="init_bones"):
        model.canonicalize(points, scene["transforms"], init_bones=jnp.zeros((points.shape[0], 3), jnp.float32))
    with pytest.raises(ValueError, match="init_bones"):
        model.canonicalize(points, scene["transforms"], init_bones=jnp.full((points.shape[0], 3), 24, jnp.int32))


def test_per_point_bones_equal_to_the_shared_ones_give_the_same_logits(model, scene, outputs, eval_logits_fn):
    graphdef, state = nnx.split(model)
    run = jax.jit(lambda state, x, transforms, bones: nnx.merge(graphdef, state)(x, transforms, init_bones=bones))
    x = outputs["deformed"]
    bones = jnp.broadcast_to(jnp.asarray(SNARF_TEST_BONES, jnp.int32), (x.shape[0], len(SNARF_TEST_BONES)))
    np.testing.assert_array_equal(np.asarray(run(state, x, scene["transforms"], bones)),
                                  np.asarray(eval_logits_fn(x, scene["transforms"])))


class _NearestVertexLookup(nnx.Module):
    """Test-only field: (..., 3) -> the value stored at the nearest of the given vertices (V, 3)."""

    def __init__(self, vertices, values):
        self.vertices = nnx.Variable(jnp.asarray(vertices))
        self.values = nnx.Variable(jnp.asarray(values))

    def nearest(self, x):
        vertices, flat = self.vertices[...], x.reshape(-1, 3)
        sq = jnp.sum(flat**2, axis=-1, keepdims=True) - 2.0 * flat @ vertices.T + jnp.sum(vertices**2, axis=-1)[None]
        return jnp.argmin(sq, axis=-1).reshape(x.shape[:-1])

    def __call__(self, x):
        return self.values[...][self.nearest(x)]


class _NearestVertexOccupancy(_NearestVertexLookup):
    """Test-only occupancy logit: −100·(x − v)·n at the nearest vertex v (unit outward normal n)."""

    def __call__(self, x):
        index = self.nearest(x)
        offset = x - self.vertices[...][index]
        return -100.0 * jnp.sum(offset * self.values[...][index], axis=-1, keepdims=True)


def test_nearest_bone_prefilter_keeps_the_inside_outside_decision():
    """A posed minimal body: INS with identity PINs, the body's skinning weights and a canonical
    occupancy of the body; k = 4 nearest-vertex bones decide inside / outside like all 24 bones."""
    body = default_body("low")
    star = star_pose()
    canonical = jnp.asarray(forward(body, jnp.zeros(4), star).vertices)
    weights = jnp.asarray(body.weights)
    transforms = rectified_bone_transforms(body, jnp.zeros(4), jnp.asarray(sample_pose(7, "wide"), jnp.float32), star)
    posed = lbs_points(canonical, weights, transforms)
    faces = jnp.asarray(body.faces)
    rng = np.random.default_rng(41)
    picks = rng.choice(canonical.shape[0], 400, replace=False)
    offsets = rng.uniform(0.003, 0.02, 400) * rng.choice([-1.0, 1.0], 400)  # 3 mm to 2 cm in / out
    queries = posed[picks] + jnp.asarray(offsets, jnp.float32)[:, None] * vertex_normals(posed, faces)[picks]
    model = INS(rngs=nnx.Rngs(0), **{**TINY, "pin": dataclasses.replace(TINY_PIN, zero_init_heads=True)})
    model.skinning = _NearestVertexLookup(canonical, weights)
    model.occupancy = _NearestVertexOccupancy(canonical, vertex_normals(canonical, faces))
    graphdef, state = nnx.split(model)
    assert model.config.eval_init_bones == tuple(range(24))
    all_bones = np.asarray(jax.jit(lambda state, x, t: nnx.merge(graphdef, state)(x, t))(state, queries, transforms)) > 0
    run = jax.jit(lambda state, x, t, bones: nnx.merge(graphdef, state)(x, t, init_bones=bones))
    nearest = nearest_vertex_bones(queries, posed, weights, 4)
    assert nearest.shape == (400, 4)
    prefiltered = np.asarray(run(state, queries, transforms, nearest)) > 0
    agreement = np.mean(all_bones == prefiltered)
    assert agreement >= 0.99, agreement
    # a real inside / outside decision: it follows the body's surface (inward offsets inside) on most points
    assert np.mean(prefiltered == (offsets < 0)) >= 0.9
