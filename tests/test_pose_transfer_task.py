"""The `corenet` / `npt` engine tasks: data, loss, configs, training, resume and the evaluation harness."""

from __future__ import annotations

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.pose_transfer.npt_data import NptConfig, generate_npt_dataset
from jaxpose.pose_transfer.dataset import PoseTransferData
from jaxpose.pose_transfer.units import pose_transfer_metrics
from jaxpose.pose_transfer.outputs import PoseTransferOutput
from jaxpose.pose_transfer.loss import make_loss_fn, pose_transfer_loss
from jaxpose.pose_transfer.pairs import make_train_pairs
from jaxpose.training.registry import build_task
from jaxpose.training.config import apply_overrides, load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

TINY_CORENET = {
    "model.feature_widths": "(8, 8, 16)", "model.num_residual_blocks": "1", "model.correlation_width": "16",
    "model.decoder_widths": "(16, 16, 16)", "batch_size": "8", "eval_batch_size": "8", "log_every": "1",
    "data.pairs_per_epoch": "16", "eval.max_triples": "8",
}  # fmt: skip
TINY_NPT = {
    "model.pose_widths": "(8, 8, 16)", "batch_size": "8", "eval_batch_size": "8", "log_every": "1",
    "data.pairs_per_epoch": "16", "eval.max_triples": "8",
}  # fmt: skip


def make_config(name: str, tiny: dict, **overrides) -> object:
    values = dict(tiny)
    values.update({k.replace("__", "."): str(v) for k, v in overrides.items()})
    return apply_overrides(load_config(CONFIGS / f"{name}.py"), list(values.items()))


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("npt_data")
    generate_npt_dataset(root, NptConfig(identities=4, poses=6, resolution="low", seed=0, num_test_triples=12),
                         progress=False)  # fmt: skip
    return root


# ---------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------


def numpy_edge_loss(pred: np.ndarray, reference: np.ndarray, faces: np.ndarray) -> float:
    """NPT edge loss for one mesh, float64: mean over faces of Σ |‖e_pred‖/‖e_ref‖ − 1| (|ab|, |bc|, |ac|)."""
    total = 0.0
    for a, b, c in faces:
        for i, j in ((a, b), (b, c), (a, c)):
            total += abs(np.linalg.norm(pred[i] - pred[j]) / np.linalg.norm(reference[i] - reference[j]) - 1.0)
    return total / len(faces)


def test_loss_formula_matches_numpy(rng):
    batch, vertices = 3, 7
    faces = np.array([[0, 1, 2], [1, 3, 2], [2, 3, 4], [4, 5, 6], [0, 6, 5]], np.int32)
    identity = rng.normal(size=(batch, vertices, 3))
    output = identity + 0.1 * rng.normal(size=identity.shape)
    gt = rng.normal(size=identity.shape)
    loss, metrics = pose_transfer_loss(
        jnp.asarray(output, jnp.float32), jnp.asarray(gt, jnp.float32), jnp.asarray(identity, jnp.float32),
        jnp.broadcast_to(jnp.asarray(faces)[None], (batch, 5, 3)), 1000.0, 0.5,
    )  # fmt: skip
    reconstruction = np.mean((output - gt) ** 2)
    edge = np.mean([numpy_edge_loss(output[b], identity[b], faces) for b in range(batch)])
    np.testing.assert_allclose(float(metrics["reconstruction_mse"]), reconstruction, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["edge"]), edge, rtol=1e-5)
    np.testing.assert_allclose(float(loss), 1000.0 * reconstruction + 0.5 * edge, rtol=1e-5)


def _batch_from(data_root, indices=(0, 1, 2, 3, 4, 5, 6, 7), **loss):
    config = make_config("corenet_small", TINY_CORENET, data__root=data_root, **loss)
    pairs = make_train_pairs(config)
    return pairs, pairs.take(np.asarray(indices), epochs=0)


