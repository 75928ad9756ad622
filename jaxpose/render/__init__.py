"""Pure-JAX triangle rasterisation, render buffers and PNG mesh figures.

- `camera`: OpenCV-convention pinhole / orthographic cameras, `look_at`, `project`, mesh framing.
- `rasterize`: z-buffer rasteriser (`rasterize` -> `Fragments`), `interpolate`, vertex ids.
- `shade`: Lambertian shading and `render_buffers` (RGB, depth, normals, ids, barycentrics).
- `silhouette`: `soft_silhouette`, coverage with gradients through the mesh outline.
- `figures`: `render_mesh_image` and `save_mesh_grid_png`.
"""

from jaxpose.render.camera import (
    VIEW_DIRECTIONS,
    Camera,
    frame_vertices,
    look_at,
    make_camera,
    project,
    project_camera_points,
    screen_vertices,
    view_direction,
    world_to_camera,
)
from jaxpose.render.figures import render_mesh_image, save_mesh_grid_png
from jaxpose.render.rasterize import Fragments, barycentrics_from_face_ids, interpolate, nearest_vertex_ids, rasterize
from jaxpose.render.silhouette import soft_silhouette
from jaxpose.render.shade import lambertian, render_buffers, vertex_code_colors

__all__ = [
    "VIEW_DIRECTIONS",
    "Camera",
    "Fragments",
    "barycentrics_from_face_ids",
    "frame_vertices",
    "interpolate",
    "lambertian",
    "look_at",
    "make_camera",
    "nearest_vertex_ids",
    "project",
    "project_camera_points",
    "rasterize",
    "render_buffers",
    "render_mesh_image",
    "save_mesh_grid_png",
    "screen_vertices",
    "soft_silhouette",
    "vertex_code_colors",
    "view_direction",
    "world_to_camera",
]
