"""Ablation "w/o L_edg" of `corenet_small`: reconstruction loss only (edge weight 0).

Run: python -m train.corenet --config configs/corenet_small_no_edge.py --workdir runs/corenet_small_no_edge
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("corenet_small.py"))
    config.loss.edge_weight = 0.0
    return config
