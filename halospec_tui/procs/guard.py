"""Guard for a foreign child: `python -m halospec_tui.procs.guard PARENT_PID -- CMD ...`.

Runs CMD, and ends it when the harness (PARENT_PID) is gone, when the guard is told to stop
(SIGTERM/SIGINT) or when CMD exits. CMD gets PR_SET_PDEATHSIG, so it dies with the guard.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from halospec_tui.exitcodes import ExitCode
from halospec_tui.procs.children import set_pdeathsig
from halospec_tui.procs.parent import POLL_S, parent_gone


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m halospec_tui.procs.guard PARENT_PID -- CMD ...", file=sys.stderr)
        return ExitCode.INPUT
    parent = int(argv[0])
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    guard_pid = os.getpid()

    def child_setup() -> None:
        set_pdeathsig()
        if os.getppid() != guard_pid:  # the guard died before PDEATHSIG was armed
            os._exit(ExitCode.ERROR)

    try:
        child = subprocess.Popen(argv[2:], preexec_fn=child_setup)
    except OSError as e:
        print(f"guard: cannot start {argv[2]}: {e}", file=sys.stderr)
        return 127  # the shell's "cannot execute", as the program never ran
    while child.poll() is None and not stopping and not parent_gone(parent):
        time.sleep(POLL_S)
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(3)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return child.returncode if child.returncode is not None else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
