"""`BodyModel` / `forward`: NumPy float64 LBS reference, exact rest pose, equivariance, gradients, npz files."""

import dataclasses
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from jaxpose.bodies import SMPL_JOINT_NAMES, SMPL_PARENTS, BodyModel, forward, load_body_npz, save_body_npz
from jaxpose.bodies.default import default_body, default_body_path

# A small non-trivial tree: a branching root, a chain, and joints after a sibling's subtree.
PARENTS = (-1, 0, 1, 0, 3, 4, 1)
NUM_V, NUM_K = 30, 4


def make_body(rng, num_posedirs: str = "full", dtype=np.float32) -> BodyModel:
    num_joints = len(PARENTS)
    weights = rng.random((NUM_V, num_joints)) ** 3
    weights /= weights.sum(axis=1, keepdims=True)
    posedirs = (
        rng.normal(scale=0.01, size=(NUM_V, 3, 9 * (num_joints - 1))) if num_posedirs == "full" else np.zeros((NUM_V, 3, 0))
    )
    regressor = rng.random((num_joints, NUM_V))
    regressor /= regressor.sum(axis=1, keepdims=True)
    return BodyModel.from_arrays(
        v_template=rng.normal(size=(NUM_V, 3)).astype(dtype),
        shapedirs=rng.normal(scale=0.1, size=(NUM_V, 3, NUM_K)).astype(dtype),
        posedirs=posedirs.astype(dtype),
        weights=weights.astype(dtype),
        faces=rng.integers(0, NUM_V, size=(20, 3)),
        parents=PARENTS,
        j_template=rng.normal(size=(num_joints, 3)).astype(dtype),
        j_shapedirs=rng.normal(scale=0.1, size=(num_joints, 3, NUM_K)).astype(dtype),
        j_regressor=regressor.astype(dtype),
        extras={"part_ids": rng.integers(0, 5, size=NUM_V).astype(np.int8)},
        meta='{"made": "by the test"}',
    )


def lbs_reference(body: BodyModel, betas, pose, transl):
    """Textbook SMPL LBS in float64 NumPy, written independently of jaxpose.bodies.model.

    Chains homogeneous transforms G_j = G_parent @ [R_j | J_j - J_parent], removes the rest joint
    (A_j = G_j - [0 | G_j[:3, :3] J_j]) and blends A_j over the posed-corrected rest vertices.
    """
    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    betas, pose, transl = f64(betas), f64(pose), f64(transl)
    v_shaped = f64(body.v_template) + f64(body.shapedirs) @ betas
    joints = f64(body.j_template) + f64(body.j_shapedirs) @ betas
    rots = Rotation.from_rotvec(pose).as_matrix()
    if body.posedirs.shape[-1]:
        v_shaped = v_shaped + f64(body.posedirs) @ (rots[1:] - np.eye(3)).reshape(-1)
    num_joints = len(body.parents)
    world = np.zeros((num_joints, 4, 4))
    for j, p in enumerate(body.parents):
        local = np.eye(4)
        local[:3, :3] = rots[j]
        local[:3, 3] = joints[j] - (joints[p] if p >= 0 else 0.0)
        world[j] = local if p < 0 else world[p] @ local
    skin = world.copy()
    skin[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], joints)
    blended = np.einsum("vj,jab->vab", f64(body.weights), skin)
    homo = np.concatenate([v_shaped, np.ones((len(v_shaped), 1))], axis=1)
    vertices = np.einsum("vab,vb->va", blended, homo)[:, :3] + transl
    world[:, :3, 3] += transl
    return vertices, world[:, :3, 3], world


@pytest.fixture(scope="module")
def body():
    return make_body(np.random.default_rng(1))


def _random_inputs(rng, n=None, scale=0.8):
    shape = () if n is None else (n,)
    return (
        rng.normal(size=shape + (NUM_K,)),
        rng.normal(scale=scale, size=shape + (len(PARENTS), 3)),
        rng.normal(scale=0.5, size=shape + (3,)),
    )


