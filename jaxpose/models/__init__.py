"""Pose-transfer models (Flax NNX): 3D-CoreNet, the NPT baseline, and the official-weight importer."""

from jaxpose.models.corenet import CoreNet, ElaINGenerator, ElaINResBlock, FeatureExtractor
from jaxpose.models.npt import NPT
from jaxpose.models.outputs import PoseTransferOutput

__all__ = [
    "NPT",
    "CoreNet",
    "ElaINGenerator",
    "ElaINResBlock",
    "FeatureExtractor",
    "PoseTransferOutput",
]
