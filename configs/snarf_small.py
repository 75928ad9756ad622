"""SNARF, small: the reduced CPU run of configs/ins_small.py (same data, steps, batch, optimiser and loss extras)
with a narrow SNARF (shape MLP 4 x 64, skip at 2; skinning 3 x 64; Broyden 20 steps).
Run: python -m train.snarf --config configs/snarf_small.py --workdir runs/snarf_small
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    small = load_config(pathlib.Path(__file__).with_name("ins_small.py"))
    config = load_config(pathlib.Path(__file__).with_name("snarf_full.py"))
    for key in ("batch_size", "num_steps", "log_every", "checkpoint_every", "loss", "data", "optimizer"):
        config[key] = small[key]
    config.model.width = 64
    config.model.depth = 4
    config.model.skip_layers = (2,)
    config.model.skinning_width = 64
    config.model.skinning_depth = 3
    config.model.max_steps = 20
    return config
