"""SNARF-NC, small: configs/snarf_small.py without pose conditioning (task snarf_nc).
Run: python -m train.snarf --nc --config configs/snarf_nc_small.py --workdir runs/snarf_nc_small
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("snarf_small.py"))
    config.task = "snarf_nc"
    return config
