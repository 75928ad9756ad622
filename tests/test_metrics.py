"""jaxpose.metrics against independent NumPy float64 references, invariances, consistency bounds and errors."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpose.geometry.bbox import bbox_center, center_on_bbox
from jaxpose.geometry.procrustes import apply_similarity_transform, fit_similarity_transform
from jaxpose.metrics import (
    CD_SCALE,
    EMD_SCALE,
    MM_PER_M,
    PMD_SCALE,
    chamfer_distance,
    check_finite,
    emd_exact,
    emd_sinkhorn,
    exact_assignment,
    mpjpe,
    nearest_neighbor_squared_distances,
    occupancy_iou,
    pa_mpjpe,
    pmd,
    pve,
)
from jaxpose.pose_transfer.units import format_pose_transfer_metrics, paper_scaled, pose_transfer_metrics


# ----------------------------------------------------------------------------- NumPy references


def ref_bbox_centred(points):
    points = np.asarray(points, np.float64)
    centre = (points.max(axis=-2, keepdims=True) + points.min(axis=-2, keepdims=True)) / 2
    return points - centre


def ref_pmd(pred, target):
    difference = ref_bbox_centred(pred) - ref_bbox_centred(target)
    return (difference**2).sum(axis=(-2, -1)) / (3 * pred.shape[-2])


def ref_chamfer(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    out = np.empty(a.shape[:-2])
    for index in np.ndindex(*a.shape[:-2]):
        squared = np.array([[np.sum((p - q) ** 2) for q in b[index]] for p in a[index]])
        out[index] = squared.min(axis=1).mean() + squared.min(axis=0).mean()
    return out


def ref_emd_brute_force(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    n = len(a)
    return min(
        sum(math.dist(a[i], b[perm[i]]) for i in range(n)) / n for perm in itertools.permutations(range(n))
    )


def ref_horn_rotation(source, target):
    """Horn's closed-form quaternion solution (an algorithm independent of the SVD one under test)."""
    x = source - source.mean(axis=0)
    y = target - target.mean(axis=0)
    s = x.T @ y  # s[i, j] = sum_k x_ki y_kj
    sxx, sxy, sxz = s[0]
    syx, syy, syz = s[1]
    szx, szy, szz = s[2]
    n = np.array(
        [
            [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
            [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
            [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
            [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
        ]
    )
    w, q0, q1, q2 = np.linalg.eigh(n)[1][:, -1]
    return np.array(
        [
            [w * w + q0 * q0 - q1 * q1 - q2 * q2, 2 * (q0 * q1 - w * q2), 2 * (q0 * q2 + w * q1)],
            [2 * (q0 * q1 + w * q2), w * w - q0 * q0 + q1 * q1 - q2 * q2, 2 * (q1 * q2 - w * q0)],
            [2 * (q0 * q2 - w * q1), 2 * (q1 * q2 + w * q0), w * w - q0 * q0 - q1 * q1 + q2 * q2],
        ]
    )


def ref_pa_mpjpe(pred, target):
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    out = np.empty(pred.shape[:-2])
    for index in np.ndindex(*pred.shape[:-2]):
        x, y = pred[index], target[index]
        rotation = ref_horn_rotation(x, y)
        x0, y0 = x - x.mean(axis=0), y - y.mean(axis=0)
        rotated = x0 @ rotation.T
        scale = np.sum(rotated * y0) / np.sum(x0 * x0)
        aligned = scale * rotated + y.mean(axis=0)
        out[index] = np.linalg.norm(aligned - y, axis=-1).mean()
    return out


def random_rotation(rng):
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


@pytest.fixture(scope="module")
def meshes():
    """A batch (2, 3) of 'body-sized' point sets (metres) and predictions 1 cm off, vertex-wise."""
    rng = np.random.default_rng(7)
    target = rng.uniform([-0.4, -0.9, -0.15], [0.4, 0.9, 0.15], size=(2, 3, 40, 3))
    pred = target + 0.01 * rng.normal(size=target.shape) + rng.normal(size=(2, 3, 1, 3))
    return pred, target


# ----------------------------------------------------------------------------- bbox / Procrustes


def test_bbox_center_and_centring(meshes):
    pred, _ = meshes
    np.testing.assert_allclose(bbox_center(pred), (pred.max(axis=-2) + pred.min(axis=-2)) / 2, rtol=1e-6)
    centred = np.asarray(center_on_bbox(pred))
    np.testing.assert_allclose(centred.max(axis=-2) + centred.min(axis=-2), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(\.\.\., N, D\)"):
        bbox_center(np.zeros(3))


def test_similarity_fit_recovers_known_transform_and_never_reflects():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(30, 3))
    rotation, scale, translation = random_rotation(rng), 1.7, rng.normal(size=3)
    target = scale * source @ rotation.T + translation
    with jax.enable_x64(True):
        fit = fit_similarity_transform(jnp.asarray(source), jnp.asarray(target))
        np.testing.assert_allclose(fit.rotation, rotation, atol=1e-10)
        np.testing.assert_allclose(fit.scale, scale, rtol=1e-10)
        np.testing.assert_allclose(fit.translation, translation, atol=1e-10)
        np.testing.assert_allclose(apply_similarity_transform(fit, jnp.asarray(source)), target, atol=1e-10)
        mirrored = fit_similarity_transform(jnp.asarray(source), jnp.asarray(source * np.array([-1.0, 1, 1])))
        assert np.linalg.det(np.asarray(mirrored.rotation)) == pytest.approx(1.0, abs=1e-10)
    with pytest.raises(ValueError, match=r"\(30, 3\).*\(29, 3\)"):
        fit_similarity_transform(source, target[:29])


# ----------------------------------------------------------------------------- PMD


def test_pmd_matches_reference_float32_and_float64(meshes):
    pred, target = meshes
    expected = ref_pmd(pred, target)
    got = pmd(pred.astype(np.float32), target.astype(np.float32))
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    with jax.enable_x64(True):
        np.testing.assert_allclose(pmd(jnp.asarray(pred), jnp.asarray(target)), expected, rtol=1e-12)


def test_pmd_is_mean_squared_coordinate_error_without_sqrt():
    target = np.array([[0.0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [0.2, 0.7, 0.4]])
    pred = target.copy()
    pred[2, 0] += 0.1  # interior vertex: bounding box unchanged
    with jax.enable_x64(True):
        assert float(pmd(jnp.asarray(pred), jnp.asarray(target))) == pytest.approx(0.01 / 12, rel=1e-12)


def test_pmd_invariant_to_translation_and_jittable(meshes):
    pred, target = meshes
    pred, target = pred.astype(np.float32), target.astype(np.float32)
    shifted = pmd(pred + np.float32(3.0), target - np.array([1.0, 2.0, -5.0], np.float32))
    np.testing.assert_allclose(shifted, pmd(pred, target), rtol=1e-3)
    np.testing.assert_allclose(jax.jit(pmd)(pred, target), pmd(pred, target), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(pmd)(pred, target), pmd(pred, target), rtol=1e-6)


# ----------------------------------------------------------------------------- Chamfer


def test_chamfer_matches_reference_with_unequal_sizes():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(2, 17, 3))
    b = rng.normal(size=(2, 11, 3))
    expected = ref_chamfer(a, b)
    np.testing.assert_allclose(chamfer_distance(a.astype(np.float32), b.astype(np.float32)), expected, rtol=1e-5)
    with jax.enable_x64(True):
        np.testing.assert_allclose(chamfer_distance(jnp.asarray(a), jnp.asarray(b)), expected, rtol=1e-13)
    np.testing.assert_allclose(chamfer_distance(a, b), chamfer_distance(b, a), rtol=1e-6)


def test_chamfer_small_distances_keep_float32_precision(meshes):
    _, target = meshes
    near = target + 1e-3 * np.random.default_rng(3).normal(size=target.shape)
    got = chamfer_distance(near.astype(np.float32) + np.float32(1.0), target.astype(np.float32) + np.float32(1.0))
    np.testing.assert_allclose(got, ref_chamfer(near, target), rtol=1e-3)


@pytest.mark.parametrize("block_size", [1, 7, 16, 100])
def test_blocked_chamfer_equals_dense(block_size):
    rng = np.random.default_rng(4)
    a = rng.normal(size=(2, 37, 3)).astype(np.float32)
    b = rng.normal(size=(2, 23, 3)).astype(np.float32)
    dense = nearest_neighbor_squared_distances(a, b)
    blocked = jax.jit(lambda x, y: nearest_neighbor_squared_distances(x, y, block_size=block_size))(a, b)
    for got, want in zip(blocked, dense):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6)  # XLA may fuse the two paths differently (1 ulp)
    np.testing.assert_allclose(chamfer_distance(a, b, block_size=block_size), chamfer_distance(a, b), rtol=1e-6)


def test_blocked_chamfer_bounds_memory_and_matches_dense_gradient():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(300, 3)).astype(np.float32)
    b = rng.normal(size=(250, 3)).astype(np.float32)
    blocked = jax.jit(lambda x: chamfer_distance(x, b, block_size=32))
    hlo = blocked.lower(a).compile().as_text()
    assert "f32[300,250]" not in hlo and "f32[32,250]" in hlo
    grad_dense = jax.grad(lambda x: chamfer_distance(x, b))(a)
    grad_blocked = jax.grad(lambda x: chamfer_distance(x, b, block_size=32))(a)
    np.testing.assert_allclose(grad_blocked, grad_dense, rtol=1e-5, atol=1e-7)


def test_chamfer_gradients_float64():
    rng = np.random.default_rng(6)
    with jax.enable_x64(True):
        a = jnp.asarray(rng.normal(size=(9, 3)))
        b = jnp.asarray(rng.normal(size=(7, 3)))
        check_grads(lambda x: chamfer_distance(x, b), (a,), order=1, modes=("rev",))


def test_chamfer_and_emd_invariant_to_vertex_permutation():
    rng = np.random.default_rng(8)
    a = rng.normal(size=(30, 3))
    b = a + 0.1 * rng.normal(size=(30, 3))
    perm_a, perm_b = rng.permutation(30), rng.permutation(30)
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            chamfer_distance(jnp.asarray(a[perm_a]), jnp.asarray(b[perm_b])),
            chamfer_distance(jnp.asarray(a), jnp.asarray(b)),
            rtol=1e-13,
        )
    assert emd_exact(a[perm_a], b[perm_b]) == pytest.approx(emd_exact(a, b), rel=1e-12)


# ----------------------------------------------------------------------------- EMD


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_exact_emd_equals_brute_force_over_permutations(n):
    rng = np.random.default_rng(10 + n)
    a, b = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    assert emd_exact(a, b) == pytest.approx(ref_emd_brute_force(a, b), rel=1e-12)
    assignment = exact_assignment(a, b)
    assert sorted(assignment) == list(range(n))


def test_exact_emd_batched_and_identity():
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(2, 3, 5, 3)), rng.normal(size=(2, 3, 5, 3))
    got = emd_exact(a, b)
    assert isinstance(got, np.ndarray) and got.shape == (2, 3) and got.dtype == np.float64
    for index in np.ndindex(2, 3):
        assert got[index] == pytest.approx(ref_emd_brute_force(a[index], b[index]), rel=1e-12)
    assert emd_exact(a[0, 0], a[0, 0][::-1]) == 0.0


