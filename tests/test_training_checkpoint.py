"""Orbax checkpoints: round trip, retention, other device counts, clear errors on mismatch/corruption."""

import json
import pathlib
import sys

import jax
import numpy as np
import pytest
from training_support import host_leaves, restore_latest, run, tiny_config

from jaxpose.io.atomic import atomic_save_npz
from jaxpose.training import tiny
from jaxpose.training.checkpoint import Checkpointer, CheckpointError
from jaxpose.training.loop import train_and_evaluate

OVERRIDES = {"num_steps": 4, "checkpoint_every": 2, "keep_checkpoints": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step run on all 8 devices, checkpoints every 2 steps."""
    workdir = tmp_path_factory.mktemp("run8")
    config = tiny_config(**OVERRIDES)
    result = train_and_evaluate(config, workdir, show_progress=False)
    return workdir, config, host_leaves(result.state)


def _copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_round_trip_is_exact_and_carries_config_and_data_position(trained):
    workdir, config, final = trained
    checkpointer = Checkpointer(workdir / "checkpoints", create=False)
    assert checkpointer.all_steps() == [2, 4]
    checkpointer.close()
    restored = restore_latest(workdir, config)
    assert restored.step == 4
    for a, b in zip(host_leaves(restored.state), final):
        np.testing.assert_array_equal(a, b)
    assert restored.config.to_dict() == config.to_dict()
    assert restored.data_position == {"next_step": 4, "epoch": 1, "seed": 0, "batch_size": 16, "num_items": 48}
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["model"]["hidden"] == 8


def test_retention_keeps_the_last_m(tmp_path):
    config = tiny_config(num_steps=8, checkpoint_every=2, keep_checkpoints=2)
    train_and_evaluate(config, tmp_path, show_progress=False)
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [6, 8]


def test_eight_device_checkpoint_restores_on_one_device_and_back(trained, tmp_path):
    workdir, config, final = trained
    workdir = _copy(workdir, tmp_path / "run")
    atomic_save_npz(workdir / "expected.npz", **{f"leaf_{i}": x for i, x in enumerate(final)})
    worker = pathlib.Path(__file__).with_name("training_restore_worker.py")
    proc = run([sys.executable, str(worker), str(workdir), json.dumps(OVERRIDES)], num_devices=1, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "restored step 4 on 1 device(s); trained to 5" in proc.stdout
    # The 1-device checkpoint of step 5 restores onto this process's 8 devices, bit-exactly.
    config5 = tiny_config(**{**OVERRIDES, "num_steps": 5})
    restored = restore_latest(workdir, config5)
    assert restored.step == 5 and jax.tree.leaves(restored.state)[0].sharding.mesh.size == 8
    with np.load(workdir / "after_step.npz") as expected:
        for i, leaf in enumerate(host_leaves(restored.state)):
            np.testing.assert_array_equal(leaf, expected[f"leaf_{i}"])


def test_mismatched_config_names_the_difference(trained):
    workdir, _, _ = trained
    wider = tiny_config(**OVERRIDES, model__hidden=12)
    with pytest.raises(CheckpointError, match=r"model\.hidden: checkpoint has 8, config has 12"):
        restore_latest(workdir, wider)
    with pytest.raises(CheckpointError, match="different config"):
        train_and_evaluate(wider, workdir, show_progress=False)


def test_shape_mismatch_is_checked_against_the_abstract_target(trained):
    from jaxpose.training.optim import make_optimizer
    from jaxpose.training.sharding import make_mesh
    from jaxpose.training.state import abstract_train_state

    workdir, _, _ = trained
    wider = tiny_config(**OVERRIDES, model__hidden=12)
    tx, _ = make_optimizer(wider.optimizer, 3.0, 4)
    checkpointer = Checkpointer(workdir / "checkpoints", create=False)
    with pytest.raises(CheckpointError, match=r"params/embed/kernel: checkpoint has shape \(3, 8\) float32, expected \(3, 12\)"):
        checkpointer.restore(abstract_train_state(tiny.make_task(wider), tx, make_mesh()))  # no config check
    checkpointer.close()


def test_truncated_array_files_give_a_clear_error(trained, tmp_path):
    workdir = _copy(trained[0], tmp_path / "run")
    truncated = 0
    for path in (workdir / "checkpoints" / "4" / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            truncated += 1
    assert truncated
    with pytest.raises(CheckpointError, match=r"checkpoints/4.*corrupt \(ValueError: .*Error reading"):
        restore_latest(workdir, trained[1])


@pytest.mark.parametrize("victim", ["state/_METADATA", "config/metadata"])
def test_missing_metadata_gives_a_clear_error(trained, tmp_path, victim):
    workdir = _copy(trained[0], tmp_path / "run")
    (workdir / "checkpoints" / "4" / victim).unlink()
    with pytest.raises(CheckpointError, match=r"checkpoints/4.*(missing or corrupt|unreadable)"):
        restore_latest(workdir, trained[1])


def test_empty_directory_is_file_not_found(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        restore_latest(tmp_path, tiny_config())


def test_changed_training_data_is_a_clear_error_on_resume(trained, tmp_path):
    import dataclasses

    from jaxpose.training.data import ArrayDataset

    workdir = _copy(trained[0], tmp_path / "run")
    config = tiny_config(**{**OVERRIDES, "num_steps": 6})
    shrunk = dataclasses.replace(tiny.make_task(config), make_train_data=lambda: ArrayDataset(tiny.make_examples(0, 40, 16)))
    with pytest.raises(CheckpointError, match=r"data-iterator position .*'num_items': 48.* does not match .*'num_items': 40"):
        train_and_evaluate(config, workdir, task=shrunk, show_progress=False)
