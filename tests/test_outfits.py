"""CAPE-like synthetic subjects (jaxpose.skinning.outfits): coverage, offset sizes, noise, determinism,
and that the clothed surface is not expressible by LBS on held-out poses."""

import numpy as np
import pytest

from jaxpose.skinning import data as skinning_data
from jaxpose.skinning.clothed import generate_clothed_dataset, motion_poses, subject_betas
from jaxpose.skinning.lbs_baselines import fit_free_lbs, free_lbs_predict
from jaxpose.skinning.outfits import OUTFITS, body_correctives, cloth_offsets, coverage, make_outfit_subject, registration_noise


@pytest.fixture(scope="module")
def subject():
    return make_outfit_subject("cape01", "longlong", betas=subject_betas(0, "cape01", 10))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("capelike")
    generate_clothed_dataset(root, subjects={"cape01": "longlong", "ctrl": "skirtstatic"}, frames_per_motion=4, seed=0)
    return root


def _subject_frames(root, name):
    config = skinning_data.data_config(root=str(root), subject=name)
    config.generate = False
    return skinning_data.load_subject(config, ("train", "test"))


def test_garments_cover_most_of_the_body(subject):
    faces = np.asarray(subject.body.faces)
    assert 0.70 <= coverage(subject.field, subject.body.v_template, faces) <= 0.80
    short = make_outfit_subject("cape02", "shortlong", betas=subject_betas(0, "cape02", 10))
    assert coverage(short.field, short.body.v_template, faces) < coverage(subject.field, subject.body.v_template, faces)


def test_offset_sizes_match_the_outfit_parameters(subject):
    outfit = OUTFITS["longlong"]
    static = cloth_offsets(subject.field, np.zeros((24, 3)))
    on = subject.field.garment > 0.5
    static_norm = np.linalg.norm(subject.field.static[on], axis=1)  # D_static alone
    assert static_norm.min() >= 0.0 and static_norm.max() <= outfit.static_max_m + 1e-6
    assert np.median(static_norm) >= outfit.static_min_m
    rms, peak, corrective = [], 0.0, 0.0
    for motion in ("kick", "walkB", "randomC"):
        for pose in motion_poses(motion, 8, 0, "cape01")[0]:
            moving = cloth_offsets(subject.field, pose) - static
            rms.append(np.mean(np.sum(moving[on] ** 2, axis=1)))
            peak = max(peak, float(np.linalg.norm(moving, axis=1).max()))
            corrective = max(corrective, float(np.linalg.norm(body_correctives(subject.field, pose), axis=1).max()))
    assert 0.004 <= np.sqrt(np.mean(rms)) <= 0.010  # pose-dependent cloth, RMS over the garment
    assert 0.03 <= peak <= outfit.max_offset_m  # hems and armpits move by centimetres
    assert 0.005 <= corrective <= 0.016  # body pose correctives 5-15 mm


def test_registration_noise_is_smooth_with_the_stated_rms(subject):
    rng = np.random.default_rng(0)
    noise = registration_noise(subject.field, rng)
    assert np.sqrt(np.mean(np.sum(noise**2, axis=1))) == pytest.approx(OUTFITS["longlong"].noise_rms_m, rel=1e-6)
    faces = np.asarray(subject.body.faces)
    magnitude = np.einsum("vi,vi->v", noise, subject.field.normals)
    edge_jump = np.abs(magnitude[faces[:, 0]] - magnitude[faces[:, 1]])
    shuffled = np.random.default_rng(1).permutation(magnitude)
    white_jump = np.abs(shuffled[faces[:, 0]] - shuffled[faces[:, 1]])
    # Neighbours move together (the smoothing radius, 3 cm, is near the low-resolution mesh's edge length).
    assert np.mean(edge_jump) < 0.8 * np.mean(white_jump)


def test_garment_weights_are_smoothed_body_weights(subject):
    weights, body = subject.field.weights, np.asarray(subject.body.weights)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)
    off = subject.field.garment == 0.0
    np.testing.assert_allclose(weights[off], body[off], atol=1e-6)  # uncovered skin keeps the body's weights
    assert np.abs(weights - body).sum(axis=1)[subject.field.garment > 0.5].mean() > 0.2


def test_frames_are_deterministic_and_noise_differs_per_frame(subject):
    pose, transl = motion_poses("walk", 2, 0, "cape01")
    first = subject.frames(pose, transl, noise_key=(1,))
    again = make_outfit_subject("cape01", "longlong", betas=subject_betas(0, "cape01", 10)).frames(pose, transl, noise_key=(1,))
    np.testing.assert_array_equal(first[1], again[1])
    other = subject.frames(pose, transl, noise_key=(2,))
    assert np.abs(other[0] - first[0]).max() > 1e-4


def test_clothed_surface_is_not_expressible_by_lbs_on_held_out_poses(dataset):
    """A relaxed LBS (free rest positions and weights over 8 bones per vertex, least squares on the
    training frames) leaves >= 4 mm RMS on held-out poses for the CAPE-like outfit, while it
    reproduces the pure-LBS control subject exactly."""
    for name, low, high in (("cape01", 0.004, None), ("ctrl", None, 1e-4)):
        subject = _subject_frames(dataset, name)
        train, test = subject.splits["train"], subject.splits["test"]
        fit = fit_free_lbs(train.vertices, train.transforms, np.asarray(subject.body.weights), bones_per_vertex=8)
        residual = np.sqrt(np.mean(np.sum((free_lbs_predict(fit, test.transforms) - test.vertices) ** 2, axis=-1)))
        if low is not None:
            assert residual >= low, (name, residual)
        if high is not None:
            assert residual <= high, (name, residual)


def test_unknown_outfit_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown garment"):
        generate_clothed_dataset(tmp_path, subjects={"a": "tuxedo"}, frames_per_motion=1)
    with pytest.raises(ValueError, match="outfit"):
        make_outfit_subject("a", 3, betas=np.zeros(10, np.float32))
