"""Multi-host data parallelism for real: two `jax.distributed` processes on 127.0.0.1 (2 CPU devices
each, gloo collectives) train the same steps as one process on 4 devices, to the same parameters."""

import subprocess

import jax
import numpy as np
import pytest
from training_support import (
    REPO,
    config_args,
    free_port,
    host_leaves,
    jaxpose_command,
    restore_latest,
    subprocess_env,
    tiny_config,
)

from jaxpose.training import logs
from jaxpose.training.loop import train_and_evaluate
from jaxpose.training.sharding import make_mesh

NUM_PROCESSES, DEVICES_PER_PROCESS = 2, 2


@pytest.mark.multiprocess
def test_two_processes_match_one_process(tmp_path):
    config = tiny_config(num_steps=6, batch_size=8, checkpoint_every=3, eval_every=3, log_every=2)
    workdir = tmp_path / "distributed"
    address = f"127.0.0.1:{free_port()}"
    procs = []
    try:
        for pid in range(NUM_PROCESSES):
            command = jaxpose_command("train", "tiny", "--workdir", str(workdir), "--no_progress",
                                      "--coordinator_address", address, "--num_processes", str(NUM_PROCESSES),
                                      "--process_id", str(pid), *config_args(config))  # fmt: skip
            procs.append(subprocess.Popen(command, cwd=REPO, env=subprocess_env(DEVICES_PER_PROCESS),
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))  # fmt: skip
        outputs = [proc.communicate(timeout=180)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    for pid, (proc, output) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"process {pid}:\n{output[-3000:]}"
    assert "finished step 6" in outputs[0] and "finished step 6" not in outputs[1]  # process 0 reports

    reference = train_and_evaluate(config, tmp_path / "single",
                                   mesh=make_mesh(jax.devices()[: NUM_PROCESSES * DEVICES_PER_PROCESS]),
                                   show_progress=False)  # fmt: skip
    restored = restore_latest(workdir, config)
    assert restored.step == 6
    for a, b in zip(host_leaves(restored.state), host_leaves(reference.state)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Only process 0 logged: every step appears once, with the same losses as the single process.
    records = logs.read_jsonl(workdir / logs.METRICS_FILE)
    reference_records = logs.read_jsonl(tmp_path / "single" / logs.METRICS_FILE)
    assert [r["step"] for r in records] == [r["step"] for r in reference_records]
    np.testing.assert_allclose([r.get("train/loss", 0.0) for r in records],
                               [r.get("train/loss", 0.0) for r in reference_records], rtol=1e-5)  # fmt: skip
