"""Procedural poses (NPT and `wide` samplers, mirroring, motion sequences) and the pose prior."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation
from scipy.stats import truncnorm

from jaxpose.bodies import SMPL_JOINT_NAMES, SMPL_LEFT_RIGHT_PAIRS
from jaxpose.bodies.poses import (
    JOINT_LIMITS_DEG,
    MOTION_KINDS,
    NPT_STRAIGHT_DEG,
    NPT_WIDE_DEG,
    mirror_pose,
    motion_sequence,
    npt_pose,
    sample_pose,
    symmetrize_pose,
)
from jaxpose.bodies.prior import PriorWeights, angle_prior, body_pose_l2, limit_hinge, pose_prior

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}
LO, HI = np.deg2rad(JOINT_LIMITS_DEG[..., 0]), np.deg2rad(JOINT_LIMITS_DEG[..., 1])


def _inside(poses, lo, hi, tol=1e-12):
    return np.all(poses >= lo - tol) and np.all(poses <= hi + tol)


# ------------------------------------------------------------------------------------------ NPT


@pytest.mark.parametrize("indices, table", [(range(0, 400, 3), NPT_WIDE_DEG), (range(400, 800, 3), NPT_STRAIGHT_DEG)])
def test_npt_pose_ranges_and_structure(indices, table):
    poses = np.rad2deg(np.stack([npt_pose(j) for j in indices]))
    assert poses.shape == (len(indices), 24, 3)
    for name, ranges in table.items():
        lo, hi = np.asarray(ranges, float).T
        assert _inside(poses[:, J[name]], lo, hi, tol=1e-9), name
    # Collar and shoulder share a draw per side, (0, y, z) with y, z in +-30 degrees.
    for side in ("left", "right"):
        np.testing.assert_array_equal(poses[:, J[f"{side}_collar"]], poses[:, J[f"{side}_shoulder"]])
        assert np.all(poses[:, J[f"{side}_collar"], 0] == 0) and _inside(poses[:, J[f"{side}_collar"], 1:], -30, 30)
    assert not np.allclose(poses[:, J["left_shoulder"]], poses[:, J["right_shoulder"]])
    # One shared value on all neck/head components, another on all spine components.
    head = poses[:, [J["neck"], J["head"]]].reshape(len(indices), -1)
    spine = poses[:, [J["spine1"], J["spine2"], J["spine3"]]].reshape(len(indices), -1)
    assert np.all(head == head[:, :1]) and np.all(spine == spine[:, :1]) and _inside(head, -1, 1) and _inside(spine, -1, 1)
    assert not np.allclose(head[:, 0], spine[:, 0])
    assert _inside(poses[:, 0], -2, 2)
    np.testing.assert_array_equal(poses[:, [J["left_foot"], J["right_foot"]]], 0.0)
    # The ranges are actually covered (wide: deep hip flexion and knee bends; straight: nearly straight legs).
    knee_max = poses[:, J["left_knee"], 0].max()
    assert (knee_max > 80) if table is NPT_WIDE_DEG else (5 < knee_max <= 10)
    assert poses[:, J["left_hip"], 0].min() < -75


def test_npt_pose_is_deterministic_per_index():
    np.testing.assert_array_equal(npt_pose(17), npt_pose(17))
    np.testing.assert_array_equal(npt_pose(np.int64(17)), npt_pose(17))
    assert not np.allclose(npt_pose(17), npt_pose(18))
    assert npt_pose(17).dtype == np.float64
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="pose_index"):
            npt_pose(bad)


# ----------------------------------------------------------------------------------------- wide


def test_wide_samples_respect_limits_and_are_deterministic():
    poses = sample_pose(0, "wide", num_samples=2000)
    assert poses.shape == (2000, 24, 3) and poses.dtype == np.float64
    assert _inside(poses, LO, HI)
    np.testing.assert_array_equal(poses, sample_pose(0, num_samples=2000))
    np.testing.assert_array_equal(sample_pose(np.random.default_rng(3)), sample_pose(3))
    assert not np.allclose(sample_pose(1), sample_pose(2))
    # Fixed components (knee y/z, elbow x/z, root without yaw, ...) are exactly zero.
    fixed = JOINT_LIMITS_DEG[..., 0] == JOINT_LIMITS_DEG[..., 1]
    np.testing.assert_array_equal(poses[:, fixed], 0.0)
    # Each free component reaches close to both ends of its range.
    free = ~fixed
    span = (poses.max(axis=0) - poses.min(axis=0))[free] / (HI - LO)[free]
    assert span.min() > 0.9


def test_wide_marginal_is_the_truncated_gaussian_uniform_mixture():
    """Component means match 0.7 * truncated-normal mean + 0.3 * uniform mean (sigma = range / 4)."""
    poses = np.rad2deg(sample_pose(5, num_samples=20000))
    for joint, axis in ((J["left_knee"], 0), (J["left_hip"], 0), (J["left_shoulder"], 2), (J["spine1"], 0)):
        lo, hi = JOINT_LIMITS_DEG[joint, axis]
        sigma = (hi - lo) / 4
        gauss = truncnorm(lo / sigma, hi / sigma, loc=0.0, scale=sigma)
        mean = 0.7 * gauss.mean() + 0.3 * (lo + hi) / 2
        second = 0.7 * (gauss.var() + gauss.mean() ** 2) + 0.3 * (lo**2 + lo * hi + hi**2) / 3
        std = np.sqrt(second - mean**2)
        values = poses[:, joint, axis]
        assert abs(values.mean() - mean) < 4 * std / np.sqrt(len(values)), (joint, axis)
        assert abs(values.std() - std) < 0.03 * std, (joint, axis)
    # uniform_prob = 1 gives a plain uniform: mean at the centre of the range.
    uniform = np.rad2deg(sample_pose(6, num_samples=20000, uniform_prob=1.0))[:, J["left_knee"], 0]
    assert abs(uniform.mean() - 65.0) < 4 * 130 / np.sqrt(12) / np.sqrt(len(uniform))


def test_root_yaw():
    poses = sample_pose(7, num_samples=500, root_yaw_deg=90.0)
    root = poses[:, 0]
    np.testing.assert_array_equal(root[:, [0, 2]], 0.0)
    assert np.abs(root[:, 1]).max() <= np.pi / 2 and np.abs(root[:, 1]).max() > 1.4
    npt_root = sample_pose(7, "npt", num_samples=50, root_yaw_deg=30.0)[:, 0]
    # NPT's own +-2 degrees composed with the yaw: the rotation about y dominates.
    assert np.abs(npt_root[:, 1]).max() > np.deg2rad(20) and np.abs(npt_root[:, [0, 2]]).max() < np.deg2rad(3)


def _mirror_matrix(rotvec):
    reflect = np.diag([-1.0, 1.0, 1.0])
    return reflect @ Rotation.from_rotvec(rotvec).as_matrix() @ reflect


def test_mirror_pose_is_the_reflection_through_the_mid_plane():
    pose = sample_pose(8, root_yaw_deg=40)
    mirrored = mirror_pose(pose)
    np.testing.assert_array_equal(mirror_pose(mirrored), pose)  # involution
    for left, right in SMPL_LEFT_RIGHT_PAIRS:
        # Conjugating a rotation by the x -> -x reflection gives the partner joint's rotation.
        np.testing.assert_allclose(Rotation.from_rotvec(mirrored[right]).as_matrix(), _mirror_matrix(pose[left]), atol=1e-12)
        np.testing.assert_allclose(Rotation.from_rotvec(mirrored[left]).as_matrix(), _mirror_matrix(pose[right]), atol=1e-12)
    np.testing.assert_allclose(Rotation.from_rotvec(mirrored[0]).as_matrix(), _mirror_matrix(pose[0]), atol=1e-12)
    # The `wide` box is itself mirror-symmetric: the mirror of a sample is a sample of the box.
    assert _inside(mirror_pose(sample_pose(9, num_samples=500)), LO, HI)
    with pytest.raises(ValueError, match="24, 3"):
        mirror_pose(np.zeros((23, 3)))


@pytest.mark.parametrize("preset", ["wide", "npt"])
def test_symmetric_and_mirrored_modes(preset):
    symmetric = sample_pose(10, preset, num_samples=50, mode="symmetric")
    np.testing.assert_allclose(mirror_pose(symmetric), symmetric, atol=0)
    asymmetric = sample_pose(10, preset, num_samples=50, root_yaw_deg=20)
    np.testing.assert_array_equal(sample_pose(10, preset, num_samples=50, mode="mirrored", root_yaw_deg=20), mirror_pose(asymmetric))
    np.testing.assert_array_equal(symmetrize_pose(symmetric), symmetric)
    assert not np.allclose(mirror_pose(asymmetric), asymmetric)


def test_sample_pose_rejects_bad_arguments():
    for kwargs, message in [
        (dict(preset="yoga"), "preset"),
        (dict(mode="sideways"), "mode"),
        (dict(uniform_prob=1.5), "uniform_prob"),
        (dict(root_yaw_deg=-1.0), "root_yaw_deg"),
        (dict(num_samples=-2), "num_samples"),
        (dict(preset="npt", npt_sampler="crooked"), "npt_sampler"),
    ]:
        with pytest.raises(ValueError, match=message):
            sample_pose(0, **kwargs)
    with pytest.raises(ValueError, match="seed"):
        sample_pose(-3)


# -------------------------------------------------------------------------------------- motions


@pytest.mark.parametrize("kind", MOTION_KINDS)
def test_motion_sequences(kind):
    seq = motion_sequence(kind, 90, seed=3, sequence_id=1)
    assert seq.shape == (90, 24, 3) and np.all(np.isfinite(seq))
    np.testing.assert_array_equal(seq, motion_sequence(kind, 90, seed=3, sequence_id=1))
    assert not np.allclose(seq, motion_sequence(kind, 90, seed=3, sequence_id=2))
    assert not np.allclose(seq, motion_sequence(kind, 90, seed=4, sequence_id=1))
    assert _inside(seq, LO, HI, tol=1e-9)  # every motion stays inside the `wide` limits
    # Smooth: no component jumps more than 12 degrees between frames, and the body does move.
    steps = np.abs(np.diff(seq, axis=0))
    assert steps.max() < np.deg2rad(12.0)
    assert np.ptp(seq, axis=0).max() > np.deg2rad(15.0)


def test_walk_and_squat_semantics():
    walk = np.rad2deg(motion_sequence("walk", 120, seed=0))
    left_hip, right_hip = walk[:, J["left_hip"], 0], walk[:, J["right_hip"], 0]
    assert np.corrcoef(left_hip, right_hip)[0, 1] < -0.99  # legs in antiphase
    assert walk[:, J["left_knee"], 0].min() >= 0 and walk[:, J["left_knee"], 0].max() > 30  # knees only flex
    # The left arm swings forward (shoulder y < 0) while the left leg is behind (hip x > its mean).
    arm_y = walk[:, J["left_shoulder"], 1]
    assert np.corrcoef(arm_y, left_hip)[0, 1] < -0.99
    squat = np.rad2deg(motion_sequence("squat", 120, seed=0))
    deepest = np.argmax(squat[:, J["left_knee"], 0])
    assert squat[deepest, J["left_knee"], 0] > 60 and squat[deepest, J["left_hip"], 0] < -30
    np.testing.assert_allclose(mirror_pose(np.deg2rad(squat)), np.deg2rad(squat), atol=1e-12)  # squats are symmetric


def test_motion_sequence_errors():
    with pytest.raises(ValueError, match="kind"):
        motion_sequence("moonwalk", 10, 0)
    with pytest.raises(ValueError, match="num_frames"):
        motion_sequence("walk", 0, 0)


# ---------------------------------------------------------------------------------------- prior


def _np_angle_prior(pose):
    flat = pose.reshape(pose.shape[:-2] + (72,))
    return np.sum(np.exp(flat[..., [55, 58, 12, 15]] * np.array([1.0, -1.0, -1.0, -1.0])) ** 2, axis=-1)


def test_angle_prior_formula_and_direction():
    poses = sample_pose(11, num_samples=16)
    np.testing.assert_allclose(angle_prior(jnp.asarray(poses, jnp.float32)), _np_angle_prior(poses), rtol=1e-5)
    rest = np.zeros((24, 3))
    assert float(angle_prior(jnp.asarray(rest))) == pytest.approx(4.0)
    # Indices 55/58/12/15 are left/right elbow y and left/right knee x.
    assert [divmod(i, 3) for i in (55, 58, 12, 15)] == [(J["left_elbow"], 1), (J["right_elbow"], 1), (J["left_knee"], 0), (J["right_knee"], 0)]
    for joint, axis, natural in ((J["left_elbow"], 1, -1.0), (J["right_elbow"], 1, 1.0), (J["left_knee"], 0, 1.0), (J["right_knee"], 0, 1.0)):
        bent, hyper = rest.copy(), rest.copy()
        bent[joint, axis], hyper[joint, axis] = natural * 1.0, -natural * 1.0
        assert float(angle_prior(jnp.asarray(hyper))) > float(angle_prior(jnp.asarray(rest))) > float(angle_prior(jnp.asarray(bent)))


def test_limit_hinge_zero_inside_quadratic_outside():
    assert float(limit_hinge(jnp.zeros((24, 3)))) == 0.0
    samples = sample_pose(12, num_samples=2000)
    np.testing.assert_array_equal(limit_hinge(jnp.asarray(samples, jnp.float32)), 0.0)
    np.testing.assert_array_equal(limit_hinge(jnp.asarray(motion_sequence("random_walk", 60, 1), jnp.float32)), 0.0)
    knee_hi = np.deg2rad(130.0)
    for delta in (0.1, 0.2):
        pose = np.zeros((24, 3))
        pose[J["left_knee"], 0] = knee_hi + delta
        pose[J["left_elbow"], 1] = 0.0 + delta  # left elbow y upper limit is 0
        with jax.enable_x64(True):
            assert float(limit_hinge(jnp.asarray(pose))) == pytest.approx(2 * delta**2, rel=1e-12)
    # The root is the global orientation: never penalised.
    pose = np.zeros((24, 3))
    pose[0] = [3.0, -2.0, 1.0]
    assert float(limit_hinge(jnp.asarray(pose))) == 0.0 and float(body_pose_l2(jnp.asarray(pose))) == 0.0


def test_pose_prior_combines_terms_batched_and_differentiable():
    poses = jnp.asarray(sample_pose(13, num_samples=6).reshape(2, 3, 24, 3) * 1.5, jnp.float32)
    weights = PriorWeights(angle=2.0, hinge=3.0, l2=0.5)
    total = pose_prior(poses, weights)
    assert total.shape == (2, 3)
    np.testing.assert_allclose(total, 2.0 * angle_prior(poses) + 3.0 * limit_hinge(poses) + 0.5 * body_pose_l2(poses), rtol=1e-6)
    np.testing.assert_allclose(body_pose_l2(poses), np.sum(np.asarray(poses)[..., 1:, :] ** 2, axis=(-2, -1)), rtol=1e-5)
    assert np.any(np.asarray(limit_hinge(poses)) > 0)  # 1.5x the box leaves it
    grad = jax.jit(jax.grad(lambda p: jnp.sum(pose_prior(p))))(poses)
    assert np.all(np.isfinite(grad))
    rest_grad = jax.grad(lambda p: pose_prior(p))(jnp.zeros((24, 3)))
    assert np.all(np.isfinite(rest_grad))
    # At rest only the angle prior pulls: d/dtheta exp(s theta)^2 = 2 s at theta = 0.
    expected = np.zeros(72)
    expected[[55, 58, 12, 15]] = 2 * PriorWeights().angle * np.array([1.0, -1.0, -1.0, -1.0])
    np.testing.assert_allclose(np.asarray(rest_grad).reshape(-1), expected, rtol=1e-6)
    with jax.enable_x64(True):
        pose64 = jnp.asarray(sample_pose(14) * 1.5)
        check_grads(lambda p: pose_prior(p), (pose64,), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="24, 3"):
        pose_prior(jnp.zeros((23, 3)))
