"""Train the `npt` task: python -m train.npt --config configs/npt_small.py --workdir DIR [--config.K=V ...]"""

import sys

from jaxpose.training.cli_train import main

if __name__ == "__main__":
    sys.exit(main(["npt", *sys.argv[1:]], prog="python -m train.npt"))