@pytest.mark.ott
def test_sinkhorn_emd_approaches_exact_as_epsilon_shrinks():
    rng = np.random.default_rng(12)
    a = rng.normal(size=(16, 3)).astype(np.float32)
    b = rng.normal(size=(16, 3)).astype(np.float32)
    exact = emd_exact(a, b)
    errors = []
    for epsilon in (0.3, 0.1, 0.03):
        value, converged = emd_sinkhorn(a, b, epsilon=epsilon, return_converged=True)
        assert bool(converged)
        errors.append(float(value) - exact)
    # A feasible plan can only cost more than the optimum; the gap shrinks with epsilon.
    assert all(error > -1e-4 for error in errors)
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-2 * exact


@pytest.mark.ott
def test_sinkhorn_emd_online_batched_and_equals_ott_primal_cost():
    from jaxpose._ott import ott

    rng = np.random.default_rng(13)
    a = rng.normal(size=(2, 19, 3)).astype(np.float32)
    b = rng.normal(size=(2, 13, 3)).astype(np.float32)
    dense = emd_sinkhorn(a, b, epsilon=0.05)
    online = emd_sinkhorn(a, b, epsilon=0.05, batch_size=8)
    assert dense.shape == (2,)
    np.testing.assert_allclose(online, dense, rtol=1e-4)
    jitted = jax.jit(lambda x, y, epsilon: emd_sinkhorn(x, y, epsilon=epsilon))(a, b, jnp.float32(0.05))
    np.testing.assert_allclose(jitted, dense, rtol=1e-5)
    geometry = ott.geometry.pointcloud.PointCloud(
        jnp.asarray(a[1]), jnp.asarray(b[1]), cost_fn=ott.geometry.costs.Euclidean(), epsilon=0.05
    )
    output = ott.solvers.linear.sinkhorn.Sinkhorn(threshold=1e-4, max_iterations=5000)(
        ott.problems.linear.linear_problem.LinearProblem(geometry)
    )
    np.testing.assert_allclose(dense[1], output.primal_cost, rtol=1e-4)


