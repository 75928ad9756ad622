"""SNARF on the CAPE-like subjects under the shared CPU budget (configs/skinning_cape_budget.py).

Model: SNARF's CAPE shape network at a CPU width (MLP 4 x 64, softplus beta 100, skip at layer 2, 4-frequency
positional encoding, the 69-d pose / pi at layer 0), hierarchical skinning field 3 x 64; Fast-SNARF's
root-finding settings (<= 10 steps, 1e-4, 0.5).
Run: python -m train.snarf --config configs/snarf_cape.py --workdir runs/snarf_cape
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("skinning_cape_budget.py"))
    full = load_config(pathlib.Path(__file__).with_name("snarf_full.py"))
    config.task = "snarf"
    config.model = full.model
    config.model.width = 64
    config.model.depth = 4
    config.model.skip_layers = (2,)
    config.model.skinning_width = 64
    config.model.skinning_depth = 3
    config.model.max_steps = 10
    config.model.tol = 1e-4
    config.model.diverge = 0.5
    return config
