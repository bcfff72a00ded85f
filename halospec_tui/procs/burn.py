"""One-core CPU burner: `python -m halospec_tui.procs.burn --parent-pid PID`.

Spins a tight pure-Python loop until it is told to stop (SIGTERM/SIGINT, quietly, exit 0)
or its parent is gone (checked every few milliseconds, exit 0). Started once per core by
`halospec_tui.core.load.LoadInjector`, so it imports only `os`, `signal`, `time`,
`procs.parent` and the exit codes (not `procs.children`, which pulls in subprocess and
threading).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from halospec_tui.exitcodes import ExitCode
from halospec_tui.procs.parent import parent_gone

CHECK_S = 0.05  # how often the parent is checked
_BLOCK = 20_000  # loop iterations between clock reads (~1 ms of CPU)


def _quit(signum: int, frame: object) -> None:
    os._exit(ExitCode.OK)


def burn(parent_pid: int | None) -> int:
    """Burn one core until the parent is gone; returns the exit code."""
    monotonic = time.monotonic
    next_check = 0.0
    x = 0
    while True:
        now = monotonic()
        if now >= next_check:
            if parent_pid is not None and parent_gone(parent_pid):
                return ExitCode.OK
            next_check = now + CHECK_S
        for i in range(_BLOCK):
            x = (x + i * i) & 0xFFFF


def _parse(argv: list[str]) -> int | None:
    parent: int | None = None
    it = iter(argv)
    for arg in it:
        if arg == "--parent-pid":
            parent = int(next(it))
        elif arg.startswith("--parent-pid="):
            parent = int(arg.split("=", 1)[1])
        else:
            raise SystemExit(
                f"usage: python -m halospec_tui.procs.burn --parent-pid PID (got {arg!r})"
            )
    return parent


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, _quit)
    signal.signal(signal.SIGTERM, _quit)  # last: once SIGTERM is caught, both are
    try:
        parent = _parse(sys.argv[1:] if argv is None else argv)
    except (StopIteration, ValueError):
        print("usage: python -m halospec_tui.procs.burn --parent-pid PID", file=sys.stderr)
        return ExitCode.INPUT
    return burn(parent)


if __name__ == "__main__":
    sys.exit(main())
