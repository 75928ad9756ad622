"""PNG figures of meshes: single shaded renders and labelled grids (views × meshes).

Rendering uses the JAX rasteriser; matplotlib (Agg backend) only composes panels and draws labels.
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Sequence

import numpy as np

from jaxpose.io.atomic import atomic_open
from jaxpose.render.camera import frame_vertices
from jaxpose.render.shade import DEFAULT_BASE_COLOR, render_buffers


def _check_mesh(vertices, faces, label: str) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, dtype=np.float32)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or vertices.shape[0] == 0:
        raise ValueError(f"{label}: vertices must have shape (V, 3) with V > 0, got {vertices.shape}")
    if not np.all(np.isfinite(vertices)):
        raise ValueError(f"{label}: vertices contain NaN or infinite values")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] == 0 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"{label}: faces must be a non-empty integer array of shape (F, 3), got {faces.shape} {faces.dtype}")
    if faces.min() < 0 or faces.max() >= vertices.shape[0]:
        raise ValueError(f"{label}: faces index vertices up to {faces.max()} but there are {vertices.shape[0]} vertices")
    return vertices, faces.astype(np.int32)


def render_mesh_image(
    vertices,
    faces,
    *,
    view="front",
    size: int = 256,
    color=None,
    orthographic: bool = False,
    margin: float = 0.05,
    background=(1.0, 1.0, 1.0),
) -> np.ndarray:
    """Shaded picture of a mesh framed to fill a `size`×`size` image.

    Args:
      vertices: (V, 3) vertices, metres (bodies: y up, facing +z).
      faces: (F, 3) int vertex indices.
      view: "front", "side", "back", "three-quarter", "left", "right" or a (3,) direction from the
        mesh towards the camera (see `jaxpose.render.camera.view_direction`).
      size: image side in pixels.
      color: None (a neutral base colour), an RGB triple, or (V, 3) per-vertex colours, all in [0, 1].
      orthographic: orthographic instead of perspective projection.
      margin: empty border as a fraction of the image size.
      background: RGB of empty pixels in [0, 1].

    Returns:
      (size, size, 3) uint8 image.
    """
    vertices, faces = _check_mesh(vertices, faces, "render_mesh_image")
    base_color, vertex_colors = DEFAULT_BASE_COLOR, None
    if color is not None:
        color = np.asarray(color, dtype=np.float32)
        if color.shape == (3,):
            base_color = color
        elif color.shape == vertices.shape:
            vertex_colors = color
        else:
            raise ValueError(f"color must be None, an RGB triple or per-vertex colours of shape {vertices.shape}, got {color.shape}")
        if not np.all(np.isfinite(color)):
            raise ValueError("color contains NaN or infinite values")
    camera = frame_vertices(vertices, view, height=size, width=size, margin=margin, orthographic=orthographic)
    buffers = render_buffers(
        vertices, faces, camera, vertex_colors=vertex_colors, base_color=base_color, background=background
    )
    rgb = np.asarray(buffers["rgb"], dtype=np.float64)
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_mesh_grid_png(
    path: str | os.PathLike,
    meshes: Sequence[tuple],
    *,
    views: Sequence = ("front", "side"),
    size: int = 256,
    orthographic: bool = False,
    dpi: int = 100,
) -> None:
    """Write a labelled grid of renders (one column per mesh, one row per view) to a PNG, atomically.

    Args:
      path: output .png path (parent directories are created).
      meshes: sequence of `(vertices (V, 3), faces (F, 3), title str, colours)` with colours None, an
        RGB triple or (V, 3) per-vertex colours in [0, 1]. Typical use: identity / pose / output /
        ground truth side by side, or a reposed sequence with colours carried across poses.
      views: view names or (3,) directions, one row each.
      size: side of each panel in pixels.
      orthographic: orthographic instead of perspective projection.
      dpi: resolution of the figure (panels are drawn at `size` pixels at this dpi).
    """
    if len(meshes) == 0:
        raise ValueError("save_mesh_grid_png needs at least one mesh")
    if len(views) == 0:
        raise ValueError("save_mesh_grid_png needs at least one view")
    if os.fspath(path)[-4:].lower() != ".png":
        raise ValueError(f"save_mesh_grid_png writes PNG files; the path must end in .png, got {path}")
    panels = []
    for index, entry in enumerate(meshes):
        if len(entry) != 4:
            raise ValueError(f"mesh {index}: expected (vertices, faces, title, colours), got {len(entry)} items")
        vertices, faces, title, colours = entry
        panels.append(
            (str(title), [render_mesh_image(vertices, faces, view=view, size=size, color=colours, orthographic=orthographic) for view in views])
        )

    import matplotlib  # local: only figure files need matplotlib, and it must get the Agg backend first

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    columns, rows = len(panels), len(views)
    label_height = 0.3  # inches of title above each row of panels
    panel = size / dpi
    figure = Figure(figsize=(columns * panel, rows * (panel + label_height)), dpi=dpi, layout="constrained")
    for column, (title, images) in enumerate(panels):
        for row, (view, image) in enumerate(zip(views, images)):
            axes = figure.add_subplot(rows, columns, row * columns + column + 1)
            axes.imshow(image, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            # The title once per column and the view once per row, wrapped to the panel's width, so
            # neighbouring labels cannot run into each other.
            if row == 0:
                axes.set_title(textwrap.fill(title, max(8, int(size / 7.5))), fontsize=8)
            if column == 0:
                view_name = view if isinstance(view, str) else "view " + np.array2string(np.asarray(view), precision=2)
                axes.set_ylabel(view_name, fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getvalue())
