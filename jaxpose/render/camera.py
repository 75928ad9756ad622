"""Cameras: pinhole (perspective) and orthographic, `look_at`, projection and mesh framing.

Conventions (OpenCV):
- World → camera is `x_cam = R @ x_world + t` with `R` (3, 3) a rotation and `t` (3,) in metres.
- Camera axes: x right, y **down**, z **forward** (points in front of the camera have z > 0).
- Pixels: `u` runs along image columns (x, right), `v` along rows (y, down); the pixel with index
  (row, col) covers [col, col + 1) × [row, row + 1), so its centre is (col + 0.5, row + 0.5).
- Perspective: `u = fx · x/z + cx`, `v = fy · y/z + cy` (fx, fy, cx, cy in pixels).
- Orthographic: `u = fx · x + cx`, `v = fy · y + cy` (fx, fy in pixels per metre).

jaxpose bodies are y-up, facing +z, in metres. A camera in front of a body (on the +z side) looking
at it with `up = +y` is the 180° rotation about the x axis of the body frame (x stays right, y and z
flip), which `look_at` builds; nothing else in the pipeline flips axes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

VIEW_DIRECTIONS = {
    # Unit vector from the body towards the camera, in the y-up, +z-facing body frame.
    "front": (0.0, 0.0, 1.0),
    "back": (0.0, 0.0, -1.0),
    "side": (1.0, 0.0, 0.0),  # the body's left side (+x), seen in profile
    "left": (1.0, 0.0, 0.0),
    "right": (-1.0, 0.0, 0.0),
    "three-quarter": (float(np.sqrt(0.5)), 0.0, float(np.sqrt(0.5))),
}


@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole or orthographic camera (a pytree; image size and projection kind are static).

    Attributes:
      rotation: (3, 3) world → camera rotation R (OpenCV axes, see module docstring).
      translation: (3,) world → camera translation t, metres.
      fx, fy: () focal lengths in pixels (perspective) or pixels per metre (orthographic).
      cx, cy: () principal point in pixels (continuous coordinates: the image centre is (W/2, H/2)).
      height, width: image size in pixels (static).
      orthographic: True for orthographic projection (static).
    """

    rotation: jax.Array
    translation: jax.Array
    fx: jax.Array
    fy: jax.Array
    cx: jax.Array
    cy: jax.Array
    height: int = dataclasses.field(metadata=dict(static=True), default=256)
    width: int = dataclasses.field(metadata=dict(static=True), default=256)
    orthographic: bool = dataclasses.field(metadata=dict(static=True), default=False)


jax.tree_util.register_dataclass(Camera)


def make_camera(
    rotation,
    translation,
    *,
    fx,
    fy=None,
    cx=None,
    cy=None,
    height: int,
    width: int,
    orthographic: bool = False,
) -> Camera:
    """Build a `Camera`, checking shapes. `fy` defaults to `fx`; `(cx, cy)` to the image centre."""
    rotation = jnp.asarray(rotation, dtype=jnp.result_type(float))
    translation = jnp.asarray(translation, dtype=rotation.dtype)
    if rotation.shape != (3, 3):
        raise ValueError(f"camera rotation must have shape (3, 3), got {rotation.shape}")
    if translation.shape != (3,):
        raise ValueError(f"camera translation must have shape (3,), got {translation.shape}")
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    fy = fx if fy is None else fy
    cx = width / 2.0 if cx is None else cx
    cy = height / 2.0 if cy is None else cy
    scalars = [jnp.asarray(value, dtype=rotation.dtype) for value in (fx, fy, cx, cy)]
    for name, value in zip(("fx", "fy", "cx", "cy"), scalars):
        if value.shape != ():
            raise ValueError(f"camera {name} must be a scalar, got shape {value.shape}")
    return Camera(rotation, translation, *scalars, height=int(height), width=int(width), orthographic=bool(orthographic))


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> tuple[jax.Array, jax.Array]:
    """World → camera `(R (3, 3), t (3,))` of a camera at `eye` looking at `target` (OpenCV axes).

    Args:
      eye: (3,) camera centre in world coordinates, metres.
      target: (3,) point the optical axis (+z_cam) passes through.
      up: (3,) world direction that appears as "up" in the image (i.e. along −y_cam); it must not be
        parallel to `target − eye`.

    Returns:
      `R` with rows (x_cam, y_cam, z_cam) expressed in world coordinates, and `t = −R @ eye`.
    """
    eye, target, up = (jnp.asarray(a, dtype=jnp.result_type(float)) for a in (eye, target, up))
    for name, value in (("eye", eye), ("target", target), ("up", up)):
        if value.shape != (3,):
            raise ValueError(f"look_at: {name} must have shape (3,), got {value.shape}")
    forward = target - eye
    forward = forward / jnp.linalg.norm(forward)
    right = jnp.cross(forward, up)
    right = right / jnp.linalg.norm(right)
    down = jnp.cross(forward, right)
    rotation = jnp.stack([right, down, forward], axis=0)
    return rotation, -rotation @ eye


