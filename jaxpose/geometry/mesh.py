"""Triangle-mesh geometry: edges, edge lengths, the NPT/3D-CoreNet edge loss, areas and normals.

Conventions:
  * vertices: (..., V, 3) float array of positions in mesh units (metres for SMPL data); every
    JAX function here is batched over the leading dimensions "...".
  * faces: (F, 3) integer array of vertex indices, shared by every mesh of the batch (one topology).
    Corners are (a, b, c) = (faces[:, 0], faces[:, 1], faces[:, 2]); the face normal follows the
    right-hand rule, (b - a) x (c - a), so counter-clockwise faces seen from outside point outward.
  * Face edges are ordered (a→b, b→c, c→a), i.e. edge k runs from corner k to corner (k + 1) mod 3.
    The NPT edge loss uses the lengths |ab|, |bc|, |ac|: the same three numbers.

Faces are host-side topology: when they are concrete (NumPy, or a JAX array outside a trace) their
shape, dtype and index range are checked; traced faces only get the shape check.

Norms use a "safe" square root whose value and gradient are 0 at a zero vector (not NaN), so a
collapsed predicted edge or triangle never poisons a gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

EDGE_LOSS_EPS = 1e-8
"""Floor (mesh units) on reference edge lengths in `edge_length_ratio_loss`; see there."""


def _check_vertices(vertices, name: str = "vertices") -> None:
    if vertices.ndim < 2 or vertices.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., V, 3), got {tuple(vertices.shape)}")


def _check_faces(faces, num_vertices: int | None = None):
    """Validate an (F, 3) integer face array; returns it as a NumPy array when it is concrete."""
    if faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(faces.shape)}")
    if not jnp.issubdtype(faces.dtype, jnp.integer):
        raise ValueError(f"faces must be an integer array, got dtype {faces.dtype}")
    if isinstance(faces, jax.core.Tracer):
        return faces
    faces = np.asarray(faces)
    if faces.size and faces.min() < 0:
        raise ValueError(f"faces contain a negative vertex index ({faces.min()})")
    if num_vertices is not None and faces.size and faces.max() >= num_vertices:
        raise ValueError(
            f"faces reference vertex {faces.max()} but the mesh has only {num_vertices} vertices"
        )
    return faces


def _safe_norm(x: jax.Array) -> jax.Array:
    """Euclidean norm over the last axis, with value and gradient 0 at the zero vector."""
    squared = jnp.sum(x * x, axis=-1)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def _safe_normalize(x: jax.Array) -> jax.Array:
    """x / |x| over the last axis; the zero vector maps to the zero vector (gradient 0)."""
    norm = _safe_norm(x)
    positive = norm > 0
    return x / jnp.where(positive, norm, 1.0)[..., None]


def unique_edges(faces) -> np.ndarray:
    """The undirected edges of a triangle mesh (host-side NumPy).

    Args:
      faces: (F, 3) integer vertex indices.

    Returns:
      (E, 2) int64 array, each edge once as (i, j) with i < j, sorted lexicographically. For a
      closed manifold mesh E = 3F / 2.
    """
    faces = _check_faces(np.asarray(faces))
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=0)
    undirected = np.sort(directed.astype(np.int64), axis=1)
    return np.unique(undirected, axis=0).reshape(-1, 2)


def face_edge_vectors(vertices: jax.Array, faces) -> jax.Array:
    """Edge vectors of every face, (..., V, 3) -> (..., F, 3 edges, 3 coords).

    Edge k is corner[(k + 1) mod 3] - corner[k]: (b - a, c - b, a - c), in mesh units.
    """
    vertices = jnp.asarray(vertices)
    _check_vertices(vertices)
    faces = _check_faces(faces, vertices.shape[-2])
    corners = vertices[..., faces, :]  # (..., F, 3 corners, 3)
    return jnp.roll(corners, shift=-1, axis=-2) - corners


def face_edge_lengths(vertices: jax.Array, faces) -> jax.Array:
    """Lengths of the three edges of every face, (..., V, 3) -> (..., F, 3), in mesh units.

    Column k is |corner[(k + 1) mod 3] - corner[k]|: (|ab|, |bc|, |ca|).
    """
    return _safe_norm(face_edge_vectors(vertices, faces))


def edge_length_ratio_loss(
    pred: jax.Array, reference: jax.Array, faces, *, eps: float = EDGE_LOSS_EPS
) -> jax.Array:
    """NPT / 3D-CoreNet edge loss: mean over faces of Σ_edges |‖e_pred‖ / ‖e_ref‖ − 1|.

    The reference is the *input identity mesh* (docs/pose_transfer.md, "Losses and training
    recipe"); the loss is dimensionless and invariant to rigid motions of either mesh. Averaging the result over the batch gives the
    original's `torch.mean` over (B, F) of the per-face three-edge sum.

    Args:
      pred: (..., V, 3) predicted vertices.
      reference: (..., V, 3) reference vertices (the identity mesh); its leading dimensions must
        broadcast to pred's (e.g. one reference (V, 3) for a batch (B, V, 3)).
      faces: (F, 3) integer vertex indices shared by both meshes.
      eps: floor on the reference edge lengths, in mesh units. A zero-length reference edge would
        make the ratio infinite (NaN for a zero-length prediction too); with the floor its ratio is
        ‖e_pred‖ / eps, a large but finite penalty pushing the predicted edge to collapse as well.
        The default 1e-8 is far below any real edge (SMPL edges are ~1e-2 m), so it changes nothing
        on non-degenerate meshes.

    Returns:
      (...) loss per mesh, pred's leading shape.
    """
    pred = jnp.asarray(pred)
    reference = jnp.asarray(reference)
    _check_vertices(pred, "pred")
    _check_vertices(reference, "reference")
    if reference.shape[-2] != pred.shape[-2]:
        raise ValueError(
            f"pred and reference must have the same vertex count, got {pred.shape} and "
            f"{reference.shape}"
        )
    if reference.ndim > pred.ndim or not all(
        r in (1, p) for r, p in zip(reference.shape[::-1], pred.shape[::-1], strict=False)
    ):
        raise ValueError(
            f"reference shape {reference.shape} does not broadcast to pred shape {pred.shape}"
        )
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    pred_lengths = face_edge_lengths(pred, faces)
    reference_lengths = face_edge_lengths(reference, faces)
    reference_lengths = jnp.broadcast_to(
        jnp.maximum(reference_lengths, eps), pred_lengths.shape
    ).astype(pred_lengths.dtype)
    per_face = jnp.sum(jnp.abs(pred_lengths / reference_lengths - 1.0), axis=-1)
    return jnp.mean(per_face, axis=-1)


def face_cross_products(vertices: jax.Array, faces) -> jax.Array:
    """(b - a) x (c - a) per face, (..., V, 3) -> (..., F, 3); length = twice the face area."""
    vertices = jnp.asarray(vertices)
    _check_vertices(vertices)
    faces = _check_faces(faces, vertices.shape[-2])
    a = vertices[..., faces[:, 0], :]
    b = vertices[..., faces[:, 1], :]
    c = vertices[..., faces[:, 2], :]
    return jnp.cross(b - a, c - a)


def face_areas(vertices: jax.Array, faces) -> jax.Array:
    """Triangle areas, (..., V, 3) -> (..., F), in squared mesh units."""
    return 0.5 * _safe_norm(face_cross_products(vertices, faces))


def face_normals(vertices: jax.Array, faces) -> jax.Array:
    """Unit face normals (right-hand rule on (a, b, c)), (..., V, 3) -> (..., F, 3).

    A zero-area face gets the zero vector.
    """
    return _safe_normalize(face_cross_products(vertices, faces))


def vertex_normals(vertices: jax.Array, faces) -> jax.Array:
    """Area-weighted unit vertex normals, (..., V, 3) -> (..., V, 3).

    Each vertex normal is the normalised sum of the un-normalised cross products (b - a) x (c - a)
    of its incident faces, i.e. of the face normals weighted by twice the face area. Vertices in
    no face (or whose incident normals cancel) get the zero vector.
    """
    vertices = jnp.asarray(vertices)
    cross = face_cross_products(vertices, faces)  # validates both inputs
    accumulated = jnp.zeros(vertices.shape, dtype=cross.dtype)
    for corner in range(3):
        accumulated = accumulated.at[..., faces[:, corner], :].add(cross)
    return _safe_normalize(accumulated)
