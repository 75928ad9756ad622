"""Ablation "w/o texture" of `refinement_small`: the rendered RGB is the untextured (grey-albedo)
render; same data.

Run: python -m train.refinement --config configs/refinement_small_no_texture.py --workdir runs/refinement_small_no_texture
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("refinement_small.py"))
    config.model.inputs.texture = False
    return config
