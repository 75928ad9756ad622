"""The ins / snarf / snarf_nc tasks: engine training (loss falls, exact resume), the IoU table, LBS baselines."""

from __future__ import annotations

import csv
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.skinning.clothed import generate_clothed_dataset
from jaxpose.skinning import data as skinning_data
from jaxpose.training import cli_eval
from jaxpose.training.registry import build_task
from jaxpose.training.config import load_config
from jaxpose.training.loop import train_and_evaluate
from jaxpose.training.sharding import make_mesh

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(root, task: str = "ins", num_steps: int = 6):
    config = load_config(REPO / ("configs/ins_small.py" if task == "ins" else "configs/snarf_small.py"))
    config.task = task
    config.num_steps = num_steps
    config.batch_size = 2
    config.log_every = 1
    config.checkpoint_every = 3
    config.optimizer.lr = 3e-3
    config.optimizer.schedule = "constant"  # the small configs' 20 warm-up steps would outlast these runs
    config.optimizer.clip_grad_norm = 1.0
    config.loss.extras_epochs = 0  # the loss compared below is the BCE alone
    if task == "ins":
        m = config.model
        m.occupancy_width, m.occupancy_depth, m.skinning_width, m.skinning_depth, m.root_max_steps = 16, 2, 16, 2, 10
        m.pin.n_layers, m.pin.pose_code_dim, m.pin.encoder_width, m.pin.embed_width, m.pin.head_width = 1, 4, 8, 8, 8
        m.pin.embed_depth, m.pin.head_depth = 1, 1
    else:
        m = config.model
        m.width, m.depth, m.skip_layers, m.skinning_width, m.skinning_depth, m.max_steps = 16, 2, (1,), 16, 2, 10
    d = config.data
    d.root, d.generate, d.subjects, d.subject, d.frames_per_motion = str(root), False, {"s1": "skirt"}, "s1", 1
    d.pool_surface, d.pool_uniform, d.n_surface, d.n_uniform = 400, 100, 48, 16
    d.eval_n_bbox, d.eval_n_surface, d.max_eval_frames = 150, 150, 2
    return config


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clothed")
    generate_clothed_dataset(root, subjects={"s1": "skirt"}, frames_per_motion=1, seed=0)
    return root


@pytest.fixture(scope="module")
def one_device():
    return make_mesh(jax.devices()[:1])


def _loss_at(task, state, batch):
    from jaxpose.training.state import merge_model, model_graphdef

    graphdef = model_graphdef(task)
    loss = jax.jit(lambda p, s, b: task.loss_fn(merge_model(graphdef, p, s), b, jax.random.key(0))[0])
    return float(loss(state.params, state.model_state, {k: jnp.asarray(v) for k, v in batch.items()}))


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory, one_device):
    """Each task trained for 6 steps; returns {task name: (config, workdir, initial loss, final loss)}."""
    from jaxpose.training.state import create_train_state
    from jaxpose.training.optim import make_optimizer

    out = {}
    for name in ("ins", "snarf", "snarf_nc"):
        config = tiny_config(data_root, name)
        task = build_task(config)
        workdir = tmp_path_factory.mktemp(task.name)
        data = task.make_train_data()
        batch = data.take(np.arange(len(data)), epochs=np.ones(len(data), np.int64) * 9)  # extras off
        tx, _ = make_optimizer(config.optimizer, 1.0, config.num_steps)
        _, initial = create_train_state(task, tx, one_device)
        before = _loss_at(task, initial, batch)
        result = train_and_evaluate(config, workdir, mesh=one_device, show_progress=False)
        after = _loss_at(task, result.state, batch)
        out[task.name] = (config, workdir, before, after, result)
    return out


@pytest.mark.parametrize("name", ["ins", "snarf", "snarf_nc"])
def test_training_reduces_the_occupancy_loss(trained, name):
    _, workdir, before, after, result = trained[name]
    assert result.step == 6 and (workdir / "checkpoints" / "6").is_dir()
    assert np.isfinite(after) and after < before


