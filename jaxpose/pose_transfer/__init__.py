"""Pose transfer: 3D-CoreNet, with the NPT and Deformation Transfer baselines (docs/pose_transfer.md).

Modules:
  corenet, npt, deformation_transfer, outputs   the models (`CoreNet`, `NPT`, `DeformationTransfer`)
  torch_import                                   official 3D-CoreNet PyTorch checkpoints -> jaxpose
  npt_data, dataset, data_cli                    NPT-style data on the default body; dataset readers;
                                                 `jaxpose data npt`
  pairs, loss                                    training pairs and the training loss
  protocol, host_callbacks, units                the test protocol, its host-side metrics/baselines,
                                                 the papers' metric units
  evaluation                                     `jaxpose eval corenet|npt` (one table, several seeds)
  task                                           the `corenet` / `npt` engine tasks built from a config
  pretrained                                     the models that ship in `weights/` (`load`, `manifest`)
  transfer, demo                                 `jaxpose transfer`, `jaxpose demo`
"""

from jaxpose.pose_transfer.corenet import CoreNet
from jaxpose.pose_transfer.deformation_transfer import DeformationTransfer
from jaxpose.pose_transfer.npt import NPT
from jaxpose.pose_transfer.outputs import PoseTransferOutput

__all__ = ["CoreNet", "DeformationTransfer", "NPT", "PoseTransferOutput"]