def test_loss_fn_permutes_on_device_consistently(dataset_dir):
    """GT shares the identity's permutation, the pose gets its own, faces follow the identity."""
    _, batch = _batch_from(dataset_dir)
    seen = {}

    def scaled_identity_model(identity, pose):
        seen["identity"], seen["pose"] = identity, pose
        return PoseTransferOutput(output=1.1 * identity + 0.01)

    arrays = {k: jnp.asarray(v) for k, v in batch.items()}
    loss, metrics = make_loss_fn(1000.0, 0.5)(scaled_identity_model, arrays, jax.random.PRNGKey(3))
    identity, gt, pose = batch["identity"], batch["gt"], batch["pose"]
    # The reconstruction term only equals the unshuffled one if GT was shuffled like the identity.
    reconstruction = np.mean((1.1 * identity.astype(np.float64) + 0.01 - gt) ** 2)
    np.testing.assert_allclose(float(metrics["reconstruction_mse"]), reconstruction, rtol=1e-5)
    # Every edge of the prediction is 1.1 × the identity's: only true if faces were remapped.
    np.testing.assert_allclose(float(metrics["edge"]), 0.3, rtol=1e-5)
    np.testing.assert_allclose(float(loss), 1000 * reconstruction + 0.5 * 0.3, rtol=1e-5)
    shuffled_identity, shuffled_pose = np.asarray(seen["identity"]), np.asarray(seen["pose"])
    for b in range(identity.shape[0]):
        assert not np.array_equal(shuffled_identity[b], identity[b])
        order_id = np.lexsort(identity[b].T)
        np.testing.assert_array_equal(np.sort(shuffled_identity[b], axis=0), np.sort(identity[b], axis=0))
        np.testing.assert_array_equal(shuffled_pose[b][np.lexsort(shuffled_pose[b].T)], pose[b][np.lexsort(pose[b].T)])
        np.testing.assert_array_equal(shuffled_identity[b][np.lexsort(shuffled_identity[b].T)], identity[b][order_id])