@pytest.mark.parametrize("num_posedirs", ["full", "none"])
def test_forward_matches_numpy_float64_reference(num_posedirs):
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        body = make_body(rng, num_posedirs, dtype=np.float64)
        assert body.num_pose_correctives == (9 * (len(PARENTS) - 1) if num_posedirs == "full" else 0)
        betas, pose, transl = _random_inputs(rng, n=3)
        out = forward(body, jnp.asarray(betas), jnp.asarray(pose), jnp.asarray(transl))
        for b in range(3):
            verts, joints, world = lbs_reference(body, betas[b], pose[b], transl[b])
            np.testing.assert_allclose(out.vertices[b], verts, rtol=0, atol=1e-12)
            np.testing.assert_allclose(out.joints[b], joints, rtol=0, atol=1e-12)
            np.testing.assert_allclose(out.transforms[b], world, rtol=0, atol=1e-12)
        # Rotation-matrix poses give the same result as axis-angle ones.
        mats = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(pose.shape + (3,))
        out_m = forward(body, jnp.asarray(betas), jnp.asarray(mats), jnp.asarray(transl))
        np.testing.assert_allclose(out_m.vertices, out.vertices, atol=1e-12)


def test_float32_forward_close_to_reference(body):
    rng = np.random.default_rng(3)
    betas, pose, transl = _random_inputs(rng)
    out = forward(body, jnp.asarray(betas, jnp.float32), jnp.asarray(pose, jnp.float32), jnp.asarray(transl, jnp.float32))
    assert out.vertices.dtype == jnp.float32
    verts, joints, _ = lbs_reference(body, betas.astype(np.float32), pose.astype(np.float32), transl.astype(np.float32))
    np.testing.assert_allclose(out.vertices, verts, atol=2e-5)
    np.testing.assert_allclose(out.joints, joints, atol=2e-5)


def test_rest_pose_is_bit_exact(body):
    out = forward(body, jnp.zeros(NUM_K), jnp.zeros((len(PARENTS), 3)))
    np.testing.assert_array_equal(np.asarray(out.vertices), body.v_template)
    np.testing.assert_array_equal(np.asarray(out.joints), body.j_template)
    np.testing.assert_array_equal(np.asarray(out.transforms[:, :3, :3]), np.broadcast_to(np.eye(3), (len(PARENTS), 3, 3)))
    # Zero pose with betas returns the shaped rest mesh (up to float32 rounding of the einsum).
    betas = np.random.default_rng(4).normal(size=NUM_K).astype(np.float32)
    shaped = forward(body, jnp.asarray(betas), jnp.zeros((len(PARENTS), 3)))
    np.testing.assert_allclose(shaped.vertices, body.v_template + body.shapedirs @ betas, atol=1e-6)


@pytest.fixture(scope="module", params=["low", "full"])
def shipped_body(request):
    try:
        default_body_path(request.param)
    except FileNotFoundError as exc:
        pytest.skip(f"shipped default body {request.param!r} not present yet ({exc}); it is generated by convert_anny")
    return default_body(request.param)


def test_shipped_body_rest_pose_exact_and_weights_normalised(shipped_body):
    body = shipped_body
    assert body.num_joints == 24 and body.joint_names == SMPL_JOINT_NAMES and body.parents == SMPL_PARENTS
    out = forward(body, jnp.zeros(body.num_betas), jnp.zeros((24, 3)))
    np.testing.assert_array_equal(np.asarray(out.vertices), body.v_template)
    np.testing.assert_array_equal(np.asarray(out.joints), body.j_template)
    np.testing.assert_allclose(body.weights.sum(axis=1), 1.0, atol=1e-5)
    assert body.weights.min() >= 0.0


FOREARM_JOINTS = (18, 20, 22)  # left elbow, wrist, hand


def test_shipped_body_elbow_bend_moves_only_the_forearm(shipped_body):
    body = shipped_body
    pose = np.zeros((24, 3), np.float32)
    pose[18, 1] = -np.pi / 2  # left elbow flexion is negative y
    out = forward(body, jnp.zeros(body.num_betas), jnp.asarray(pose))
    moved = np.linalg.norm(np.asarray(out.vertices) - body.v_template, axis=1)
    forearm_mass = body.weights[:, list(FOREARM_JOINTS)].sum(axis=1)
    # Vertices without forearm weight do not move at all; the forearm proper moves a lot.
    np.testing.assert_array_equal(moved[forearm_mass == 0], 0.0)
    # (Points of the forearm further than 5 cm from the elbow along the arm travel several cm.)
    distal = (forearm_mass > 0.9) & (body.v_template[:, 0] > body.j_template[18, 0] + 0.05)
    assert distal.sum() > 0.02 * body.num_vertices
    assert np.all(moved[distal] > 0.03)
    # Only the descendants of the elbow move, and the forearm swings to the front (+z).
    joints = np.asarray(out.joints)
    joint_moved = np.linalg.norm(joints - body.j_template, axis=1) > 1e-6
    assert set(np.flatnonzero(joint_moved)) == {20, 22}
    forearm = joints[20] - joints[18]
    rest_forearm = body.j_template[20] - body.j_template[18]
    assert forearm[2] > 0.9 * np.linalg.norm(rest_forearm) and abs(forearm[0]) < 0.1 * np.linalg.norm(rest_forearm)
    np.testing.assert_allclose(np.linalg.norm(forearm), np.linalg.norm(rest_forearm), rtol=1e-5)


