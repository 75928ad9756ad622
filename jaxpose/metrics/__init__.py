"""Reference-checked metrics: pose transfer (PMD, CD, EMD), body fitting (MPJPE, PA-MPJPE, PVE) and
occupancy IoU. Definitions, units and the papers' printed scaling are documented in each module."""

from jaxpose.metrics._checks import check_finite
from jaxpose.metrics.joints import MM_PER_M, mpjpe, pa_mpjpe, pve
from jaxpose.metrics.occupancy import occupancy_iou
from jaxpose.metrics.surface import (
    CD_SCALE,
    EMD_SCALE,
    PMD_SCALE,
    chamfer_distance,
    emd_exact,
    emd_sinkhorn,
    exact_assignment,
    nearest_neighbor_squared_distances,
    pmd,
)

__all__ = [
    "CD_SCALE",
    "EMD_SCALE",
    "MM_PER_M",
    "PMD_SCALE",
    "chamfer_distance",
    "check_finite",
    "emd_exact",
    "emd_sinkhorn",
    "exact_assignment",
    "mpjpe",
    "nearest_neighbor_squared_distances",
    "occupancy_iou",
    "pa_mpjpe",
    "pmd",
    "pve",
]
