"""PIN: exact identity at the canonical pose, closed-form inverse, log-determinant vs autodiff,
conditioning only on the kept coordinates (both bone code modes), the bone pose encoder, root-relative
codes and every knob."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose.geometry.rotations import axis_angle_to_matrix
from jaxpose.skinning.pin import (
    PIN,
    ROTATION_ENCODINGS,
    BonePoseEncoder,
    CouplingLayer,
    PINConfig,
    bone_pose_features,
    fourier_features,
    root_relative_transforms,
)

BONE_CODE_MODES = ["mixture", "literal"]

# Two layers keep compilation cheap; the `pin` fixture has the default four.
TINY = dict(n_layers=2, pose_code_dim=8, encoder_width=8, embed_width=16, head_width=16, zero_init_heads=False)


def _random_transforms(seed: int, num_joints: int = 24, angle: float = 0.4, shift: float = 0.1, dtype=np.float32):
    rng = np.random.default_rng(seed)
    rot = np.asarray(axis_angle_to_matrix(jnp.asarray(angle * rng.standard_normal((num_joints, 3)), dtype)))
    transforms = np.zeros((num_joints, 4, 4), dtype)
    transforms[:, :3, :3] = rot
    transforms[:, :3, 3] = shift * rng.standard_normal((num_joints, 3))
    transforms[:, 3, 3] = 1.0
    return jnp.asarray(transforms)


def _amplify_heads(pin: PIN, factor: float) -> None:
    """Scale the heads' output kernels so the test maps are far from the identity."""
    for layer in pin.layers:
        for head in (layer.shift_head, layer.log_scale_head):
            if head is not None:
                head.kernels[-1][...] = head.kernels[-1][...] * factor


def _make_pin(seed: int = 0, amplify: float = 20.0, dtype=jnp.float32, **overrides) -> PIN:
    options = {**TINY, **overrides}
    pin = PIN(rngs=nnx.Rngs(seed), dtype=dtype, **options)
    _amplify_heads(pin, amplify)
    return pin


def _jitted(pin: PIN, method):
    """jit `method(model, *args)` over the split model state: one compilation instead of many eager ops."""
    graphdef, state = nnx.split(pin)
    compiled = jax.jit(lambda state, *args: method(nnx.merge(graphdef, state), *args))
    return lambda *args: compiled(state, *args)


def _round_trip_outputs(model, x, transforms):
    y, log_det = model.forward_and_log_det(x, transforms)
    x_back, inverse_log_det = model.inverse_and_log_det(y, transforms)
    return dict(y=y, log_det=log_det, x_back=x_back, inverse_log_det=inverse_log_det,
                y_rest=model.forward(x, jnp.broadcast_to(jnp.eye(4, dtype=x.dtype), transforms.shape)),
                x_rest=model.inverse(x, jnp.broadcast_to(jnp.eye(4, dtype=x.dtype), transforms.shape)),
                codes_rest=model.encode_pose(jnp.broadcast_to(jnp.eye(4, dtype=x.dtype), transforms.shape)))


@pytest.fixture(scope="module")
def pin():
    return _make_pin(n_layers=4)


@pytest.fixture(scope="module", params=BONE_CODE_MODES)
def mode_pin(request):
    """A four-layer PIN in each bone code mode."""
    return _make_pin(n_layers=4, bone_code_mode=request.param)


@pytest.fixture(scope="module")
def points():
    return jnp.asarray(np.random.default_rng(1).uniform(-0.9, 0.9, (64, 3)), jnp.float32)


@pytest.fixture(scope="module")
def pose():
    return _random_transforms(2)


def _identity(num_joints: int = 24, dtype=jnp.float32):
    return jnp.broadcast_to(jnp.eye(4, dtype=dtype), (num_joints, 4, 4))