def world_to_camera(points, camera: Camera) -> jax.Array:
    """Camera-frame coordinates `R @ p + t` of world points, (..., 3) -> (..., 3), metres."""
    points = jnp.asarray(points)
    if points.shape[-1:] != (3,):
        raise ValueError(f"points must have shape (..., 3), got {points.shape}")
    return jnp.einsum("ij,...j->...i", camera.rotation, points) + camera.translation.reshape((1,) * (points.ndim - 1) + (3,))


def project_camera_points(points_cam, camera: Camera) -> tuple[jax.Array, jax.Array]:
    """Project camera-frame points: (..., 3) -> (pixels (..., 2) as (u, v), depth z_cam (...)).

    Perspective division by z: points with z ≤ 0 give meaningless pixels; the rasteriser culls them.
    """
    points_cam = jnp.asarray(points_cam)
    x, y, z = points_cam[..., 0], points_cam[..., 1], points_cam[..., 2]
    if camera.orthographic:
        u, v = camera.fx * x + camera.cx, camera.fy * y + camera.cy
    else:
        u, v = camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy
    return jnp.stack([u, v], axis=-1), z


def project(points, camera: Camera) -> tuple[jax.Array, jax.Array]:
    """Project world points: (..., 3) metres -> (pixels (..., 2) as (u, v), depth (...) = z_cam in metres)."""
    return project_camera_points(world_to_camera(points, camera), camera)


def screen_vertices(vertices, camera: Camera) -> jax.Array:
    """(V, 3) world vertices -> (V, 3) `(u, v, z_cam)`: the input `rasterize` expects."""
    pixels, depth = project(vertices, camera)
    return jnp.concatenate([pixels, depth[..., None]], axis=-1)


def view_direction(view) -> jax.Array:
    """(3,) unit vector from the subject towards the camera for a named view or a given direction.

    Named views (body frame: y up, facing +z): "front", "back", "side" (= "left", from +x),
    "right" (from −x), "three-quarter" (front-left, 45° about y).
    """
    if isinstance(view, str):
        if view not in VIEW_DIRECTIONS:
            raise ValueError(f"unknown view {view!r}; expected one of {sorted(VIEW_DIRECTIONS)} or a (3,) direction")
        return jnp.asarray(VIEW_DIRECTIONS[view], dtype=jnp.result_type(float))
    direction = jnp.asarray(view, dtype=jnp.result_type(float))
    if direction.shape != (3,):
        raise ValueError(f"a view direction must be a name or have shape (3,), got shape {direction.shape}")
    return direction / jnp.linalg.norm(direction)


def frame_vertices(
    vertices,
    view="front",
    *,
    height: int = 256,
    width: int = 256,
    margin: float = 0.05,
    orthographic: bool = False,
    fov_degrees: float = 30.0,
    up=(0.0, 1.0, 0.0),
) -> Camera:
    """A camera looking at `vertices` from `view` that fits their projection into the image.

    The camera looks at the centre of the axis-aligned bounding box from direction `view` (see
    `view_direction`); for perspective it sits at the distance where a sphere around the box fills a
    `fov_degrees` field of view. Focal length and principal point are then set so that the projected
    vertices span the image minus a `margin` (fraction of the image size on every side), centred, with
    square pixels (fx = fy).

    Args:
      vertices: (V, 3) world points, metres (bodies: y up, facing +z).
      view: a view name or a (3,) direction from the subject towards the camera.
      height, width: image size in pixels.
      margin: empty border as a fraction of the image size, in [0, 0.5).
      orthographic: orthographic instead of perspective projection.
      fov_degrees: perspective field of view used to choose the camera distance.
      up: world up direction (must not be parallel to the view direction).
    """
    vertices = jnp.asarray(vertices, dtype=jnp.result_type(float))
    if vertices.ndim != 2 or vertices.shape[-1] != 3 or vertices.shape[0] == 0:
        raise ValueError(f"vertices must have shape (V, 3) with V > 0, got {vertices.shape}")
    if not 0.0 <= margin < 0.5:
        raise ValueError(f"margin must be in [0, 0.5), got {margin}")
    if not 0.0 < fov_degrees < 180.0:
        raise ValueError(f"fov_degrees must be in (0, 180), got {fov_degrees}")
    lower, upper = vertices.min(axis=0), vertices.max(axis=0)
    centre = 0.5 * (lower + upper)
    radius = jnp.maximum(0.5 * jnp.linalg.norm(upper - lower), 1e-6)
    distance = radius / jnp.sin(jnp.deg2rad(fov_degrees) / 2.0) + radius
    eye = centre + distance * view_direction(view)
    rotation, translation = look_at(eye, centre, up)
    unit = make_camera(rotation, translation, fx=1.0, cx=0.0, cy=0.0, height=height, width=width, orthographic=orthographic)
    normalised, _ = project(vertices, unit)
    low2, high2 = normalised.min(axis=0), normalised.max(axis=0)
    extent = jnp.maximum(high2 - low2, 1e-9)
    usable = 1.0 - 2.0 * margin
    focal = usable * jnp.minimum(width / extent[0], height / extent[1])
    middle = 0.5 * (low2 + high2)
    return make_camera(
        rotation,
        translation,
        fx=focal,
        fy=focal,
        cx=width / 2.0 - focal * middle[0],
        cy=height / 2.0 - focal * middle[1],
        height=height,
        width=width,
        orthographic=orthographic,
    )
