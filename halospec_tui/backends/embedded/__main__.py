"""`python -m halospec_tui.backends.embedded [--port 0] [--seed 42] [--parent-pid PID] ...`

Prints one line, ``LISTENING http://HOST:PORT``, once it serves. See server.build_parser.
"""

import os
import sys

# pin BLAS pools before numpy loads: the engine's parallelism is its own draft pool
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from halospec_tui.backends.embedded.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
