"""Correlation matrices and entropic optimal transport for dense vertex matching (3D-CoreNet).

Modules:
  correlation   cosine correlation of row-normalised features
  choices       how to match: geometry (Materialized, RowBlocked) and solver (CoreNetIteration,
                OttFixedStep, OttConverged) objects, and `matching_from_name` for config names
  sinkhorn      3D-CoreNet's fixed-step Sinkhorn in the log domain: dense and row-blocked kernels
  ott_sinkhorn  the same problem (fixed-step or converged) solved with ott-jax
  warp          public entry points with input validation
  stepwise      the row-blocked warp as a host loop of per-block steps (progress bars, inference only)
"""

from jaxpose.matching.choices import (
    MATCHING_NAMES,
    CoreNetIteration,
    Geometry,
    Materialized,
    OttConverged,
    OttFixedStep,
    RowBlocked,
    Solver,
    matching_from_name,
)
from jaxpose.matching.correlation import cosine_correlation, normalize_rows
from jaxpose.matching.sinkhorn import SINKHORN_GUARD
from jaxpose.matching.stepwise import StepwiseWarp
from jaxpose.matching.warp import (
    correlation_and_warp,
    ot_plan_converged,
    ot_warp,
    row_normalised_plan,
)

__all__ = [
    "MATCHING_NAMES",
    "SINKHORN_GUARD",
    "CoreNetIteration",
    "Geometry",
    "Materialized",
    "OttConverged",
    "OttFixedStep",
    "RowBlocked",
    "Solver",
    "StepwiseWarp",
    "correlation_and_warp",
    "cosine_correlation",
    "matching_from_name",
    "normalize_rows",
    "ot_plan_converged",
    "ot_warp",
    "row_normalised_plan",
]
