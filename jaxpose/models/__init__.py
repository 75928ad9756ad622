"""Models (Flax NNX unless noted).

Pose transfer: `CoreNet` (3D-CoreNet), `NPT` (SPAdaIN baseline), `DeformationTransfer` (classical,
NumPy/SciPy). Skinning: `INS` (invertible neural skinning), `PIN` (pose-conditioned invertible
coupling network), `SkinningField`, `SNARF` (and SNARF-NC), and the LBS-only baselines in
`lbs_baselines`. The official 3D-CoreNet weight importer is `corenet_torch_import`.
"""

from jaxpose.models.corenet import CoreNet, ElaINGenerator, ElaINResBlock, FeatureExtractor
from jaxpose.models.deformation_transfer import DeformationTransfer
from jaxpose.models.ins import INS, INSConfig
from jaxpose.models.npt import NPT
from jaxpose.models.outputs import PoseTransferOutput
from jaxpose.models.pin import PIN, PINConfig, BonePoseEncoder
from jaxpose.models.skinning import SkinningField, rectified_bone_transforms, star_pose
from jaxpose.models.snarf import SNARF

__all__ = [
    "INS", "INSConfig", "NPT", "PIN", "PINConfig", "SNARF", "BonePoseEncoder", "CoreNet",
    "DeformationTransfer", "ElaINGenerator", "ElaINResBlock", "FeatureExtractor", "PoseTransferOutput",
    "SkinningField", "rectified_bone_transforms", "star_pose",
]
