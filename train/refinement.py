"""Train the `refinement` task (displacement U-Net).

python -m train.refinement --config configs/refinement_small.py --workdir DIR [--config.K=V ...]
"""

import sys

from jaxpose.training.cli_train import main

if __name__ == "__main__":
    sys.exit(main(["refinement", *sys.argv[1:]], prog="python -m train.refinement"))