# ----------------------------------------------------------------------------- pose-transfer protocol


def test_pose_transfer_metrics_protocol_and_spec_bounds(meshes):
    pred, target = meshes
    metrics = pose_transfer_metrics(pred, target)
    assert set(metrics) == {"pmd", "cd", "emd"}
    np.testing.assert_allclose(metrics["pmd"], ref_pmd(pred, target), rtol=1e-12)
    np.testing.assert_allclose(
        metrics["cd"], ref_chamfer(ref_bbox_centred(pred), ref_bbox_centred(target)), rtol=1e-12
    )
    np.testing.assert_allclose(
        metrics["emd"], emd_exact(ref_bbox_centred(pred), ref_bbox_centred(target)), rtol=1e-12
    )
    # Consistency bounds (docs/pose_transfer.md, "Metrics") on full, vertex-wise corresponding sets.
    # With 1 cm noise nearly every nearest neighbour is the corresponding vertex, so CD ≈ 6·PMD: allow float64 rounding only.
    assert np.all(metrics["cd"] <= 6 * metrics["pmd"] * (1 + 1e-12))
    assert np.all(metrics["emd"] <= np.sqrt(3 * metrics["pmd"]))
    noisier = target + 0.05 * np.random.default_rng(9).normal(size=target.shape)
    loose = pose_transfer_metrics(noisier[0], target[0])
    assert np.all(loose["cd"] < 6 * loose["pmd"]) and np.all(loose["emd"] < np.sqrt(3 * loose["pmd"]))
    single = pose_transfer_metrics(pred[0, 0], target[0, 0], block_size=None)
    assert isinstance(single["pmd"], float)
    assert single["pmd"] == pytest.approx(metrics["pmd"][0, 0], rel=1e-12)