def test_pin_is_a_nontrivial_bijection(pin, points, pose):
    forward = jax.jit(lambda x, b: pin.forward(x, b))
    inverse = jax.jit(lambda y, b: pin.inverse(y, b))
    y = forward(points, pose)
    assert float(jnp.max(jnp.abs(y - points))) > 0.05  # a real deformation, not the identity
    np.testing.assert_allclose(inverse(y, pose), points, atol=1e-5)
    np.testing.assert_allclose(forward(inverse(points, pose), pose), points, atol=1e-5)


@pytest.mark.parametrize("mode", BONE_CODE_MODES)
def test_pin_round_trip_and_log_det_float64(mode):
    """Float64: inverse(forward(x)) = x to 1e-12; log-det = slogdet of the autodiff Jacobian; the
    canonical pose is the exact identity."""
    with jax.enable_x64(True):
        pin = _make_pin(dtype=jnp.float64, bone_code_mode=mode)
        x = jnp.asarray(np.random.default_rng(3).uniform(-0.9, 0.9, (32, 3)), jnp.float64)
        transforms = _random_transforms(4, dtype=np.float64)

        def run(model, x, transforms):
            out = _round_trip_outputs(model, x, transforms)
            out["jacobians"] = jax.vmap(jax.jacfwd(lambda p: model.forward(p, transforms)))(x)
            return out

        out = _jitted(pin, run)(x, transforms)
        assert out["y"].dtype == jnp.float64
        assert float(jnp.max(jnp.abs(out["y"] - x))) > 0.05
        np.testing.assert_allclose(np.asarray(out["x_back"]), np.asarray(x), atol=1e-12, rtol=0)
        sign, reference = np.linalg.slogdet(np.asarray(out["jacobians"]))
        np.testing.assert_array_equal(sign, 1.0)  # coupling maps preserve orientation
        np.testing.assert_allclose(np.asarray(out["log_det"]), reference, atol=1e-10, rtol=0)
        assert float(jnp.std(out["log_det"])) > 1e-2  # the volume change is not trivially constant
        np.testing.assert_allclose(np.asarray(out["inverse_log_det"]), -np.asarray(out["log_det"]), atol=1e-10, rtol=0)
        np.testing.assert_array_equal(np.asarray(out["codes_rest"]), 0.0)
        np.testing.assert_array_equal(np.asarray(out["y_rest"]), np.asarray(x))
        np.testing.assert_array_equal(np.asarray(out["x_rest"]), np.asarray(x))


@pytest.mark.parametrize("encoding", sorted(ROTATION_ENCODINGS))
def test_canonical_pose_gives_exact_identity(encoding, points):
    pin = _make_pin(bone_rot_encoding=encoding, seed=5, n_layers=1)
    np.testing.assert_array_equal(np.asarray(bone_pose_features(_identity(), encoding)), 0.0)
    out = _jitted(pin, _round_trip_outputs)(points, _random_transforms(6))
    np.testing.assert_array_equal(np.asarray(out["codes_rest"]), 0.0)
    np.testing.assert_array_equal(np.asarray(out["y_rest"]), np.asarray(points))
    np.testing.assert_array_equal(np.asarray(out["x_rest"]), np.asarray(points))
    # ... and a non-canonical pose does move the points with this encoding, invertibly.
    assert float(jnp.max(jnp.abs(out["y"] - points))) > 1e-2
    np.testing.assert_allclose(out["x_back"], points, atol=1e-5)


@pytest.mark.parametrize("mode", BONE_CODE_MODES)
def test_concat_ablation_breaks_the_identity_at_canonical_pose(mode, points):
    """Documented: pose_combine="concat" keeps φ(x_a) in the heads' input, so θ_c deforms too."""
    out = _jitted(_make_pin(pose_combine="concat", amplify=3.0, bone_code_mode=mode), _round_trip_outputs)(
        points, _identity())
    assert float(jnp.max(jnp.abs(out["y"] - points))) > 1e-3
    np.testing.assert_allclose(out["x_back"], points, atol=1e-5)


