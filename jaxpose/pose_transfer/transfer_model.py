"""The model side of a transfer: checkpoint config and model loading, and the forward pass with progress.

`predict` runs the test protocol's permuted forward pass (`protocol.permuted_forward`) on one
bbox-centred pair. With row-blocked (online) 3D-CoreNet matching it runs the same computation in
three stages so that the slow part can report progress: the feature networks (one jitted call), the
matching as `jaxpose.matching.StepwiseWarp` (one compiled call per row block, a tqdm bar on stderr
and a time estimate after the first block), then the refinement decoder (one jitted call). Every
other model and matching runs as one jitted call after a "compiling…" line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxpose.geometry.bbox import center_on_bbox
from jaxpose.matching import CoreNetIteration, RowBlocked, StepwiseWarp, matching_from_name
from jaxpose.pose_transfer._validation import check_pose_transfer_inputs
from jaxpose.pose_transfer.corenet import CoreNet
from jaxpose.pose_transfer.evaluation import POSE_TRANSFER_TASKS
from jaxpose.pose_transfer.protocol import permutation_keys, permuted_forward
from jaxpose.training import evaluation
from jaxpose.training.bundle import is_bundle, read_bundle_config, read_manifest
from jaxpose.training.checkpoint import Checkpointer, resolve_checkpoint_dir
from jaxpose.training.registry import build_task
from jaxpose.training.sharding import make_mesh
from jaxpose.training.state import merge_model, model_graphdef

Say = Callable[[str], None]


def read_checkpoint_config(checkpoint, step: int | None = None):
    """The config saved with `checkpoint` (a workdir, its checkpoints/ directory, or a model bundle) at
    `step` (default latest), without restoring any arrays. Raises FileNotFoundError, CheckpointError or
    BundleError (a ValueError)."""
    if is_bundle(checkpoint):
        bundle_step = int(read_manifest(checkpoint).get("step", 0))
        if step is not None and int(step) != bundle_step:
            raise ValueError(f"{checkpoint} is a model bundle of step {bundle_step}; step {step} is not in it")
        return read_bundle_config(checkpoint)
    checkpointer = Checkpointer(resolve_checkpoint_dir(checkpoint), create=False)
    try:
        return checkpointer.read_config(step)
    finally:
        checkpointer.close()


def load_model(checkpoint: str, step: int | None = None, matching: str | None = None, block_size: int | None = None):
    """(task name, model in eval mode, step) from a pose-transfer checkpoint, with optional matching overrides.

    `matching` is one of `MATCHING_NAMES`; it and `block_size` override the checkpoint config's
    `model.matching_mode` / `model.block_size`, which `matching_from_name` turns into the model's
    matching objects.
    """
    loaded = evaluation.load_checkpoint(checkpoint, make_mesh(jax.devices()[:1]), step)
    task, config = loaded.task, loaded.config
    if task.name not in POSE_TRANSFER_TASKS:
        raise ValueError(f"checkpoint {checkpoint} is for task {task.name!r}, not a pose-transfer task {POSE_TRANSFER_TASKS}")
    overridden = matching is not None or block_size is not None
    if overridden and task.name != "corenet":
        raise ValueError(f"--matching/--block_size apply to 3D-CoreNet checkpoints only; {checkpoint} is {task.name!r}")
    if matching is not None:
        config.model.matching_mode = matching
    if block_size is not None:
        if block_size < 1:
            raise ValueError(f"--block_size must be positive, got {block_size}")
        config.model.block_size = int(block_size)
    if overridden:
        # Fail here, with the names listed, rather than inside the model build.
        matching_from_name(str(config.model.matching_mode), block_size=int(config.model.block_size),
                           num_iterations=int(config.model.num_sinkhorn_iterations))  # fmt: skip
    graphdef = model_graphdef(build_task(config)) if overridden else loaded.graphdef
    model = merge_model(graphdef, loaded.state.params, loaded.state.model_state)
    model.eval()
    return task.name, model, loaded.step


def _permutations(seed: int, n_id: int, n_pose: int) -> tuple[jax.Array, jax.Array]:
    """The identity and pose permutations `permuted_forward` draws for triple 0 of `seed`."""
    key = jnp.asarray(permutation_keys(seed, 1))[0]
    return (jax.random.permutation(jax.random.fold_in(key, 0), n_id),
            jax.random.permutation(jax.random.fold_in(key, 1), n_pose))  # fmt: skip


def _is_stepwise(model) -> bool:
    """True for a 3D-CoreNet with online (row-blocked) CoreNet matching: the case with a progress bar."""
    return (isinstance(model, CoreNet) and isinstance(model.matching_geometry, RowBlocked)
            and isinstance(model.matching_solver, CoreNetIteration))  # fmt: skip


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _stepwise_corenet(model: CoreNet, identity, pose, seed: int, say: Say, show_bar: bool) -> np.ndarray:
    """`permuted_forward(model, ·).output` of one centred pair (N, 3), in stages with a progress bar."""
    perm_id, perm_pose = _permutations(seed, identity.shape[0], pose.shape[0])
    identity_p, pose_p = identity[perm_id][None], pose[perm_pose][None]
    check_pose_transfer_inputs("CoreNet", identity_p, pose_p, min_vertices=2)

    def encode(identity_xyz, pose_xyz):  # the first half of CoreNet.warp: features and θ/φ projections
        id_features = model.features(identity_xyz)
        return model.theta(id_features), model.phi(model.features(pose_xyz)), id_features

    say("compiling the feature networks…")
    theta, phi, id_features = jax.jit(encode)(identity_p, pose_p)
    warp = StepwiseWarp(theta[0], phi[0], pose_p[0], epsilon=model.epsilon,
                        block_size=model.matching_geometry.block_size, solver=model.matching_solver)  # fmt: skip
    say(f"compiling the online matching steps ({warp.num_passes} passes x {warp.num_blocks} row blocks of {warp.block})…")
    warp.compile()
    with tqdm(total=warp.num_steps, desc="online matching", unit="step", file=sys.stderr, disable=not show_bar,
              dynamic_ncols=True, mininterval=0.5) as bar:  # fmt: skip
        start = time.perf_counter()

        def on_step():
            if bar.n == 0:
                estimate = (time.perf_counter() - start) * warp.num_steps
                bar.write(f"online matching: {warp.num_steps} steps of {warp.blocks_per_step} row block(s), "
                          f"≈ {_format_seconds(estimate)} estimated", file=sys.stderr)  # fmt: skip
            bar.update()

        warped = warp.run(on_step)
    say("compiling the decoder…")
    output = jax.jit(model.refine)(warped[None], id_features)
    return np.asarray(output[0][jnp.argsort(perm_id)])


def predict(model, identity: np.ndarray, pose: np.ndarray, permutation_seed: int = 0, *,
            say: Say = lambda _: None, show_bar: bool = False) -> np.ndarray:  # fmt: skip
    """The model's output (N, 3) float32 for identity (N, 3) in the pose of (M, 3), identity order.

    Inputs (metres, y-up) are bbox-centred here; the permutations are the test protocol's
    (`permuted_forward`, triple 0 of `permutation_seed`). The output is in the model's frame (bbox-
    centred inputs; not re-centred). `say` receives status lines; `show_bar` enables the tqdm bar of
    online matching.
    """
    identity = center_on_bbox(jnp.asarray(identity, jnp.float32))
    pose = center_on_bbox(jnp.asarray(pose, jnp.float32))
    if _is_stepwise(model):
        return _stepwise_corenet(model, identity, pose, permutation_seed, say, show_bar)
    keys = jnp.asarray(permutation_keys(permutation_seed, 1))
    batch = {"identity": identity[None], "pose": pose[None], "permutation_key": keys}
    say("compiling and running the model…")
    return np.asarray(jax.jit(lambda b: permuted_forward(model, b).output)(batch)[0])


__all__ = ["load_model", "predict", "read_checkpoint_config"]
