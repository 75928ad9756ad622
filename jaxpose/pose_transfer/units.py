"""Units of the pose-transfer metrics, defined once: the papers' printed scaling (3D-CoreNet / NPT:
PMD and CD × 10⁴, EMD × 10³) and the column names that carry it, plus the float64 host-side
reference protocol `pose_transfer_metrics` (PMD, CD and EMD on bounding-box-centred meshes).

The scale factors themselves are `jaxpose.metrics.surface.PMD_SCALE` / `CD_SCALE` / `EMD_SCALE`.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.geometry.bbox import center_on_bbox
from jaxpose.metrics._checks import check_finite, check_point_sets
from jaxpose.metrics.surface import CD_SCALE, EMD_SCALE, PMD_SCALE, chamfer_distance, emd_exact, emd_sinkhorn, pmd

METRIC_COLUMNS = {"pmd": "PMD_1e-4m2", "cd": "CD_1e-4m2", "emd": "EMD_1e-3m"}
"""Metric name -> column name; the column holds the value in the papers' printed units."""
METRIC_SCALES = {"pmd": PMD_SCALE, "cd": CD_SCALE, "emd": EMD_SCALE}
"""Metric name -> factor from raw units (m², m², m for SMPL) to the papers' printed units."""
UNITS_NOTE = (
    "Units as the papers print them: PMD_1e-4m2 = PMD × 10⁴ (PMD in m²), CD_1e-4m2 = CD × 10⁴ (m²), "
    "EMD_1e-3m = EMD × 10³ (m); each mesh centred on its own bounding box."
)
EMD_METHODS = ("exact", "sinkhorn")
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _label(name: str) -> str:
    """"PMD (×10⁻⁴)" etc.: the metric's printed-unit label, derived from `METRIC_SCALES`."""
    exponent = round(float(np.log10(METRIC_SCALES[name])))
    return f"{name.upper()} (×10{str(-exponent).translate(_SUPERSCRIPT)})"


def pose_transfer_metrics(
    pred,
    target,
    *,
    emd_method: str = "exact",
    sinkhorn_epsilon: float = 1e-3,
    block_size: int | None = 1024,
) -> dict[str, float | np.ndarray]:
    """PMD, CD and EMD of predicted meshes against ground truth, as the pose-transfer papers evaluate.

    Host-side evaluation: inputs must be finite (ValueError otherwise). Both meshes are centred on
    their own bounding-box centres, then PMD and CD are computed in float64 and EMD with the chosen
    method. Raw values are returned (m², m², m for SMPL); ``paper_scaled`` / ``format_pose_transfer_metrics``
    give the printed scaling.

    Args:
      pred: (..., N, 3) predicted vertices in the target's vertex order (PMD needs the correspondence;
        CD and EMD would not).
      target: (..., N, 3) ground-truth vertices.
      emd_method: "exact" — optimal Euclidean-cost assignment, SciPy float64 (see ``emd_exact``;
        O(N²) memory, ≈1–3 s per 6,890-vertex pair for predictions near the target, 12 s worst
        seen); "sinkhorn" — ott-jax entropic
        transport cost at ``sinkhorn_epsilon`` metres (see ``emd_sinkhorn``), for many or large meshes.
      sinkhorn_epsilon: ε for ``emd_method="sinkhorn"``.
      block_size: row-block size of the Chamfer nearest-neighbour search (None = dense N × N) and of
        the Sinkhorn online geometry.

    Returns:
      {"pmd", "cd", "emd"}: Python floats for a single pair, float64 arrays of shape (...) for batches.
    """
    if emd_method not in EMD_METHODS:
        raise ValueError(f"emd_method must be one of {EMD_METHODS}, got {emd_method!r}")
    check_point_sets("pred", pred, "target", target, same_num_points=True)
    pred = check_finite("pred", np.asarray(pred, dtype=np.float64))
    target = check_finite("target", np.asarray(target, dtype=np.float64))
    with jax.enable_x64(True):
        pred_centred = center_on_bbox(jnp.asarray(pred))
        target_centred = center_on_bbox(jnp.asarray(target))
        pmd_value = np.asarray(pmd(pred_centred, target_centred))
        cd_value = np.asarray(chamfer_distance(pred_centred, target_centred, block_size=block_size))
        pred_centred = np.asarray(pred_centred)
        target_centred = np.asarray(target_centred)
    if emd_method == "exact":
        emd_value = np.asarray(emd_exact(pred_centred, target_centred), dtype=np.float64)
    else:
        emd_value = np.asarray(
            emd_sinkhorn(
                pred_centred.astype(np.float32),
                target_centred.astype(np.float32),
                epsilon=sinkhorn_epsilon,
                batch_size=block_size,
            ),
            dtype=np.float64,
        )
    values = {"pmd": pmd_value, "cd": cd_value, "emd": emd_value}
    if pred.ndim == 2:
        return {name: float(value) for name, value in values.items()}
    return values


def paper_scaled(metrics: Mapping[str, float]) -> dict[str, float]:
    """Multiply raw {"pmd", "cd", "emd"} values by `METRIC_SCALES` (10⁴, 10⁴, 10³), averaging batches.

    Keys other than these three raise ValueError rather than being passed through unscaled.
    """
    unknown = set(metrics) - set(METRIC_SCALES)
    if unknown:
        raise ValueError(f"no paper scale for metric(s) {sorted(unknown)}; known: {sorted(METRIC_SCALES)}")
    return {name: float(np.mean(value)) * METRIC_SCALES[name] for name, value in metrics.items()}


def format_pose_transfer_metrics(metrics: Mapping[str, float], *, digits: int = 2) -> str:
    """One line as the papers print it, e.g. ``PMD (×10⁻⁴) 0.08 | CD (×10⁻⁴) 0.22 | EMD (×10⁻³) 1.89``.

    Batched values are averaged over all pairs first (the papers report the mean over test pairs).
    """
    scaled = paper_scaled(metrics)
    ordered = [name for name in METRIC_COLUMNS if name in scaled]
    return " | ".join(f"{_label(name)} {scaled[name]:.{digits}f}" for name in ordered)


__all__ = [
    "EMD_METHODS",
    "METRIC_COLUMNS",
    "METRIC_SCALES",
    "UNITS_NOTE",
    "format_pose_transfer_metrics",
    "paper_scaled",
    "pose_transfer_metrics",
]
