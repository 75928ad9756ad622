"""Ablation "absolute decoder" of `corenet_small`: the paper's decoder, which outputs absolute coordinates
(`residual_output=False`), instead of jaxpose's warp + offset.

Run: python -m train.corenet --config configs/corenet_small_absolute.py --workdir runs/corenet_small_absolute
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("corenet_small.py"))
    config.model.residual_output = False
    return config
