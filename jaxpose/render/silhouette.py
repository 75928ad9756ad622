"""A soft silhouette whose gradient reaches the vertices through the mesh outline.

The hard rasteriser gives no gradient at silhouette edges. This module blurs coverage instead
(in the spirit of soft rasterisers): each face covers pixel p with probability
`σ(d_f(p) / sigma)`, where `d_f(p)` is the signed Euclidean screen distance (pixels) from p to the
face's outline (distance to the nearest edge segment; positive inside), and faces are combined as
independent occluders:

    silhouette(p) = 1 − Π_f (1 − σ(d_f(p) / sigma)) = 1 − exp(−Σ_f softplus(d_f(p) / sigma)).

Depth plays no role (a silhouette has no occlusion). Faces dropped by the rasteriser (behind the
near plane, degenerate, non-finite) are dropped here too. For speed, faces whose screen bounding box
lies more than `cutoff · sigma` pixels from a tile are skipped (their terms are below
softplus(−cutoff) ≈ e^−cutoff each, 1e-7 at the default 16). Reverse mode runs a second tiled pass
(a custom VJP) that accumulates per-block vector-Jacobian products, so its memory is O(F + chunk ·
tile²) like the forward pass.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxpose.render.rasterize import _check_faces, _check_screen_vertices, spatial_order


def _soft_face_rows(screen, faces, near: float):
    """(F, 18) rows [inward edge normals n_u (3), n_v (3), edge starts p_u (3), p_v (3), edge vectors
    e_u (3), e_v (3)] (edge k runs from corner k+1 to corner k+2), validity, bboxes, centroids."""
    corners = screen[faces]
    z = corners[..., 2]
    p, q = corners[:, (1, 2, 0), :2], corners[:, (2, 0, 1), :2]
    a = q[..., 1] - p[..., 1]
    b = p[..., 0] - q[..., 0]
    d1, d2 = corners[:, 1, :2] - corners[:, 0, :2], corners[:, 2, :2] - corners[:, 0, :2]
    area = d1[:, 1] * d2[:, 0] - d1[:, 0] * d2[:, 1]
    valid = jnp.all(jnp.isfinite(corners), axis=(1, 2)) & (jnp.abs(area) > 1e-10) & jnp.all(z > near, axis=1)
    orientation = jnp.where(area < 0, -1.0, 1.0).astype(screen.dtype)[:, None]
    keep = lambda x: jnp.where(valid[:, None], x, 0.0)  # noqa: E731
    edge = q - p
    rows = jnp.concatenate(
        [keep(orientation * a), keep(orientation * b), keep(p[..., 0]), keep(p[..., 1]), keep(edge[..., 0]), keep(edge[..., 1])],
        axis=1,
    )
    u, v = jax.lax.stop_gradient(corners[..., 0]), jax.lax.stop_gradient(corners[..., 1])
    bbox = jnp.stack(
        [
            jnp.where(valid, u.min(axis=1), jnp.inf),
            jnp.where(valid, u.max(axis=1), -jnp.inf),
            jnp.where(valid, v.min(axis=1), jnp.inf),
            jnp.where(valid, v.max(axis=1), -jnp.inf),
        ],
        axis=1,
    )
    centroid = jnp.where(valid[:, None], jnp.mean(jax.lax.stop_gradient(corners[..., :2]), axis=1), jnp.inf)
    return rows, valid, bbox, centroid


def _block_sum(block, used, sigma, px, py):
    """Σ over a chunk of faces of softplus(d_f / sigma) at a tile's pixel centres, -> (T, T)."""
    col = lambda k: block[:, k][:, None, None]  # noqa: E731 - (chunk, 1, 1) entry k of each face row
    inside, squared = None, None
    for edge in range(3):
        du, dv = px - col(6 + edge), py - col(9 + edge)
        eu, ev = col(12 + edge), col(15 + edge)
        covered = col(edge) * du + col(3 + edge) * dv >= 0
        length2 = jnp.where(used[:, None, None], eu * eu + ev * ev, 1.0)
        t = jnp.clip((du * eu + dv * ev) / length2, 0.0, 1.0)
        s2 = (du - t * eu) ** 2 + (dv - t * ev) ** 2
        inside = covered if inside is None else inside & covered
        squared = s2 if squared is None else jnp.minimum(squared, s2)
    unsigned = jnp.sqrt(jnp.maximum(squared, 1e-12))
    distance = jnp.where(inside, unsigned, -unsigned)
    return jnp.where(used[:, None, None], jax.nn.softplus(distance / sigma), 0.0).sum(axis=0)


