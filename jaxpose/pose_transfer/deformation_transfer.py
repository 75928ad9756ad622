"""Deformation Transfer (Sumner & Popović, "Deformation Transfer for Triangle Meshes", SIGGRAPH 2004).

The classical, non-learned pose-transfer baseline of the 3D-CoreNet comparison
(docs/pose_transfer.md, "Deformation Transfer").
NumPy float64 + scipy.sparse on the CPU; nothing here is differentiable or jitted.

Method
------
Source deformation (paper §3, "Deformation transfer"). Each source triangle (v1, v2, v3) gets a
fourth vertex off its plane,

    v4 = v1 + (v2 − v1) × (v3 − v1) / sqrt(|(v2 − v1) × (v3 − v1)|),

so that V = [v2 − v1, v3 − v1, v4 − v1] is invertible, and its affine map from the source reference
S0 to the deformed source S1 has the linear part

    Q = Ṽ V⁻¹            (Ṽ: the same frame built on S1).

The 1/sqrt scaling makes |v4 − v1| scale like an edge length, so a triangle scaled by s gets Q = s·I
(not s²), and a globally rotated+scaled source gives Q = sR on every triangle.

Target problem (paper §3, the formulation over deformed vertex positions, and its normal equations
"AᵀA x = Aᵀc", factorised once and back-substituted per deformation). The paper minimises

    Σ_j ‖Q_{s(j)} − T_j‖²_F    over the deformed target vertices,

with T_j = W̃_j W_j⁻¹ built like Q on the target reference W and the unknown deformed target, whose
fourth vertices w̃4 are unknowns too. Here those fourth vertices are eliminated exactly, so the
unknowns are the original target vertices only. With E = [w2 − w1, w3 − w1] (3×2) and
e4 = w4 − w1 ⟂ span(E), WᵀW = diag(EᵀE, |e4|²) is block diagonal, hence for R = Q W − W̃:

    ‖Q − W̃ W⁻¹‖²_F = tr(R (WᵀW)⁻¹ Rᵀ) = ‖(Q E − Ẽ) E⁺‖²_F + |Q e4 − ẽ4|² / |e4|²,

with E⁺ = (EᵀE)⁻¹Eᵀ the pseudo-inverse. The last term involves only the free ẽ4 and is zeroed by
ẽ4 = Q e4; what remains is

    Σ_j ‖Q_{s(j)} P_j − Ẽ_j E_j⁺‖²_F,    P_j = E_j E_j⁺ (projector onto the target triangle's plane),

which is linear in the deformed target vertices (Ẽ_j = [w̃2 − w̃1, w̃3 − w̃1]) — the same minimiser
as the paper's problem, with 3·F fewer unknowns. It differs from Σ_j ‖Q_{s(j)} − Ẽ_j E_j⁺‖²_F only by
the constant Σ_j ‖Q_{s(j)} n_j n_jᵀ‖²_F (n_j: unit normal), so per coordinate k it reads ‖A x_k − c_k‖² with a sparse
"gradient" matrix A (rows 3j..3j+2 = (Ẽ_j E_j⁺)ᵀ as a function of the vertices; 3 non-zeros per
row) shared by x, y and z, and right-hand side rows c_j = Q_{s(j)}ᵀ. (Using P_j Q_jᵀ instead would
change nothing: face j's block of Aᵀ is D_j E_j⁺ with D_j the vertex-difference selector, and
E_j⁺ P_j = E_j⁺.) The deformation gradients of the result are T_j = Ẽ_j E_j⁺
(`triangle_deformation_gradients`).

Consequence worth knowing: a source deformation is reproduced exactly on a differently shaped
target only when its Q is the same on every triangle *including the normal direction*, i.e. for a
similarity (rotation and uniform scale). A general global affine map M of the source gives
Q_j = M on the source triangle's plane but maps its normal through the fourth-vertex construction,
so Q_j ≠ M off-plane and a target whose triangles are tilted relative to the source's does not end
up exactly as M applied to it.

The objective is translation-invariant: AᵀA has one constant null vector per connected component.
One anchor vertex per component (the lowest index; vertex 0 for a connected mesh; a vertex in no
face is a component of its own and simply keeps its position) is held at its reference position
and eliminated; AᵀA restricted to the other vertices is factorised once per target reference mesh
with SuperLU, and every further deformation costs one sparse product and a back-substitution. `placement="centroid"` instead translates the result so its centroid equals the
reference's (the same minimiser: a translation does not change the objective). The pose-transfer
metrics centre every mesh on its bounding box (docs/pose_transfer.md, "Metrics"), so neither choice affects them.

Harness protocol (the "key points" oracle setting of the 3D-CoreNet comparison)
-----------------------------------------------------------------------------
DT does not transfer a *pose*; it transfers a *deformation* between two states of the same source
subject. For a pose-transfer pair (identity mesh I, pose mesh P) the harness therefore uses

  * S1 = the pose mesh P (subject p in pose q),
  * S0 = the pose mesh's subject p in the identity mesh's pose (available on the NPT data because every
    pose is rendered for every identity: it is the mesh "identity p, pose of I"),
  * target reference = the identity mesh I; output = I deformed like S0 → S1, in I's topology,
  * triangle correspondence = the identity map, since all NPT meshes share the SMPL (or SMAL) topology;
    an explicit (F_target,) correspondence is supported for other topologies.

This is an oracle setting. DT receives information the learned methods never see: a dense,
exact triangle correspondence for free (shared topology — in the original paper it must be built
from user-placed key-point markers, which is what the slides' "Annotation: key points" column
records) and the source subject in the identity's pose, i.e. a ground-truth rest state of the
deformation. The learned models (NPT, 3D-CoreNet) get only I and P, with no correspondence. How
3D-CoreNet actually ran DT is not documented (docs/pose_transfer.md, "Deformation Transfer";
unverified); numbers from this protocol are comparable to the slides' DT row only under that caveat.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as spla

DEGENERATE_TOLERANCE = 1e-8
"""A triangle is degenerate when twice its area is ≤ this × its longest squared edge (sin of its
largest angle ≲ 1e-8): its frame cannot be inverted in float64 to any useful accuracy."""

Placement = Literal["anchor", "centroid"]


def _as_vertices(vertices, name: str) -> np.ndarray:
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"Deformation transfer: {name} must have shape (V, 3), got {vertices.shape}")
    if vertices.shape[0] < 3:
        raise ValueError(
            f"Deformation transfer: {name} needs at least 3 vertices, got {vertices.shape}"
        )
    if not np.all(np.isfinite(vertices)):
        raise ValueError(f"Deformation transfer: {name} contains NaN or Inf")
    return vertices


def _as_faces(faces, num_vertices: int, name: str) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] < 1:
        raise ValueError(
            f"Deformation transfer: {name} must have shape (F, 3) with F ≥ 1, got {faces.shape}"
        )
    if not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"Deformation transfer: {name} must be integers, got dtype {faces.dtype}")
    if faces.min() < 0 or faces.max() >= num_vertices:
        raise ValueError(
            f"Deformation transfer: {name} index vertices in [{faces.min()}, {faces.max()}] but the "
            f"mesh has {num_vertices} vertices"
        )
    return faces.astype(np.int64)


def _edge_frames(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3, 2): columns v2 − v1 and v3 − v1 of every face."""
    first = vertices[faces[:, 0]]
    return np.stack([vertices[faces[:, 1]] - first, vertices[faces[:, 2]] - first], axis=-1)


