"""Peak-memory estimates of a 3D-CoreNet transfer, and the choice of dense or online matching from them.

A 219k-vertex identity and pose with dense matching asks XLA for a single 579 GB buffer. The estimate
below is computed before the model is loaded, from the vertex counts and the checkpoint config's
widths, so `--matching auto` can pick the matching and an impossible request is refused up front.

Estimate (bytes, float32 = 4 bytes; N = identity vertices, M = pose vertices):

    peak ≈ matching + per-vertex + OVERHEAD_BYTES

- matching, `Materialized()` geometry: `DENSE_MATRICES` (N, M) float32 matrices alive at once. For
  `CoreNetIteration` that is 3: `sinkhorn.warp_dense` keeps the log-kernel log K (loop-invariant over
  the Sinkhorn scan, alive until the warp), forms the row-normalised plan softmax(log K + log b) next
  to it (it feeds a matmul, so it is materialised), and XLA keeps one more (N, M) temporary (the
  correlation matmul output before the (C − 1)/ε scaling, or the exp inside the softmax). XLA's
  `memory_analysis()` of the compiled model reports 3.000 · N · M · 4 bytes for the N·M term, and the
  tester's out-of-memory request (578,654,179,200 bytes ≈ 3 · 219.6k² · 4) agrees. The ott-jax
  solvers keep 5 (cost matrix, kernel, plan and two temporaries; measured 5.00).
- matching, `RowBlocked(b)` geometry: `ONLINE_SLABS` (b, M) slabs (the slab of log K, its scores
  and a temporary: 3 for `CoreNetIteration`, 6 for ott's online mode) plus the per-block column
  log-sum-exps of one pass and of the pass being built, 2 · ⌈N / b⌉ · M floats.
- per-vertex: the decoder runs at N vertices with widths w₁, w₂, w₃ (official 1024, 512, 256);
  XLA keeps about 6 · (w₁ + w₂ + w₃) floats per identity vertex alive (measured 6.0 with dense and
  7.7 with online matching, where the schedule differs), counted as `DECODER_FLOATS_PER_CHANNEL` = 8;
  plus the features and θ/φ projections of both meshes, 2 · (N + M) · (feature width + correlation
  width) floats, alive during the matching.
- OVERHEAD_BYTES (256 MiB): the weights (≈ 50 MB official), inputs and outputs, the runtime.

The measurements: `tests/test_transfer_memory.py` compiles small models and checks that the estimate
bounds XLA's own `memory_analysis()` of the compiled forward pass, without being more than 2× above it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable

from jaxpose.matching import MATCHING_NAMES, CoreNetIteration, Geometry, Materialized, Solver, matching_from_name

FLOAT_BYTES = 4
ONLINE_COLUMN_SUMS = 2
DECODER_FLOATS_PER_CHANNEL = 8
FEATURE_COPIES = 2
OVERHEAD_BYTES = 256 * 2**20

AUTO = "auto"
MATCHING_CHOICES = (AUTO, *MATCHING_NAMES)
"""`--matching` values: "auto" (dense if it fits comfortably, else online) or a `MATCHING_NAMES` name."""
AUTO_DENSE_FRACTION = 0.5
"""`auto` uses dense matching only when its estimate is at most this fraction of the available memory."""


class MatchingMemoryError(ValueError):
    """The requested (or every possible) matching needs more memory than is available; gives the numbers."""


@dataclasses.dataclass(frozen=True)
class CoreNetWidths:
    """The widths of a 3D-CoreNet that set its memory: last feature width, θ/φ width, decoder widths."""

    feature_width: int
    correlation_width: int
    decoder_widths: tuple[int, ...]

    @classmethod
    def from_config(cls, model_config) -> CoreNetWidths:
        """From a checkpoint config's `model` section (`feature_widths`, `correlation_width`, `decoder_widths`)."""
        return cls(int(tuple(model_config.feature_widths)[-1]), int(model_config.correlation_width),
                   tuple(int(w) for w in model_config.decoder_widths))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class KernelCounts:
    """Kernel-sized float32 buffers a solver keeps alive at once: (N, M) matrices when materialised,
    (block, M) slabs when row-blocked (module docstring)."""

    dense_matrices: int
    online_slabs: int


