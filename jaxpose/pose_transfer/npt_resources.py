"""Up-front checks of NPT dataset generation: memory and disk estimates, and a writable output directory.

`generate_npt_dataset` runs these before it allocates the vertex array or writes a file, so an
impossible request (`--identities 100000 --poses 800`: about a TiB of vertices) or an unwritable
`--out` fails at once with the numbers, or the directory, instead of a traceback halfway through.

Estimates (`estimate_npt_resources`) are upper bounds of what generation holds and writes:
  * memory: the (I, P, V, 3) and (I, V, 3) float32 vertex arrays (kept for cache.npz), one identity's
    posed meshes and forward chunks, the body (host and device copy) and one mesh's OBJ text;
  * disk: I x (P + 1) OBJ files (coordinates with `precision` decimals, 1-based face indices),
    the uncompressed cache.npz, meta.json (betas as JSON) and the test list.
Available memory is MemAvailable of /proc/meminfo (else `os.sysconf` free pages); free disk is
`shutil.disk_usage` of the output directory (or its nearest existing parent).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from typing import NamedTuple

import numpy as np

_FLOAT32 = 4
_NPZ_MEMBER_OVERHEAD = 512  # zip local + central headers and the .npy header of one array
_META_BYTES_PER_BETA = 24  # one float in meta.json's "betas" lists
_META_FIXED_BYTES = 16 * 1024
_TEST_LIST_BYTES_PER_TRIPLE = 64
_PYTHON_FLOAT_BYTES = 32  # a float in format_obj's argument tuple (object + pointer)


class NptResourceError(ValueError):
    """The requested dataset would not fit in the available memory or the free disk space."""


class OutputDirectoryError(ValueError):
    """The output directory cannot be created or written to."""


class NptEstimate(NamedTuple):
    """Estimated cost of generating a dataset: meshes (OBJ files), peak memory and disk use in bytes."""

    meshes: int
    memory_bytes: int
    disk_bytes: int

    def describe(self) -> str:
        """One line: "<meshes> meshes, about <memory> of memory and <disk> of disk"."""
        return (f"{self.meshes} meshes, about {format_bytes(self.memory_bytes)} of memory and "
                f"{format_bytes(self.disk_bytes)} of disk")  # fmt: skip


def format_bytes(count: float) -> str:
    """`count` bytes as "512 B", "3.2 MiB", "1.07 TiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def obj_file_bytes(num_vertices: int, num_faces: int, precision: int, max_abs_coordinate: float) -> int:
    """Upper bound of one `format_obj` file: `v x y z` lines with `precision` decimals, `f a b c` lines.

    Coordinates are assumed below `max_abs_coordinate` in magnitude (sign, integer digits, ".", decimals).
    """
    integer_digits = len(str(int(abs(max_abs_coordinate))))
    number = 1 + 1 + integer_digits + (1 + precision if precision > 0 else 0)  # " -d.ddd"
    vertex_line = 1 + 3 * number + 1
    face_line = 1 + 3 * (1 + len(str(num_vertices))) + 1
    return num_vertices * vertex_line + num_faces * face_line


