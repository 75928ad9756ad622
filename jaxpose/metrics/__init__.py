"""Reference-checked metrics: pose transfer (PMD, CD, EMD), body fitting (MPJPE, PA-MPJPE, PVE) and
occupancy IoU. Definitions, units and the papers' printed scaling are documented in each module."""

from jaxpose.metrics._checks import check_finite
from jaxpose.metrics.joints import MM_PER_M, mpjpe, pa_mpjpe, pve
from jaxpose.metrics.occupancy import occupancy_iou
from jaxpose.metrics.pose_transfer import (
    EMD_METHODS,
    PAPER_SCALES,
    format_pose_transfer_metrics,
    paper_scaled,
    pose_transfer_metrics,
)
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
    "EMD_METHODS",
    "EMD_SCALE",
    "MM_PER_M",
    "PAPER_SCALES",
    "PMD_SCALE",
    "chamfer_distance",
    "check_finite",
    "emd_exact",
    "emd_sinkhorn",
    "exact_assignment",
    "format_pose_transfer_metrics",
    "mpjpe",
    "nearest_neighbor_squared_distances",
    "occupancy_iou",
    "pa_mpjpe",
    "paper_scaled",
    "pmd",
    "pose_transfer_metrics",
    "pve",
]
