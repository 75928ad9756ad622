"""Train the `ins` task: python -m train.ins --config configs/ins_small.py --workdir DIR [--config.K=V ...]"""

import sys

from jaxpose.training.cli_train import main

if __name__ == "__main__":
    sys.exit(main(["ins", *sys.argv[1:]], prog="python -m train.ins"))
