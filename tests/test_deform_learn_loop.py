"""The deform-and-learn loop (tiny config), its resume, the protocol MPJPE and `jaxpose register`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import skimage.io

from jaxpose.bodies import SMPL_PARENTS
from jaxpose.deform_learn import evaluation
from jaxpose.deform_learn.cli_loop import main as loop_main
from jaxpose.deform_learn.cli_register import main as register_main
from jaxpose.deform_learn.densepose_json import dataset_annotations, write_densepose_json
from jaxpose.deform_learn.loop import CURVE_NAMES, LoopConfigError, run_loop
from jaxpose.deform_learn.synthetic import DeformLearnDataConfig, make_dataset
from jaxpose.io.arrays import load_npz
from jaxpose.training.config import load_config


# --- protocol MPJPE ---------------------------------------------------------------------------------------
def _reference_protocol_mpjpe(pred, gt, parents, bone_length):
    """Float64 NumPy reference of the protocol (root-align, scale the prediction's bones to `bone_length`)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    out = []
    for p, g in zip(pred, gt):
        length = sum(np.linalg.norm(p[j] - p[parents[j]]) for j in range(1, len(parents)))
        scaled = (p - p[0]) * bone_length / length
        out.append(1000.0 * np.mean(np.linalg.norm(scaled - (g - g[0]), axis=-1)))
    return np.asarray(out)


def test_protocol_mpjpe_matches_a_numpy_reference_and_ignores_the_prediction_size(rng):
    pred = rng.normal(size=(5, 24, 3)).astype(np.float32)
    gt = rng.normal(size=(5, 24, 3)).astype(np.float32)
    length = 4.9
    ours = np.asarray(evaluation.protocol_mpjpe(pred, gt, SMPL_PARENTS, length))
    np.testing.assert_allclose(ours, _reference_protocol_mpjpe(pred, gt, SMPL_PARENTS, length), rtol=2e-5)
    # Scaling and translating the prediction changes nothing: the protocol normalises its size and root.
    moved = 3.7 * pred + np.asarray([0.3, -1.0, 2.0], np.float32)
    np.testing.assert_allclose(np.asarray(evaluation.protocol_mpjpe(moved, gt, SMPL_PARENTS, length)), ours, rtol=1e-4)
    # A ground truth of canonical size scores exactly 0 against itself.
    canonical = gt * (length / np.asarray(evaluation.total_bone_length(gt, SMPL_PARENTS)))[:, None, None]
    assert float(np.max(evaluation.protocol_mpjpe(canonical, canonical, SMPL_PARENTS, length))) < 1e-3


def test_canonical_bone_length_counts_each_subject_once(rng):
    joints = rng.normal(size=(3, 24, 3))
    lengths = np.asarray(evaluation.total_bone_length(joints, SMPL_PARENTS))
    # subject 0 has two (identical-size) images, subject 1 one: each subject counts once
    stacked = np.stack([joints[0], joints[0], joints[1]])
    value = evaluation.canonical_bone_length(stacked, SMPL_PARENTS, subjects=np.asarray([0, 0, 1]))
    assert math.isclose(value, (lengths[0] + lengths[1]) / 2, rel_tol=1e-5)
    with pytest.raises(ValueError, match="parents"):
        evaluation.total_bone_length(joints, SMPL_PARENTS[:-1])
    with pytest.raises(ValueError, match="same shape"):
        evaluation.protocol_mpjpe(joints, joints[:, :5], SMPL_PARENTS, 1.0)


# --- the loop ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    config = load_config("configs/deform_learn_tiny.py")
    config.data.cache_dir = str(tmp_path_factory.mktemp("deform_learn_data"))
    return config


@pytest.fixture(scope="module")
def loop_run(tiny_config, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("loop")
    rows = run_loop(tiny_config, workdir)
    return workdir, rows


def test_the_loop_writes_the_three_curves_per_iteration(loop_run, tiny_config):
    workdir, rows = loop_run
    assert [row["iteration"] for row in rows] == list(range(1, int(tiny_config.num_iterations) + 1))
    for row in rows:
        for name in CURVE_NAMES:
            assert math.isfinite(row[name]) and row[name] > 0
    logged = [json.loads(line) for line in (workdir / "curves.jsonl").read_text().splitlines()]
    assert logged == rows
    assert (workdir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # iteration 2 starts its registration from iteration 1's ConvNet and warm-starts the ConvNet
    num_train = int(tiny_config.data.synthetic.num_train)
    first = load_npz(workdir / "iteration_0" / "regressor.npz")
    assert first["pose"].shape == (num_train, 23, 3) and first["test_scales"].shape[1] == 24
    second_config = json.loads((workdir / "iteration_1" / "regressor" / "config.json").read_text())
    assert second_config["model"]["init_params"].endswith("iteration_0/regressor_params.npz")
    assert second_config["data"]["targets"].endswith("iteration_1/registrations.npz")


def test_the_loop_resumes_a_lost_stage_and_reproduces_it(loop_run, tiny_config, capsys):
    workdir, rows = loop_run
    lost = workdir / "iteration_1" / "regressor.npz"
    before = load_npz(lost)
    lost.unlink()  # as if the run had been killed before writing it
    again = run_loop(tiny_config, workdir)
    after = load_npz(lost)
    for key in ("pose", "scales", "test_cam_scale"):
        np.testing.assert_array_equal(after[key], before[key])  # the engine run resumed from its final checkpoint
    strip = lambda r: {k: v for k, v in r.items() if not k.endswith("_seconds")}  # noqa: E731
    assert [strip(r) for r in again] == [strip(r) for r in rows]
    assert "done earlier" in capsys.readouterr().err


def test_the_loop_refuses_a_workdir_of_another_config(loop_run, tiny_config):
    workdir, _ = loop_run
    other = load_config("configs/deform_learn_tiny.py")
    other.data.cache_dir = tiny_config.data.cache_dir
    other.registration.weights.dense = 10.0
    with pytest.raises(LoopConfigError, match="registration.weights.dense"):
        run_loop(other, workdir)


def test_the_cli_names_a_bad_config(tmp_path, capsys):
    assert loop_main(["--config", "configs/deform_learn_tiny.py", "--workdir", str(tmp_path / "w"),
                      "--config.num_iterations=0"]) == 2  # fmt: skip
    assert "num_iterations must be at least 1" in capsys.readouterr().err


# --- jaxpose register -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled_image(tmp_path_factory):
    directory = tmp_path_factory.mktemp("register")
    config = DeformLearnDataConfig(image_size=64, num_train=2, num_test=1, train_subjects=1, test_subjects=1, seed=3)
    data = make_dataset(config, "test", progress=False)
    annotations, images = dataset_annotations(data)
    write_densepose_json(directory / "labels.json", annotations, images)
    skimage.io.imsave(directory / "image.png", data["image"][0], check_contrast=False)
    return directory


def test_register_fits_the_labels_and_writes_an_overlay(labelled_image, tmp_path, capsys):
    out = tmp_path / "out"
    code = register_main(["--image", str(labelled_image / "image.png"), "--labels", str(labelled_image / "labels.json"),
                          "--out", str(out), "--steps", "150"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "person_0" / "summary.json").read_text())
    assert summary["final_energy"] < 0.2 * summary["initial_energy"]
    # The chart's nearest vertex is ~2.4 cm from the labelled surface point, ~1 px at this size.
    assert summary["dense_residual_px_mean"] < 3.0
    assert (out / "overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "person_0" / "mesh.obj").stat().st_size > 0 and (out / "person_0" / "params.npz").is_file()


def test_register_names_bad_labels(labelled_image, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    data = json.loads((labelled_image / "labels.json").read_text())
    data["annotations"][0]["dp_I"] = data["annotations"][0]["dp_I"][:-1]  # one label short
    broken.write_text(json.dumps(data))
    code = register_main(["--image", str(labelled_image / "image.png"), "--labels", str(broken), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "broken.json" in err and "dp_I" in err
    assert not (tmp_path / "o").exists()  # nothing half-written


@pytest.mark.parametrize("name", ["deform_learn_tiny", "deform_learn_small", "deform_learn_full"])
def test_shipped_loop_configs_build_their_tasks(name, tmp_path):
    """Every shipped loop config passes the loop's checks and builds both engine tasks (no data is made)."""
    from jaxpose.deform_learn.loop import check_loop_config, lifter_config, regressor_config
    from jaxpose.training.registry import build_task

    config = load_config(f"configs/{name}.py")
    check_loop_config(config)
    assert build_task(lifter_config(config, 0)).name == "deform_learn_lifter"
    assert build_task(regressor_config(config, tmp_path / "registrations.npz", None)).name == "deform_learn_regressor"
    assert build_task(regressor_config(config, None, None)).name == "deform_learn_regressor"  # the supervised row


def test_coco_keypoints_map_to_the_body_joints_of_the_same_name():
    from jaxpose.bodies import default_body
    from jaxpose.deform_learn.cli_register import COCO_TO_BODY_JOINT, keypoints_for_body
    from jaxpose.deform_learn.densepose_json import DensePoseAnnotation

    body = default_body("low")
    coco = np.zeros((17, 3))
    coco[:, 0], coco[:, 1], coco[:, 2] = np.arange(17) * 2.0 + 1.0, 50.0, 2.0
    coco[9, 2] = 0.0  # left wrist not visible
    empty = np.zeros((0, 2))
    annotation = DensePoseAnnotation(0, np.zeros(4), empty, np.zeros(0, np.int32), empty, coco, 1)
    keypoints, valid = keypoints_for_body(annotation, body, height=100, width=200)
    names = list(body.joint_names)
    assert valid.sum() == len(COCO_TO_BODY_JOINT) - 1 and not valid[names.index("left_wrist")]
    elbow = names.index("right_elbow")  # COCO 8 at x = 17 px: (17 − 100) / 100 (one scale: max(H, W) / 2)
    np.testing.assert_allclose(keypoints[elbow], [(17.0 - 100.0) / 100.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="expected 24"):
        keypoints_for_body(DensePoseAnnotation(0, np.zeros(4), empty, np.zeros(0, np.int32), empty, coco[:5], 1), body, 100, 200)
