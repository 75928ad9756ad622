"""SNARF, full run on the same data as configs/ins_full.py: SNARF's CAPE network (8 x 256, softplus
beta 100, skip at 4, 4-frequency encoding, pose / pi at layer 0), hierarchical skinning field 4 x 128,
first-epoch joint one-hot loss (lambda 10), Adam 1e-3, clip 0.1, batch 8, 100k steps (SNARF's values).
Run: python -m train.snarf --config configs/snarf_full.py --workdir runs/snarf_full
SNARF-NC: add --config.task=snarf_nc (or use `jaxpose train snarf_nc --config configs/snarf_full.py --config.task=snarf_nc`).
"""

import pathlib

import ml_collections

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("ins_full.py"))
    config.task = "snarf"
    config.model = ml_collections.ConfigDict()
    config.model.width = 256
    config.model.depth = 8
    config.model.skip_layers = (4,)
    config.model.num_frequencies = 4
    config.model.skinning_width = 128
    config.model.skinning_depth = 4
    config.model.max_steps = 50
    return config
