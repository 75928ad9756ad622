"""Train the `corenet` task: python -m train.corenet --config configs/corenet_small.py --workdir DIR [--config.K=V ...]"""

import sys

from jaxpose.training.cli_train import main

if __name__ == "__main__":
    sys.exit(main(["corenet", *sys.argv[1:]], prog="python -m train.corenet"))