@pytest.mark.ott
def test_pose_transfer_metrics_sinkhorn_variant(meshes):
    pred, target = meshes
    exact = pose_transfer_metrics(pred[0], target[0])
    approx = pose_transfer_metrics(pred[0], target[0], emd_method="sinkhorn", sinkhorn_epsilon=1e-3, block_size=16)
    np.testing.assert_allclose(approx["emd"], exact["emd"], rtol=2e-2)
    np.testing.assert_allclose(approx["pmd"], exact["pmd"], rtol=1e-12)


def test_paper_scaling_and_format():
    assert (PMD_SCALE, CD_SCALE, EMD_SCALE) == (1e4, 1e4, 1e3)
    raw = {"pmd": 0.08e-4, "cd": 0.22e-4, "emd": 1.89e-3}  # 3D-CoreNet, SMPL (slides)
    assert paper_scaled(raw) == pytest.approx({"pmd": 0.08, "cd": 0.22, "emd": 1.89})
    assert format_pose_transfer_metrics(raw) == "PMD (×10⁻⁴) 0.08 | CD (×10⁻⁴) 0.22 | EMD (×10⁻³) 1.89"
    # The consistency bounds hold for the published numbers with these scales.
    assert raw["cd"] <= 6 * raw["pmd"] and raw["emd"] <= math.sqrt(3 * raw["pmd"])
    with pytest.raises(ValueError, match="no paper scale"):
        paper_scaled({"iou": 0.5})


# ----------------------------------------------------------------------------- joints


def test_mpjpe_pve_match_reference(meshes):
    pred, target = meshes
    expected = np.linalg.norm(pred - target, axis=-1).mean(axis=-1)
    np.testing.assert_allclose(mpjpe(pred.astype(np.float32), target.astype(np.float32)), expected, rtol=1e-5)
    np.testing.assert_allclose(pve(pred.astype(np.float32), target.astype(np.float32)), expected, rtol=1e-5)
    rooted = np.linalg.norm((pred - pred[..., 3:4, :]) - (target - target[..., 3:4, :]), axis=-1).mean(axis=-1)
    with jax.enable_x64(True):
        np.testing.assert_allclose(mpjpe(jnp.asarray(pred), jnp.asarray(target), root_index=3), rooted, rtol=1e-12)
        np.testing.assert_allclose(mpjpe(jnp.asarray(pred), jnp.asarray(target), root_index=-37), rooted, rtol=1e-12)
    assert MM_PER_M == 1000.0
    with pytest.raises(ValueError, match="root_index 40 out of range for 40 joints"):
        mpjpe(pred, target, root_index=40)