CORENET_COUNTS = KernelCounts(dense_matrices=3, online_slabs=3)
OTT_COUNTS = KernelCounts(dense_matrices=5, online_slabs=6)


def kernel_counts(solver: Solver) -> KernelCounts:
    """`CORENET_COUNTS` for `CoreNetIteration`, `OTT_COUNTS` for the ott-jax solvers."""
    return CORENET_COUNTS if isinstance(solver, CoreNetIteration) else OTT_COUNTS


def matching_bytes(n_id: int, n_pose: int, geometry: Geometry, solver: Solver) -> int:
    """Bytes of the matching's kernel buffers for N = n_id rows, M = n_pose columns (module docstring)."""
    counts = kernel_counts(solver)
    if isinstance(geometry, Materialized):
        return counts.dense_matrices * n_id * n_pose * FLOAT_BYTES
    block = min(geometry.block_size, n_id)
    slabs = counts.online_slabs * block * n_pose
    column_sums = ONLINE_COLUMN_SUMS * math.ceil(n_id / block) * n_pose
    return (slabs + column_sums) * FLOAT_BYTES


def vertex_bytes(n_id: int, n_pose: int, widths: CoreNetWidths) -> int:
    """Bytes of the per-vertex activations: decoder at n_id vertices, features of both meshes."""
    decoder = DECODER_FLOATS_PER_CHANNEL * sum(widths.decoder_widths) * n_id
    features = FEATURE_COPIES * (n_id + n_pose) * (widths.feature_width + widths.correlation_width)
    return (decoder + features) * FLOAT_BYTES


def peak_bytes(n_id: int, n_pose: int, geometry: Geometry, solver: Solver, widths: CoreNetWidths) -> int:
    """Estimated peak bytes of one 3D-CoreNet forward pass (module docstring)."""
    return matching_bytes(n_id, n_pose, geometry, solver) + vertex_bytes(n_id, n_pose, widths) + OVERHEAD_BYTES


def host_available_bytes(meminfo: str = "/proc/meminfo") -> int:
    """Host memory available to a new allocation: `MemAvailable` of /proc/meminfo, else os.sysconf."""
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file gives kB
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def available_memory_bytes() -> int:
    """Bytes free on the device the model runs on: an accelerator's `memory_stats()`, else host memory."""
    import jax  # local: the estimates above are plain arithmetic; only this probe needs the runtime

    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return host_available_bytes()


