"""Render buffers from a mesh and a camera: shaded RGB, depth, camera-space normals, vertex / face ids.

These are the inputs the personalised-refinement network expects (docs/fitting.md, "Refinement
network inputs"): a textured (per vertex coloured) RGB rendering, depth, normals, a unique per-vertex colour code, a coverage mask, and
the face-id / barycentric buffers that turn per-pixel displacements into per-vertex targets.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxpose.geometry.mesh import vertex_normals
from jaxpose.render.camera import Camera, screen_vertices
from jaxpose.render.rasterize import Fragments, interpolate, nearest_vertex_ids, rasterize

DEFAULT_BASE_COLOR = (0.72, 0.74, 0.80)
# Unit direction towards the light in camera coordinates (OpenCV: x right, y down, z forward):
# a headlight from slightly above and left of the camera.
DEFAULT_LIGHT_DIRECTION = (-0.25, -0.45, -1.0)


def lambertian(normals, albedo, *, light_direction=DEFAULT_LIGHT_DIRECTION, ambient: float = 0.3, two_sided: bool = True):
    """Lambertian + ambient shading: `albedo · (ambient + (1 − ambient) · max(0, n·l))`.

    Args:
      normals: (..., 3) unit normals in the frame of `light_direction` (camera frame for buffers).
      albedo: (..., 3) base colours in [0, 1].
      light_direction: (3,) direction *towards* the light (normalised here).
      ambient: ambient fraction in [0, 1].
      two_sided: light faces seen from behind as if their normal were flipped (|n·l|), so the inside
        of an open mesh is not black.

    Returns:
      (..., 3) shaded colours in [0, 1].
    """
    light = jnp.asarray(light_direction, dtype=jnp.result_type(float))
    if light.shape != (3,):
        raise ValueError(f"light_direction must have shape (3,), got {light.shape}")
    if not isinstance(ambient, jax.core.Tracer) and not 0.0 <= float(ambient) <= 1.0:
        raise ValueError(f"ambient must be in [0, 1], got {ambient}")
    light = light / jnp.linalg.norm(light)
    cosine = jnp.einsum("...c,c->...", normals, light.astype(normals.dtype))
    cosine = jnp.abs(cosine) if two_sided else jnp.maximum(cosine, 0.0)
    return albedo * (ambient + (1.0 - ambient) * cosine)[..., None]


def vertex_code_colors(template_vertices) -> jax.Array:
    """Unique, smooth per-vertex colours: template coordinates scaled to [0, 1] per axis, (V, 3) -> (V, 3).

    Distinct template positions get distinct colours, and colours vary smoothly over the surface, so
    their barycentric interpolation still identifies a surface point (a "vertex-id colour" rendering).
    """
    template = jnp.asarray(template_vertices)
    if template.ndim != 2 or template.shape[1] != 3:
        raise ValueError(f"template vertices must have shape (V, 3), got {template.shape}")
    lower, upper = template.min(axis=0), template.max(axis=0)
    return (template - lower[None]) / jnp.maximum(upper - lower, 1e-9)[None]


def _safe_unit(x: jax.Array) -> jax.Array:
    squared = jnp.sum(x * x, axis=-1, keepdims=True)
    positive = squared > 0
    return jnp.where(positive, x / jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


@functools.partial(
    jax.jit, static_argnames=("cull_backfaces", "chunk_size", "tile_size", "two_sided")
)
def _render_buffers(
    vertices, faces, camera, vertex_colors, light_direction, ambient, background,
    *, cull_backfaces, chunk_size, tile_size, two_sided,
):
    screen = screen_vertices(vertices, camera)
    fragments: Fragments = rasterize(
        screen,
        faces,
        camera.height,
        camera.width,
        perspective_correct=not camera.orthographic,
        cull_backfaces=cull_backfaces,
        chunk_size=chunk_size,
        tile_size=tile_size,
    )
    normals_cam = jnp.einsum("ij,vj->vi", camera.rotation, vertex_normals(vertices, faces))
    normals = _safe_unit(interpolate(fragments, normals_cam, faces))
    albedo = interpolate(fragments, vertex_colors, faces)
    shaded = lambertian(normals, albedo, light_direction=light_direction, ambient=ambient, two_sided=two_sided)
    rgb = jnp.where(fragments.mask[..., None], shaded, background[None, None, :])
    return {
        "rgb": rgb,
        "depth": fragments.depth,
        "normals": normals,
        "mask": fragments.mask,
        "face_id": fragments.face_id,
        "barycentric": fragments.barycentric,
        "vertex_id": nearest_vertex_ids(fragments, faces),
        "screen_vertices": screen,
    }


def render_buffers(
    vertices,
    faces,
    camera: Camera,
    *,
    vertex_colors=None,
    base_color=DEFAULT_BASE_COLOR,
    light_direction=DEFAULT_LIGHT_DIRECTION,
    ambient: float = 0.3,
    background=(1.0, 1.0, 1.0),
    two_sided: bool = True,
    cull_backfaces: bool = False,
    chunk_size: int = 128,
    tile_size: int = 16,
) -> dict[str, jax.Array]:
    """Rasterise a mesh seen by `camera` and return its per-pixel buffers (jit-compiled).

    Args:
      vertices: (V, 3) world vertices, metres.
      faces: (F, 3) int vertex indices (counter-clockwise seen from outside).
      camera: a `Camera` (its height/width give the image size).
      vertex_colors: optional (V, 3) per-vertex colours in [0, 1] (e.g. a back-projected texture, or
        `vertex_code_colors` for a vertex-id colour rendering); default: `base_color` everywhere.
      base_color: (3,) colour used without `vertex_colors`.
      light_direction: (3,) camera-frame direction towards the light.
      ambient: ambient fraction of the Lambertian + ambient shading.
      background: (3,) RGB of uncovered pixels.
      two_sided, cull_backfaces, chunk_size, tile_size: see `lambertian` and `rasterize`.

    Returns:
      A dict of (H, W, ...) arrays:
      "rgb" (H, W, 3) shaded colours in [0, 1]; "depth" (H, W) camera z in metres, 0 on background;
      "normals" (H, W, 3) unit camera-frame normals (interpolated vertex normals), 0 on background;
      "mask" (H, W) bool coverage; "face_id" (H, W) int32, −1 on background; "barycentric" (H, W, 3)
      perspective-correct weights of `faces[face_id]`; "vertex_id" (H, W) int32 id of the hit face's
      vertex with the largest weight, −1 on background; "screen_vertices" (V, 3) projected `(u, v, z)`.
      Everything but the integer/bool buffers is differentiable w.r.t. `vertices` and `vertex_colors`
      with visibility held fixed (no gradient through silhouettes or occlusion boundaries).
    """
    vertices = jnp.asarray(vertices, dtype=jnp.result_type(float))
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
    faces = jnp.asarray(faces, dtype=jnp.int32)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
    base_color = jnp.asarray(base_color, dtype=vertices.dtype)
    background = jnp.asarray(background, dtype=vertices.dtype)
    for name, value in (("base_color", base_color), ("background", background)):
        if value.shape != (3,):
            raise ValueError(f"{name} must be an RGB triple of shape (3,), got {value.shape}")
    if vertex_colors is None:
        # One compiled program for both cases: a uniform colour is a per-vertex colour.
        vertex_colors = jnp.broadcast_to(base_color[None, :], vertices.shape)
    vertex_colors = jnp.asarray(vertex_colors, dtype=vertices.dtype)
    if vertex_colors.shape != vertices.shape:
        raise ValueError(f"vertex_colors must have shape {vertices.shape} (one RGB per vertex), got {vertex_colors.shape}")
    if not 0.0 <= ambient <= 1.0:
        raise ValueError(f"ambient must be in [0, 1], got {ambient}")
    return _render_buffers(
        vertices,
        faces,
        camera,
        vertex_colors,
        jnp.asarray(light_direction, dtype=vertices.dtype),
        jnp.asarray(ambient, dtype=vertices.dtype),
        background,
        cull_backfaces=bool(cull_backfaces),
        chunk_size=int(chunk_size),
        tile_size=int(tile_size),
        two_sided=bool(two_sided),
    )