def _check_nondegenerate(edges: np.ndarray, faces: np.ndarray, name: str) -> None:
    twice_area = np.linalg.norm(np.cross(edges[:, :, 0], edges[:, :, 1]), axis=-1)
    third = edges[:, :, 1] - edges[:, :, 0]
    longest_sq = np.maximum(
        np.maximum(np.sum(edges[:, :, 0] ** 2, -1), np.sum(edges[:, :, 1] ** 2, -1)),
        np.sum(third**2, -1),
    )
    bad = np.flatnonzero(~(twice_area > DEGENERATE_TOLERANCE * longest_sq))
    if bad.size:
        shown = ", ".join(f"{int(i)} (vertices {faces[i].tolist()})" for i in bad[:5])
        raise ValueError(
            f"Deformation transfer: {name} has {bad.size} degenerate (zero-area) triangle(s), e.g. "
            f"face {shown}; their deformation gradient is undefined"
        )


def fourth_vertex_frames(vertices, faces) -> np.ndarray:
    """Sumner–Popović triangle frames V = [v2 − v1, v3 − v1, v4 − v1], (V, 3) -> (F, 3, 3).

    v4 − v1 = n / sqrt(|n|) with n = (v2 − v1) × (v3 − v1); columns are the three frame vectors, in
    mesh units. A zero-area triangle gets a zero third column (the continuous limit of n / sqrt|n|).
    """
    vertices = _as_vertices(vertices, "vertices")
    faces = _as_faces(faces, vertices.shape[0], "faces")
    edges = _edge_frames(vertices, faces)
    normal = np.cross(edges[:, :, 0], edges[:, :, 1])
    length = np.linalg.norm(normal, axis=-1, keepdims=True)
    offset = np.divide(normal, np.sqrt(length), out=np.zeros_like(normal), where=length > 0)
    return np.concatenate([edges, offset[:, :, None]], axis=-1)