def test_additive_coupling_is_volume_preserving(points, pose):
    pin = _make_pin(coupling="additive")

    def run(model, x, transforms):
        out = _round_trip_outputs(model, x, transforms)
        out["det"] = jnp.linalg.det(jax.vmap(jax.jacfwd(lambda p: model.forward(p, transforms)))(x))
        return out

    out = _jitted(pin, run)(points, pose)
    np.testing.assert_array_equal(np.asarray(out["log_det"]), 0.0)
    np.testing.assert_allclose(out["det"], 1.0, atol=1e-4)
    assert float(jnp.max(jnp.abs(out["y"] - points))) > 1e-2
    np.testing.assert_allclose(out["x_back"], points, atol=1e-5)


def test_conditioner_reads_only_kept_coordinates(mode_pin, points, pose):
    pin = mode_pin

    def run(model, x, transforms):
        codes = model.encode_pose(transforms)
        results = []
        for layer in model.layers:
            y = layer.forward(x, codes)[0]
            jac = jax.vmap(jax.jacfwd(lambda p, layer=layer: layer.forward(p, codes)[0]))(x)
            s, _ = layer.conditioner(x[:, list(layer.kept)], codes)
            results.append((y, jac, s))
        return results

    for layer, (y, jac, s) in zip(pin.layers, _jitted(pin, run)(points, pose)):
        kept, changed = list(layer.kept), list(layer.changed)
        # Kept coordinates pass through unchanged.
        np.testing.assert_array_equal(np.asarray(y[:, kept]), np.asarray(points[:, kept]))
        # The conditioner ignores the transformed coordinates: the Jacobian block ∂y_b/∂x_b is
        # exactly diagonal, exp(s(x_a)).
        block = jac[:, changed][:, :, changed]
        off_diagonal = block * (1.0 - jnp.eye(len(changed)))[None]
        np.testing.assert_array_equal(np.asarray(off_diagonal), 0.0)
        np.testing.assert_allclose(jnp.diagonal(block, axis1=1, axis2=2), jnp.exp(s), rtol=1e-5)
        assert float(jnp.max(jnp.abs(s))) > 1e-3


@pytest.mark.parametrize(
    "schedule, kept_dims, expected",
    [
        ("cycle", 2, ((1, 2), (0, 2), (0, 1), (1, 2))),
        ("cycle", 1, ((0,), (1,), (2,), (0,))),
    ],
)
def test_mask_schedules(schedule, kept_dims, expected):
    assert PINConfig(mask_schedule=schedule, kept_dims=kept_dims).kept_coordinates() == expected


def test_random_masks_are_stored_and_seeded():
    first = PINConfig(mask_schedule="random", mask_seed=3, n_layers=6).kept_coordinates()
    assert first == PINConfig(mask_schedule="random", mask_seed=3, n_layers=6).kept_coordinates()
    assert all(len(kept) == 2 for kept in first)
    pin = _make_pin(mask_schedule="random", mask_seed=3, n_layers=6)
    assert tuple(layer.kept for layer in pin.layers) == first


@pytest.mark.parametrize(
    "overrides",
    [
        dict(spatial_embedding="fourier"),
        dict(spatial_embedding="mlp"),
        dict(kept_dims=1),
        dict(log_scale_clamp="hardtanh", max_log_scale=10.0),
        dict(per_bone_encoder=False),
        dict(use_rotation=False),
        dict(use_translation=False),
        dict(root_relative=True),
        dict(bone_code_mode="literal", kept_dims=1),
        dict(bone_code_mode="literal", root_relative=True, coupling="additive"),
    ],
)
def test_every_variant_is_invertible_and_identity_at_rest(overrides, points, pose):
    out = _jitted(_make_pin(**overrides), _round_trip_outputs)(points, pose)
    assert float(jnp.max(jnp.abs(out["y"] - points))) > 1e-3
    np.testing.assert_allclose(out["x_back"], points, atol=2e-5)
    np.testing.assert_array_equal(np.asarray(out["y_rest"]), np.asarray(points))


