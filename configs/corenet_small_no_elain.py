"""Ablation "w/o ElaIN" of `corenet_small`: every ElaIN loses its elastic blend (w ≡ 1, SPADE-style).

Run: python -m train.corenet --config configs/corenet_small_no_elain.py --workdir runs/corenet_small_no_elain
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("corenet_small.py"))
    config.model.use_elain = False
    return config
