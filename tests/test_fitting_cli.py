"""`jaxpose refine` and `jaxpose fit` end to end on tiny synthetic people and a 2-step checkpoint."""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxpose.bodies import default_body
from jaxpose.fitting import cli_fit, cli_refine, smplify
from jaxpose.fitting.inputs import (
    InputError, camera_from_dict, camera_to_dict, load_camera_json, load_image, save_camera_json, save_keypoints_json,
)  # fmt: skip
from jaxpose.fitting.params import load_params_npz, params_from_pose, pose_body, save_params_npz
from jaxpose.fitting.synthetic import camera_from_arrays, load_or_make_dataset
from jaxpose.fitting.task import synthetic_config
from jaxpose.io.mesh import load_mesh
from jaxpose.render.camera import make_camera, project
from jaxpose.training.config import apply_overrides, load_config
from jaxpose.training.loop import train_and_evaluate
from training_support import tiny_config

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
STEPS = "4,8"  # solver steps of the two stages: enough to move, cheap to run
PEOPLE = ("p0", "p1")


def run_cli(main, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a command's `main` run in this process (compiled programs are shared)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def save_png(path: pathlib.Path, image: np.ndarray) -> None:
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)


def coco_keypoints(body, camera, pose, betas, transl) -> np.ndarray:
    """(17, 2) projected COCO keypoints of a body, pixels."""
    vertices = pose_body(body, params_from_pose(jnp.asarray(pose), jnp.asarray(betas), jnp.asarray(transl))).vertices
    return np.asarray(project(jnp.asarray(body.extras["coco_regressor"][:17]) @ vertices, camera)[0])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 2-step refinement checkpoint, a 1-step checkpoint of another task, and input files of 2 test people."""
    root = tmp_path_factory.mktemp("fitting_cli")
    with jax.numpy_rank_promotion("raise"):  # as the tests' autouse fixture: share compiled programs
        config = apply_overrides(load_config(CONFIGS / "refinement_tiny.py"), [
            ("data.cache_dir", str(root / "data")), ("num_steps", "2"), ("eval_every", "0"), ("checkpoint_every", "2"),
            ("data.synthetic.num_train", "4"), ("data.synthetic.num_test", "2"), ("data.synthetic.train_identities", "2"),
            ("data.synthetic.train_poses", "4"), ("data.synthetic.test_poses", "2"),
        ])  # fmt: skip
        train_and_evaluate(config, root / "run", show_progress=False)
        train_and_evaluate(tiny_config(num_steps=1, checkpoint_every=1), root / "tiny_run", show_progress=False)
        data = load_or_make_dataset(synthetic_config(config.data), "test", config.data.cache_dir, progress=False)
        camera, body = camera_from_arrays(data), default_body("low")
        paths = types.SimpleNamespace(root=root, checkpoint=root / "run", other_checkpoint=root / "tiny_run", data=data,
                                      camera=camera, body=body)  # fmt: skip
        for name in ("images", "inits", "keypoints", "bad"):
            (root / name).mkdir()
        paths.camera_json = root / "camera.json"
        save_camera_json(paths.camera_json, camera)
        for i, stem in enumerate(PEOPLE):
            save_png(root / "images" / f"{stem}.png", data["image"][i])
            save_params_npz(root / "inits" / f"{stem}.npz",
                            params_from_pose(data["init_pose"][i], data["init_betas"][i], data["init_transl"][i]))  # fmt: skip
            keypoints = coco_keypoints(body, camera, data["gt_pose"][i], data["gt_betas"][i], data["gt_transl"][i])
            save_keypoints_json(root / "keypoints" / f"{stem}.json", keypoints, np.ones(17))
        paths.image, paths.init = root / "images" / "p0.png", root / "inits" / "p0.npz"
        paths.keypoints = root / "keypoints" / "p0.json"
        _bad_inputs(paths, data, camera)
    return paths


def _bad_inputs(paths, data, camera) -> None:
    """Inputs for every error case, in `paths.root / "bad"`."""
    bad = paths.root / "bad"
    init = params_from_pose(data["init_pose"][0], data["init_betas"][0], data["init_transl"][0])
    save_params_npz(bad / "other_body.npz", {**init, "body_pose": jnp.zeros((21, 3))})  # a 22-joint body's
    rotation = np.asarray(camera.rotation)
    depth = float(project(pose_body(paths.body, init).joints[0], camera)[1])  # root depth, metres
    save_params_npz(bad / "behind.npz", {**init, "transl": init["transl"] - 2 * depth * rotation[2]})  # mirrored in depth
    save_params_npz(bad / "outside.npz", {**init, "transl": init["transl"] + 20.0 * rotation[0]})  # far to the right
    cam = camera_to_dict(camera)
    (bad / "camera_2x3.json").write_text(json.dumps({**cam, "rotation": cam["rotation"][:2]}))
    save_png(bad / "size40.png", np.zeros((40, 40, 3)))
    # A consistent 64×64 camera and image: the 32×32 checkpoint cannot take them.
    save_camera_json(bad / "camera64.json", make_camera(camera.rotation, camera.translation, fx=2 * camera.fx, fy=2 * camera.fy,
                                                        cx=2 * camera.cx, cy=2 * camera.cy, height=64, width=64))  # fmt: skip
    save_png(bad / "image64.png", np.repeat(np.repeat(data["image"][0], 2, axis=0), 2, axis=1))
    save_keypoints_json(bad / "five.json", np.zeros((5, 2)), np.ones(5))


def refine_args(paths, out, **changes):
    args = {"--image": paths.image, "--init": paths.init, "--camera": paths.camera_json, "--checkpoint": paths.checkpoint,
            "--out": out, "--steps": STEPS}  # fmt: skip
    args.update(changes)
    return [item for key, value in args.items() if value is not None for item in (key, value)]


def fit_args(paths, out, **changes):
    args = {"--keypoints": paths.keypoints, "--camera": paths.camera_json, "--out": out, "--steps": STEPS}
    args.update(changes)
    return [item for key, value in args.items() if value is not None for item in (key, value)]


@pytest.fixture(scope="module")
def refined(inputs):
    out = inputs.root / "refined"
    with jax.numpy_rank_promotion("raise"):
        code, stdout, stderr = run_cli(cli_refine.main, *refine_args(inputs, out))
    assert code == 0, stderr
    return types.SimpleNamespace(out=out, stdout=stdout, stderr=stderr)


@pytest.fixture(scope="module")
def fitted(inputs):
    out = inputs.root / "fitted"
    with jax.numpy_rank_promotion("raise"):
        code, stdout, stderr = run_cli(cli_fit.main, *fit_args(inputs, out, **{"--image": inputs.image}))
    assert code == 0, stderr
    return types.SimpleNamespace(out=out, stdout=stdout, stderr=stderr)


# ---------------------------------------------------------------------------------------------
# Camera JSON
# ---------------------------------------------------------------------------------------------


def test_camera_json_round_trips_and_is_validated(inputs, tmp_path):
    camera = load_camera_json(inputs.camera_json)
    assert (camera.height, camera.width) == (inputs.camera.height, inputs.camera.width)
    for name in ("rotation", "translation", "fx", "fy", "cx", "cy"):
        np.testing.assert_allclose(getattr(camera, name), getattr(inputs.camera, name), rtol=1e-6, err_msg=name)
    save_camera_json(tmp_path / "again.json", camera)
    assert json.loads((tmp_path / "again.json").read_text()) == camera_to_dict(camera)
    good = camera_to_dict(camera)
    cases = {
        "3×3": {**good, "rotation": good["rotation"][:2]},
        "proper rotation": {**good, "rotation": (2 * np.asarray(good["rotation"])).tolist()},
        "missing \\['fy'\\]": {k: v for k, v in good.items() if k != "fy"},
        "positive integer": {**good, "width": 31.5},
        "fx must be positive": {**good, "fx": -1.0},
    }
    for message, data in cases.items():
        with pytest.raises(InputError, match=message):
            camera_from_dict(data, "test camera")


def test_image_loader_gives_rgb_in_unit_range(inputs, tmp_path):
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    image = load_image(tmp_path / "rgba.png")
    assert image.shape == (5, 7, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image[..., 0], 1.0)
    np.testing.assert_allclose(load_image(inputs.image), inputs.data["image"][0], atol=0.5 / 255 + 1e-6)


# ---------------------------------------------------------------------------------------------
# refine
# ---------------------------------------------------------------------------------------------


def test_refine_writes_every_output_and_moves_the_body(inputs, refined):
    for name in cli_refine.OUTPUT_FILES:
        assert (refined.out / name).is_file(), name
    initial = load_params_npz(inputs.init, inputs.body)
    result = load_params_npz(refined.out / "refined.npz", inputs.body)
    assert any(not np.allclose(result[k], initial[k], atol=1e-6) for k in initial)
    refined_mesh, initial_mesh = load_mesh(refined.out / "refined.obj"), load_mesh(refined.out / "initial.obj")
    assert refined_mesh.vertices.shape == initial_mesh.vertices.shape == (inputs.body.num_vertices, 3)
    np.testing.assert_allclose(initial_mesh.vertices, pose_body(inputs.body, initial).vertices, atol=1e-5)
    summary = json.loads((refined.out / "summary.json").read_text())
    assert summary["texture"].startswith("back-projected from the image")
    assert set(summary["energies"]) == {stage.name for stage in smplify.default_stages()}
    assert all(np.isfinite(list(summary["energies"].values())))
    assert summary["visible_vertices"] > 0 and summary["mean_predicted_displacement_px"] >= 0
    overlay = np.asarray(Image.open(refined.out / "overlay.png"))
    assert overlay.shape[1] > 2 * overlay.shape[0]  # three panels side by side
    assert "back-projected" in refined.stderr and "refined 1 person" in refined.stdout


def test_refine_batch_mode_refines_every_person_with_one_compilation(inputs, refined):
    out = inputs.root / "refined_batch"
    compilations = smplify._fit_batch._cache_size()
    with jax.numpy_rank_promotion("raise"):
        code, stdout, stderr = run_cli(cli_refine.main, "--image-dir", inputs.root / "images", "--init-dir",
                                       inputs.root / "inits", *refine_args(inputs, out, **{"--image": None, "--init": None}))  # fmt: skip
    assert code == 0, stderr
    assert smplify._fit_batch._cache_size() == compilations  # the single run already compiled this fit
    for stem in PEOPLE:
        for name in cli_refine.OUTPUT_FILES:
            assert (out / stem / name).is_file(), (stem, name)
    assert "[1/2] p0" in stderr and "[2/2] p1" in stderr and "refined 2 people" in stdout
    assert set(json.loads((out / "summary.json").read_text())["people"]) == set(PEOPLE)
    # The same person gives the same result in batch mode.
    single = load_params_npz(refined.out / "refined.npz")
    batch = load_params_npz(out / "p0" / "refined.npz")
    for key in single:
        np.testing.assert_allclose(batch[key], single[key], atol=1e-5, err_msg=key)


def refine_error_cases(paths):
    bad = paths.root / "bad"
    return {
        "missing image": ({"--image": bad / "nope.png"}, "does not exist"),
        "missing checkpoint": ({"--checkpoint": bad / "no_run"}, "not found"),
        "params for another body": ({"--init": bad / "other_body.npz"}, "body_pose"),
        "camera not 3x3": ({"--camera": bad / "camera_2x3.json"}, "rotation must be a 3×3 matrix"),
        "behind the camera": ({"--init": bad / "behind.npz"}, "behind"),
        "empty mask": ({"--init": bad / "outside.npz"}, "empty mask"),
        "image size differs from camera": ({"--image": bad / "size40.png"}, "differs from the camera"),
        "not a refinement checkpoint": ({"--checkpoint": paths.other_checkpoint}, "not a refinement checkpoint"),
        "checkpoint image size": ({"--camera": bad / "camera64.json", "--image": bad / "image64.png"}, "trained on 32×32"),
        "bad steps": ({"--steps": "4"}, "--steps"),
    }


@pytest.mark.parametrize("case", ["missing image", "missing checkpoint", "params for another body", "camera not 3x3",
                                  "behind the camera", "empty mask", "image size differs from camera",
                                  "not a refinement checkpoint", "checkpoint image size", "bad steps"])  # fmt: skip
def test_refine_errors_exit_2_with_one_line_and_write_nothing(inputs, case, tmp_path):
    changes, message = refine_error_cases(inputs)[case]
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(cli_refine.main, *refine_args(inputs, out, **changes))
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("jaxpose refine")]
    assert len(lines) == 1 and lines[0].startswith("jaxpose refine: error: ") and message in lines[0], stderr
    assert "Traceback" not in stderr and not out.exists()


def test_refine_refuses_a_non_empty_output_and_never_overwrites_an_input(inputs, refined, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in refined.out.iterdir()}
    code, _, stderr = run_cli(cli_refine.main, *refine_args(inputs, refined.out))
    assert code == 2 and "not empty" in stderr and "--overwrite" in stderr
    assert {p: p.stat().st_mtime_ns for p in refined.out.iterdir()} == before
    out = tmp_path / "out"
    out.mkdir()
    init = out / "refined.npz"  # the input sits where an output would go
    init.write_bytes(inputs.init.read_bytes())
    code, _, stderr = run_cli(cli_refine.main, *refine_args(inputs, out, **{"--init": init}), "--overwrite")
    assert code == 2 and "refusing to overwrite an input" in stderr
    assert init.read_bytes() == inputs.init.read_bytes()


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------


def test_fit_from_keypoints_lowers_the_2d_error(inputs, fitted):
    for name in (*cli_fit.OUTPUT_FILES, "overlay.png"):
        assert (fitted.out / name).is_file(), name
    summary = json.loads((fitted.out / "summary.json").read_text())
    assert summary["start"] in ("front", "flipped") and set(summary["start_energies"]) == {"front", "flipped"}
    assert summary["start_energies"][summary["start"]] == min(summary["start_energies"].values())
    assert summary["keypoint_error_px"] < summary["start_keypoint_error_px"]
    # The saved parameters reproduce the reported error.
    target = np.asarray(json.loads(inputs.keypoints.read_text())["keypoints"])[:, :2]
    params = load_params_npz(fitted.out / "fitted.npz", inputs.body)
    vertices = pose_body(inputs.body, params).vertices
    projected = np.asarray(project(jnp.asarray(inputs.body.extras["coco_regressor"][:17]) @ vertices, inputs.camera)[0])
    error = np.linalg.norm(projected - target, axis=-1).mean()
    np.testing.assert_allclose(error, summary["keypoint_error_px"], rtol=1e-3)
    assert load_mesh(fitted.out / "fitted.obj").vertices.shape == (inputs.body.num_vertices, 3)


def test_fit_batch_mode_and_overwrite(inputs, fitted):
    out = inputs.root / "fitted_batch"
    compilations = smplify._fit_batch._cache_size()
    with jax.numpy_rank_promotion("raise"):
        args = fit_args(inputs, out, **{"--keypoints": None})
        code, stdout, stderr = run_cli(cli_fit.main, "--keypoints-dir", inputs.root / "keypoints", *args)
        assert code == 0, stderr
        assert smplify._fit_batch._cache_size() == compilations
        for stem in PEOPLE:
            assert (out / stem / "fitted.npz").is_file() and not (out / stem / "overlay.png").exists()
        assert "[2/2] p1" in stderr and "fitted 2 people" in stdout
        code, _, stderr = run_cli(cli_fit.main, "--keypoints-dir", inputs.root / "keypoints", *args)
        assert code == 2 and "not empty" in stderr
        code, _, stderr = run_cli(cli_fit.main, "--keypoints-dir", inputs.root / "keypoints", *args, "--overwrite")
        assert code == 0, stderr


@pytest.mark.parametrize("case", ["missing keypoints", "wrong keypoint count", "behind the camera", "image size"])
def test_fit_errors_exit_2_with_one_line_and_write_nothing(inputs, case, tmp_path):
    bad = inputs.root / "bad"
    changes, message = {
        "missing keypoints": ({"--keypoints": bad / "nope.json"}, "does not exist"),
        "wrong keypoint count": ({"--keypoints": bad / "five.json"}, "expected 17"),
        "behind the camera": ({"--init": bad / "behind.npz"}, "behind"),
        "image size": ({"--image": bad / "size40.png"}, "differs from the camera"),
    }[case]
    out = tmp_path / "out"
    code, _, stderr = run_cli(cli_fit.main, *fit_args(inputs, out, **changes))
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("jaxpose fit")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in stderr, stderr
    assert not out.exists()


def test_commands_are_registered():
    from jaxpose.cli import COMMANDS

    assert COMMANDS["refine"][0] == "jaxpose.fitting.cli_refine" and COMMANDS["fit"][0] == "jaxpose.fitting.cli_fit"
    for main in (cli_refine.main, cli_fit.main):
        with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stdout(io.StringIO()) as help_text:
            main(["--help"])
        assert exit_info.value.code == 0 and '"rotation"' in help_text.getvalue()