def test_log_scale_is_bounded():
    pin = _make_pin(amplify=1e4, max_log_scale=0.5)
    codes = pin.encode_pose(_random_transforms(7, angle=1.0))
    x = jnp.asarray(np.random.default_rng(8).uniform(-1, 1, (128, 2)), jnp.float32)
    s, _ = pin.layers[0].conditioner(x, codes)
    assert float(jnp.max(jnp.abs(s))) <= 0.5
    assert float(jnp.max(jnp.abs(s))) > 0.4  # saturates near the bound with huge heads


def test_zero_initialised_heads_start_as_identity(points, pose):
    pin = PIN(rngs=nnx.Rngs(0), **{**TINY, "zero_init_heads": True})
    np.testing.assert_array_equal(np.asarray(pin.forward(points, pose)), np.asarray(points))
    graphdef, state = nnx.split(pin)
    grads = jax.jit(jax.grad(lambda st: jnp.sum(nnx.merge(graphdef, st).forward(points, pose) ** 2)))(state)
    last = len(pin.layers[0].shift_head.kernels) - 1
    head_grad = grads["layers"][0]["shift_head"]["kernels"][last][...]
    assert float(jnp.max(jnp.abs(head_grad))) > 0  # still trainable


def test_bone_pose_features_reference_values():
    transforms = _random_transforms(9, num_joints=3)
    rot, trans = np.asarray(transforms[:, :3, :3], np.float64), np.asarray(transforms[:, :3, 3], np.float64)
    eye = np.eye(3)
    matrix = np.asarray(bone_pose_features(transforms, "matrix"))
    np.testing.assert_allclose(matrix, np.concatenate([(rot - eye).reshape(3, 9), trans], -1), atol=1e-6)
    six = np.asarray(bone_pose_features(transforms, "6d", use_translation=False))
    np.testing.assert_allclose(six, np.concatenate([rot[:, :, 0] - eye[:, 0], rot[:, :, 1] - eye[:, 1]], -1), atol=1e-6)
    only_t = np.asarray(bone_pose_features(transforms, "6d", use_rotation=False))
    np.testing.assert_allclose(only_t, trans, atol=1e-7)
    axis_angle = np.asarray(bone_pose_features(transforms, "axis_angle", use_translation=False))
    # angle from the trace: cos θ = (tr R − 1) / 2
    angles = np.arccos(np.clip((np.trace(rot, axis1=1, axis2=2) - 1) / 2, -1, 1))
    np.testing.assert_allclose(np.linalg.norm(axis_angle, axis=-1), angles, atol=1e-5)
    quat = np.asarray(bone_pose_features(transforms, "quaternion", use_translation=False)) + np.array([1.0, 0, 0, 0])
    np.testing.assert_allclose(quat[:, 0], np.cos(angles / 2), atol=1e-5)


def test_per_bone_encoder_encodes_bones_independently():
    encoder = BonePoseEncoder(4, 5, rngs=nnx.Rngs(0))
    transforms = _random_transforms(10, num_joints=4)
    encode = _jitted(encoder, lambda model, b: model(b))
    codes = encode(transforms)
    new_codes = encode(transforms.at[2].set(jnp.eye(4)))
    np.testing.assert_array_equal(np.asarray(new_codes[2]), 0.0)
    others = jnp.asarray([0, 1, 3])
    np.testing.assert_array_equal(np.asarray(new_codes[others]), np.asarray(codes[others]))


def test_fourier_features_formula():
    x = jnp.asarray([[0.25, -0.5]])
    f = np.asarray(fourier_features(x, 2))
    xs = np.array([0.25, -0.5])
    angles = np.concatenate([xs * np.pi, xs * 2 * np.pi])  # ordered (coordinate, frequency)
    angles = np.array([0.25 * np.pi, 0.25 * 2 * np.pi, -0.5 * np.pi, -0.5 * 2 * np.pi])
    np.testing.assert_allclose(f[0], np.concatenate([xs, np.sin(angles), np.cos(angles)]), atol=1e-6)