def test_resume_is_exact(trained, data_root, tmp_path, one_device):
    config, _, _, _, full = trained["ins"]
    half = config.copy_and_resolve_references()
    half.num_steps = 3
    train_and_evaluate(half, tmp_path, mesh=one_device, show_progress=False)
    resumed = train_and_evaluate(config, tmp_path, mesh=one_device, show_progress=False)
    assert resumed.resumed_from == 3
    for a, b in zip(jax.tree.leaves(full.state.params), jax.tree.leaves(resumed.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_training_items_are_pure_in_seed_and_epoch(data_root):
    config = tiny_config(data_root)
    config.loss.extras_epochs = 5
    data = build_task(config).make_train_data()
    a = data.take(np.array([1, 3]), epochs=np.array([0, 2]))
    b = data.take(np.array([1, 3]), epochs=np.array([0, 2]))
    c = data.take(np.array([1, 3]), epochs=np.array([1, 2]))
    np.testing.assert_array_equal(a["points"], b["points"])
    assert not np.array_equal(a["points"][0], c["points"][0]) and np.array_equal(a["points"][1], c["points"][1])
    assert a["epoch"].tolist() == [0, 2]  # the loss switches the extras off from epoch extras_epochs on
    assert sorted(a) == ["epoch", "frame", "occupancy", "points", "pose", "transforms"]  # no config values


def test_first_epoch_extras_follow_the_config(data_root):
    """The loss adds joint_one_hot_weight · one-hot (+ distillation) while epoch < loss.extras_epochs."""
    from jaxpose.training.optim import make_optimizer
    from jaxpose.training.state import init_train_state, merge_model, model_graphdef

    config = tiny_config(data_root)
    config.loss.extras_epochs = 5
    task = build_task(config)
    tx, _ = make_optimizer(config.optimizer, 1.0, config.num_steps)
    state = init_train_state(task, tx)
    data = task.make_train_data()
    early = {k: jnp.asarray(v) for k, v in data.take(np.array([0, 1]), epochs=np.array([0, 0])).items()}
    late = dict(early, epoch=jnp.asarray([5, 5], jnp.int32))
    model = merge_model(model_graphdef(task), state.params, state.model_state)
    loss_early, m = task.loss_fn(model, early, jax.random.key(0))
    loss_late, _ = task.loss_fn(model, late, jax.random.key(0))
    extras = float(config.loss.joint_one_hot_weight) * float(m["joint_one_hot"]) + float(
        config.loss.skinning_distill_weight) * float(m["skinning_distill"])
    assert float(m["joint_one_hot"]) > 0
    np.testing.assert_allclose(float(loss_early) - float(loss_late), extras, rtol=1e-5)
    np.testing.assert_allclose(float(loss_late), float(m["bce"]), rtol=1e-6)



def test_eval_table_rows_present_and_finite(trained, tmp_path, capsys):
    dirs = [str(trained[name][1]) for name in ("ins", "snarf", "snarf_nc")]
    args = sum((["--checkpoint", d] for d in dirs), []) + ["--baseline", "avg_lbs", "--baseline", "first_lbs",
                                                              "--output", str(tmp_path)]
    assert cli_eval.main(["ins", *args]) == 0
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    methods = [r["method"] for r in rows]
    assert [m.split(":")[0] for m in methods[:3]] == ["ins", "snarf", "snarf_nc"]
    assert methods[3:] == ["baseline:avg_lbs", "baseline:first_lbs"]
    for row in rows:
        for key in ("iou_bbox_mean", "iou_surface_mean"):
            assert 0.0 <= float(row[key]) <= 1.0
        assert row["n"] == "2"
    # The LBS baselines on this near-rigid garment are far better than chance.
    assert float(rows[3]["iou_surface_mean"]) > 0.5


def test_eval_scores_with_the_evaluation_configs_protocol(trained, one_device):
    """A checkpoint rescored under other eval_* keys (here another bbox/surface split) is scored by the
    evaluation config's metrics, not by those saved with the checkpoint."""
    from jaxpose.training.config import apply_overrides
    from jaxpose.training.evaluation import load_checkpoint
    from jaxpose.training.protocol import EvaluationRequest, StandardProtocol
    from jaxpose.training.state import merge_model

    checkpoint = load_checkpoint(trained["ins"][1], one_device)
    config = apply_overrides(checkpoint.config, [("data.eval_n_bbox", "40"), ("data.eval_n_surface", "260")])
    report = StandardProtocol().evaluate(EvaluationRequest(config, [checkpoint], [], one_device, 1))
    batch = build_task(config).make_eval_data(None, None).take(np.arange(2))
    model = merge_model(checkpoint.graphdef, checkpoint.state.params, checkpoint.state.model_state)
    inside = checkpoint.task.predict(model, {k: jnp.asarray(v) for k, v in batch.items()})
    is_bbox = np.broadcast_to(np.arange(300) < 40, (2, 300))
    expected = skinning_data.occupancy_ious(inside, jnp.asarray(batch["occupancy"]), jnp.asarray(is_bbox))
    (summary,) = report.results.values()
    for name in ("iou_bbox", "iou_surface"):
        assert float(summary[name].mean) == pytest.approx(float(np.mean(expected[name])), abs=1e-6)


def test_eval_rejects_a_missing_checkpoint(tmp_path, capsys):
    assert cli_eval.main(["ins", "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_occupancy_metrics_match_hand_counts():
    gt = np.array([[1, 1, 0, 0, 1, 1, 0, 0]], bool)
    pred = np.array([[1, 0, 1, 0, 1, 1, 1, 0]], bool)
    is_bbox = np.array([[1, 1, 1, 1, 0, 0, 0, 0]], bool)
    metrics = skinning_data.occupancy_ious(jnp.asarray(pred), jnp.asarray(gt), jnp.asarray(is_bbox))
    from_config = skinning_data.make_occupancy_metrics(4)(jnp.asarray(pred), {"occupancy": jnp.asarray(gt)})
    assert {k: float(v[0]) for k, v in from_config.items()} == {k: float(v[0]) for k, v in metrics.items()}
    assert float(metrics["iou_bbox"][0]) == pytest.approx(1 / 3)  # ∧ = {0}, ∨ = {0, 1, 2}
    assert float(metrics["iou_surface"][0]) == pytest.approx(2 / 3)  # ∧ = {4, 5}, ∨ = {4, 5, 6}


def _winding_reference(points, vertices, faces):
    """Generalised winding number in float64 NumPy (Van Oosterom–Strackee solid angles)."""
    tri = vertices[faces][None] - points[:, None, None, :]  # (P, F, 3, 3)
    a, b, c = tri[:, :, 0], tri[:, :, 1], tri[:, :, 2]
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
    den = la * lb * lc + np.einsum("pfi,pfi->pf", a, b) * lc + np.einsum("pfi,pfi->pf", b, c) * la + np.einsum("pfi,pfi->pf", c, a) * lb
    return (2 * np.arctan2(det, den)).sum(-1) / (4 * np.pi)


def _unpose_repose_reference(train_vertices, train_transforms, weights, target_transforms, kind):
    """AVG/FIRST-LBS in float64 NumPy: invert each vertex's blended transform, average, re-blend."""
    blended = np.einsum("vj,tjab->tvab", weights, train_transforms)
    homogeneous = np.concatenate([train_vertices, np.ones(train_vertices.shape[:2] + (1,))], -1)
    canon = np.einsum("tvab,tvb->tva", np.linalg.inv(blended), homogeneous)[..., :3]
    canonical = canon[0] if kind == "first" else canon.mean(0)
    target = np.einsum("vj,jab->vab", weights, target_transforms)
    return np.einsum("vab,vb->va", target, np.concatenate([canonical, np.ones((len(canonical), 1))], -1))[:, :3]


@pytest.mark.parametrize("kind", ["avg", "first"])
def test_lbs_baseline_iou_matches_numpy_reference(data_root, kind):
    config = tiny_config(data_root)
    subject = skinning_data.load_subject(config.data, ("train", "test"))
    train, test = subject.splits["train"], subject.splits["test"]
    rng = np.random.default_rng(0)
    lo, hi = test.vertices[0].min(0), test.vertices[0].max(0)
    points = rng.uniform(lo, hi, (1, 300, 3)).astype(np.float32)
    got = skinning_data._baseline_inside(subject, kind, train, test, points)[0]
    weights = np.asarray(subject.body.weights, np.float64)
    reposed = _unpose_repose_reference(train.vertices.astype(np.float64), train.transforms.astype(np.float64), weights,
                                       test.transforms[0].astype(np.float64), kind)
    expected = _winding_reference(points[0].astype(np.float64), reposed, subject.faces) > 0.5
    assert expected.any() and (~expected).any()
    assert np.mean(got == expected) >= 0.99  # only points within float error of the surface may differ
    gt = _winding_reference(points[0].astype(np.float64), test.vertices[0].astype(np.float64), subject.faces) > 0.5
    iou_ref = (gt & expected).sum() / (gt | expected).sum()
    metrics = skinning_data.occupancy_ious(jnp.asarray(got[None]), jnp.asarray(gt[None]), jnp.ones((1, 300), bool))
    assert float(metrics["iou_bbox"][0]) == pytest.approx(iou_ref, abs=0.02)


def test_first_lbs_reproduces_its_own_frame(data_root):
    """FIRST-LBS reposed to the first training frame's pose gives back that frame (IoU 1)."""
    config = tiny_config(data_root)
    subject = skinning_data.load_subject(config.data, ("train",))
    train = subject.splits["train"]
    points = np.random.default_rng(1).uniform(train.vertices[0].min(0), train.vertices[0].max(0), (1, 200, 3)).astype(np.float32)
    first_frame = skinning_data.SubjectFrames(train.vertices[:1], train.pose[:1], train.transforms[:1], train.names[:1])
    got = skinning_data._baseline_inside(subject, "first", train, first_frame, points)[0]
    expected = _winding_reference(points[0].astype(np.float64), train.vertices[0].astype(np.float64), subject.faces) > 0.5
    assert np.mean(got == expected) >= 0.99


def test_missing_dataset_is_a_clear_error(tmp_path, data_root):
    config = tiny_config(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="holds no CAPE-layout dataset"):
        skinning_data.make_train_data(config)


@pytest.mark.parametrize("box", ["bbox", "snarf"])
def test_uniform_training_points_lie_in_the_configured_box(data_root, box):
    from jaxpose.skinning.occupancy_points import bbox_cube

    config = tiny_config(data_root)
    config.data.uniform_box = box
    data = build_task(config).make_train_data()
    frames = skinning_data.load_subject(config.data).splits["train"]
    n_surface = int(config.data.n_surface)
    for frame in range(len(data)):
        uniform = data.take(np.array([frame]))["points"][0, n_surface:]
        lo, hi = bbox_cube(frames.vertices[frame]) if box == "bbox" else (np.full(3, -1.8), np.full(3, 1.8))
        assert np.all(uniform >= lo - 1e-6) and np.all(uniform <= hi + 1e-6)
        if box == "snarf":  # SNARF's box is much larger than a body's evaluation cube
            cube_lo, cube_hi = bbox_cube(frames.vertices[frame])
            assert np.any(np.any((uniform < cube_lo) | (uniform > cube_hi), axis=-1))


def test_unknown_uniform_box_is_a_clear_error(data_root):
    config = tiny_config(data_root)
    config.data.uniform_box = "sphere"
    with pytest.raises(ValueError, match="data.uniform_box"):
        build_task(config).make_train_data()