def source_deformation_gradients(source_reference, source_deformed, source_faces) -> np.ndarray:
    """Per-triangle deformation gradients Q = Ṽ V⁻¹ from S0 to S1, -> (F, 3, 3), dimensionless.

    Args:
      source_reference: (M, 3) S0; its triangles must not be degenerate.
      source_deformed: (M, 3) S1, same vertex order (its triangles may degenerate).
      source_faces: (F, 3) shared topology.
    """
    reference = _as_vertices(source_reference, "source_reference")
    deformed = _as_vertices(source_deformed, "source_deformed (pose mesh)")
    if deformed.shape != reference.shape:
        raise ValueError(
            f"Deformation transfer: source_reference {reference.shape} and the deformed source "
            f"{deformed.shape} must have the same shape (same subject, same topology)"
        )
    faces = _as_faces(source_faces, reference.shape[0], "source_faces")
    _check_nondegenerate(_edge_frames(reference, faces), faces, "source_reference")
    frames = fourth_vertex_frames(reference, faces)
    deformed_frames = fourth_vertex_frames(deformed, faces)
    # Q V = Ṽ  <=>  Vᵀ Qᵀ = Ṽᵀ.
    transposed = np.linalg.solve(np.swapaxes(frames, -1, -2), np.swapaxes(deformed_frames, -1, -2))
    return np.swapaxes(transposed, -1, -2)


def triangle_deformation_gradients(reference, deformed, faces) -> np.ndarray:
    """In-plane deformation gradients T_j = Ẽ_j E_j⁺ of a deformed mesh, -> (F, 3, 3).

    The quantity DT's target problem matches: T_j maps the reference triangle's plane like the
    deformation and sends its normal to 0, so T_j = Q P_j for any Q consistent with the triangle.
    """
    reference = _as_vertices(reference, "reference")
    deformed = _as_vertices(deformed, "deformed")
    faces = _as_faces(faces, reference.shape[0], "faces")
    edges = _edge_frames(reference, faces)
    _check_nondegenerate(edges, faces, "reference")
    return _edge_frames(deformed, faces) @ _pseudo_inverses(edges)


def _pseudo_inverses(edges: np.ndarray) -> np.ndarray:
    """(F, 3, 2) -> (F, 2, 3): E⁺ = (EᵀE)⁻¹ Eᵀ."""
    transposed = np.swapaxes(edges, -1, -2)
    return np.linalg.solve(transposed @ edges, transposed)