def format_bytes(count: float) -> str:
    """`count` bytes in decimal units, e.g. "578.7 GB"."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} B"


MATERIALIZED_VARIANT = {"dense": "dense", "dense_scaling": "dense_scaling", "online": "dense", "ott": "ott", "ott_online": "ott", "converged": "converged"}
ONLINE_VARIANT = {"dense": "online", "dense_scaling": "online", "online": "online", "ott": "ott_online", "ott_online": "ott_online", "converged": None}
"""The same solver with the other geometry: what `auto` chooses between (ott-jax's converged solver has
no online variant here; the scaling-domain iteration's row-blocked variant is the log-domain one, the same
function)."""


@dataclasses.dataclass(frozen=True)
class MatchingPlan:
    """The matching a transfer will use (a `MATCHING_NAMES` name) and the estimates behind the choice.

    `dense_*` / `online_*`: the materialised and row-blocked variants of the chosen solver, with their
    estimated peak bytes (`online_name` None when the solver has no online variant).
    """

    name: str
    estimate_bytes: int
    available_bytes: int
    dense_name: str
    dense_bytes: int
    online_name: str | None
    online_bytes: int | None

    def describe(self, n_id: int, n_pose: int, block: int) -> str:
        """One line for the user: the estimates, what is available and what was chosen."""
        online = f", {self.online_name} (block {block}) ≈ {format_bytes(self.online_bytes)}" if self.online_name else ""
        return (f"memory for {n_id:,} x {n_pose:,} vertices: {self.dense_name} matching ≈ "
                f"{format_bytes(self.dense_bytes)}{online}; available {format_bytes(self.available_bytes)} "
                f"-> {self.name} matching")  # fmt: skip


def _estimate(name: str, n_id: int, n_pose: int, widths: CoreNetWidths, block_size: int, num_iterations: int) -> int:
    """`peak_bytes` of the matching called `name` (a `MATCHING_NAMES` entry)."""
    geometry, solver = matching_from_name(name, block_size=block_size, num_iterations=num_iterations)
    return peak_bytes(n_id, n_pose, geometry, solver, widths)


def plan_matching(requested: str, n_id: int, n_pose: int, widths: CoreNetWidths, *, configured: str = "dense",
                  block_size: int, num_iterations: int,
                  available: Callable[[], int] = available_memory_bytes) -> MatchingPlan:  # fmt: skip
    """Resolve `requested` (one of `MATCHING_CHOICES`) to a matching name that fits in memory.

    "auto" keeps the solver of `configured` (the checkpoint's `model.matching_mode`) and chooses its
    geometry: the materialised variant when its estimate is ≤ `AUTO_DENSE_FRACTION` of `available()`
    (or when there is no online variant), else the online one. An explicit name is kept. Raises
    `MatchingMemoryError` (with the estimates and the available bytes) when the chosen matching's
    estimate exceeds `available()`, suggesting the online variant when that one fits.
    `available` is injectable so tests can fake a small machine.
    """
    for name in (requested, configured):
        if name not in MATCHING_CHOICES:
            raise ValueError(f"unknown matching {name!r}; expected one of {', '.join(MATCHING_CHOICES)}")
    free = int(available())
    base = configured if requested == AUTO else requested
    dense_name, online_name = MATERIALIZED_VARIANT[base], ONLINE_VARIANT[base]
    estimate = lambda name: _estimate(name, n_id, n_pose, widths, block_size, num_iterations)  # noqa: E731
    dense = estimate(dense_name)
    online = estimate(online_name) if online_name else None
    if requested == AUTO:
        name = dense_name if online_name is None or dense <= AUTO_DENSE_FRACTION * free else online_name
    else:
        name = requested
    plan = MatchingPlan(name, estimate(name), free, dense_name, dense, online_name, online)
    if plan.estimate_bytes > free:
        raise MatchingMemoryError(_refusal(requested, plan, n_id, n_pose, block_size))
    return plan


def _refusal(requested: str, plan: MatchingPlan, n_id: int, n_pose: int, block_size: int) -> str:
    """The message of a refused matching: the numbers, and what to try instead."""
    need = (f"{plan.name} matching of {n_id:,} x {n_pose:,} vertices needs ≈ {format_bytes(plan.estimate_bytes)} "
            f"but only {format_bytes(plan.available_bytes)} is available")  # fmt: skip
    if plan.online_name and plan.name != plan.online_name and plan.online_bytes <= plan.available_bytes:
        return (f"{need}; use --matching {plan.online_name} (Python: matching={plan.online_name!r}), "
                f"≈ {format_bytes(plan.online_bytes)} with block {block_size}")  # fmt: skip
    advice = "even online matching does not fit" if requested == AUTO else "it does not fit"
    return (f"{need} ({advice}; {plan.dense_name} would need ≈ {format_bytes(plan.dense_bytes)}): use meshes with "
            "fewer vertices, a smaller --block_size, or a machine with more memory")


__all__ = [
    "AUTO", "AUTO_DENSE_FRACTION", "CORENET_COUNTS", "CoreNetWidths", "KernelCounts", "MATCHING_CHOICES",
    "MATERIALIZED_VARIANT", "MatchingMemoryError", "MatchingPlan", "ONLINE_VARIANT", "OTT_COUNTS",
    "available_memory_bytes", "format_bytes", "host_available_bytes", "kernel_counts", "matching_bytes", "peak_bytes",
    "plan_matching", "vertex_bytes",
]