def _compose(outer, inner):
    return Rotation.from_matrix(Rotation.from_rotvec(outer).as_matrix() @ Rotation.from_rotvec(inner).as_matrix()).as_rotvec()


def _exact_float64(body):
    """Float64 copy whose weight rows sum to 1 to float64 precision (float32 rows are off by ~1e-7;
    forward blends (T_j - I) so that the rest pose is bit-exact, which leaves that residue unrotated)."""
    b64 = body.astype(np.float64)
    return dataclasses.replace(b64, weights=b64.weights / b64.weights.sum(axis=1, keepdims=True))


def test_root_rotation_rotates_everything_about_the_root_joint(body):
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        b64 = _exact_float64(body)
        betas, pose, _ = _random_inputs(rng)
        spin = np.array([0.4, -1.2, 0.7])
        rotated = pose.copy()
        rotated[0] = _compose(spin, pose[0])
        base = forward(b64, jnp.asarray(betas), jnp.asarray(pose))
        turned = forward(b64, jnp.asarray(betas), jnp.asarray(rotated))
        root = np.asarray(base.joints[0])
        rmat = Rotation.from_rotvec(spin).as_matrix()
        np.testing.assert_allclose(turned.vertices, (np.asarray(base.vertices) - root) @ rmat.T + root, atol=1e-12)
        np.testing.assert_allclose(turned.joints, (np.asarray(base.joints) - root) @ rmat.T + root, atol=1e-12)
        # Translation is equivariant too.
        shift = np.array([0.3, -2.0, 1.5])
        moved = forward(b64, jnp.asarray(betas), jnp.asarray(pose), jnp.asarray(shift))
        np.testing.assert_allclose(moved.vertices, np.asarray(base.vertices) + shift, atol=1e-12)


def test_jit_grad_vmap_and_broadcasting(body):
    rng = np.random.default_rng(6)
    betas, pose, transl = (jnp.asarray(x, jnp.float32) for x in _random_inputs(rng, n=3))
    jitted = jax.jit(forward)
    out = jitted(body, betas, pose, transl)
    ref = forward(body, betas, pose, transl)
    np.testing.assert_allclose(out.vertices, ref.vertices, atol=1e-5)

    loss = lambda b, p, t: jnp.sum(forward(body, b, p, t).vertices ** 2)  # noqa: E731
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(betas, pose, transl)
    assert all(np.all(np.isfinite(g)) and g.shape == x.shape for g, x in zip(grads, (betas, pose, transl)))

    mapped = jax.vmap(lambda b, p, t: forward(body, b, p, t).vertices)(betas, pose, transl)
    np.testing.assert_allclose(mapped, ref.vertices, atol=1e-5)

    # Leading dimensions broadcast: betas (2, 1, K), pose (3, J, 3), transl (3,) -> batch (2, 3).
    betas2 = jnp.asarray(rng.normal(size=(2, 1, NUM_K)), jnp.float32)
    out2 = forward(body, betas2, pose, transl[0])
    assert out2.vertices.shape == (2, 3, NUM_V, 3) and out2.transforms.shape == (2, 3, len(PARENTS), 4, 4)
    single = forward(body, betas2[1, 0], pose[2], transl[0])
    np.testing.assert_allclose(out2.vertices[1, 2], single.vertices, atol=1e-6)
    # Fewer betas than the model has: the missing ones are zero.
    short = forward(body, betas[0, :2], pose[0])
    padded = forward(body, jnp.concatenate([betas[0, :2], jnp.zeros(NUM_K - 2)]), pose[0])
    np.testing.assert_array_equal(short.vertices, padded.vertices)


