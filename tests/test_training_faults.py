"""Faults of a training run: corrupt or non-finite checkpoints, divergence, bad optimizer settings,
concurrent runs on one workdir, rejected resumes. Each test provokes the fault and checks both the
named error and that nothing that existed was changed or lost."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.training import cli_train
from jaxpose.training.checkpoint import CheckpointError, Checkpointer
from jaxpose.training.evaluation import load_checkpoint
from jaxpose.training.loop import TrainingDivergedError, train_and_evaluate
from jaxpose.training.registry import build_task
from jaxpose.training.sharding import make_mesh
from jaxpose.training.workdir_lock import LOCK_FILE, WorkdirLockedError, workdir_lock
from training_support import REPO, config_args, restore_latest, tiny_config


def _snapshot(workdir: pathlib.Path) -> dict[str, str]:
    """SHA-256 of every file under `workdir` except the lock file (what a failed run must not touch)."""
    return {
        str(path.relative_to(workdir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(workdir.rglob("*"))
        if path.is_file() and path.name != LOCK_FILE
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 4-step tiny run (checkpoints at 3 and 4), and its config."""
    config = tiny_config(num_steps=4, checkpoint_every=3)
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train_and_evaluate(config, workdir, show_progress=False)
    return workdir, config


def _copy(run: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def _flip_middle(path: pathlib.Path, seed: int = 0) -> None:
    """Overwrite up to 4,096 bytes in the middle of `path` with random bytes (size unchanged)."""
    data = bytearray(path.read_bytes())
    middle, width = len(data) // 2, min(4096, len(data) // 2)
    data[middle - width // 2 : middle - width // 2 + width] = np.random.default_rng(seed).bytes(width)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory):
    """A 2-step run with 128-wide layers: random float32 weights compress poorly, so the array files
    store them nearly raw and a flipped byte decodes to a different number instead of a decode error."""
    config = tiny_config(num_steps=2, checkpoint_every=0, model__hidden=128)
    workdir = tmp_path_factory.mktemp("wide") / "run"
    train_and_evaluate(config, workdir, show_progress=False)
    return workdir


def test_flipped_bytes_in_any_checkpoint_file_never_restore_silently(wide_run, tmp_path):
    """For every file of the saved state: restoring either raises CheckpointError naming the
    checkpoint or returns exactly the saved arrays (some files are not read on restore). Whether a flip
    lands in a compressed chunk (a decode error) or in stored-raw float bytes (caught only by the
    checksums) depends on Orbax's file layout, which varies between runs; the checksum path is pinned
    down by `test_changed_array_content_is_named_by_its_checksum`."""
    reference = jax.tree.leaves(load_checkpoint(wide_run, make_mesh()).state)
    files = sorted(p.relative_to(wide_run) for p in (wide_run / "checkpoints" / "2" / "state").rglob("*") if p.is_file())
    outcomes = {}
    for number, relative in enumerate(files):
        workdir = tmp_path / str(number)
        shutil.copytree(wide_run, workdir)
        _flip_middle(workdir / relative)
        try:
            restored = jax.tree.leaves(load_checkpoint(workdir, make_mesh()).state)
        except CheckpointError as error:
            assert f"{workdir}/checkpoints/2" in str(error)
            outcomes[relative] = str(error)
        else:
            assert all(np.array_equal(a, b) for a, b in zip(reference, restored)), relative
            outcomes[relative] = "identical"
    assert any(text != "identical" for text in outcomes.values()), outcomes


def test_a_corrupt_checkpoint_stops_the_resume_and_nothing_is_written(trained, tmp_path):
    workdir = _copy(trained[0], tmp_path)
    for path in (workdir / "checkpoints" / "4" / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            _flip_middle(path)
    before = _snapshot(workdir)
    with pytest.raises(CheckpointError, match=r"checkpoints/4.*(corrupt|unreadable)"):
        train_and_evaluate(tiny_config(num_steps=6, checkpoint_every=3), workdir, show_progress=False)
    assert _snapshot(workdir) == before  # no new checkpoint, log or config


def test_changed_array_content_is_named_by_its_checksum(trained, tmp_path):
    """Valid array files of another run under this run's step: only the digests can tell."""
    workdir = _copy(trained[0], tmp_path)
    other = tmp_path / "other"
    train_and_evaluate(tiny_config(num_steps=4, checkpoint_every=3, seed=7), other, show_progress=False)
    shutil.rmtree(workdir / "checkpoints" / "4" / "state")
    shutil.copytree(other / "checkpoints" / "4" / "state", workdir / "checkpoints" / "4" / "state")
    with pytest.raises(CheckpointError, match=r"params/\S+: content checksum mismatch"):
        load_checkpoint(workdir, make_mesh())


def test_a_checkpoint_holding_nan_is_refused(trained, tmp_path):
    workdir, config = trained
    restored = restore_latest(workdir, config)
    state = restored.state
    params = jax.tree.map(lambda x: x, state.params)
    leaf_path, leaf = jax.tree_util.tree_flatten_with_path(params)[0][0]
    poisoned = jax.tree_util.tree_map_with_path(
        lambda path, x: x.at[(0,) * x.ndim].set(jnp.nan) if path == leaf_path else x, params
    )
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    checkpointer.save(4, state.replace(params=poisoned), config, restored.data_position)
    checkpointer.wait_until_finished()
    checkpointer.close()
    with pytest.raises(CheckpointError, match=r"non-finite.*\n.*params/.*1 of \d+ values are NaN/Inf"):
        load_checkpoint(tmp_path, make_mesh())


@dataclasses.dataclass
class _PoisonAfter:
    """The tiny task's training data, whose batches turn to NaN from the `after`-th request on."""

    data: object
    after: int
    calls: int = 0

    def __len__(self):
        return len(self.data)

    def take(self, indices):
        self.calls += 1
        batch = self.data.take(indices)
        if self.calls > self.after:
            batch = {k: np.full_like(v, np.nan) if np.issubdtype(v.dtype, np.floating) else v for k, v in batch.items()}
        return batch


def test_a_non_finite_step_stops_the_run_and_is_never_saved(tmp_path):
    config = tiny_config(num_steps=8, checkpoint_every=2, log_every=1)
    task = build_task(config)
    poisoned = dataclasses.replace(task, make_train_data=lambda: _PoisonAfter(task.make_train_data(), after=4))
    with pytest.raises(TrainingDivergedError, match=r"step 5: non-finite.*Last good checkpoint: \S+checkpoints/4 \(step 4\)"):
        train_and_evaluate(config, tmp_path, task=poisoned, show_progress=False)
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [2, 4]
    restored = restore_latest(tmp_path, config)  # verifies digests and finiteness
    assert restored.step == 4
    logged = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in logged and "Infinity" not in logged


@pytest.mark.parametrize("value", ["nan", "inf", "1e8", "-1e-3", "0"])
def test_invalid_learning_rates_are_refused_before_any_file_is_written(tmp_path, value, capsys):
    workdir = tmp_path / "w"
    rc = cli_train.main(["tiny", *config_args(tiny_config()), f"--config.optimizer.lr={value}", "--workdir", str(workdir)])
    assert rc == 2
    assert "optimizer.lr" in capsys.readouterr().err
    assert not workdir.exists()


def test_a_second_run_on_a_locked_workdir_fails_at_once(trained, tmp_path, capsys):
    workdir = _copy(trained[0], tmp_path)
    before = _snapshot(workdir)
    with workdir_lock(workdir):
        with pytest.raises(WorkdirLockedError, match=f"{workdir} is in use by another run .*pid {os.getpid()}"):
            train_and_evaluate(tiny_config(num_steps=6, checkpoint_every=3), workdir, show_progress=False)
        rc = cli_train.main(["tiny", *config_args(tiny_config(num_steps=6)), "--workdir", str(workdir)])
        assert rc == 2 and "in use by another run" in capsys.readouterr().err
    assert _snapshot(workdir) == before
    result = train_and_evaluate(tiny_config(num_steps=6, checkpoint_every=3), workdir, show_progress=False)
    assert result.resumed_from == 4 and result.step == 6  # released: the run goes on


def test_the_lock_of_a_killed_run_is_not_stale(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from jaxpose.training.workdir_lock import workdir_lock\n"
         "with workdir_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirLockedError, match=f"pid {holder.pid}"):
            with workdir_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with workdir_lock(tmp_path):  # SIGKILL released it
        pass


@pytest.mark.parametrize("change", [{"seed": 1}, {"model__hidden": 12}])
def test_a_rejected_resume_keeps_the_runs_config_json(trained, tmp_path, change):
    workdir = _copy(trained[0], tmp_path)
    before = _snapshot(workdir)
    with pytest.raises(CheckpointError, match="different config|does not match"):
        train_and_evaluate(tiny_config(num_steps=6, checkpoint_every=3, **change), workdir, show_progress=False)
    assert _snapshot(workdir) == before


def test_the_first_step_announces_its_compilation(tmp_path, capsys):
    train_and_evaluate(tiny_config(num_steps=2), tmp_path, show_progress=True)
    err = capsys.readouterr().err
    assert "compiling the train step" in err and "train step compiled in" in err
    assert err.index("compiling the train step") < err.index("train step compiled in")


@pytest.mark.parametrize("field", ["data.num_points", "data.num_train", "model.hidden"])
def test_zero_sizes_are_named_before_any_file_is_written(tmp_path, field, capsys):
    workdir = tmp_path / "w"
    rc = cli_train.main(["tiny", *config_args(tiny_config()), f"--config.{field}=0", "--workdir", str(workdir)])
    assert rc == 2
    assert f"config.{field} must be positive, got 0" in capsys.readouterr().err
    assert not workdir.exists()
