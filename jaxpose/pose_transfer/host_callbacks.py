"""Host-side work inside jitted evaluation: exact / Sinkhorn EMD and Deformation Transfer, run through
`jax.pure_callback` (SciPy on the CPU host).

Host callbacks may run concurrently on several device threads (one per shard); SciPy's solvers and the
factorisation cache are not thread-safe, so each callback body runs under one lock.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.metrics.surface import emd_exact, emd_sinkhorn
from jaxpose.pose_transfer.deformation_transfer import DeformationTransfer

EMD_CHOICES = ("exact", "sinkhorn", "none")
SINKHORN_EMD_EPSILON = 1e-3  # metres
SINKHORN_EMD_BLOCK = 1024
_LOCK = threading.Lock()


class EmdTimer:
    """Accumulates the host time spent in the EMD callback (seconds) and the number of pairs."""

    def __init__(self):
        self.seconds = 0.0
        self.pairs = 0


def _emd_host(method: str, timer: EmdTimer | None, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    with _LOCK:
        start = time.perf_counter()
        if method == "exact":
            values = emd_exact(np.asarray(pred, np.float64), np.asarray(target, np.float64))
        else:
            values = np.asarray(emd_sinkhorn(np.asarray(pred, np.float32), np.asarray(target, np.float32),
                                             epsilon=SINKHORN_EMD_EPSILON, batch_size=SINKHORN_EMD_BLOCK), np.float64)  # fmt: skip
        if timer is not None:
            timer.seconds += time.perf_counter() - start
            timer.pairs += int(np.shape(pred)[0])
        return np.asarray(values, np.float32).reshape(np.shape(pred)[0])


def emd_on_host(pred: jax.Array, target: jax.Array, method: str, timer: EmdTimer | None = None) -> jax.Array:
    """EMD (B,) float32 in metres between point sets pred, target (B, N, 3), computed on the host:
    "exact" (SciPy assignment, float64) or "sinkhorn" (ott-jax, ε = 1e-3 m). Usable under `jit`."""
    if method not in ("exact", "sinkhorn"):
        raise ValueError(f"EMD method must be 'exact' or 'sinkhorn', got {method!r}")
    shape = jax.ShapeDtypeStruct(pred.shape[:1], jnp.float32)
    return jax.pure_callback(functools.partial(_emd_host, method, timer), shape, pred, target)


@functools.lru_cache(maxsize=1)
def _transfer_engine() -> DeformationTransfer:
    return DeformationTransfer(cache_size=64)


def _deformation_transfer_host(identity, faces, pose, source_reference) -> np.ndarray:
    with _LOCK:
        engine = _transfer_engine()
        out = np.empty(np.shape(identity), np.float32)
        for b in range(out.shape[0]):
            face_array = np.asarray(faces[b], np.int64)
            out[b] = engine(identity[b], face_array, pose[b], source_reference=source_reference[b],
                            source_faces=face_array)  # fmt: skip
        return out


def deformation_transfer(batch: Mapping[str, jax.Array]) -> jax.Array:
    """Baseline: Deformation Transfer of S0 → pose mesh onto the identity (oracle S0; host SciPy).

    batch: identity (B, N, 3), identity_faces (B, F, 3), pose (B, N, 3), source_reference (B, N, 3) =
    the pose mesh's subject in the identity's pose. The pose mesh shares the identity's topology (one
    dataset), so `identity_faces` are its faces too. Returns (B, N, 3) float32.
    """
    shape = jax.ShapeDtypeStruct(batch["identity"].shape, jnp.float32)
    return jax.pure_callback(
        _deformation_transfer_host, shape, batch["identity"], batch["identity_faces"], batch["pose"],
        batch["source_reference"],
    )  # fmt: skip
