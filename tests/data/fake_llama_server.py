"""A stand-in for the llama-server binary: takes llama-server's flags, serves the embedded
engine (llama-server's HTTP API, timings and /metrics) at the draft length of
--spec-draft-n-max, ignoring per-request keys as a current build does. Lets the tests drive
the managed backend's channels (pool eviction, restart) in a second instead of minutes.

    fake_llama_server.py --model M --host H --port P --spec-draft-n-max K [other flags ignored]
    FAKE_LLAMA_FAIL=1: print an error like llama-server's and exit 1 (startup failure)
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if os.environ.get("FAKE_LLAMA_FAIL"):
        print(
            "llama_model_load: error loading model: tensor 'blk.0' data is not within the file bounds"
        )
        print("main: exiting due to model loading error", flush=True)
        return 1
    opts = {
        "--host": "127.0.0.1",
        "--port": "8080",
        "--spec-draft-n-max": "3",
        "--spec-type": "none",
    }
    i = 0
    while i < len(argv):
        if argv[i] in opts and i + 1 < len(argv):
            opts[argv[i]] = argv[i + 1]
            i += 1
        i += 1
    k = opts["--spec-draft-n-max"] if opts["--spec-type"] != "none" else "0"
    print(f"fake llama-server: k={k} port={opts['--port']}", flush=True)
    from halospec_tui.backends.embedded.server import main as serve

    return serve(
        [
            "--host",
            opts["--host"],
            "--port",
            opts["--port"],
            "--default-n-max",
            k,
            "--ignore-request-n-max",
            "--threads",
            "1",
            "--seed",
            "1",
        ]
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
