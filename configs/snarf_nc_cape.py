"""SNARF-NC on the CAPE-like subjects: configs/snarf_cape.py without pose conditioning (task snarf_nc).
Run: python -m train.snarf --nc --config configs/snarf_nc_cape.py --workdir runs/snarf_nc_cape
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("snarf_cape.py"))
    config.task = "snarf_nc"
    return config
