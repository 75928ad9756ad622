"""Ablation "w/o normals" of `refinement_small`: the three normal channels are zeroed; same
data.

Run: python -m train.refinement --config configs/refinement_small_no_normals.py --workdir runs/refinement_small_no_normals
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("refinement_small.py"))
    config.model.inputs.normals = False
    return config