def _tiles(height, width, tile_size, dtype):
    tiles_y, tiles_x = -(-height // tile_size), -(-width // tile_size)
    offsets = jnp.arange(tile_size, dtype=dtype) + 0.5

    def origin(tile):
        row0 = (tile // tiles_x) * tile_size
        col0 = (tile % tiles_x) * tile_size
        return row0, col0, (col0 + offsets)[None, None, :], (row0 + offsets)[None, :, None]

    return tiles_y, tiles_x, origin


def _overlaps(box, row0, col0, tile_size, reach):
    return (box[1] >= col0 - reach) & (box[0] <= col0 + tile_size + reach) & (box[3] >= row0 - reach) & (box[2] <= row0 + tile_size + reach)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8))
def _softplus_total(rows, used, boxes, sigma, cutoff, height, width, chunk_size, tile_size):
    """(H, W) Σ_f softplus(d_f / sigma) over the chunked, sorted face rows (tiles skip far chunks)."""
    tiles_y, tiles_x, origin = _tiles(height, width, tile_size, rows.dtype)
    reach = cutoff * sigma
    num_chunks = boxes.shape[0]

    def render_tile(tile):
        row0, col0, px, py = origin(tile)

        def visit_chunk(chunk, total):
            block = jax.lax.dynamic_slice_in_dim(rows, chunk * chunk_size, chunk_size)
            block_used = jax.lax.dynamic_slice_in_dim(used, chunk * chunk_size, chunk_size)
            return jax.lax.cond(
                _overlaps(boxes[chunk], row0, col0, tile_size, reach),
                lambda: total + _block_sum(block, block_used, sigma, px, py),
                lambda: total,
            )

        return jax.lax.fori_loop(0, num_chunks, visit_chunk, jnp.zeros((tile_size, tile_size), rows.dtype))

    tiles = jax.lax.map(render_tile, jnp.arange(tiles_y * tiles_x))
    image = tiles.reshape(tiles_y, tiles_x, tile_size, tile_size).transpose(0, 2, 1, 3)
    return image.reshape(tiles_y * tile_size, tiles_x * tile_size)[:height, :width]


def _softplus_total_fwd(rows, used, boxes, sigma, cutoff, height, width, chunk_size, tile_size):
    total = _softplus_total(rows, used, boxes, sigma, cutoff, height, width, chunk_size, tile_size)
    return total, (rows, used, boxes, sigma)


def _softplus_total_bwd(cutoff, height, width, chunk_size, tile_size, residuals, cotangent):
    # A second tiled pass that accumulates each block's vector-Jacobian product into the face rows,
    # so reverse mode needs O(F + chunk · tile²) memory instead of storing every block.
    rows, used, boxes, sigma = residuals
    tiles_y, tiles_x, origin = _tiles(height, width, tile_size, rows.dtype)
    padded = jnp.zeros((tiles_y * tile_size, tiles_x * tile_size), cotangent.dtype).at[:height, :width].set(cotangent)
    reach = cutoff * sigma
    num_chunks = boxes.shape[0]

    def tile_step(tile, state):
        row0, col0, px, py = origin(tile)
        tile_cotangent = jax.lax.dynamic_slice(padded, (row0, col0), (tile_size, tile_size))

        def chunk_step(chunk, state):
            rows_grad, sigma_grad = state
            block = jax.lax.dynamic_slice_in_dim(rows, chunk * chunk_size, chunk_size)
            block_used = jax.lax.dynamic_slice_in_dim(used, chunk * chunk_size, chunk_size)

            def accumulate():
                _, vjp = jax.vjp(lambda b, s: _block_sum(b, block_used, s, px, py), block, sigma)
                block_grad, block_sigma_grad = vjp(tile_cotangent)
                current = jax.lax.dynamic_slice_in_dim(rows_grad, chunk * chunk_size, chunk_size)
                updated = jax.lax.dynamic_update_slice_in_dim(rows_grad, current + block_grad, chunk * chunk_size, 0)
                return updated, sigma_grad + block_sigma_grad

            return jax.lax.cond(_overlaps(boxes[chunk], row0, col0, tile_size, reach), accumulate, lambda: state)

        return jax.lax.fori_loop(0, num_chunks, chunk_step, state)

    rows_grad, sigma_grad = jax.lax.fori_loop(
        0, tiles_y * tiles_x, tile_step, (jnp.zeros_like(rows), jnp.zeros_like(sigma))
    )
    return rows_grad, None, None, sigma_grad


