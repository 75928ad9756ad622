"""Geometry on arrays: rotations, mesh measures, bounding boxes, Procrustes alignment, point LBS,
generalised winding numbers and batched root finding. Pure JAX (NumPy where noted), batched over
leading axes.

Modules: `rotations`, `mesh`, `bbox`, `procrustes`, `lbs`, `winding`, `root_finding`.
"""

from jaxpose.geometry.bbox import bbox_center, center_on_bbox
from jaxpose.geometry.lbs import blend_transforms, lbs_points
from jaxpose.geometry.mesh import (
    edge_length_ratio_loss,
    face_areas,
    face_edge_lengths,
    face_normals,
    unique_edges,
    vertex_normals,
)
from jaxpose.geometry.procrustes import apply_similarity_transform, fit_similarity_transform, procrustes_align
from jaxpose.geometry.rotations import (
    as_rotation_matrices,
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
)
from jaxpose.geometry.winding import inside, winding_number

__all__ = [
    "apply_similarity_transform", "as_rotation_matrices", "axis_angle_to_matrix", "axis_angle_to_quaternion",
    "bbox_center", "blend_transforms", "center_on_bbox", "edge_length_ratio_loss", "face_areas",
    "face_edge_lengths", "face_normals", "fit_similarity_transform", "inside", "lbs_points",
    "matrix_to_axis_angle", "matrix_to_quaternion", "matrix_to_rotation_6d", "procrustes_align",
    "quaternion_to_axis_angle", "quaternion_to_matrix", "rotation_6d_to_matrix", "unique_edges",
    "vertex_normals", "winding_number",
]
