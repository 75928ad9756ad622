"""Run the deform-and-learn loop (lifter, registration, ConvNet; iterated).

python -m train.deform_learn --config configs/deform_learn_small.py --workdir DIR [--comparisons] [--config.K=V ...]
(or: jaxpose deform-learn --config ... --workdir ...)
"""

import sys

from jaxpose.deform_learn.cli_loop import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python -m train.deform_learn"))