def test_loss_weights_come_from_config_not_from_batches(dataset_dir):
    config = make_config("corenet_small", TINY_CORENET, data__root=dataset_dir, loss__edge_weight=0.0)
    task = build_task(config)
    batch = task.make_train_data().take(np.arange(8), epochs=0)
    assert sorted(batch) == ["gt", "identity", "identity_faces", "pose"]  # data only, no config values

    def scaled_identity_model(identity, pose):
        return PoseTransferOutput(output=1.1 * identity + 0.01)

    arrays = {k: jnp.asarray(v) for k, v in batch.items()}
    loss, metrics = task.loss_fn(scaled_identity_model, arrays, jax.random.PRNGKey(3))
    np.testing.assert_allclose(float(loss), 1000.0 * float(metrics["reconstruction_mse"]), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def test_train_pairs_are_deterministic_fresh_per_epoch_and_consistent(dataset_dir):
    pairs, batch = _batch_from(dataset_dir)
    data = PoseTransferData.open(dataset_dir)
    again = pairs.take(np.arange(8), epochs=0)
    for key in batch:
        np.testing.assert_array_equal(batch[key], again[key])
    positions = pairs.pair_positions(np.arange(16), np.zeros(16, np.int64))
    later = pairs.pair_positions(np.arange(16), np.ones(16, np.int64))
    assert not np.array_equal(positions, later)
    train_rows = {data.identity_row(i) for i in data.train_identities}
    train_cols = {data.pose_col(p) for p in data.train_poses}
    raw = data.as_arrays()
    for k, (ia, pa, ib, pb) in enumerate(positions[:8]):
        assert {ia, ib} <= train_rows and {pa, pb} <= train_cols
        for name, (row, col) in {"identity": (ia, pa), "pose": (ib, pb), "gt": (ia, pb)}.items():
            mesh = raw[row, col]
            expected = mesh - 0.5 * (mesh.max(0) + mesh.min(0))
            np.testing.assert_allclose(batch[name][k], expected, atol=1e-6)
            np.testing.assert_allclose(batch[name][k].max(0) + batch[name][k].min(0), 0.0, atol=1e-6)
    np.testing.assert_array_equal(batch["identity_faces"][3], data.faces)


def test_missing_data_directory_names_the_command(tmp_path):
    config = make_config("corenet_small", TINY_CORENET, data__root=tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"jaxpose data npt --out .*absent --identities 8 --poses 24"):
        make_train_pairs(config)


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


def test_official_configs_hold_the_published_recipes():
    from jaxpose.training.data import steps_per_epoch
    from jaxpose.training.optim import make_schedule

    corenet = load_config(CONFIGS / "corenet_official.py")
    assert (corenet.batch_size, corenet.num_steps, corenet.data.pairs_per_epoch) == (8, 100_000, 4000)
    assert tuple(corenet.model.feature_widths) == (64, 128, 256)
    assert tuple(corenet.model.decoder_widths) == (1024, 512, 256)
    assert (corenet.model.matching_mode, corenet.model.fc_kernel, corenet.model.use_elain) == ("dense", 3, True)
    assert (corenet.loss.reconstruction_weight, corenet.loss.edge_weight) == (1000.0, 0.5)
    opt = corenet.optimizer
    assert (opt.lr, opt.b1, opt.b2, opt.eps, opt.schedule) == (1e-4, 0.0, 0.9, 1e-3, "constant_then_linear")
    schedule = make_schedule(opt, steps_per_epoch(8, 4000), 100_000)
    for step, lr in ((0, 1e-4), (49_999, 1e-4), (50_000, 1e-4), (75_000, 5e-5), (100_000, 0.0)):
        np.testing.assert_allclose(float(schedule(step)), lr, atol=1e-12)
    assert (corenet.data.build.resolution, corenet.data.build.seed) == ("full", 0)

    npt = load_config(CONFIGS / "npt_official.py")
    assert (npt.loss.reconstruction_weight, npt.loss.edge_weight) == (1.0, 0.0005)
    assert (npt.optimizer.lr, npt.optimizer.b1, npt.optimizer.b2, npt.batch_size) == (5e-5, 0.9, 0.999, 8)
    assert tuple(npt.model.pose_widths) == (64, 128, 1024) and npt.model.variant == "maxpool"

    small = load_config(CONFIGS / "corenet_small.py")
    no_elain = load_config(CONFIGS / "corenet_small_no_elain.py")
    no_edge = load_config(CONFIGS / "corenet_small_no_edge.py")
    assert no_elain.model.use_elain is False and no_elain.loss.edge_weight == small.loss.edge_weight
    assert no_edge.loss.edge_weight == 0.0 and no_edge.model.use_elain is True
    assert no_edge.model.to_dict() == small.model.to_dict()


def test_official_corenet_config_builds_and_steps(dataset_dir):
    """The official recipe (dense matching, official optimiser) with narrow widths runs one step."""
    from jaxpose.training import step as step_lib
    from jaxpose.training.data import steps_per_epoch
    from jaxpose.training.optim import make_optimizer
    from jaxpose.training.sharding import make_mesh, shard_batch
    from jaxpose.training.state import create_train_state

    config = make_config("corenet_official", TINY_CORENET, data__root=dataset_dir)
    task = build_task(config)
    mesh = make_mesh()
    data = task.make_train_data()
    tx, schedule = make_optimizer(config.optimizer, steps_per_epoch(8, len(data)), int(config.num_steps))
    graphdef, state = create_train_state(task, tx, mesh)
    before = jax.tree.map(np.asarray, state.params)
    train_step = step_lib.jit_train_step(step_lib.make_train_step(graphdef, task, tx, schedule), mesh)
    state, metrics = train_step(state, shard_batch(data.take(np.arange(8), epochs=0), mesh, 8))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["learning_rate"]) == pytest.approx(1e-4)
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before, state.params)
    assert all(jax.tree.leaves(changed))
    assert state.model_state  # spectral-norm vectors travel as model state


def test_medium_config_steps_in_bfloat16_with_the_ot_in_float32(dataset_dir, monkeypatch):
    """The shipped model's recipe (scaling-domain matching) with bf16 compute, the GPU path: the step is
    finite, state stays float32, and the matching sees bf16 features but solves in float32."""
    from jaxpose.matching import sinkhorn
    from jaxpose.training import step as step_lib
    from jaxpose.training.data import steps_per_epoch
    from jaxpose.training.optim import make_optimizer
    from jaxpose.training.sharding import make_mesh, shard_batch
    from jaxpose.training.state import create_train_state

    config = make_config("corenet_medium", TINY_CORENET, data__root=dataset_dir, compute_dtype="bfloat16")
    assert config.model.matching_mode == "dense_scaling"
    task = build_task(config)
    mesh = make_mesh()
    data = task.make_train_data()
    tx, schedule = make_optimizer(config.optimizer, steps_per_epoch(8, len(data)), int(config.num_steps))
    graphdef, state = create_train_state(task, tx, mesh)
    train_step = step_lib.make_train_step(graphdef, task, tx, schedule, jnp.bfloat16)
    batch = shard_batch(data.take(np.arange(8), epochs=0), mesh, 8)
    kernel_dtypes = []
    original = sinkhorn.column_potential_scaling

    def spy(kernel, num_iterations):
        kernel_dtypes.append(kernel.dtype)
        return original(kernel, num_iterations)

    monkeypatch.setattr(sinkhorn, "column_potential_scaling", spy)
    jax.clear_caches()  # trace afresh, so the spy sees this program's kernel
    state, metrics = step_lib.jit_train_step(train_step, mesh)(state, batch)
    assert kernel_dtypes and all(d == jnp.float32 for d in kernel_dtypes)
    assert float(metrics["finite"]) == 1.0 and np.isfinite(float(metrics["loss"]))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state.params))


