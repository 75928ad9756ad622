"""Train the `tiny` task: python -m train.tiny --config configs/tiny.py --workdir DIR [--config.K=V ...]"""

import sys

from jaxpose.training.cli_train import main

if __name__ == "__main__":
    sys.exit(main(["tiny", *sys.argv[1:]], prog="python -m train.tiny"))
