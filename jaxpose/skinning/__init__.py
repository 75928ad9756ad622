"""Invertible Neural Skinning, with the SNARF and LBS baselines (docs/skinning.md).

Modules:
  ins, pin, field, snarf, lbs_baselines   the models: `INS`, the pose-conditioned invertible networks
                                          (`PIN`), learned skinning fields, `SNARF` / SNARF-NC, AVG/FIRST-LBS
  extraction, repose                      canonical mesh extraction once, reposing many times
                                          (`jaxpose repose`)
  cape, clothed, occupancy_points         CAPE-layout data, synthetic clothed subjects, labelled point sets
  data, task                              the `ins` / `snarf` / `snarf_nc` engine tasks built from a config
"""

from jaxpose.skinning.field import SkinningField
from jaxpose.skinning.ins import INS, INSConfig
from jaxpose.skinning.pin import PIN, BonePoseEncoder, PINConfig
from jaxpose.skinning.snarf import SNARF

__all__ = ["INS", "INSConfig", "PIN", "PINConfig", "SNARF", "BonePoseEncoder", "SkinningField"]
