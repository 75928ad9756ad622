"""Exact resumption: SIGKILL a training process after a checkpoint, resume, compare bit-for-bit."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from training_support import REPO, config_args, host_leaves, jaxpose_command, restore_latest, run, subprocess_env, tiny_config

from jaxpose.training import logs
from jaxpose.training.loop import train_and_evaluate

NUM_DEVICES = 8  # the same device count as this test process, so results can be bit-identical


def _committed_steps(workdir):
    directory = workdir / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / "commit_success.txt").exists())


@pytest.mark.multiprocess
def test_sigkill_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    # A constant learning rate keeps the run independent of num_steps, so a long run that we kill and
    # a short resumed run follow the same trajectory.
    long_config = tiny_config(num_steps=5000, checkpoint_every=10, keep_checkpoints=2, log_every=5,
                              optimizer__schedule="constant")  # fmt: skip
    killed = tmp_path / "killed"
    command = jaxpose_command("train", "tiny", "--workdir", str(killed), "--no_progress", *config_args(long_config))
    proc = subprocess.Popen(command, cwd=REPO, env=subprocess_env(NUM_DEVICES),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(step >= 20 for step in _committed_steps(killed)):
            if proc.poll() is not None:
                pytest.fail(f"training exited early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint appeared within 120 s")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    last = max(_committed_steps(killed))
    target = last + 7
    resume_config = tiny_config(num_steps=target, checkpoint_every=10, keep_checkpoints=2, log_every=5,
                                optimizer__schedule="constant")  # fmt: skip
    resumed = run(jaxpose_command("train", "tiny", "--workdir", str(killed), "--no_progress", *config_args(resume_config)),
                  num_devices=NUM_DEVICES, timeout=120)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    reference = train_and_evaluate(resume_config, tmp_path / "reference", show_progress=False)
    restored = restore_latest(killed, resume_config)
    assert restored.step == target == reference.step
    for a, b in zip(host_leaves(restored.state), host_leaves(reference.state)):
        np.testing.assert_array_equal(a, b)

    # The resumed log has each step once and the same training losses as the uninterrupted run.
    def losses(workdir):
        return [(r["step"], r["train/loss"]) for r in logs.read_jsonl(workdir / logs.METRICS_FILE) if "train/loss" in r]

    assert losses(killed) == losses(tmp_path / "reference")
    assert json.loads((killed / "config.json").read_text())["num_steps"] == target
