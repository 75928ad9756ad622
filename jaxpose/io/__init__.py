"""File I/O: atomic writes and validated triangle-mesh files (OBJ/PLY)."""

from jaxpose.io.atomic import atomic_open, atomic_save_npz, atomic_write_bytes, atomic_write_text
from jaxpose.io.mesh import SUPPORTED_EXTENSIONS, Mesh, MeshError, format_obj, load_mesh, save_mesh, validate_mesh

__all__ = [
    "atomic_open", "atomic_save_npz", "atomic_write_bytes", "atomic_write_text",
    "Mesh", "MeshError", "SUPPORTED_EXTENSIONS", "format_obj", "load_mesh", "save_mesh", "validate_mesh",
]
