"""The `npt` task: Neural Pose Transfer (Wang et al., CVPR 2020) trained and evaluated by the engine.

Config sections as the `corenet` task (`configs/npt_official.py`), with model fields variant
("maxpool" | "original"), pose_widths, init_stddev (the `jaxpose.models.npt.NPT` arguments) and the
NPT loss weights (1 · MSE + 0.0005 · edge). Data, loss, metrics, baselines and the harness:
`jaxpose.tasks.pose_transfer`.
"""

from __future__ import annotations

import ml_collections
from flax import nnx

from jaxpose.models.npt import NPT
from jaxpose.tasks import pose_transfer


def make_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> NPT:
    m = config.model
    return NPT(
        variant=str(m.variant),
        pose_widths=tuple(int(w) for w in m.pose_widths),
        init_stddev=float(m.init_stddev),
        rngs=rngs,
    )


TASK = pose_transfer.make_task("npt", make_model, "NPT pose transfer: max-pooled pose code + SPAdaIN decoder (Wang et al., CVPR 2020)")
