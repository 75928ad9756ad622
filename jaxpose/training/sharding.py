"""Data parallelism with `jit` + `Mesh` + `NamedSharding`: batch split on its leading axis over a 1-D
device mesh, everything else replicated. XLA inserts the gradient all-reduce, so a loss that is a mean
over the global batch yields the globally averaged gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    if global_batch_size % mesh.size:
        raise ValueError(
            f"global batch size {global_batch_size} must be divisible by the {mesh.size} devices of the mesh"
        )


def shard_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh, global_batch_size: int) -> dict:
    """Assemble global arrays sharded along axis 0 from this process's rows of the batch.

    `local_batch` holds the rows this process feeds (all rows in single-process runs); their count
    times the process count must equal `global_batch_size`.
    """
    sharding = batch_sharded(mesh)
    out = {}
    for name, local in local_batch.items():
        local = np.asarray(local)
        global_shape = (global_batch_size, *local.shape[1:])
        out[name] = jax.make_array_from_process_local_data(sharding, local, global_shape)
    return out


def with_sharding(abstract_tree, sharding: NamedSharding):
    """ShapeDtypeStructs of `abstract_tree` carrying `sharding` (restore targets, jit shardings)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract_tree)


def to_host(tree):
    """NumPy copies of (replicated or fully addressable) arrays; works on every process."""

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.sharding.is_fully_replicated:
                raise ValueError("to_host needs replicated arrays in multi-process runs")
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree.map(fetch, tree)
