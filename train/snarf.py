"""Train SNARF: python -m train.snarf [--nc] --config configs/snarf_small.py --workdir DIR [--config.K=V ...]

--nc trains SNARF-NC (task `snarf_nc`, e.g. with configs/snarf_nc_small.py).
"""

import sys

from jaxpose.training.cli_train import main

if __name__ == "__main__":
    args = sys.argv[1:]
    task = "snarf_nc" if "--nc" in args else "snarf"
    sys.exit(main([task, *(a for a in args if a != "--nc")], prog="python -m train.snarf"))
