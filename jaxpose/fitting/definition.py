"""The registered `refinement` task: the U-Net task (`task`) with the comparisons protocol (`protocol`).

Kept apart from both so that the protocol can use the task's data helpers without an import cycle.
"""

from jaxpose.fitting.protocol import RefinementProtocol
from jaxpose.fitting.task import make_task
from jaxpose.training.task import TaskDefinition

REFINEMENT_TASK = TaskDefinition(
    "refinement",
    make_task,
    RefinementProtocol(),
    "U-Net predicting per-pixel 2D displacements from renders of an initial body estimate to the image, with a "
    "confidence (Wehrbein et al., personalized refinement; reconstruction); `jaxpose eval refinement` scores the "
    "dense refinement against the initial estimate, keypoint-only and DensePose-like refinement",
)