def test_pa_mpjpe_matches_horn_reference_and_is_similarity_invariant():
    rng = np.random.default_rng(14)
    target = rng.normal(size=(3, 17, 3))
    pred = target + 0.05 * rng.normal(size=target.shape)
    expected = ref_pa_mpjpe(pred, target)
    np.testing.assert_allclose(pa_mpjpe(pred.astype(np.float32), target.astype(np.float32)), expected, rtol=1e-4)
    moved = 0.6 * pred @ random_rotation(rng).T + rng.normal(size=(3, 1, 3))
    with jax.enable_x64(True):
        np.testing.assert_allclose(pa_mpjpe(jnp.asarray(pred), jnp.asarray(target)), expected, rtol=1e-10)
        np.testing.assert_allclose(pa_mpjpe(jnp.asarray(moved), jnp.asarray(target)), expected, rtol=1e-10)
        exact_copy = 2.5 * target @ random_rotation(rng).T + 4.0
        np.testing.assert_allclose(pa_mpjpe(jnp.asarray(exact_copy), jnp.asarray(target)), 0.0, atol=1e-12)
        # A mirror image cannot be undone by a rotation: the error stays positive and equals Horn's.
        mirrored = target * np.array([-1.0, 1.0, 1.0])
        got = pa_mpjpe(jnp.asarray(mirrored), jnp.asarray(target))
        np.testing.assert_allclose(got, ref_pa_mpjpe(mirrored, target), rtol=1e-10)
        assert np.all(np.asarray(got) > 0.1)


# ----------------------------------------------------------------------------- occupancy


def test_occupancy_iou():
    rng = np.random.default_rng(15)
    gt = rng.random((4, 200)) > 0.5
    pred = rng.random((4, 200)) > 0.4
    expected = (pred & gt).sum(-1) / (pred | gt).sum(-1)
    np.testing.assert_allclose(occupancy_iou(pred, gt), expected, rtol=1e-6)
    np.testing.assert_array_equal(occupancy_iou(gt, gt), np.ones(4))
    np.testing.assert_array_equal(occupancy_iou(gt, ~gt), np.zeros(4))
    empty = np.zeros((2, 5), bool)
    np.testing.assert_array_equal(occupancy_iou(empty, empty), np.ones(2))
    assert np.isnan(occupancy_iou(empty, empty, empty_union_value=float("nan"))).all()
    with pytest.raises(ValueError, match="boolean"):
        occupancy_iou(pred.astype(np.float32), gt)
    with pytest.raises(ValueError, match=r"\(4, 200\) and \(4, 199\)"):
        occupancy_iou(pred, gt[:, :199])


# ----------------------------------------------------------------------------- errors


def test_shape_errors_name_both_shapes():
    a, b = np.zeros((5, 3)), np.zeros((6, 3))
    for metric in (pmd, mpjpe, pa_mpjpe, pve, emd_exact, pose_transfer_metrics):
        with pytest.raises(ValueError, match=r"\(5, 3\).*\(6, 3\)"):
            metric(a, b)
    with pytest.raises(ValueError, match=r"\(2, 5, 3\).*\(5, 3\)"):
        chamfer_distance(np.zeros((2, 5, 3)), b[:5])
    with pytest.raises(ValueError, match="3 coordinates"):
        chamfer_distance(np.zeros((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="no points"):
        chamfer_distance(np.zeros((0, 3)), b)
    with pytest.raises(ValueError, match="block_size"):
        chamfer_distance(a, b, block_size=0)
    with pytest.raises(ValueError, match="emd_method"):
        pose_transfer_metrics(a, a, emd_method="auction")


def test_non_finite_inputs_rejected_on_host_and_propagated_under_jit():
    a = np.zeros((4, 3))
    bad = a.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"b contains 1 non-finite value.*\(2, 1\)"):
        emd_exact(a, bad)
    with pytest.raises(ValueError, match="pred contains 1 non-finite"):
        pose_transfer_metrics(bad, a)
    with pytest.raises(ValueError, match="numeric"):
        check_finite("labels", np.array(["a"]))
    assert np.isnan(float(pmd(bad, a))) and np.isnan(float(chamfer_distance(bad, a)))