def test_pin_under_jit_and_grad(points, pose):
    pin = _make_pin()
    graphdef, state = nnx.split(pin)

    @jax.jit
    def loss(state, x, transforms):
        model = nnx.merge(graphdef, state)
        y, log_det = model.forward_and_log_det(x, transforms)
        return jnp.mean(jnp.sum((y - 0.5 * x) ** 2, axis=-1)) + jnp.mean(log_det**2)

    value, grads = jax.jit(jax.value_and_grad(loss))(state, points, pose)
    leaves = jax.tree.leaves(grads)
    assert np.isfinite(float(value)) and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.max(jnp.abs(grads["encoder"]["kernel_in"][...]))) > 0


def test_bad_inputs_raise(pin, points, pose):
    with pytest.raises(ValueError, match=r"\(24, 4, 4\)"):
        pin.forward(points, pose[:10])
    with pytest.raises(ValueError, match="NaN"):
        pin.forward(points, pose.at[0, 0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        pin.forward(points[:, :2], pose)
    with pytest.raises(ValueError, match="coupling"):
        PINConfig(coupling="spline")
    with pytest.raises(ValueError, match="kept_dims"):
        PINConfig(kept_dims=3)
    with pytest.raises(ValueError, match="both be False"):
        PINConfig(use_rotation=False, use_translation=False)
    with pytest.raises(ValueError, match="bone_rot_encoding"):
        dataclasses.replace(PINConfig(), bone_rot_encoding="euler")
    with pytest.raises(ValueError, match="bone_code_mode"):
        PINConfig(bone_code_mode="attention")
    with pytest.raises(ValueError, match="root_relative"):
        PINConfig(root_relative="yes")
    with pytest.raises(ValueError, match="literal"):
        _make_pin(bone_code_mode="literal").layers[0].spatial_bone_weights(points[:, :2])
    assert isinstance(pin.layers[0], CouplingLayer)


def test_literal_mode_is_the_concatenated_codes_times_a_wide_embedding(points, pose):
    """bone_code_mode="literal": φ(x_a) is J·k wide, E = [e_0, …, e_{J−1}], h = φ ⊙ E (or [φ, E])."""
    k, num_joints = TINY["pose_code_dim"], 24
    for combine, head_in in (("multiply", num_joints * k), ("concat", 2 * num_joints * k)):
        pin = _make_pin(bone_code_mode="literal", pose_combine=combine, amplify=3.0)
        layer = pin.layers[0]
        assert layer.bone_logits is None
        assert layer.shift_head.kernels[0][...].shape[0] == head_in
        assert layer.log_scale_head.kernels[0][...].shape[0] == head_in
        codes = pin.encode_pose(pose)
        x_kept = points[:, list(layer.kept)]
        phi = layer.embedding(x_kept)
        assert phi.shape == (points.shape[0], num_joints * k)
        flat = np.asarray(codes).reshape(-1)  # bone-major: E[b·k + i] = e_b[i]
        np.testing.assert_array_equal(flat[3 * k : 4 * k], np.asarray(codes[3]))
        if combine == "multiply":
            h = phi * flat[None]
        else:
            h = jnp.concatenate([phi, jnp.broadcast_to(flat, phi.shape)], axis=-1)
        log_scale, shift = layer.conditioner(x_kept, codes)
        np.testing.assert_allclose(shift, layer.shift_head(h), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(log_scale, jnp.tanh(layer.log_scale_head(h)), rtol=1e-5, atol=1e-6)
        # every bone's code reaches every point: changing one bone's code changes the shift everywhere
        moved = layer.conditioner(x_kept, codes.at[7].add(0.5))[1]
        assert float(jnp.min(jnp.max(jnp.abs(moved - shift), axis=-1))) > 0


def _random_rigid(seed: int, dtype=np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.eye(4, dtype=dtype)
    m[:3, :3] = np.asarray(axis_angle_to_matrix(jnp.asarray(rng.normal(size=3) * 1.5, dtype)))
    m[:3, 3] = rng.normal(size=3) * 0.5
    return m


def test_root_relative_transforms_reference():
    with jax.enable_x64(True):
        transforms = np.asarray(_random_transforms(11, dtype=np.float64))
        got = np.asarray(root_relative_transforms(jnp.asarray(transforms)))
        np.testing.assert_allclose(got, np.linalg.inv(transforms[0])[None] @ transforms, atol=1e-12)
        np.testing.assert_array_equal(got[0], np.eye(4))
        np.testing.assert_array_equal(np.asarray(root_relative_transforms(_identity(dtype=jnp.float64))), np.eye(4)[None].repeat(24, 0))


@pytest.mark.parametrize("mode", BONE_CODE_MODES)
def test_root_relative_codes_are_invariant_to_a_global_rigid_transform(mode):
    """root_relative=True: codes of (M B_b)_b equal those of (B_b)_b for any rigid M; the root's code is zero."""
    with jax.enable_x64(True):
        transforms = _random_transforms(12, angle=0.6, shift=0.2, dtype=np.float64)
        relative = _make_pin(dtype=jnp.float64, bone_code_mode=mode, root_relative=True)
        absolute = _make_pin(dtype=jnp.float64, bone_code_mode=mode)
        encode_relative = _jitted(relative, lambda model, b: model.encode_pose(b))
        encode_absolute = _jitted(absolute, lambda model, b: model.encode_pose(b))
        codes = np.asarray(encode_relative(transforms))
        assert np.abs(codes).max() > 1e-2
        np.testing.assert_array_equal(codes[0], 0.0)
        np.testing.assert_array_equal(np.asarray(encode_relative(_identity(dtype=jnp.float64))), 0.0)
        for seed in (13, 14):
            moved = jnp.asarray(_random_rigid(seed))[None] @ transforms
            np.testing.assert_allclose(np.asarray(encode_relative(moved)), codes, atol=1e-12, rtol=0)
            # without root_relative the global transform does change the codes
            assert np.abs(np.asarray(encode_absolute(moved)) - np.asarray(encode_absolute(transforms))).max() > 1e-2
    # float32 too, to rounding
    transforms32 = _random_transforms(12, angle=0.6, shift=0.2)
    pin32 = _make_pin(root_relative=True)
    moved32 = jnp.asarray(_random_rigid(13, np.float32))[None] @ transforms32
    np.testing.assert_allclose(pin32.encode_pose(moved32), pin32.encode_pose(transforms32), atol=2e-5, rtol=0)
    x = jnp.asarray(np.random.default_rng(15).uniform(-0.9, 0.9, (16, 3)), jnp.float32)
    np.testing.assert_allclose(pin32.forward(x, moved32), pin32.forward(x, transforms32), atol=2e-5, rtol=0)


@pytest.mark.parametrize("mode", BONE_CODE_MODES)
def test_six_layer_pin_round_trip_float32(mode):
    """Six alternating coupling layers, random (not zero-initialised) heads, random bone rotations:
    inverse(forward(x)) = x within 1e-5 m on points of a 2 m box, float32."""
    config = PINConfig(**{**TINY, "n_layers": 6, "bone_code_mode": mode})
    kept = config.kept_coordinates()
    changed = [tuple(sorted(set(range(3)) - set(k))) for k in kept]
    assert all(changed[i] != changed[i + 1] for i in range(5))  # consecutive splits alternate
    assert sorted(c for (c,) in changed) == [0, 0, 1, 1, 2, 2]  # each coordinate transformed twice
    pin = PIN(rngs=nnx.Rngs(21), config=config)
    assert len(pin.layers) == 6 and tuple(layer.kept for layer in pin.layers) == kept
    x = jnp.asarray(np.random.default_rng(22).uniform(-1.0, 1.0, (256, 3)), jnp.float32)
    out = _jitted(pin, _round_trip_outputs)(x, _random_transforms(23, angle=1.0, shift=0.2))
    assert float(jnp.max(jnp.abs(out["y"] - x))) > 1e-2  # a real deformation
    np.testing.assert_allclose(np.asarray(out["x_back"]), np.asarray(x), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(out["inverse_log_det"]), -np.asarray(out["log_det"]), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["y_rest"]), np.asarray(x))