@dataclass(frozen=True, eq=False)
class TargetSystem:
    """The factorised DT normal equations for one target reference mesh (reusable across deformations).

    reference_vertices: (N, 3) float64 target reference, mesh units.
    faces: (F, 3) int64 target topology.
    anchors: (K,) one held vertex per connected component (K = number of components).
    """

    reference_vertices: np.ndarray
    faces: np.ndarray
    anchors: np.ndarray
    _free: np.ndarray
    _free_operator_t: sp.csr_matrix  # (N - K, 3F): A_Uᵀ
    _anchor_contribution: np.ndarray  # (3F, 3): A_K X_K
    _factor: spla.SuperLU

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    def transfer(
        self,
        deformation_gradients,
        face_correspondence=None,
        *,
        placement: Placement = "anchor",
    ) -> np.ndarray:
        """Deform the target reference by per-triangle source gradients Q, -> (N, 3).

        Args:
          deformation_gradients: (F_source, 3, 3) Q of the source triangles.
          face_correspondence: None (identity map; needs F_source == F_target) or an (F_target,)
            integer array: target face j follows source face face_correspondence[j].
          placement: "anchor" keeps each component's anchor vertex at its reference position;
            "centroid" translates the result so its centroid equals the reference centroid.
        """
        if placement not in ("anchor", "centroid"):
            raise ValueError(
                f"Deformation transfer: placement must be 'anchor' or 'centroid', got {placement!r}"
            )
        gradients = np.asarray(deformation_gradients, dtype=np.float64)
        if gradients.ndim != 3 or gradients.shape[1:] != (3, 3):
            raise ValueError(
                f"Deformation transfer: deformation gradients must be (F, 3, 3), got {gradients.shape}"
            )
        if not np.all(np.isfinite(gradients)):
            raise ValueError("Deformation transfer: deformation gradients contain NaN or Inf")
        gradients = gradients[self._resolve_correspondence(face_correspondence, gradients.shape[0])]
        # Right-hand side rows of face j: Q_jᵀ, one column per coordinate.
        rhs = np.swapaxes(gradients, -1, -2).reshape(-1, 3)
        free_positions = self._factor.solve(self._free_operator_t @ (rhs - self._anchor_contribution))
        result = self.reference_vertices.copy()
        result[self._free] = free_positions
        if placement == "centroid":
            result += self.reference_vertices.mean(axis=0) - result.mean(axis=0)
        return result

    def _resolve_correspondence(self, face_correspondence, num_source_faces: int) -> np.ndarray:
        if face_correspondence is None:
            if num_source_faces != self.num_faces:
                raise ValueError(
                    f"Deformation transfer: the source has {num_source_faces} faces and the target "
                    f"{self.num_faces}; the identity correspondence needs equal face counts — pass "
                    "face_correspondence (F_target,) for different topologies"
                )
            return np.arange(self.num_faces)
        correspondence = np.asarray(face_correspondence)
        is_integer = np.issubdtype(correspondence.dtype, np.integer)
        if correspondence.shape != (self.num_faces,) or not is_integer:
            raise ValueError(
                f"Deformation transfer: face_correspondence must be an integer array of shape "
                f"({self.num_faces},) (one source face per target face), got {correspondence.shape} "
                f"{correspondence.dtype}"
            )
        if correspondence.min() < 0 or correspondence.max() >= num_source_faces:
            raise ValueError(
                f"Deformation transfer: face_correspondence refers to source faces in "
                f"[{correspondence.min()}, {correspondence.max()}] but the source has "
                f"{num_source_faces} faces"
            )
        return correspondence


def prepare_target(target_reference, target_faces) -> TargetSystem:
    """Build and factorise the DT normal equations for a target reference mesh.

    Args:
      target_reference: (N, 3) target in its reference state, mesh units; no degenerate triangles.
      target_faces: (F, 3) target topology.
    """
    reference = _as_vertices(target_reference, "target_reference")
    num_vertices = reference.shape[0]
    faces = _as_faces(target_faces, num_vertices, "target_faces")
    edges = _edge_frames(reference, faces)
    _check_nondegenerate(edges, faces, "target_reference")
    pinv = _pseudo_inverses(edges)  # (F, 2, 3)

    # Row 3j + m of A: T_jᵀ[m] = Σ_i E⁺[i, m] (w̃_{corner i+1} − w̃_{corner 0}).
    num_faces = faces.shape[0]
    rows = np.repeat(np.arange(3 * num_faces).reshape(num_faces, 3), 3, axis=1).reshape(-1)
    columns = np.repeat(faces, 3, axis=0).reshape(num_faces, 3, 3)  # [face, m, corner]
    values = np.stack([-(pinv[:, 0, :] + pinv[:, 1, :]), pinv[:, 0, :], pinv[:, 1, :]], axis=-1)
    operator = sp.csc_matrix(
        (values.reshape(-1), (rows, columns.reshape(-1))), shape=(3 * num_faces, num_vertices)
    )

    edge_pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = sp.coo_matrix(
        (np.ones(len(edge_pairs)), (edge_pairs[:, 0], edge_pairs[:, 1])),
        shape=(num_vertices, num_vertices),
    )
    _, labels = csgraph.connected_components(adjacency, directed=False)
    anchors = np.unique(labels, return_index=True)[1].astype(np.int64)
    free = np.setdiff1d(np.arange(num_vertices), anchors)
    if free.size == 0:
        raise ValueError("Deformation transfer: the target mesh has no free vertex to solve for")

    free_operator = operator[:, free]
    normal_matrix = (free_operator.T @ free_operator).tocsc()
    factor = spla.splu(normal_matrix, permc_spec="COLAMD")
    return TargetSystem(
        reference_vertices=reference,
        faces=faces,
        anchors=anchors,
        _free=free,
        _free_operator_t=free_operator.T.tocsr(),
        _anchor_contribution=operator[:, anchors] @ reference[anchors],
        _factor=factor,
    )