# ---------------------------------------------------------------------------------------------
# Training, resume, evaluation
# ---------------------------------------------------------------------------------------------


def _losses(workdir: pathlib.Path) -> list[float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train/loss"] for line in lines if "train/loss" in line]


def _fixed_batch_losses(config, result) -> tuple[float, float]:
    """The training loss of one fixed batch and key with the initial and with the trained parameters."""
    from jaxpose.training.optim import make_optimizer
    from jaxpose.training.state import init_train_state, merge_model

    task = build_task(config)
    batch = {k: jnp.asarray(v) for k, v in task.make_train_data().take(np.arange(8), epochs=0).items()}
    tx, _ = make_optimizer(config.optimizer, 2.0, int(config.num_steps))
    initial = init_train_state(task, tx)
    key = jax.random.PRNGKey(7)
    losses = []
    for params, model_state in ((initial.params, initial.model_state), (result.state.params, result.state.model_state)):
        copy = lambda tree: jax.tree.map(lambda x: jnp.array(np.asarray(x)), tree)  # noqa: E731
        model = merge_model(result.graphdef, copy(params), copy(model_state))
        losses.append(float(task.loss_fn(model, batch, key)[0]))
    return tuple(losses)


@pytest.fixture(scope="module")
def trained_runs(dataset_dir, tmp_path_factory):
    from jaxpose.training.loop import train_and_evaluate

    root = tmp_path_factory.mktemp("runs")
    corenet_config = make_config("corenet_small", TINY_CORENET, data__root=dataset_dir, num_steps=10, checkpoint_every=5,
                                 optimizer__lr=1e-2)  # fmt: skip
    first = train_and_evaluate(corenet_config, root / "corenet", show_progress=False)
    losses_first = _fixed_batch_losses(corenet_config, first)
    resumed_config = apply_overrides(corenet_config, [("num_steps", "12")])
    second = train_and_evaluate(resumed_config, root / "corenet", show_progress=False)
    npt_config = make_config("npt_small", TINY_NPT, data__root=dataset_dir, num_steps=2)
    train_and_evaluate(npt_config, root / "npt", show_progress=False)
    return {"root": root, "first": first, "second": second, "losses": losses_first, "corenet_config": corenet_config}


def test_corenet_small_training_reduces_loss_and_resumes(trained_runs):
    before, after = trained_runs["losses"]
    assert math.isfinite(after) and after < 0.92 * before  # 10 steps of a tiny net on noisy random pairs
    logged = _losses(trained_runs["root"] / "corenet")
    assert len(logged) == 12 and all(math.isfinite(x) for x in logged)
    first, second = trained_runs["first"], trained_runs["second"]
    assert (first.step, first.resumed_from) == (10, None)
    assert (second.step, second.resumed_from) == (12, 10)
    steps = sorted(int(p.name) for p in (trained_runs["root"] / "corenet" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == 12 and 10 in steps


def test_eval_table_has_every_row_and_copy_identity_matches_direct_metrics(trained_runs, dataset_dir, capsys):
    from jaxpose import cli

    out = trained_runs["root"] / "eval"
    argv = ["eval", "corenet", "--checkpoint", str(trained_runs["root"] / "corenet"), "--checkpoint",
            str(trained_runs["root"] / "npt"), "--baseline", "copy_identity", "--baseline", "deformation_transfer",
            "--data", str(dataset_dir), "--permutation_seeds", "0,1", "--max_triples", "4", "--batch_size", "4",
            "--output", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    rows = {}
    lines = (out / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    import csv

    for record in csv.reader(lines[1:]):
        rows[record[0]] = dict(zip(header, record))
    names = list(rows)
    assert names[0].startswith("corenet [corenet@12]")
    assert names[1].startswith("corenet raw OT warp [corenet@12]")
    assert names[2].startswith("npt [npt@2]")
    assert names[3:] == ["copy_identity", "deformation_transfer (oracle S0)"]
    for column in ("PMD_1e-4m2_mean", "CD_1e-4m2_mean", "EMD_1e-3m_mean"):
        assert column in header
    markdown = (out / "results.md").read_text()
    assert "same identity" in markdown and "permutation seeds 0,1" in markdown and "exact assignment" in markdown
    assert "corenet raw OT warp" in printed

    data = PoseTransferData.open(dataset_dir)
    triples = data.test_triples()[:4]
    raw = data.as_arrays()
    identity = np.stack([raw[data.identity_row(t.identity_id), data.pose_col(t.identity_pose)] for t in triples])
    gt = np.stack([raw[data.identity_row(t.identity_id), data.pose_col(t.pose_pose)] for t in triples])
    direct = pose_transfer_metrics(identity, gt)
    copy = rows["copy_identity"]
    np.testing.assert_allclose(float(copy["PMD_1e-4m2_mean"]), np.mean(direct["pmd"]) * 1e4, rtol=1e-4)
    np.testing.assert_allclose(float(copy["CD_1e-4m2_mean"]), np.mean(direct["cd"]) * 1e4, rtol=1e-4)
    np.testing.assert_allclose(float(copy["EMD_1e-3m_mean"]), np.mean(direct["emd"]) * 1e3, rtol=1e-4)

    for row in rows.values():  # docs/pose_transfer.md "Metrics" bounds, on the printed scales
        pmd, cd, emd = (float(row[f"{c}_mean"]) for c in ("PMD_1e-4m2", "CD_1e-4m2", "EMD_1e-3m"))
        assert cd <= 6 * pmd * (1 + 1e-4) and emd * 1e-3 <= math.sqrt(3 * pmd * 1e-4) * (1 + 1e-4)
    # DT with the oracle S0 transfers the pose almost exactly on shared-topology data.
    dt = rows["deformation_transfer (oracle S0)"]
    assert float(dt["PMD_1e-4m2_mean"]) < 0.1 * float(copy["PMD_1e-4m2_mean"])
    # The OT warp is permutation-equivariant: its metrics do not depend on the permutation seed.
    warp = rows[names[1]]
    assert float(warp["PMD_1e-4m2_std"]) <= 1e-4 * float(warp["PMD_1e-4m2_mean"])


def test_eval_errors_are_clear(trained_runs, dataset_dir, capsys):
    from jaxpose import cli

    assert cli.main(["eval", "corenet", "--baseline", "nope", "--data", str(dataset_dir)]) == 2
    assert "unknown pose-transfer baseline 'nope'" in capsys.readouterr().err
    assert cli.main(["eval", "npt", "--baseline", "copy_identity", "--data", str(dataset_dir / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["eval", "corenet", "--baseline", "copy_identity", "--data", str(dataset_dir),
                     "--permutation_seeds", "0,x"]) == 2  # fmt: skip
    assert "comma-separated integers" in capsys.readouterr().err


def test_copy_pose_bound_is_the_pose_mesh_and_needs_one_topology(dataset_dir):
    from jaxpose.pose_transfer import protocol
    from jaxpose.pose_transfer.pairs import open_data

    data = open_data(dataset_dir)
    batch = protocol.eval_arrays(data, data.test_triples(None)[:4], 0)
    np.testing.assert_array_equal(protocol.BASELINES["copy_pose"](batch), batch["pose"])
    # Same identity: the pose mesh is the ground truth itself, so the bound is exact there.
    same = [i for i, t in enumerate(data.test_triples(None)[:4]) if t.identity_id == t.pose_id]
    for i in same:
        np.testing.assert_array_equal(batch["pose"][i], batch["gt"][i])
    with pytest.raises(ValueError, match="one topology"):
        protocol.copy_pose({"pose": batch["pose"][:, :100], "identity": batch["identity"]})
