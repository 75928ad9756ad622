"""Ablation "w/o depth" of `refinement_small`: the relative-depth channel is zeroed; same data.

Run: python -m train.refinement --config configs/refinement_small_no_depth.py --workdir runs/refinement_small_no_depth
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("refinement_small.py"))
    config.model.inputs.depth = False
    return config