def test_check_grads_x64(body):
    rng = np.random.default_rng(7)
    with jax.enable_x64(True):
        b64 = body.astype(np.float64)
        betas, pose, transl = (jnp.asarray(x) for x in _random_inputs(rng))
        weights = jnp.asarray(rng.normal(size=(NUM_V, 3)))

        def scalar(b, p, t):
            out = forward(b64, b, p, t)
            return jnp.sum(out.vertices * weights) + jnp.sum(out.joints**2)

        check_grads(scalar, (betas, pose, transl), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
        # At the rest pose (axis-angle exactly 0) the gradient is finite and correct too.
        check_grads(lambda p: scalar(betas, p, transl), (jnp.zeros_like(pose),), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_wrong_shapes_raise_clear_errors(body):
    j = len(PARENTS)
    with pytest.raises(ValueError, match="pose must have shape"):
        forward(body, jnp.zeros(NUM_K), jnp.zeros((j + 1, 3)))
    with pytest.raises(ValueError, match="betas"):
        forward(body, jnp.zeros(NUM_K + 1), jnp.zeros((j, 3)))
    with pytest.raises(ValueError, match="betas"):
        forward(body, jnp.zeros(()), jnp.zeros((j, 3)))
    with pytest.raises(ValueError, match="transl"):
        forward(body, jnp.zeros(NUM_K), jnp.zeros((j, 3)), jnp.zeros(2))
    with pytest.raises(ValueError):
        forward(body, jnp.zeros((2, NUM_K)), jnp.zeros((3, j, 3)))  # batch shapes (2,) vs (3,) do not broadcast


def _arrays(body):
    return dict(
        v_template=body.v_template, shapedirs=body.shapedirs, posedirs=body.posedirs, weights=body.weights,
        faces=body.faces, parents=body.parents, j_template=body.j_template, j_shapedirs=body.j_shapedirs,
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(v_template=np.where(np.arange(NUM_V)[:, None] == 3, np.nan, a["v_template"])), "v_template contains NaN"),
        (lambda a: a.update(faces=np.full((2, 3), NUM_V)), "face indices"),
        (lambda a: a.update(weights=a["weights"] * 1.1), "sum to 1"),
        (lambda a: a.update(parents=(-1, 0, 1, 5, 4, 3, 1)), "topologically ordered"),
        (lambda a: a.update(parents=(0, 0, 1, 0, 3, 4, 1)), "root joint's parent"),
        (lambda a: a.update(posedirs=np.zeros((NUM_V, 3, 7))), "posedirs"),
        (lambda a: a.update(shapedirs=np.zeros((NUM_V, 2, 4))), "shapedirs"),
        (lambda a: a.update(j_shapedirs=np.zeros((3, 3, NUM_K))), "j_shapedirs"),
        (lambda a: a.update(j_template=None, j_shapedirs=None), "j_regressor"),
    ],
)
def test_from_arrays_validation(body, change, message):
    arrays = _arrays(body)
    change(arrays)
    with pytest.raises(ValueError, match=message):
        BodyModel.from_arrays(**arrays, source="test body")


def test_from_arrays_accepts_smpl_root_parent_and_flat_posedirs(body):
    arrays = _arrays(body)
    arrays["parents"] = (2**32 - 1,) + PARENTS[1:]
    arrays["posedirs"] = np.asarray(body.posedirs).reshape(NUM_V * 3, -1)
    rebuilt = BodyModel.from_arrays(**arrays)
    assert rebuilt.parents == PARENTS
    np.testing.assert_array_equal(rebuilt.posedirs, body.posedirs)


def test_npz_round_trip_is_exact(body, tmp_path):
    path = tmp_path / "body.npz"
    save_body_npz(body, path)
    loaded = load_body_npz(path)
    for field in dataclasses.fields(BodyModel):
        a, b = getattr(body, field.name), getattr(loaded, field.name)
        if field.name == "extras":
            assert a.keys() == b.keys()
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
                assert a[key].dtype == b[key].dtype
        elif isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype, field.name
        else:
            assert a == b, field.name
    # Saving again gives the same arrays (a fixed point), and num_betas slices on load.
    assert load_body_npz(path, num_betas=2).num_betas == 2


def test_corrupt_or_incomplete_npz_raises_naming_the_file(body, tmp_path):
    good = tmp_path / "good.npz"
    save_body_npz(body, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        load_body_npz(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive" * 10)
    with pytest.raises(ValueError, match="garbage.npz"):
        load_body_npz(garbage)
    # Flip bytes inside a compressed member: zlib or CRC error, still a ValueError naming the file.
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo("v_template.npy")
    damaged = bytearray(data)
    start = info.header_offset + 30 + len(info.filename) + 40
    damaged[start : start + 64] = bytes(64)
    bad_member = tmp_path / "bad_member.npz"
    bad_member.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="bad_member.npz"):
        load_body_npz(bad_member)
    missing = tmp_path / "missing_keys.npz"
    np.savez(missing, v_template=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"missing_keys.npz.*missing required arrays"):
        load_body_npz(missing)
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_body_npz(tmp_path / "nowhere.npz")
