"""Subprocess half of the cross-device-count checkpoint test (run with a different device count).

usage: python tests/training_restore_worker.py WORKDIR OVERRIDES_JSON
Restores WORKDIR's latest checkpoint onto every local device, checks it bit-for-bit against
WORKDIR/expected.npz, trains one more step into WORKDIR (saving a checkpoint on this device count)
and writes the new state to WORKDIR/after_step.npz.
"""

import json
import pathlib
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from training_support import host_leaves, restore_latest, tiny_config  # noqa: E402

from jaxpose.io.atomic import atomic_save_npz  # noqa: E402
from jaxpose.training.loop import train_and_evaluate  # noqa: E402


def main() -> int:
    workdir = pathlib.Path(sys.argv[1])
    overrides = json.loads(sys.argv[2])
    config = tiny_config(**overrides)
    restored = restore_latest(workdir, config)
    leaves = host_leaves(restored.state)
    with np.load(workdir / "expected.npz") as expected:
        for i, leaf in enumerate(leaves):
            np.testing.assert_array_equal(leaf, expected[f"leaf_{i}"])
    sharding = jax.tree.leaves(restored.state)[0].sharding
    if sharding.mesh.size != len(jax.devices()):
        raise AssertionError(f"restored onto a mesh of {sharding.mesh.size}, expected {len(jax.devices())}")
    config.num_steps = restored.step + 1
    result = train_and_evaluate(config, workdir, show_progress=False)
    atomic_save_npz(workdir / "after_step.npz", **{f"leaf_{i}": x for i, x in enumerate(host_leaves(result.state))})
    print(f"restored step {restored.step} on {len(jax.devices())} device(s); trained to {result.step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
