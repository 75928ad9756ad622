"""Z-buffer triangle rasterisation in pure JAX, and barycentric interpolation of vertex attributes.

Input are *screen vertices* `(u, v, z)`: pixel coordinates and camera depth (see
`jaxpose.render.camera.screen_vertices`; pixel (row, col) has its centre at (col + 0.5, row + 0.5)).

Algorithm (every face against every pixel, bounded memory, skipping work that cannot matter):
1. Per face: three edge functions `w_k(u, v) = A_k (u − a_u) + B_k (v − a_v)` (anchored at an edge
   endpoint chosen identically by both faces sharing the edge, so shared edges are watertight)
   oriented so that the interior is positive, and a depth key interpolated from the corners (−1/z for
   perspective, which is affine in screen space; z for orthographic). Faces with a vertex at
   z ≤ `near`, zero screen area, non-finite coordinates or (with `cull_backfaces`) facing away are
   dropped. There is no near-plane clipping.
2. Faces are sorted by the Morton code of their screen centroid and cut into chunks of `chunk_size`,
   so each chunk covers a compact screen region; the image is cut into `tile_size`² tiles.
3. For every tile, a `fori_loop` over face chunks evaluates the edge functions of the chunk at every
   pixel centre of the tile (a (chunk, tile, tile) block, so memory is O(chunk · tile²)) and keeps a
   running minimum depth key and its face id; a `lax.cond` skips chunks whose screen bounding box
   misses the tile. (Under `vmap` the condition is batched and both branches run: correct but brute
   force. Prefer a Python loop or `lax.map` over a batch of images.)
4. Coverage rule: a pixel centre is inside when every edge function is > 0, or = 0 on a *top-left*
   edge (an edge whose inward normal points right, or straight down in the y-down image), so a centre
   exactly on an edge shared by two faces belongs to one of them. Equal depth keys go to the smaller
   face index, so the result does not depend on chunking or sorting.
5. Given the winning face per pixel, the barycentrics are recomputed from the input vertices with
   ordinary differentiable JAX ops and made perspective-correct:
   `b_k = (λ_k / z_k) / Σ_j (λ_j / z_j)` with λ the screen-space barycentrics.

Gradients: `Fragments.barycentric` and `Fragments.depth` are differentiable w.r.t. the screen vertices
*with visibility held fixed* (which face covers which pixel is piecewise constant and has zero
gradient); `interpolate` is differentiable w.r.t. the vertex attributes and the barycentrics. This
rasteriser is hard: silhouette edges and occlusion boundaries get no gradient (for a silhouette
term with gradients through the outline use `jaxpose.render.silhouette.soft_silhouette`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_INT_MAX = np.iinfo(np.int32).max


class Fragments(NamedTuple):
    """Per-pixel result of `rasterize` for an (H, W) image.

    face_id: (H, W) int32 index of the visible face, −1 on background.
    barycentric: (H, W, 3) perspective-correct barycentric weights of the visible face's vertices
      (in the order of `faces[face_id]`), summing to 1; zeros on background.
    depth: (H, W) camera depth z of the visible surface (metres for a metric camera); 0 on background.
    mask: (H, W) bool, True where a face is visible.
    """

    face_id: jax.Array
    barycentric: jax.Array
    depth: jax.Array
    mask: jax.Array


def _check_faces(faces, num_vertices: int) -> jax.Array:
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
    if not jnp.issubdtype(faces.dtype, jnp.integer):
        raise ValueError(f"faces must be integer indices, got dtype {faces.dtype}")
    if faces.shape[0] == 0:
        raise ValueError("faces is empty: nothing to rasterise")
    if not isinstance(faces, jax.core.Tracer):
        concrete = np.asarray(faces)
        if concrete.min() < 0 or concrete.max() >= num_vertices:
            raise ValueError(
                f"faces index vertices in [{concrete.min()}, {concrete.max()}] but there are only {num_vertices} vertices"
            )
    return jnp.asarray(faces, dtype=jnp.int32)


def _check_screen_vertices(screen_vertices) -> jax.Array:
    screen_vertices = jnp.asarray(screen_vertices)
    if screen_vertices.ndim != 2 or screen_vertices.shape[1] != 3:
        raise ValueError(f"screen vertices must have shape (V, 3) holding (u, v, z), got {screen_vertices.shape}")
    if not jnp.issubdtype(screen_vertices.dtype, jnp.floating):
        screen_vertices = screen_vertices.astype(jnp.result_type(float))
    return screen_vertices


def _spread_bits(x: jax.Array) -> jax.Array:
    """Interleave zeros between the low 10 bits of uint32 `x` (for 2-D Morton codes)."""
    x = x & 0x3FF
    x = (x | (x << 16)) & 0x030000FF
    x = (x | (x << 8)) & 0x0300F00F
    x = (x | (x << 4)) & 0x030C30C3
    x = (x | (x << 2)) & 0x09249249
    return x


# Layout of the per-face rows used by the inner loop (see `_face_setup`).
_A, _B, _ANCHOR_U, _ANCHOR_V, _KEY, _TOP_LEFT = 0, 3, 6, 9, 12, 15
_ROW_WIDTH = 18


def spatial_order(centroid: jax.Array, valid: jax.Array, cell_size: int) -> jax.Array:
    """(F,) int32 permutation sorting faces by the Morton code of their centroid's cell; invalid last.

    Consecutive faces then cover compact screen regions, so chunks of them overlap few tiles.
    """
    cell = jnp.clip(jnp.floor(jnp.nan_to_num(centroid / cell_size, posinf=0.0, neginf=0.0)), 0, 1023).astype(jnp.uint32)
    morton = (_spread_bits(cell[:, 0]) | (_spread_bits(cell[:, 1]) << 1)).astype(jnp.int32)
    morton = jnp.where(valid, morton, _INT_MAX)
    return jnp.argsort(morton, stable=True).astype(jnp.int32)


def _face_setup(screen, faces, perspective_correct: bool, cull_backfaces: bool, near: float):
    """Per-face edge functions, depth-key weights, top-left flags, validity and screen bounding boxes.

    Edge k (opposite corner k, from corner k+1 to corner k+2) is evaluated as
    `w_k(u, v) = A_k (u − a_u) + B_k (v − a_v)` with `A_k = q_v − p_v`, `B_k = p_u − q_u` and anchor `a` the
    edge endpoint with the smaller vertex index. Both faces sharing an edge use the same anchor and
    exactly negated (A, B), so their values are exact negatives (watertight), and anchoring at a
    nearby vertex avoids the cancellation of the `A u + B v + C` form on small triangles.
    """
    corners = screen[faces]  # (F, 3 corners, 3 coords)
    z = corners[..., 2]
    start_corner, end_corner = (1, 2, 0), (2, 0, 1)
    p, q = corners[:, start_corner, :2], corners[:, end_corner, :2]  # (F, 3 edges, 2)
    a = q[..., 1] - p[..., 1]
    b = p[..., 0] - q[..., 0]
    p_first = faces[:, start_corner] < faces[:, end_corner]
    anchor = jnp.where(p_first[..., None], p, q)  # (F, 3, 2)
    # Twice the signed screen area from corner 0 (well conditioned); > 0 for a face whose right-handed
    # normal points towards the camera.
    d1, d2 = corners[:, 1, :2] - corners[:, 0, :2], corners[:, 2, :2] - corners[:, 0, :2]
    area = d1[:, 1] * d2[:, 0] - d1[:, 0] * d2[:, 1]
    finite = jnp.all(jnp.isfinite(corners), axis=(1, 2))
    valid = finite & (jnp.abs(area) > 1e-10) & jnp.all(z > near, axis=1)
    if cull_backfaces:
        valid = valid & (area > 0)
    orientation = jnp.where(area < 0, -1.0, 1.0).astype(screen.dtype)[:, None]
    a, b = a * orientation, b * orientation
    top_left = (a > 0) | ((a == 0) & (b > 0))
    # Depth key = Σ_k w_k · key_k / |area| with key = −1/z (perspective: 1/z is affine in screen
    # space) or z (orthographic); smaller is nearer.
    per_corner = -1.0 / jnp.where(valid[:, None], z, 1.0) if perspective_correct else z
    key_weight = per_corner / jnp.where(valid, jnp.abs(area), 1.0)[:, None]
    # Invalid faces: w ≡ 0 and no top-left edge, so they never cover a pixel.
    a = jnp.where(valid[:, None], a, 0.0)
    b = jnp.where(valid[:, None], b, 0.0)
    anchor = jnp.where(valid[:, None, None], anchor, 0.0)
    top_left = top_left & valid[:, None]
    u, v = corners[..., 0], corners[..., 1]
    bbox = jnp.stack(
        [
            jnp.where(valid, u.min(axis=1), jnp.inf),
            jnp.where(valid, u.max(axis=1), -jnp.inf),
            jnp.where(valid, v.min(axis=1), jnp.inf),
            jnp.where(valid, v.max(axis=1), -jnp.inf),
        ],
        axis=1,
    )
    rows = jnp.concatenate(
        [a, b, anchor[..., 0], anchor[..., 1], jnp.where(valid[:, None], key_weight, 0.0), top_left.astype(screen.dtype)],
        axis=1,
    )  # (F, _ROW_WIDTH)
    centroid = jnp.where(valid[:, None], jnp.mean(corners[..., :2], axis=1), jnp.inf)
    return rows, bbox, valid, centroid


@functools.partial(
    jax.jit,
    static_argnames=("height", "width", "perspective_correct", "cull_backfaces", "near", "chunk_size", "tile_size"),
)
def _rasterize_face_ids(
    screen, faces, *, height, width, perspective_correct, cull_backfaces, near, chunk_size, tile_size
) -> jax.Array:
    """(H, W) int32 id of the nearest covering face (−1 for none); see the module docstring."""
    screen = jax.lax.stop_gradient(screen)
    face_rows, bbox, valid, centroid = _face_setup(screen, faces, perspective_correct, cull_backfaces, near)
    num_faces = faces.shape[0]

    order = spatial_order(centroid, valid, tile_size)

    num_chunks = -(-num_faces // chunk_size)
    padding = num_chunks * chunk_size - num_faces
    face_rows = jnp.concatenate([face_rows[order], jnp.zeros((padding, _ROW_WIDTH), face_rows.dtype)])  # padding: invalid
    face_index = jnp.concatenate([order, jnp.full((padding,), _INT_MAX, jnp.int32)])
    empty_box = jnp.asarray([jnp.inf, -jnp.inf, jnp.inf, -jnp.inf], bbox.dtype)
    bbox = jnp.concatenate([bbox[order], jnp.broadcast_to(empty_box, (padding, 4))])
    chunk_boxes = bbox.reshape(num_chunks, chunk_size, 4)
    chunk_boxes = jnp.stack(
        [
            chunk_boxes[..., 0].min(axis=1),
            chunk_boxes[..., 1].max(axis=1),
            chunk_boxes[..., 2].min(axis=1),
            chunk_boxes[..., 3].max(axis=1),
        ],
        axis=1,
    )  # (num_chunks, 4) = (u_min, u_max, v_min, v_max)

    tiles_y = -(-height // tile_size)
    tiles_x = -(-width // tile_size)
    offsets = jnp.arange(tile_size, dtype=screen.dtype) + 0.5

    def render_tile(tile):
        row0 = (tile // tiles_x) * tile_size
        col0 = (tile % tiles_x) * tile_size
        px = (col0 + offsets)[None, None, :]  # (1, 1, T) pixel-centre u
        py = (row0 + offsets)[None, :, None]  # (1, T, 1) pixel-centre v

        def merge_chunk(chunk, state):
            best_key, best_face = state
            rows = jax.lax.dynamic_slice_in_dim(face_rows, chunk * chunk_size, chunk_size)
            ids = jax.lax.dynamic_slice_in_dim(face_index, chunk * chunk_size, chunk_size)
            col = lambda k: rows[:, k][:, None, None]  # noqa: E731 - (chunk, 1, 1) entry k of each face row
            inside, key = None, None
            for edge in range(3):
                value = col(_A + edge) * (px - col(_ANCHOR_U + edge)) + col(_B + edge) * (py - col(_ANCHOR_V + edge))
                covered = (value > 0) | ((value == 0) & (col(_TOP_LEFT + edge) > 0))
                inside = covered if inside is None else inside & covered
                term = value * col(_KEY + edge)
                key = term if key is None else key + term
            key = jnp.where(inside, key, jnp.inf)
            chunk_key = key.min(axis=0)
            chunk_face = jnp.where(inside & (key == chunk_key[None]), ids[:, None, None], _INT_MAX).min(axis=0)
            take = (chunk_key < best_key) | ((chunk_key == best_key) & (chunk_face < best_face))
            return jnp.where(take, chunk_key, best_key), jnp.where(take, chunk_face, best_face)

        def visit_chunk(chunk, state):
            box = chunk_boxes[chunk]
            overlaps = (box[1] >= col0) & (box[0] <= col0 + tile_size) & (box[3] >= row0) & (box[2] <= row0 + tile_size)
            return jax.lax.cond(overlaps, merge_chunk, lambda _, s: s, chunk, state)

        init = (
            jnp.full((tile_size, tile_size), jnp.inf, screen.dtype),
            jnp.full((tile_size, tile_size), _INT_MAX, jnp.int32),
        )
        best_key, best_face = jax.lax.fori_loop(0, num_chunks, visit_chunk, init)
        return jnp.where(jnp.isfinite(best_key), best_face, -1)

    tiles = jax.lax.map(render_tile, jnp.arange(tiles_y * tiles_x))  # (tiles, T, T)
    image = tiles.reshape(tiles_y, tiles_x, tile_size, tile_size).transpose(0, 2, 1, 3)
    return image.reshape(tiles_y * tile_size, tiles_x * tile_size)[:height, :width]


@functools.partial(jax.jit, static_argnames=("perspective_correct",))
def barycentrics_from_face_ids(screen_vertices, faces, face_id, *, perspective_correct: bool = True) -> Fragments:
    """Differentiable barycentrics and depth of pixel centres for a given (H, W) face-id map.

    Args:
      screen_vertices: (V, 3) `(u, v, z)` pixel coordinates and camera depth.
      faces: (F, 3) int vertex indices.
      face_id: (H, W) int, −1 on background (from `rasterize` or a previous frame).
      perspective_correct: weights proportional to λ_k / z_k (perspective camera) instead of the
        screen-space λ_k (orthographic camera).

    Returns:
      `Fragments`; barycentrics and depth are differentiable w.r.t. `screen_vertices`.
    """
    screen = jnp.asarray(screen_vertices)
    height, width = face_id.shape
    mask = face_id >= 0
    corners = screen[faces[jnp.where(mask, face_id, 0)]]  # (H, W, 3, 3)
    u = (jnp.arange(width, dtype=screen.dtype) + 0.5)[None, :]
    v = (jnp.arange(height, dtype=screen.dtype) + 0.5)[:, None]
    lam = []
    for opposite in range(3):
        p, q = corners[..., (opposite + 1) % 3, :], corners[..., (opposite + 2) % 3, :]
        lam.append((u - p[..., 0]) * (q[..., 1] - p[..., 1]) - (v - p[..., 1]) * (q[..., 0] - p[..., 0]))
    lam = jnp.stack(lam, axis=-1)  # (H, W, 3), proportional to screen-space barycentrics
    total = jnp.sum(lam, axis=-1, keepdims=True)
    lam = lam / jnp.where(mask[..., None], total, 1.0)
    z = jnp.where(mask[..., None], corners[..., 2], 1.0)
    if perspective_correct:
        weights = lam / z
        inverse_depth = jnp.sum(weights, axis=-1, keepdims=True)
        barycentric = weights / inverse_depth
        depth = 1.0 / inverse_depth[..., 0]
    else:
        barycentric = lam
        depth = jnp.sum(lam * z, axis=-1)
    barycentric = jnp.where(mask[..., None], barycentric, 0.0)
    depth = jnp.where(mask, depth, 0.0)
    return Fragments(face_id.astype(jnp.int32), barycentric, depth, mask)


def rasterize(
    screen_vertices,
    faces,
    height: int,
    width: int,
    *,
    perspective_correct: bool = True,
    cull_backfaces: bool = False,
    near: float = 1e-4,
    chunk_size: int = 128,
    tile_size: int = 16,
) -> Fragments:
    """Rasterise a triangle mesh with a z-buffer.

    Args:
      screen_vertices: (V, 3) `(u, v, z)`: pixel coordinates (u along columns, v along rows, pixel
        centres at integer + 0.5) and camera depth z > 0; `camera.screen_vertices` makes them.
      faces: (F, 3) int vertex indices.
      height, width: image size in pixels (static: one compilation per size).
      perspective_correct: True for a perspective camera (depth test on 1/z, perspective-correct
        barycentrics), False for an orthographic one (everything affine in screen space).
      cull_backfaces: drop faces whose right-handed normal points away from the camera.
      near: faces with any vertex at z ≤ `near` are dropped (no clipping).
      chunk_size: faces per block of the running z-buffer reduction (memory O(chunk · tile²));
        does not change the result.
      tile_size: side of the square pixel tiles; does not change the result.

    Returns:
      `Fragments` (face_id, barycentric, depth, mask); see the module docstring for gradients.
    """
    screen = _check_screen_vertices(screen_vertices)
    faces = _check_faces(faces if hasattr(faces, "dtype") else np.asarray(faces), screen.shape[0])
    for name, value in (("height", height), ("width", width), ("chunk_size", chunk_size), ("tile_size", tile_size)):
        if int(value) != value or int(value) <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    face_id = _rasterize_face_ids(
        screen,
        faces,
        height=int(height),
        width=int(width),
        perspective_correct=bool(perspective_correct),
        cull_backfaces=bool(cull_backfaces),
        near=float(near),
        chunk_size=int(min(chunk_size, faces.shape[0])),
        tile_size=int(tile_size),
    )
    return barycentrics_from_face_ids(screen, faces, face_id, perspective_correct=perspective_correct)


def interpolate(fragments: Fragments, vertex_attributes, faces) -> jax.Array:
    """Barycentric interpolation of per-vertex attributes: (V, C) -> (H, W, C), zeros on background.

    A (V,) attribute gives (H, W). Differentiable w.r.t. `vertex_attributes` and the barycentrics.
    """
    attributes = jnp.asarray(vertex_attributes)
    faces = jnp.asarray(faces)
    squeeze = attributes.ndim == 1
    if squeeze:
        attributes = attributes[:, None]
    if attributes.ndim != 2:
        raise ValueError(f"vertex attributes must have shape (V,) or (V, C), got {attributes.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
    face_id = fragments.face_id
    corner_attributes = attributes[faces[jnp.where(fragments.mask, face_id, 0)]]  # (H, W, 3, C)
    values = jnp.einsum("hwk,hwkc->hwc", fragments.barycentric.astype(corner_attributes.dtype), corner_attributes)
    values = jnp.where(fragments.mask[..., None], values, 0.0)
    return values[..., 0] if squeeze else values


def nearest_vertex_ids(fragments: Fragments, faces) -> jax.Array:
    """(H, W) int32 id of the visible face's vertex with the largest barycentric weight; −1 on background."""
    faces = jnp.asarray(faces, dtype=jnp.int32)
    corner = jnp.argmax(fragments.barycentric, axis=-1)
    vertex = jnp.take_along_axis(faces[jnp.where(fragments.mask, fragments.face_id, 0)], corner[..., None], axis=-1)[..., 0]
    return jnp.where(fragments.mask, vertex, -1)
