"""File I/O: atomic writes, validated triangle-mesh files (OBJ/PLY), point clouds and pickle-free array files."""

from jaxpose.io.arrays import ArrayFileError, NpzArrays, load_npy, load_npz, open_npz
from jaxpose.io.atomic import (
    atomic_open,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temp_files,
)
from jaxpose.io.mesh import SUPPORTED_EXTENSIONS, Mesh, MeshError, format_obj, load_mesh, save_mesh, validate_mesh
from jaxpose.io.points import PointsError, load_points

__all__ = [
    "atomic_open", "atomic_save_npz", "atomic_write_bytes", "atomic_write_text", "remove_stale_temp_files",
    "ArrayFileError", "NpzArrays", "load_npy", "load_npz", "open_npz",
    "Mesh", "MeshError", "SUPPORTED_EXTENSIONS", "format_obj", "load_mesh", "save_mesh", "validate_mesh",
    "PointsError", "load_points",
]