_softplus_total.defvjp(_softplus_total_fwd, _softplus_total_bwd)


@functools.partial(jax.jit, static_argnames=("height", "width", "near", "cutoff", "chunk_size", "tile_size"))
def _soft_silhouette(screen, faces, sigma, *, height, width, near, cutoff, chunk_size, tile_size):
    rows, valid, bbox, centroid = _soft_face_rows(screen, faces, near)
    order = spatial_order(centroid, valid, tile_size)
    num_faces = faces.shape[0]
    num_chunks = -(-num_faces // chunk_size)
    padding = num_chunks * chunk_size - num_faces
    rows = jnp.concatenate([rows[order], jnp.zeros((padding, rows.shape[1]), rows.dtype)])
    used = jnp.concatenate([valid[order], jnp.zeros((padding,), bool)])
    empty_box = jnp.asarray([jnp.inf, -jnp.inf, jnp.inf, -jnp.inf], bbox.dtype)
    boxes = jnp.concatenate([bbox[order], jnp.broadcast_to(empty_box, (padding, 4))]).reshape(num_chunks, chunk_size, 4)
    boxes = jnp.stack([boxes[..., 0].min(1), boxes[..., 1].max(1), boxes[..., 2].min(1), boxes[..., 3].max(1)], axis=1)
    total = _softplus_total(rows, used, boxes, sigma, cutoff, height, width, chunk_size, tile_size)
    return -jnp.expm1(-total)


def soft_silhouette(
    screen_vertices,
    faces,
    height: int,
    width: int,
    *,
    sigma=0.5,
    near: float = 1e-4,
    cutoff: float = 16.0,
    chunk_size: int = 128,
    tile_size: int = 16,
) -> jax.Array:
    """Soft coverage in [0, 1] of a mesh, (H, W), differentiable w.r.t. `screen_vertices` and `sigma`.

    Args:
      screen_vertices: (V, 3) `(u, v, z)` pixel coordinates and camera depth (`camera.screen_vertices`).
      faces: (F, 3) int vertex indices.
      height, width: image size in pixels (static).
      sigma: blur width in pixels (> 0); as it goes to 0 the result tends to the hard coverage mask.
      near: faces with a vertex at z ≤ `near` are ignored.
      cutoff: faces farther than `cutoff · sigma` pixels from a tile are skipped for that tile.
      chunk_size, tile_size: blocking of the computation (results do not depend on them).
    """
    screen = _check_screen_vertices(screen_vertices)
    faces = _check_faces(faces if hasattr(faces, "dtype") else jnp.asarray(faces), screen.shape[0])
    for name, value in (("height", height), ("width", width), ("chunk_size", chunk_size), ("tile_size", tile_size)):
        if int(value) != value or int(value) <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    sigma = jnp.asarray(sigma, dtype=screen.dtype)
    if sigma.shape != ():
        raise ValueError(f"sigma must be a scalar, got shape {sigma.shape}")
    if not isinstance(sigma, jax.core.Tracer) and not float(sigma) > 0:
        raise ValueError(f"sigma must be positive, got {float(sigma)}")
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    return _soft_silhouette(
        screen,
        faces,
        sigma,
        height=int(height),
        width=int(width),
        near=float(near),
        cutoff=float(cutoff),
        chunk_size=int(min(chunk_size, faces.shape[0])),
        tile_size=int(tile_size),
    )