def estimate_npt_resources(
    identities: int, poses: int, num_vertices: int, num_faces: int, num_betas: int, precision: int,
    num_test_triples: int, body_bytes: int, max_abs_coordinate: float, chunk_size: int = 64,
) -> NptEstimate:
    """Memory and disk of generating `identities` x `poses` meshes of a (V, F, K) body (module docstring)."""
    meshes = identities * (poses + 1)  # P posed meshes + 1 rest mesh per identity
    mesh_bytes = num_vertices * 3 * _FLOAT32
    obj_bytes = obj_file_bytes(num_vertices, num_faces, precision, max_abs_coordinate)
    vertex_arrays = meshes * mesh_bytes
    chunks = -(-(poses + 1) // max(1, min(chunk_size, poses + 1)))
    per_identity = 2 * chunks * min(chunk_size, poses + 1) * mesh_bytes  # forward outputs + concatenation
    one_obj = 2 * obj_bytes + num_vertices * 3 * _PYTHON_FLOAT_BYTES
    memory = vertex_arrays + per_identity + 2 * body_bytes + one_obj
    cache = vertex_arrays + num_faces * 3 * 4 + identities * num_betas * _FLOAT32 + poses * 24 * 3 * _FLOAT32
    cache += 8 * (poses + identities) + 7 * _NPZ_MEMBER_OVERHEAD
    meta = _META_FIXED_BYTES + identities * (num_betas * _META_BYTES_PER_BETA + 16) + poses * 16
    disk = meshes * obj_bytes + cache + meta + num_test_triples * _TEST_LIST_BYTES_PER_TRIPLE
    return NptEstimate(meshes, int(memory), int(disk))


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo in bytes; else free physical pages (`os.sysconf`); None if unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def _nearest_existing(path: pathlib.Path) -> pathlib.Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_disk_bytes(directory: str | os.PathLike) -> tuple[pathlib.Path, int]:
    """(the directory measured, its filesystem's free bytes): `directory` or its nearest existing parent."""
    measured = _nearest_existing(pathlib.Path(directory))
    return measured, shutil.disk_usage(measured).free


def check_memory(estimate: NptEstimate, what: str) -> None:
    """NptResourceError giving both numbers if `estimate` needs more memory than is available."""
    available = available_memory_bytes()
    if available is not None and estimate.memory_bytes > available:
        raise NptResourceError(
            f"{what} needs about {format_bytes(estimate.memory_bytes)} of memory ({estimate.meshes} meshes "
            f"held for cache.npz) but only {format_bytes(available)} is available; use fewer identities or poses"
        )


def check_disk(estimate: NptEstimate, out_dir: pathlib.Path, what: str, reclaimable_bytes: int = 0) -> None:
    """NptResourceError giving both numbers if `estimate` needs more disk than `out_dir`'s filesystem has free.

    `reclaimable_bytes`: space the files about to be replaced occupy (counted as free).
    """
    measured, free = free_disk_bytes(out_dir)
    if estimate.disk_bytes > free + reclaimable_bytes:
        raise NptResourceError(
            f"{what} needs about {format_bytes(estimate.disk_bytes)} of disk ({estimate.meshes} OBJ files and "
            f"cache.npz) but only {format_bytes(free + reclaimable_bytes)} is free in {measured}; use fewer "
            "identities or poses, a lower --precision, or another --out"
        )


def prepare_output_directory(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Create `out_dir` (and parents) and check a file can be created in it; returns the directories created.

    Raises OutputDirectoryError naming the directory (nothing is left behind by the check).
    """
    missing = []
    probe = out_dir.absolute()
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_empty_directories(missing)
        raise OutputDirectoryError(f"cannot create the output directory {out_dir}: {exc.strerror or exc}") from None
    try:
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        remove_empty_directories(missing)
        raise OutputDirectoryError(f"the output directory {out_dir} is not writable: {exc.strerror or exc}") from None
    return missing


def remove_empty_directories(created: list[pathlib.Path]) -> None:
    """Remove the directories `prepare_output_directory` created (deepest first), if still empty."""
    for directory in created:
        with contextlib.suppress(OSError):
            directory.rmdir()


def npt_estimate(config, body, chunk_size: int = 64) -> NptEstimate:
    """Estimated meshes, peak memory and disk use of generating `config` (an NptConfig) with `body`."""
    arrays = (body.v_template, body.shapedirs, body.posedirs, body.weights)
    body_bytes = sum(np.asarray(a).nbytes for a in arrays if a is not None)
    max_abs = 2.0 * float(np.max(np.abs(np.asarray(body.v_template)))) + 1.0  # posed and shaped bodies grow
    return estimate_npt_resources(
        config.identities, config.poses, int(body.num_vertices), int(body.faces.shape[0]), int(body.num_betas),
        config.precision, config.num_test_triples, body_bytes, max_abs, chunk_size,
    )


def prepare_generation(out_dir: pathlib.Path, config, body, reclaimable_bytes: int = 0, chunk_size: int = 64) -> NptEstimate:
    """Refuse before anything is allocated: memory, then create `out_dir` and check it is writable, then disk.

    `reclaimable_bytes`: size of the previous dataset's files that will be deleted first. A directory
    created here is removed again if the disk check fails. Returns the estimate.
    """
    what = f"generating {config.identities} identities x {config.poses} poses"
    estimate = npt_estimate(config, body, chunk_size)
    check_memory(estimate, what)
    created = prepare_output_directory(out_dir)
    try:
        check_disk(estimate, out_dir, what, reclaimable_bytes)
    except NptResourceError:
        remove_empty_directories(created)
        raise
    return estimate


__all__ = [
    "NptEstimate", "NptResourceError", "OutputDirectoryError", "available_memory_bytes", "check_disk",
    "check_memory", "estimate_npt_resources", "format_bytes", "free_disk_bytes", "npt_estimate", "obj_file_bytes",
    "prepare_generation", "prepare_output_directory", "remove_empty_directories",
]