def deformation_transfer(
    source_reference,
    source_deformed,
    source_faces,
    target_reference,
    target_faces,
    *,
    face_correspondence=None,
    placement: Placement = "anchor",
) -> np.ndarray:
    """Transfer the deformation S0 → S1 of a source mesh onto a target reference mesh, -> (N, 3).

    Args:
      source_reference: (M, 3) S0.
      source_deformed: (M, 3) S1.
      source_faces: (F_s, 3).
      target_reference: (N, 3).
      target_faces: (F_t, 3).
      face_correspondence: None (identity; F_s == F_t) or (F_t,) source face index per target face.
      placement: see `TargetSystem.transfer`.

    Returns:
      (N, 3) float64 deformed target in the target's vertex order and topology, mesh units.
    """
    gradients = source_deformation_gradients(source_reference, source_deformed, source_faces)
    system = prepare_target(target_reference, target_faces)
    return system.transfer(gradients, face_correspondence, placement=placement)


def _mesh_key(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    for array in (vertices, faces):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.digest()


class DeformationTransfer:
    """Deformation Transfer as a pose-transfer baseline with the learned models' calling convention.

    `model(identity_vertices, identity_faces, pose_vertices, source_reference=S0, source_faces=F_P)`
    returns the identity mesh in the pose mesh's pose. See the module docstring for the harness
    protocol (S0 = the pose mesh's subject in the identity mesh's pose) and why it is an oracle
    setting. Factorisations are cached per target reference mesh (LRU, `cache_size` entries), so
    transferring many poses onto one identity factorises once.
    """

    def __init__(
        self, *, face_correspondence=None, placement: Placement = "anchor", cache_size: int = 8
    ):
        if placement not in ("anchor", "centroid"):
            raise ValueError(
                f"Deformation transfer: placement must be 'anchor' or 'centroid', got {placement!r}"
            )
        if cache_size < 1:
            raise ValueError(f"Deformation transfer: cache_size must be ≥ 1, got {cache_size}")
        self.face_correspondence = (
            None if face_correspondence is None else np.asarray(face_correspondence)
        )
        self.placement = placement
        self.cache_size = cache_size
        self._systems: collections.OrderedDict[bytes, TargetSystem] = collections.OrderedDict()
        self.factorizations = 0
        """How many target systems were built (cache misses)."""

    def system_for(self, target_reference, target_faces) -> TargetSystem:
        """The (cached) factorised system of a target reference mesh."""
        reference = _as_vertices(target_reference, "identity_vertices (target reference)")
        faces = _as_faces(target_faces, reference.shape[0], "identity_faces")
        key = _mesh_key(reference, faces)
        if key in self._systems:
            self._systems.move_to_end(key)
            return self._systems[key]
        system = prepare_target(reference, faces)
        self.factorizations += 1
        self._systems[key] = system
        while len(self._systems) > self.cache_size:
            self._systems.popitem(last=False)
        return system

    def __call__(
        self,
        identity_vertices,
        identity_faces,
        pose_vertices,
        *,
        source_reference,
        source_faces,
    ) -> np.ndarray:
        """Identity mesh in the pose mesh's pose.

        Args:
          identity_vertices: (N, 3) identity mesh I = the target reference, mesh units.
          identity_faces: (F_I, 3) I's topology.
          pose_vertices: (M, 3) pose mesh P = the deformed source S1.
          source_reference: (M, 3) S0 = P's subject in I's pose (same vertex order as P).
          source_faces: (F_P, 3) P's topology.

        Returns:
          (N, 3) float64, I's vertex order and topology.
        """
        gradients = source_deformation_gradients(source_reference, pose_vertices, source_faces)
        system = self.system_for(identity_vertices, identity_faces)
        return system.transfer(gradients, self.face_correspondence, placement=self.placement)

    def transfer_triples(
        self,
        triples: Iterable[Sequence],
        *,
        identity_faces,
        source_faces,
    ) -> np.ndarray:
        """Batched convenience: [(identity (N, 3), pose (M, 3), source_reference (M, 3)), ...] -> (B, N, 3).

        All identities share `identity_faces` and all poses `source_faces`; identities that repeat
        reuse their cached factorisation.
        """
        outputs = []
        for index, triple in enumerate(triples):
            if len(triple) != 3:
                raise ValueError(
                    f"Deformation transfer: triple {index} must be (identity_vertices, pose_vertices, "
                    f"source_reference), got {len(triple)} items"
                )
            identity_vertices, pose_vertices, source_reference = triple
            outputs.append(
                self(
                    identity_vertices,
                    identity_faces,
                    pose_vertices,
                    source_reference=source_reference,
                    source_faces=source_faces,
                )
            )
        if not outputs:
            raise ValueError("Deformation transfer: transfer_triples got no triples")
        return np.stack(outputs)
